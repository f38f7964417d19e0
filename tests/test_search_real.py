"""normgan search with the real training loop (tiny runs): the test split is never loaded while
trials run (a spy on the loaders, independent of the search's own guard), the final retrain
reads it once, and the command works from an empty HOME."""

import json
import os
import subprocess
import sys

import pytest
import yaml

import normgan.data.dataset as dataset_mod
import normgan.data.paired as paired_mod
from normgan.search import run_search

TINY = [
    "train.steps=4",
    "eval.every=2",
    "eval.metrics=[psnr,l1]",
    "data.batch_size=8",
    "model.generator.width=8",
    "model.discriminator.width=8",
    "train.log_every=2",
    "train.sample_every=4",
    "train.checkpoint_every=4",
    "train.tensorboard=false",
]


@pytest.fixture
def loads(monkeypatch):
    """Every split the dataset loaders are asked for, in order."""
    seen = []
    for mod in (dataset_mod, paired_mod):
        original = mod._check_options

        def spy(*, split, _original=original, **kw):
            seen.append(split)
            return _original(split=split, **kw)

        monkeypatch.setattr(mod, "_check_options", spy)
    return seen


def test_trials_never_load_the_test_split_and_the_final_run_loads_it_once(tmp_path, loads, monkeypatch):
    monkeypatch.setenv("NORMGAN_CACHE", str(tmp_path / "cache"))
    kw = dict(
        config="edges2digit",
        overrides=TINY,
        params=["regularizers.l1.weight=[0,100]"],
        folds=2,
        metric="psnr",
        name="leak",
        searches_dir=tmp_path,
        progress=False,
    )
    out = run_search(final=False, **kw)
    assert [r["state"] for r in out["rows"]] == ["COMPLETE", "COMPLETE"]
    assert "train" in loads and "test" not in loads and "all" not in loads, loads
    assert "val" not in loads  # with folds on, the held-out fold replaces the validation split too
    n_before = len(loads)
    out = run_search(final=True, **kw)  # the same command again: nothing to train, then the final run
    assert "test" in loads[n_before:] and out["final"]["split"] == "test"
    assert loads[n_before:].count("test") == 1
    saved = json.loads((tmp_path / "leak" / "final" / "test.json").read_text())
    assert (
        saved["value"] == pytest.approx(out["final"]["value"]) and saved["metrics"]["n"] == 500
    )  # the whole test split
    run_cfg = yaml.safe_load((tmp_path / "leak" / "final" / "run" / "config.yaml").read_text())
    assert run_cfg["data"]["folds"] == 0  # retrained on the whole training split
    for f in (0, 1):
        trial_cfg = yaml.safe_load(
            (tmp_path / "leak" / "trials" / "0000" / f"fold{f}-seed0" / "config.yaml").read_text()
        )
        assert (trial_cfg["data"]["folds"], trial_cfg["data"]["fold"]) == (2, f)


def test_search_command_from_an_empty_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("NORMGAN_CACHE", "XDG_CACHE_HOME")}
    env.update(HOME=str(home))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "normgan",
            "search",
            "edges2digit",
            *TINY,
            "--param",
            "regularizers.l1.weight=[1,100]",
            "--folds",
            "2",
            "--metric",
            "l1",
            "--name",
            "e2e",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "searches" / "e2e"
    for f in ("trials.csv", "best.yaml", "report.html", "study.db", "final/test.json", "plots/history.png"):
        assert (folder / f).is_file(), f
    assert "best: trial" in r.stdout and "on the test split" in r.stdout
    html = (folder / "report.html").read_text()
    assert "data:image/png;base64," in html and "test split" in html
    dry = subprocess.run(
        [sys.executable, "-m", "normgan", "train", str(folder / "best.yaml"), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert dry.returncode == 0, dry.stderr
    assert yaml.safe_load(dry.stdout)["regularizers"]["l1"]["weight"] in (1, 100)


def test_ctrl_c_stops_the_search_in_one_line_and_the_same_command_continues(tmp_path):
    import signal
    import time

    cmd = [
        sys.executable,
        "-m",
        "normgan",
        "search",
        "edges2digit",
        "train.steps=200",
        "eval.every=100",
        "eval.metrics=[psnr]",
        "model.generator.width=8",
        "model.discriminator.width=8",
        "--param",
        "regularizers.l1.weight=[1,100]",
        "--folds",
        "2",
        "--name",
        "sig",
        "--no-progress",
        "--no-final",
    ]
    p = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        metrics = tmp_path / "searches" / "sig" / "trials" / "0000" / "fold0-seed0" / "metrics.jsonl"
        deadline = time.monotonic() + 180
        while not metrics.exists():
            assert time.monotonic() < deadline and p.poll() is None, p.communicate()
            time.sleep(0.2)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=180)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "same command continues" in lines[0], err
    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    rows = (tmp_path / "searches" / "sig" / "trials.csv").read_text().splitlines()[1:]
    states = sorted(r.split(",")[1] for r in rows)
    assert states == ["COMPLETE", "COMPLETE", "FAIL"]  # the interrupted trial, and both λ completed
