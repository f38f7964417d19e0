"""``normgan study``: the study file, the runs as tickets of a shared plan, resumption, outputs.

Most tests use the closed-form stub trainer of tests/study_stub.py (no training); the last ones
run the real loop through the CLI from an empty HOME."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, run_cli

from normgan.errors import UserError
from normgan.search.space import TERM_PRESETS
from normgan.study import Study, load_study, shipped_studies

sys.path.insert(0, str(Path(__file__).parent))
import study_stub  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
STEPS, EVERY = 100, 25


def write_study(tmp_path: Path, text: str = None, name: str = "s") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        text
        or f"""
title: A stub study
config: mnist
overrides: {{train.steps: {STEPS}, eval.every: {EVERY}, regularizers.wd_g: none, model.discriminator.norm: none}}
seeds: [0, 1, 2]
metric: fid
threshold: 5.0
variants:
  none: {{}}
  r1: {{regularizers.r1: r1}}
  unstable: {{optim.g.lr: 0.5}}
"""
    )
    return path


def stub_study(path, tmp_path, **kw) -> Study:
    return Study(study=str(path), studies_dir=tmp_path / "studies", progress=False, trainer=study_stub.train, **kw)


def log_lines(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# ----------------------------------------------------------------------------- the study file
@pytest.mark.parametrize("name", shipped_studies())
def test_every_shipped_study_loads_with_every_variant_valid(name):
    spec = load_study(name)
    assert spec.variants and spec.seeds and spec.steps > 0
    for v in spec.variants:
        for seed in spec.seeds:
            tree = spec.run_tree(v.name, seed)
            assert tree["train"]["seed"] == seed
            assert tree["eval"] == spec.base["eval"]  # every run is evaluated alike


def test_presets_and_none_decode_on_term_entries_only(tmp_path):
    spec = load_study(str(write_study(tmp_path)))
    assert "wd_g" not in spec.base["regularizers"]  # `none` removed the base config's term
    assert spec.run_tree("r1", 0)["regularizers"]["r1"] == TERM_PRESETS["r1"]
    assert spec.run_tree("unstable", 2)["optim"]["g"]["lr"] == 0.5
    p = write_study(
        tmp_path, "config: mnist\noverrides: {eval.every: 5, model.discriminator.norm: none}\nvariants: {a: {}}\n", "n"
    )
    assert load_study(str(p)).base["model"]["discriminator"]["norm"] == "none"  # the word, not null


@pytest.mark.parametrize(
    "body, needle",
    [
        ("config: mnist\nvariants: {a: {}}\nbogus: 1\n", "unknown key 'bogus'"),
        ("variants: {a: {}}\n", "no config"),
        ("config: mnist\noverrides: {eval.every: 5}\nvariants: {a: {eval.n: 10}}\n", "set it in overrides"),
        ("config: mnist\noverrides: {eval.every: 5}\nvariants: {a: {model.nope: 1}}\n", "unknown config key"),
        ("config: mnist\noverrides: {eval.every: 5}\nvariants: {a: {regularizers.r1: {term: nope}}}\n", "variant a"),
        ("config: mnist\nvariants: {a: {}}\n", "eval.every is 0"),
        ("config: mnist\noverrides: {eval.every: 5}\nseeds: 0\nvariants: {a: {}}\n", "seeds"),
        ("config: mnist\noverrides: {eval.every: 5}\nmetric: psnr\nvariants: {a: {}}\n", "metric 'psnr'"),
        ("config: mnist\noverrides: {eval.every: 5}\nvariants: {}\n", "variants"),
        ("config: mnist\noverrides: {eval.every: 5}\nvariants: {'a b': {}}\n", "variant name"),
        ("config: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_study_files_are_refused_in_one_line(tmp_path, body, needle):
    with pytest.raises(UserError) as e:
        load_study(str(write_study(tmp_path, body, "bad")))
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_unknown_study_names_the_shipped_ones():
    with pytest.raises(UserError, match="stability-digits"):
        load_study("no-such-study")


# ----------------------------------------------------------------------------- runs and results
def test_every_run_once_with_its_scores_and_divergence_as_a_result(tmp_path, monkeypatch):
    monkeypatch.setenv("STUB_LOG", str(tmp_path / "log.jsonl"))
    path = write_study(tmp_path)
    out = stub_study(path, tmp_path).run()
    calls = log_lines(tmp_path / "log.jsonl")
    assert len(calls) == 9 and len({c["run_dir"] for c in calls}) == 9
    runs = {(r["variant"], r["seed"]): r for r in out["document"]["runs"]}
    spec = load_study(str(path))
    for (variant, seed), r in runs.items():
        from normgan.config import load_config

        cfg = load_config(base=spec.run_tree(variant, seed))
        if variant == "unstable":
            assert r["state"] == "diverged" and r["step"] == STEPS // 2 and "NaN" in r["error"]
        else:
            assert r["state"] == "done" and r["step"] == STEPS
            assert r["final"]["fid"] == pytest.approx(study_stub.fid(cfg, STEPS), rel=1e-12, abs=0)
    # the table: mean ± std (ddof = 1) over seeds of the formula, computed here
    table = (tmp_path / "studies" / "s" / "table.md").read_text()
    for variant, b in (("none", 3.0), ("r1", 1.0)):
        vals = np.array([b + 0.1 * s + 40 * math.exp(-5.0) for s in (0, 1, 2)])
        line = next(l for l in table.splitlines() if l.startswith(f"| {variant} "))
        assert f"{vals.mean():.4g}" in line and f"{vals.std(ddof=1):.2g}" in line, line
    unstable = next(l for l in table.splitlines() if l.startswith("| unstable "))
    assert "3/3" in unstable  # diverged 3 of 3
    assert (tmp_path / "studies" / "s" / "report.html").is_file()
    # run again: nothing trains (diverged runs are results, not retried)
    again = stub_study(path, tmp_path).run()
    assert len(log_lines(tmp_path / "log.jsonl")) == 9
    assert [r["state"] for r in again["document"]["runs"]] == [r["state"] for r in out["document"]["runs"]]


def test_an_interrupted_study_continues_where_it_stopped(tmp_path, monkeypatch):
    monkeypatch.setenv("STUB_LOG", str(tmp_path / "log.jsonl"))
    monkeypatch.setenv("STUB_INTERRUPT_SEED", "1")
    path = write_study(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        stub_study(path, tmp_path).run()
    before = log_lines(tmp_path / "log.jsonl")
    doc = json.loads((tmp_path / "studies" / "s" / "study.json").read_text())  # readable meanwhile
    assert doc["name"] == "s"
    out = stub_study(path, tmp_path).run()
    after = log_lines(tmp_path / "log.jsonl")
    dirs = [c["run_dir"] for c in after]
    r1_seed1 = str(tmp_path / "studies" / "s" / "runs" / "r1" / "seed1")
    assert dirs.count(r1_seed1) == 2  # the interrupted call, and its retry
    assert len(set(dirs)) == 9 and len(after) == 10 and len(before) < 10
    assert sorted(r["state"] for r in out["document"]["runs"]).count("done") == 6


def test_changed_settings_are_refused(tmp_path):
    path = write_study(tmp_path)
    stub_study(path, tmp_path, overrides=[], seeds=1).run()
    with pytest.raises(UserError, match="exists with other settings"):
        stub_study(path, tmp_path, seeds=2).run()


def test_two_worker_processes_share_the_runs(tmp_path):
    path = write_study(tmp_path)
    log = tmp_path / "log.jsonl"
    env = {
        **os.environ,
        "STUB_LOG": str(log),
        "STUB_SLEEP": "0.5",
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    code = (
        "import sys, study_stub; from normgan.study import Study; "
        f"Study(study={str(path)!r}, studies_dir={str(tmp_path / 'studies')!r}, progress=False, "
        "trainer=study_stub.train, outputs=sys.argv[1] == '1').run()"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(i)], env=env, stderr=subprocess.PIPE, text=True)
        for i in (1, 0)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    calls = log_lines(log)
    assert len(calls) == 9 and len({c["run_dir"] for c in calls}) == 9  # each run exactly once
    assert len({c["pid"] for c in calls}) == 2  # both worked
    doc = json.loads((tmp_path / "studies" / "s" / "study.json").read_text())
    assert len(doc["runs"]) == 9 and all(r["state"] in ("done", "diverged") for r in doc["runs"])


# ----------------------------------------------------------------------------- the real loop, CLI
@pytest.fixture
def fresh_env(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("NORMGAN_CACHE", "XDG_CACHE_HOME", "TORCH_HOME")}
    env.update(
        HOME=str(home), NORMGAN_OFFLINE="1", PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    return home, env


def real_study(tmp_path: Path, steps: int = 6) -> Path:
    over = ", ".join(o.replace("=", ": ", 1) for o in TINY if not o.startswith(("train.steps", "regularizers")))
    return write_study(
        tmp_path,
        f"""
