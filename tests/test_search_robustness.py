"""``normgan search`` under faults and misuse: the seed reaches the runs, a folder holds one search,
failures caused by the environment (a full disk) stop the search in one line and are retried by the
next run, ``--keep``, per-fold progress, and one-line errors for unusable folders.

Stub trainers (tests/robust_stub.py, tests/search_stub.py) where the training itself is not what is
tested; tiny real runs for the seed. Full and read-only disks are small tmpfs mounts (the tests run
as root here and in CI; they are skipped where mounting is not permitted)."""

from __future__ import annotations

import contextlib
import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

from faults import remount, tmpfs  # noqa: E402

from normgan.errors import UserError  # noqa: E402
from normgan.search import run_search  # noqa: E402

STUB = "robust_stub:train"
BASE = ["train.steps=4", "eval.every=2", "eval.metrics=[psnr,l1]"]
TINY = [
    "train.steps=2",
    "eval.every=2",
    "eval.metrics=[psnr]",
    "data.batch_size=8",
    "model.generator.width=8",
    "model.discriminator.width=8",
    "train.log_every=2",
    "train.sample_every=2",
    "train.checkpoint_every=2",
    "train.tensorboard=false",
]


def _search(folder, params, **kw):
    kw.setdefault("folds", 2)
    kw.setdefault("metric", "psnr")
    kw.setdefault("name", "s")
    kw.setdefault("trainer", STUB)
    return run_search(
        config="edges2digit",
        overrides=kw.pop("overrides", BASE),
        params=params,
        searches_dir=folder,
        progress=kw.pop("progress", False),
        heartbeat=5,
        **kw,
    )


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _cli(*args, env=None, timeout=300, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "normgan", "search", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or _env(),
        cwd=cwd,
    )


def _stub_cli(searches_dir, *extra, lams="[1,10,100,1000]", name="s", env=None, heartbeat=5):
    return _cli(
        "edges2digit",
        *BASE,
        "--param",
        f"regularizers.l1.weight={lams}",
        "--folds",
        "2",
        "--metric",
        "psnr",
        "--name",
        name,
        "--searches-dir",
        searches_dir,
        "--trainer",
        STUB,
        "--heartbeat",
        heartbeat,
        *extra,
        env=env,
    )


def _one_error_line(r, *words):
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("normgan: error:")]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in errors[0], (w, errors[0])
    return errors[0]


def _study_names(folder: Path):
    return optuna.get_all_study_names(storage=f"sqlite:///{folder / 'study.db'}")


