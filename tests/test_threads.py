"""train.threads = 0 (the default): torch threads from the cores free at the start (normgan/runtime/threads.py)."""

import os
import subprocess
import sys
import time

import pytest
import torch

from normgan.runtime import threads
from normgan.runtime.threads import apply_auto_threads, auto_threads, busy_cores, usable_cores


@pytest.fixture
def no_omp_env(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
    threads._ours = None


@pytest.mark.parametrize(
    "cores, current, busy, expected",
    [
        (2, 2, 0.0, None),  # quiet: torch's count (all cores) stays
        (2, 2, 0.6, 1),  # a core 60% busy is not free (margin 0.3)
        (2, 2, 0.3, None),  # 30% busy still counts as free
        (2, 2, 1.0, 1),  # one busy process on 2 cores: 1 thread
        (2, 2, 2.0, 1),  # never below 1
        (8, 8, 3.0, 5),
        (8, 4, 1.0, None),  # an earlier set_num_threads(4) is a bound that is not raised
        (8, 4, 6.0, 2),
        (4, 8, 0.0, 4),  # no more threads than usable cores (affinity, cgroup quota)
    ],
)
def test_auto_threads_is_the_free_cores_within_the_current_count(
    monkeypatch, no_omp_env, cores, current, busy, expected
):
    monkeypatch.setattr(threads, "usable_cores", lambda: cores)
    monkeypatch.setattr(threads, "busy_cores", lambda window_s: busy)
    assert auto_threads(current) == expected


def test_an_explicit_omp_num_threads_or_one_thread_is_kept(monkeypatch):
    monkeypatch.setattr(threads, "busy_cores", lambda window_s: pytest.fail("no need to measure"))
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert auto_threads(3) is None
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert auto_threads(1) is None


def test_unreadable_load_keeps_the_count_within_usable_cores(monkeypatch, no_omp_env):
    monkeypatch.setattr(threads, "busy_cores", lambda window_s: None)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    assert auto_threads(2) is None and auto_threads(6) == 2


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="Linux /proc/stat")
def test_busy_cores_sees_a_busy_process():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # past its start-up
        # other processes can only add to it: a lower bound holds on a shared machine too
        assert busy_cores(0.5) >= 0.8
    finally:
        busy.kill()
        busy.wait()
    assert 1 <= usable_cores() <= (os.cpu_count() or 1)


def test_a_later_run_in_the_same_process_may_use_more_threads_again(monkeypatch, no_omp_env):
    torch.set_num_threads(2)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "busy_cores", lambda window_s: 1.0)
    assert apply_auto_threads() == 1 and torch.get_num_threads() == 1
    monkeypatch.setattr(threads, "busy_cores", lambda window_s: 0.0)  # the other process ended
    assert apply_auto_threads() == 2 and torch.get_num_threads() == 2
    torch.set_num_threads(1)  # someone else's choice: a bound from now on
    assert apply_auto_threads() == 1


def test_the_trainer_uses_the_free_cores_on_cpu(monkeypatch, no_omp_env, tiny_overrides, tmp_path):
    from normgan import Trainer, load_config

    torch.set_num_threads(2)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "busy_cores", lambda window_s: 1.0)
    Trainer(
        load_config("configs/mnist.yaml", overrides=tiny_overrides), runs_dir=tmp_path, device="cpu", progress=False
    )
    assert torch.get_num_threads() == 1


def _child(code, **env):
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env={**base, **env}, check=True
    ).stdout.split()


def test_the_command_line_shortens_openmp_spin_waits_unless_told_otherwise():
    code = (
        "import os, sys, normgan.cli; loaded = 'torch' in sys.modules; "
        "from normgan.runtime.threads import short_openmp_spins as p; "
        "print(loaded, p(), os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))"
    )
    assert _child(code) == ["False", "True", "3000", "None"]  # importing the CLI leaves torch unloaded, so it can
    assert _child(code, OMP_WAIT_POLICY="ACTIVE") == ["False", "False", "None", "ACTIVE"]
    assert _child(code, GOMP_SPINCOUNT="1000") == ["False", "False", "1000", "None"]
    assert _child("import torch, os; from normgan.runtime.threads import short_openmp_spins as p; print(p())") == [
        "False"
    ]


def test_main_sets_it_before_a_command_runs():
    code = (
        "import os\nfrom normgan.cli import main\ntry:\n    main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(os.environ.get('GOMP_SPINCOUNT'))"
    )
    assert _child(code)[-1] == "3000"


def test_reading_the_load_leaves_no_file_open():
    """A user sees every warning as one line: an unclosed /proc/stat would be one in every run."""
    r = subprocess.run(
        [
            sys.executable,
            "-X",
            "dev",
            "-W",
            "error::ResourceWarning",
            "-c",
            "from normgan.runtime.threads import busy_cores, usable_cores; usable_cores(); busy_cores(0.01)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and "ResourceWarning" not in r.stderr, r.stderr
