"""``normgan study`` under faults and misuse: the overrides' train.seed reaches the runs, a folder
holds one study, runs stopped by a full disk are retried by the next run (diverged ones stay
results), and unusable ``--studies-dir`` folders are one line.

Stub trainers (tests/study_stub.py, tests/robust_stub.py: closed-form run folders, no training);
full and read-only disks are small tmpfs mounts (root here and in CI; skipped where not permitted)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import optuna
import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

import robust_stub  # noqa: E402
import study_stub  # noqa: E402
from conftest import run_cli  # noqa: E402
from faults import remount, tmpfs  # noqa: E402
from test_search_robustness import _one_error_line, _study_names, _tree  # noqa: E402

from normgan.errors import UserError  # noqa: E402
from normgan.study import Study  # noqa: E402

STEPS, EVERY = 100, 25


def write_study(folder: Path, *, seeds="[0, 1]", extra="", variants=None, name="s") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    variants = variants or "  none: {}\n  r1: {regularizers.r1: r1}\n"
    path.write_text(f"""
config: mnist
overrides: {{train.steps: {STEPS}, eval.every: {EVERY}, regularizers.wd_g: none, model.discriminator.norm: none{extra}}}
seeds: {seeds}
metric: fid
variants:
{variants}""")
    return path


def run_study(path, studies_dir, *, trainer=study_stub.train, **kw):
    return Study(
        study=str(path),
        studies_dir=studies_dir,
        progress=False,
        trainer=trainer,
        heartbeat=kw.pop("heartbeat", 5),
        **kw,
    ).run()


def _log(path: Path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# ----------------------------------------------------------------------------------- the seed
def test_the_overrides_train_seed_is_the_first_seed_of_the_runs(tmp_path, monkeypatch):
    """``overrides: {train.seed: 5}`` with ``seeds: 2`` trains seeds 5 and 6 (before: 0 and 1
    whatever train.seed said); the run folders, study.json and the trainer's configs agree."""
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("STUB_LOG", str(log))
    path = write_study(tmp_path, seeds="2", extra=", train.seed: 5")
    out = run_study(path, tmp_path / "studies")
    calls = _log(log)
    assert sorted(c["seed"] for c in calls) == [5, 5, 6, 6]
    for c in calls:
        assert c["run_dir"].endswith(f"seed{c['seed']}")
    doc = out["document"]
    assert doc["seeds"] == [5, 6]
    assert sorted((r["variant"], r["seed"], r["state"]) for r in doc["runs"]) == [
        ("none", 5, "done"),
        ("none", 6, "done"),
        ("r1", 5, "done"),
        ("r1", 6, "done"),
    ]
    for r in doc["runs"]:  # the stub's score carries the seed: 0.1·seed
        assert r["final"]["fid"] == pytest.approx(
            study_stub.base(_Cfg(r["variant"])) + 0.1 * r["seed"] + 40.0 * __import__("math").exp(-5.0), rel=1e-9
        )


class _Cfg:
    def __init__(self, variant):
        self.regularizers = {"r1": {}} if variant == "r1" else {}


def test_without_train_seed_the_seeds_are_the_study_files(tmp_path, monkeypatch):
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("STUB_LOG", str(log))
    out = run_study(write_study(tmp_path, seeds="[0, 3]"), tmp_path / "studies")
    assert sorted(c["seed"] for c in _log(log)) == [0, 0, 3, 3] and out["document"]["seeds"] == [0, 3]


# ----------------------------------------------------------------------------------- one study per folder
def test_another_study_cannot_take_a_study_folder(tmp_path):
    path = write_study(tmp_path)
    run_study(path, tmp_path / "studies")
    folder = tmp_path / "studies" / "s"
    before = _tree(folder)
    other = write_study(tmp_path, name="t", variants="  none: {}\n  lazy: {regularizers.r1: lazy_r1}\n")
    (tmp_path / "studies" / "alias").symlink_to(folder)
    for kw in (
        {"studies_dir": folder, "name": "."},
        {"studies_dir": tmp_path / "studies", "name": "alias"},
        {"studies_dir": tmp_path / "studies", "name": "s"},
    ):
        with pytest.raises(UserError) as e:
            run_study(other, kw["studies_dir"], name=kw["name"])
        assert "\n" not in str(e.value) and "--name" in str(e.value)
        assert _study_names(folder) == ["s"] and _tree(folder) == before
    with pytest.raises(UserError, match="variants differ"):  # the same name, other variants: names what differs
        run_study(other, tmp_path / "studies", name="s")


