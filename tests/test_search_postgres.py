"""Two search workers on a real PostgreSQL server (tests/pg.py starts and stops it): one is
killed mid-trial; its trial is marked failed by the heartbeat and run again, the study stays
readable, and a re-run finds it complete."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

from pg import postgres_url  # noqa: E402,F401  (a fixture)

GRID = [0, 1, 10, 100, 1000, 10000]


def _worker(tmp_path, folder, url, env_extra):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]), **env_extra)
    cmd = [
        sys.executable,
        "-m",
        "normgan",
        "search",
        "edges2digit",
        "train.steps=4",
        "eval.every=2",
        "eval.metrics=[psnr]",
        "--param",
        f"regularizers.l1.weight=[{','.join(map(str, GRID))}]",
        "--folds",
        "2",
        "--metric",
        "psnr",
        "--name",
        "pg",
        "--storage",
        url,
        "--searches-dir",
        str(tmp_path / folder),
        "--trainer",
        "search_stub:train",
        "--no-progress",
        "--heartbeat",
        "1",
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _calls(log):
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_two_workers_on_postgres_one_killed_mid_trial(tmp_path, postgres_url):
    log = tmp_path / "calls.jsonl"
    env = {"STUB_LOG": str(log), "STUB_SLEEP": "1.5"}
    a = _worker(tmp_path, "a", postgres_url, env)
    b = _worker(tmp_path, "b", postgres_url, env)
    try:
        deadline = time.monotonic() + 120
        while not any(c["pid"] == a.pid for c in _calls(log)):  # a is inside a trial
            assert time.monotonic() < deadline and a.poll() is None, a.communicate()
            time.sleep(0.1)
        a.send_signal(signal.SIGKILL)
        a.wait(timeout=30)
        killed = next(c for c in _calls(log) if c["pid"] == a.pid)
        # the study is readable while the other worker goes on
        mid = optuna.load_study(study_name="pg", storage=postgres_url)
        assert len(mid.trials) >= 1
        out, err = b.communicate(timeout=300)
        assert b.returncode == 0, err
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()
    study = optuna.load_study(study_name="pg", storage=postgres_url)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert sorted(t.params["regularizers.l1.weight"] for t in complete) == GRID  # each point once
    assert len(failed) == 1 and failed[0].params["regularizers.l1.weight"] == killed["lam"]
    retries = [t for t in study.trials if t.user_attrs.get("retry_of") == failed[0].number]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE"
    assert not [t for t in study.trials if t.state.name in ("RUNNING", "WAITING")]

    # a re-run (a new worker) finds the study complete and trains nothing more
    before = len(_calls(log))
    c = _worker(tmp_path, "c", postgres_url, env)
    out, err = c.communicate(timeout=300)
    assert c.returncode == 0, err
    trained = [x for x in _calls(log)[before:] if "/trials/" in x["run_dir"]]
    assert trained == []
    assert "6 complete" in out and "1 fail" in out