def _tree(folder: Path) -> dict:
    """{relative path: bytes} of every file under ``folder`` (study.db left out: SQLite may touch it on reads)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in ("study.db", ".plan.lock", ".final.lock")
    }


# ----------------------------------------------------------------------------------- the seed
def _weights(run: Path) -> dict:
    return torch.load(run / "generator.pt", map_location="cpu", weights_only=False)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_searched_train_seed_reaches_the_runs_and_progress_is_per_fold(tmp_path):
    """Real tiny runs (normgan's trainer; robust_stub:train_real copies each run's EMA generator):
    ``--param train.seed=[0,1] --seeds 2`` trains seeds 0, 1 (trial 0) and 1, 2 (trial 1): trial 0's
    seed 1 equals trial 1's seed 1 weight for weight, other seeds differ; each run's config holds
    its seed. The progress lines name each fold's training, evaluation and score."""
    env = _env(NORMGAN_CACHE=tmp_path / "cache")
    r = _cli(
        "edges2digit",
        *TINY,
        "--param",
        "train.seed=[0,1]",
        "--seeds",
        "2",
        "--folds",
        "1",
        "--metric",
        "psnr",
        "--name",
        "seed",
        "--searches-dir",
        tmp_path,
        "--no-final",
        "--trainer",
        "robust_stub:train_real",
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    trials = tmp_path / "seed" / "trials"
    runs = {(t, s): trials / f"{t:04d}" / f"fold0-seed{s}" for t, s in ((0, 0), (0, 1), (1, 1), (1, 2))}
    for (_t, s), run in runs.items():
        assert run.is_dir(), sorted(str(p.relative_to(trials)) for p in trials.glob("*/*"))
        assert f"seed: {s}\n" in (run / "config.yaml").read_text()
    w = {k: _weights(v) for k, v in runs.items()}
    assert _same(w[0, 1], w[1, 1])  # the same seed: the same model
    assert not _same(w[0, 0], w[0, 1]) and not _same(w[0, 0], w[1, 1]) and not _same(w[1, 1], w[1, 2])
    rows = {row["number"]: row for row in csv.DictReader(open(tmp_path / "seed" / "trials.csv"))}
    assert rows["0"]["train.seed"] == "0" and rows["1"]["train.seed"] == "1"
    for t, s in runs:  # per-fold progress on stderr: training, evaluation, the score
        where = f"trial {t} fold 1/1 seed {s}"
        assert f"{where}: training 2 steps" in r.stderr, r.stderr
        assert f"{where}: evaluating at step 2" in r.stderr and f"{where}: evaluated at step 2 in" in r.stderr
        assert f"{where}: psnr " in r.stderr


def test_progress_lines_per_fold_and_none_without_progress(tmp_path, capsys):
    _search(tmp_path, ["regularizers.l1.weight=[1,10]"], final=False, name="q")
    assert "fold 1/2" not in capsys.readouterr().err
    _search(tmp_path, ["regularizers.l1.weight=[1,10]"], final=False, name="p", progress=True)
    err = capsys.readouterr().err
    for t in (0, 1):
        for f in (1, 2):
            assert f"search p: trial {t} fold {f}/2 seed 0: training 4 steps" in err, err
            assert f"search p: trial {t} fold {f}/2 seed 0: psnr " in err


# ----------------------------------------------------------------------------------- one search per folder
def test_another_search_cannot_take_a_search_folder(tmp_path):
    """A second search aimed at an existing search's folder (through the name '.', or a link to the
    folder under a new name) is refused with one line before it writes anything; the first search's
    study.db still holds its one study, and its files are unchanged."""
    _search(tmp_path, ["regularizers.l1.weight=[1,100]"], final=False)
    folder = tmp_path / "s"
    before = _tree(folder)
    assert _study_names(folder) == ["s"]
    (tmp_path / "alias").symlink_to(folder)
    for kw in ({"searches_dir": folder, "name": "."}, {"searches_dir": tmp_path, "name": "alias"}):
        with pytest.raises(UserError) as e:
            _search(kw["searches_dir"], ["optim.g.lr=[1e-4,2e-4]"], name=kw["name"], final=False)
        assert "\n" not in str(e.value) and "--name" in str(e.value)
        assert _study_names(folder) == ["s"] and _tree(folder) == before
    r = _stub_cli(tmp_path, "--no-final", lams="[1,10]", name="alias")
    assert r.returncode == 2
    _one_error_line(r, str(tmp_path / "alias"), "search 's'", "--name")
    assert _study_names(folder) == ["s"] and _tree(folder) == before


def test_other_settings_in_a_search_folder_are_refused_naming_the_folder_and_the_spec(tmp_path):
    _search(tmp_path, ["regularizers.l1.weight=[1,100]"], final=False)
    before = _tree(tmp_path / "s")
    r = _stub_cli(tmp_path, "--no-final", "--no-progress", lams="[1,10]")
    assert r.returncode == 2
    _one_error_line(
        r,
        str(tmp_path / "s"),
        "--param regularizers.l1.weight=[1,100]",
        "--param regularizers.l1.weight=[1,10]",
        "--name",
    )
    assert _tree(tmp_path / "s") == before and _study_names(tmp_path / "s") == ["s"]
    again = _search(tmp_path, ["regularizers.l1.weight=[1,100]"], final=False)  # the same spec continues (nothing left)
    assert [r["state"] for r in again["rows"]] == ["COMPLETE", "COMPLETE"]


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_names_are_refused(tmp_path, name):
    """'.' would make the searches folder itself the search folder (and '..' its parent)."""
    with pytest.raises(UserError, match=f"--name {re.escape(repr(name))}"):
        _search(tmp_path, ["regularizers.l1.weight=[1]"], name=name)
    assert not any(tmp_path.iterdir())


# ----------------------------------------------------------------------------------- the environment
@pytest.mark.parametrize("raw", [False, True], ids=["checkpoint-error", "bare-oserror"])
def test_a_full_disk_stops_the_search_in_one_line_and_the_next_run_retries(tmp_path, raw):
    """On a 1 MiB tmpfs each run writes 120 kB: the search stops at the first run that finds the disk
    full (one line, exit 1), the trials done so far are kept; after space is freed the same command
    says what it retries and completes every trial. A diverged trial stays a result. (A bare write
    leaves the disk full, so SQLite cannot record the failure either: the trial stays RUNNING and
    the next run's heartbeat check fails it and queues it again.)"""
    import time

    env = _env(STUB_BYTES=120_000, STUB_DIVERGE_AT=1000, **({"STUB_RAW_OSERROR": 1} if raw else {}))
    with tmpfs(tmp_path / "disk", "size=1m") as disk:
        r = _stub_cli(disk, "--no-final", "--no-progress", lams="[1,10,100,1000,3,30,300]", env=env, heartbeat=1)
        assert r.returncode == 1, (r.stdout, r.stderr)
        line = _one_error_line(r, "search 's'", "fold", "the same command")
        assert "space" in line.lower() or "full" in line.lower() or "write" in line.lower(), line
        study = optuna.load_study(study_name="s", storage=f"sqlite:///{disk / 's' / 'study.db'}")
        hit = [
            t
            for t in study.trials
            if t.state.name in ("FAIL", "RUNNING") and not t.user_attrs.get("error", "").count("NaN")
        ]
        assert len(hit) == 1, [(t.number, t.state.name, t.user_attrs) for t in study.trials]
        assert hit[0].state.name == "RUNNING" or hit[0].user_attrs.get("env_error")
        first_fail = hit[0].number
        assert not [t for t in study.trials if t.state.name == "WAITING" and t.user_attrs.get("retry_of") is not None]
        remount(disk, "size=8m")
        time.sleep(2.5)  # past the heartbeat's grace period (2 × 1 s)
        r = _stub_cli(disk, "--no-final", "--no-progress", lams="[1,10,100,1000,3,30,300]", env=env, heartbeat=1)
        assert r.returncode == 0, (r.stdout, r.stderr)
        retry_lines = [line for line in r.stderr.splitlines() if "retrying" in line]
        assert len(retry_lines) == 1 and f"trial {first_fail} (" in retry_lines[0], r.stderr
        study = optuna.load_study(study_name="s", storage=f"sqlite:///{disk / 's' / 'study.db'}")
        done = sorted(t.params["regularizers.l1.weight"] for t in study.trials if t.state.name == "COMPLETE")
        assert done == [1, 3, 10, 30, 100, 300]
        diverged = [t for t in study.trials if t.params.get("regularizers.l1.weight") == 1000]
        assert len(diverged) == 1 and diverged[0].state.name == "FAIL" and "NaN" in diverged[0].user_attrs["error"]
        retried = [t for t in study.trials if t.user_attrs.get("retry_of") == first_fail]
        assert len(retried) == 1 and retried[0].state.name == "COMPLETE"
        r = _stub_cli(disk, "--no-final", "--no-progress", lams="[1,10,100,1000,3,30,300]", env=env)
        assert r.returncode == 0 and "retrying" not in r.stderr  # nothing left to retry; the diverged one stays


def test_a_full_disk_keeps_what_was_written_before(tmp_path):
    """A finished search's outputs survive a later run (more trials) that finds the disk full."""
    with tmpfs(tmp_path / "disk", "size=2m") as disk:
        out = _search(disk, ["regularizers.l1.weight=log:1:1000"], sampler="random", trials=2, final=False)
        assert len(out["rows"]) == 2
        before = _tree(disk / "s")
        filler = disk / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)  # fill the disk
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
        os.close(fd)
        r = _cli(
            "edges2digit",
            *BASE,
            "--param",
            "regularizers.l1.weight=log:1:1000",
            "--sampler",
            "random",
            "--trials",
            "4",
            "--folds",
            "2",
            "--metric",
            "psnr",
            "--name",
            "s",
            "--searches-dir",
            disk,
            "--trainer",
            STUB,
            "--no-final",
            "--no-progress",
            env=_env(STUB_BYTES=200_000),
        )
        assert r.returncode in (1, 2), r.stderr
        _one_error_line(r)
        assert "Traceback" not in r.stderr
        after = _tree(disk / "s")
        for f in ("trials.csv", "report.html", "best.yaml", ".identity.json"):
            assert after[f] == before[f], f
        filler.unlink()
        r = _cli(
            "edges2digit",
            *BASE,
            "--param",
            "regularizers.l1.weight=log:1:1000",
            "--sampler",
            "random",
            "--trials",
            "4",
            "--folds",
            "2",
            "--metric",
            "psnr",
            "--name",
            "s",
            "--searches-dir",
            disk,
            "--trainer",
            STUB,
            "--no-final",
            "--no-progress",
            env=_env(STUB_BYTES=1000),
        )
        assert r.returncode == 0, r.stderr
        rows = list(csv.DictReader(open(disk / "s" / "trials.csv")))
        assert sum(row["state"] == "COMPLETE" for row in rows) == 4