# ----------------------------------------------------------------------------------- the environment
def test_a_full_disk_stops_the_study_in_one_line_and_the_next_run_retries(tmp_path, monkeypatch, capsys):
    """Each run writes a 150 kB checkpoint on a 1 MiB tmpfs: the study stops at the run that finds
    the disk full (one line, exit code 1); after space is freed the same study says what it retries
    and finishes every run; the diverged variant stays diverged, never retried. (outputs=False on
    the full disk: only study.json beside the runs, so the checkpoint is what fills it, not the
    report's embedded plots.)"""
    monkeypatch.setenv("STUB_BYTES", "150000")
    path = write_study(tmp_path, variants="  none: {}\n  r1: {regularizers.r1: r1}\n  unstable: {optim.g.lr: 0.5}\n")
    with tmpfs(tmp_path / "disk", "size=1m") as disk:
        with pytest.raises(UserError) as e:
            run_study(path, disk, trainer=robust_stub.train_study, outputs=False)
        assert "\n" not in str(e.value) and e.value.exit_code == 1
        assert "no space left" in str(e.value) and "the same command" in str(e.value)
        storage = f"sqlite:///{disk / 's' / 'study.db'}"
        trials = optuna.load_study(study_name="s", storage=storage).trials
        env = [t for t in trials if t.user_attrs.get("env_error")]
        assert len(env) == 1 and env[0].state.name == "FAIL", [(t.number, t.state.name, t.user_attrs) for t in trials]
        hit = (env[0].params["variant"], env[0].params["seed"])
        doc = json.loads((disk / "s" / "study.json").read_text())  # written before the stop, and kept
        assert any(r["state"] == "done" for r in doc["runs"])
        capsys.readouterr()
        remount(disk, "size=16m")
        out = run_study(path, disk, trainer=robust_stub.train_study)
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if "retrying" in line]
        assert len(lines) == 1 and f"{hit[0]} seed {hit[1]} (" in lines[0], err
        states = {(r["variant"], r["seed"]): r["state"] for r in out["document"]["runs"]}
        assert states == {
            ("none", 0): "done",
            ("none", 1): "done",
            ("r1", 0): "done",
            ("r1", 1): "done",
            ("unstable", 0): "diverged",
            ("unstable", 1): "diverged",
        }
        out = run_study(path, disk, trainer=robust_stub.train_study)
        assert "retrying" not in capsys.readouterr().err  # diverged runs are results


# ----------------------------------------------------------------------------------- unusable folders
def _cli(path, studies_dir, tmp_path):
    return run_cli("study", path, "--studies-dir", studies_dir, "--no-progress", cwd=tmp_path, timeout=300)


def test_studies_dir_that_is_a_file_is_one_line(tmp_path):
    f = tmp_path / "studies"
    f.write_text("x\n")
    r = _cli(write_study(tmp_path), f, tmp_path)
    assert r.returncode == 2, r.stderr
    _one_error_line(r, str(f), "--studies-dir")
    assert f.read_text() == "x\n"


def test_a_study_folder_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "s").write_text("x\n")
    r = _cli(write_study(tmp_path), tmp_path / "studies", tmp_path)
    assert r.returncode == 2, r.stderr
    _one_error_line(r, str(tmp_path / "studies" / "s"), "--name")


def test_a_read_only_studies_dir_is_one_line(tmp_path):
    with tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        r = _cli(write_study(tmp_path), ro, tmp_path)
        assert r.returncode == 2, r.stderr
        _one_error_line(r, str(ro / "s"), "--studies-dir")


def test_a_studies_dir_too_full_for_the_study_db_is_one_line(tmp_path):
    with tmpfs(tmp_path / "disk", "size=16k") as disk:
        r = _cli(write_study(tmp_path), disk, tmp_path)
        assert r.returncode in (1, 2), r.stderr
        _one_error_line(r, "free some space")