config: mnist
overrides: {{{over}, train.steps: {steps}, eval.every: {steps // 2}, eval.n: 100, regularizers.wd_g: none}}
seeds: 2
variants:
  none: {{}}
  l2-g: {{regularizers.l2: l2_g}}
""",
        "real",
    )


def test_cli_study_from_an_empty_home_with_two_workers(tmp_path, fresh_env):
    home, env = fresh_env
    path = real_study(tmp_path)
    p = run_cli(
        "study",
        str(path),
        "--workers",
        "2",
        "--studies-dir",
        "~/studies",
        "--no-progress",
        env=env,
        cwd=tmp_path,
        timeout=900,
    )
    assert p.returncode == 0, p.stderr
    folder = home / "studies" / "real"
    assert "4 of 4 runs finished" in p.stdout and f"report written to {folder / 'report.html'}" in p.stdout
    doc = json.loads((folder / "study.json").read_text())
    assert [(r["variant"], r["seed"], r["state"]) for r in doc["runs"]] == [
        ("none", 0, "done"),
        ("none", 1, "done"),
        ("l2-g", 0, "done"),
        ("l2-g", 1, "done"),
    ]
    for r in doc["runs"]:
        run = folder / r["run"]
        assert (run / "checkpoints" / "last.pt").is_file()
        rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
        evals = [x for x in rows if "eval/fid" in x]
        assert [x["step"] for x in evals] == [3, 6] and r["final"]["fid"] == evals[-1]["eval/fid"]
    assert "| none |" in (folder / "table.md").read_text()
    # `normgan report` writes the study's report again
    (folder / "report.html").unlink()
    q = run_cli("report", str(folder), "--no-progress", env=env, cwd=tmp_path)
    assert q.returncode == 0 and (folder / "report.html").is_file(), q.stderr


def test_cli_study_resumes_an_interrupted_run_from_its_checkpoint(tmp_path, fresh_env):
    home, env = fresh_env
    path = real_study(tmp_path, steps=400)
    args = [
        sys.executable,
        "-m",
        "normgan",
        "study",
        str(path),
        "--studies-dir",
        str(tmp_path / "studies"),
        "--no-progress",
        "--seeds",
        "1",
        "train.checkpoint_every=20",
        "train.log_every=10",
        "eval.every=200",
    ]
    proc = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = tmp_path / "studies" / "real" / "runs" / "none" / "seed0"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        ck = first / "checkpoints" / "last.pt"
        if (
            ck.is_file()
            and (first / "metrics.jsonl").is_file()
            and '"step": 40' in (first / "metrics.jsonl").read_text()
        ):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    steps_before = [json.loads(l)["step"] for l in (first / "metrics.jsonl").read_text().splitlines()]
    assert 40 <= max(steps_before) < 400
    p = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr
    steps = [json.loads(l)["step"] for l in (first / "metrics.jsonl").read_text().splitlines() if "loss/D" in l]
    # resumed from its checkpoint, not trained again from step 0: one row per logged step
    assert steps[0] == 10 and steps.count(10) == 1 and steps[-1] == 400
    doc = json.loads((tmp_path / "studies" / "real" / "study.json").read_text())
    assert [r["state"] for r in doc["runs"]] == ["done", "done"]


def test_cli_study_bad_input_is_one_line(tmp_path, fresh_env):
    home, env = fresh_env
    p = run_cli("study", "no-such-study", env=env, cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.startswith("normgan: error:") and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    p = run_cli("study", str(real_study(tmp_path)), "model.nope=1", env=env, cwd=tmp_path)
    assert p.returncode == 2 and "model.nope" in p.stderr and "Traceback" not in p.stderr


def test_measures_are_added_to_the_final_scores_and_the_table(tmp_path, monkeypatch):
    from normgan.study import runner

    seen = []

    def fake(run_dir, cfg):
        seen.append((Path(run_dir).name, cfg.data.holdout))
        return {
            "fid_train": 1.0 + cfg.train.seed,
            "fid_heldout": 2.5 + cfg.train.seed,
            "fid_gap": 1.5,
            "memorization": 0.75,
            "memorization_real": 0.5,
            "fid_gap_real": 0.1,
            "n_train": 500,
        }

    monkeypatch.setitem(runner.MEASURES, "overfitting", fake)
    path = write_study(
        tmp_path,
        f"""
config: mnist
overrides: {{train.steps: {STEPS}, eval.every: {EVERY}, data.holdout: 0.9}}
seeds: 2
measures: [overfitting]
variants: {{none: {{}}}}
""",
        "o",
    )
    out = stub_study(path, tmp_path).run()
    assert sorted(seen) == [("seed0", 0.9), ("seed1", 0.9)]
    finals = [r["final"] for r in out["document"]["runs"]]
    assert [f["fid_gap"] for f in finals] == [1.5, 1.5] and [f["fid_train"] for f in finals] == [1.0, 2.0]
    table = (tmp_path / "studies" / "o" / "table.md").read_text()
    assert "FID gap" in table and "memorization" in table and "1.5 ± 0.71" in table  # fid_train 1, 2: 1.5 ± 0.71


def test_overfitting_measure_refused_on_a_paired_config(tmp_path):
    path = write_study(
        tmp_path, "config: edges2digit\noverrides: {eval.every: 5}\nmeasures: [overfitting]\nvariants: {a: {}}\n", "p"
    )
    with pytest.raises(UserError, match="unconditional"):
        load_study(str(path))


def test_the_study_commands_in_the_docs_name_shipped_studies():
    """Every `normgan study NAME` written in README.md and docs/studies/ runs a shipped study (or
    the example file my-study.yaml)."""
    import re

    texts = [REPO / "README.md", *sorted((REPO / "docs" / "studies").glob("*.md"))]
    names = {m for p in texts for m in re.findall(r"normgan study ([A-Za-z0-9._-]+)", p.read_text())}
    assert {"stability-digits", "stability-textures", "overfitting-digits"} <= names
    assert names - {"my-study.yaml"} <= set(shipped_studies())