def test_a_search_that_cannot_create_its_study_on_a_full_disk_is_one_line(tmp_path):
    with tmpfs(tmp_path / "disk", "size=16k") as disk:
        r = _stub_cli(disk, "--no-final", "--no-progress")
        assert r.returncode in (1, 2), r.stderr
        _one_error_line(r, "free some space")


def test_no_trial_completed_says_why_and_exits_2(tmp_path):
    """A real search on an unlabelled image folder (the domain classifier needs labels): every
    trial fails; the command ends with one line that gives the first failure's reason, exit 2."""
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(40):
        Image.fromarray((torch.rand(32, 32, generator=g) * 255).to(torch.uint8).numpy()).save(images / f"{i}.png")
    r = _cli(
        f"data.root={images}",
        "data.name=folder",
        *TINY[:1],
        "eval.every=2",
        "eval.n=20",
        *TINY[3:],
        "--param",
        "optim.g.lr=[1e-4]",
        "--folds",
        "2",
        "--metric",
        "fid",
        "--name",
        "u",
        "--searches-dir",
        tmp_path / "s",
        "--no-final",
        "--no-progress",
        env=_env(NORMGAN_CACHE=tmp_path / "cache"),
        timeout=600,
    )
    assert r.returncode == 2, (r.stdout, r.stderr)
    _one_error_line(r, "no trial completed", "trial 0 failed", "labels")


# ----------------------------------------------------------------------------------- --keep
def test_keep_best_keeps_only_the_best_trials_checkpoints_and_every_trials_metrics(tmp_path):
    out = _search(tmp_path / "best", ["regularizers.l1.weight=[1,100,1000]"], final=False)
    best = out["best"]["number"]
    assert out["best"]["params"]["regularizers.l1.weight"] == 100
    trials = tmp_path / "best" / "s" / "trials"
    for t in range(3):
        for f in range(2):
            run = trials / f"{t:04d}" / f"fold{f}-seed0"
            assert (run / "metrics.jsonl").is_file()
            assert (run / "checkpoints" / "last.pt").is_file() == (t == best), (t, f)
    out = _search(tmp_path / "all", ["regularizers.l1.weight=[1,100,1000]"], final=False, keep="all")
    assert len(list((tmp_path / "all" / "s" / "trials").glob("*/*/checkpoints/last.pt"))) == 6
    with pytest.raises(UserError, match="--keep"):
        _search(tmp_path / "bad", ["regularizers.l1.weight=[1]"], keep="none")


# ----------------------------------------------------------------------------------- unusable folders
def test_searches_dir_that_is_a_file_is_one_line(tmp_path):
    f = tmp_path / "searches"
    f.write_text("not a folder\n")
    r = _stub_cli(f, "--no-final", "--no-progress")
    assert r.returncode == 2
    _one_error_line(r, str(f), "--searches-dir")
    assert f.read_text() == "not a folder\n"


def test_a_search_folder_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "s").write_text("x\n")
    r = _stub_cli(tmp_path, "--no-final", "--no-progress")
    assert r.returncode == 2
    _one_error_line(r, str(tmp_path / "s"), "--name")
    assert (tmp_path / "s").read_text() == "x\n"


def test_a_read_only_searches_dir_is_one_line(tmp_path):
    with tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        r = _stub_cli(ro, "--no-final", "--no-progress")
        assert r.returncode == 2
        _one_error_line(r, str(ro / "s"), "--searches-dir")


def test_a_read_only_existing_search_folder_is_one_line_and_stays_intact(tmp_path):
    with tmpfs(tmp_path / "disk", "size=4m") as disk:
        r = _stub_cli(disk, "--no-final", "--no-progress", lams="[1,100]")  # a process that ends: no file left open
        assert r.returncode == 0, r.stderr
        before = _tree(disk / "s")
        remount(disk, "ro")
        r = _stub_cli(disk, "--no-final", "--no-progress", lams="[1,100]")
        assert r.returncode == 2, r.stderr
        _one_error_line(r, str(disk / "s"))
        assert _tree(disk / "s") == before
