"""What a newcomer and a cluster user hit (issue 7): signals, non-finite states, resume semantics,
concurrency, paths and names. Real processes and signals wherever the item is about them."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY, run_cli
from faults import tmpfs

from normgan import Trainer, load_config
from normgan.errors import UserError
from normgan.models.checkpoint import load_checkpoint, save_checkpoint
from normgan.train.run_dir import new_run_dir

LONG = [*TINY, "train.steps=100000", "train.log_every=1", "train.checkpoint_every=100000"]


def _popen(*args, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "normgan", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _wait_rows(run: Path, rows: int, proc, timeout: float = 180) -> None:
    """Wait until ``run/metrics.jsonl`` has ``rows`` lines (the process is training)."""
    metrics = run / "metrics.jsonl"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= rows:
            return
        if proc.poll() is not None:
            raise AssertionError(f"process ended early: {proc.returncode} {proc.stderr.read()[-2000:]}")
        time.sleep(0.1)
    raise AssertionError("training did not start in time")


def _one_line(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr[-3000:]
    return [line for line in stderr.splitlines() if line.startswith("normgan:") and "warning" not in line]


def _tiny(tmp_path, name, *extra, runs=None):
    cfg = load_config(overrides=[*TINY, *extra])
    return Trainer(cfg, runs_dir=runs or tmp_path, name=name, progress=False)


# ------------------------------------------------------------------------------------------ signals
def test_sigterm_checkpoints_and_exits_143(tmp_path):
    proc = _popen("train", *LONG, "--runs-dir", tmp_path, "--name", "t", "--no-progress")
    _wait_rows(tmp_path / "t", 3, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    lines = _one_line(err)
    assert len(lines) == 1 and "SIGTERM" in lines[0] and "--resume" in lines[0]
    step = load_checkpoint(tmp_path / "t" / "checkpoints" / "last.pt")["step"]
    assert step >= 3
    proc = run_cli("train", "--resume", tmp_path / "t", f"train.steps={step + 1}", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_second_ctrl_c_exits_at_once_without_traceback(tmp_path):
    # a bigger model, so that a step takes long enough for the second signal to arrive inside it
    proc = _popen(
        "train",
        *LONG,
        "model.generator.width=32",
        "model.discriminator.width=32",
        "data.batch_size=64",
        "--runs-dir",
        tmp_path,
        "--name",
        "c",
        "--no-progress",
    )
    _wait_rows(tmp_path / "c", 2, proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert len(_one_line(err)) == 1


@pytest.mark.parametrize("delay", [0.3, 1.5])
def test_ctrl_c_during_start_up_is_one_line(tmp_path, delay):
    proc = _popen("train", *LONG, "--runs-dir", tmp_path, "--no-progress")
    time.sleep(delay)  # while Python imports torch, the data loads or the models are built
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()  # a process that went on training after Ctrl-C must not outlive the test
        proc.communicate()
        raise
    # 130, or -2 when CPython ends itself by SIGINT after the handled interrupt (seen once in CI while
    # torch was loading); a shell reports both as 130. Either way: one line, no traceback.
    assert proc.returncode in (130, -signal.SIGINT), (proc.returncode, err[-2000:])
    assert len(_one_line(err)) == 1, err


def test_run_killed_before_first_checkpoint_can_be_resumed_or_recreated(tmp_path):
    proc = _popen("train", *LONG, "--runs-dir", tmp_path, "--name", "k", "--no-progress")
    _wait_rows(tmp_path / "k", 2, proc)
    proc.kill()  # kill -9: no handler runs
    proc.communicate(timeout=60)
    assert not (tmp_path / "k" / "checkpoints" / "last.pt").exists()
    # resume starts it again from step 0 with its saved config
    proc = run_cli("train", "--resume", tmp_path / "k", "train.steps=3", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert load_checkpoint(tmp_path / "k" / "checkpoints" / "last.pt")["step"] == 3
    rows = [json.loads(x)["step"] for x in (tmp_path / "k" / "metrics.jsonl").read_text().splitlines()]
    assert rows == [1, 2, 3]  # the killed attempt's rows are gone
    # ... and a folder without a checkpoint can be re-created with the same --name
    proc = _popen("train", *LONG, "--runs-dir", tmp_path, "--name", "k2", "--no-progress")
    _wait_rows(tmp_path / "k2", 2, proc)
    proc.kill()
    proc.communicate(timeout=60)
    proc = run_cli("train", *TINY, "train.steps=2", "--runs-dir", tmp_path, "--name", "k2", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert load_checkpoint(tmp_path / "k2" / "checkpoints" / "last.pt")["step"] == 2


def test_stale_temporary_checkpoints_are_removed_on_resume(tmp_path):
    _tiny(tmp_path, "s", "train.steps=3").fit()
    stale = [tmp_path / "s" / "checkpoints" / f".last.pt.{x}.tmp" for x in ("ab12cd", "zz9")]
    for p in stale:
        p.write_bytes(b"half a checkpoint")
    Trainer.resume(tmp_path / "s", overrides=["train.steps=4"], progress=False).fit()
    assert not any(p.exists() for p in stale)
    assert sorted(p.name for p in (tmp_path / "s" / "checkpoints").iterdir()) == ["last.pt"]


# ------------------------------------------------------------------------------------------ never a non-finite checkpoint
def test_an_infinite_regularization_term_stops_the_run(tmp_path):
    # Σθ² of G's weights (~100) times 1e38 overflows float32: the term is inf while the adversarial losses are finite
    proc = run_cli(
        "train",
        *TINY,
        "regularizers.huge.term=weights",
        "regularizers.huge.net=G",
        "regularizers.huge.norm=l2",
        "regularizers.huge.weight=1e38",
        "--runs-dir",
        tmp_path,
        "--name",
        "inf",
        "--no-progress",
    )
    assert proc.returncode == 3, proc.stderr[-2000:]
    lines = _one_line(proc.stderr)
    assert len(lines) == 1 and "'huge'" in lines[0] and "step 0" in lines[0]
    assert not (tmp_path / "inf" / "checkpoints" / "last.pt").exists()


def test_divergence_just_before_a_checkpoint_keeps_the_last_good_one(tmp_path):
    trainer = _tiny(tmp_path, "nf", "train.steps=20", "train.checkpoint_every=3")
    step = trainer.opt_g.step
    calls = {"n": 0}

    def poisoned_step(*a, **k):  # the 5th G update leaves an inf weight; its loss was finite
        out = step(*a, **k)
        calls["n"] += 1
        if calls["n"] == 5:
            with torch.no_grad():
                next(trainer.G.parameters()).view(-1)[0] = float("inf")
        return out

    trainer.opt_g.step = poisoned_step
    with pytest.raises(UserError) as err:
        trainer.fit()
    assert err.value.exit_code == 3
    msg = str(err.value)
    assert "last good checkpoint" in msg and "(step 3)" in msg and "\n" not in msg
    state = load_checkpoint(tmp_path / "nf" / "checkpoints" / "last.pt")
    assert state["step"] == 3
    for key in ("generator", "discriminator", "generator_ema"):
        assert all(torch.isfinite(v).all() for v in state[key].values() if v.is_floating_point())


def test_a_run_that_diverges_with_finite_losses_is_reported(tmp_path):
    proc = run_cli(
        "train",
        *TINY,
        "train.steps=30",
        "train.log_every=5",
        "optim.g.lr=1e6",
        "optim.d.lr=1e6",
        "--runs-dir",
        tmp_path,
        "--name",
        "lr",
        "--no-progress",
    )
    if proc.returncode == 3:  # the losses overflowed to inf: the NaN guard's one line
        assert len(_one_line(proc.stderr)) == 1
        return
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "diverged" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("diagnose", tmp_path / "lr")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "DETECTED" in proc.stdout


# ------------------------------------------------------------------------------------------ resume semantics
def test_resume_applies_a_new_learning_rate(tmp_path):
    _tiny(tmp_path, "lr", "train.steps=3").fit()
    resumed = Trainer.resume(
        tmp_path / "lr", overrides=["train.steps=5", "optim.g.lr=1e-3", "optim.d.betas=[0.0,0.9]"], progress=False
    )
    assert resumed.opt_g.param_groups[0]["lr"] == 1e-3
    assert tuple(resumed.opt_d.param_groups[0]["betas"]) == (0.0, 0.9)
    resumed.fit()
    state = load_checkpoint(tmp_path / "lr" / "checkpoints" / "last.pt")
    assert state["opt_g"]["param_groups"][0]["lr"] == 1e-3
    assert state["config"]["optim"]["g"]["lr"] == 1e-3


@pytest.mark.parametrize(
    "override",
    [
        "data.batch_size=16",
        "model.generator.width=16",
        "loss=hinge",
        "train.seed=5",
        "regularizers.wd={term: weights, net: G, weight: 1.0}",
    ],
)
def test_resume_refuses_other_changes_in_one_line(tmp_path, override):
    _tiny(tmp_path, "r", "train.steps=2").fit()
    proc = run_cli("train", "--resume", tmp_path / "r", override, "--no-progress")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = _one_line(proc.stderr)
    assert len(lines) == 1 and "--resume cannot change" in lines[0] and override.split("=")[0].split(".")[0] in lines[0]


def test_resume_with_steps_already_done_says_so(tmp_path):
    _tiny(tmp_path, "d", "train.steps=3").fit()
    before = (tmp_path / "d" / "checkpoints" / "last.pt").read_bytes()
    proc = run_cli("train", "--resume", tmp_path / "d", "train.steps=2", "--no-progress")
    assert proc.returncode == 0
    assert "already at step 3" in proc.stderr and "nothing to train" in proc.stderr
    assert (tmp_path / "d" / "checkpoints" / "last.pt").read_bytes() == before


def test_resume_from_a_checkpoint_of_another_config_names_the_key(tmp_path):
    _tiny(tmp_path, "m", "train.steps=2").fit()
    path = tmp_path / "m" / "checkpoints" / "last.pt"
    state = load_checkpoint(path)
    state["config"]["model"]["generator"]["width"] = 16
    save_checkpoint(state, path)
    proc = run_cli("train", "--resume", tmp_path / "m", "train.steps=4", "--no-progress")
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = _one_line(proc.stderr)
    # the checkpoint's config differs from the run folder's config.yaml: named before any weight is loaded
    assert "model.generator.width (8 in config.yaml, 16 in the checkpoint)" in line, line


def test_deleted_samples_folder_does_not_lose_the_final_checkpoint(tmp_path):
    _tiny(tmp_path, "sd", "train.steps=3").fit()
    shutil.rmtree(tmp_path / "sd" / "samples")
    proc = run_cli("train", "--resume", tmp_path / "sd", "train.steps=6", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert load_checkpoint(tmp_path / "sd" / "checkpoints" / "last.pt")["step"] == 6
    assert (tmp_path / "sd" / "samples" / "step-000006.png").is_file()


def test_disk_full_during_a_checkpoint_is_one_line_and_keeps_the_previous(tmp_path):
    _tiny(tmp_path, "full", "train.steps=3").fit()
    src = tmp_path / "full"
    size = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    with tmpfs(tmp_path / "disk", f"size={size // 1024 + 200}k") as disk:  # the run fits, a second checkpoint does not
        shutil.copytree(src, disk / "full")
        proc = run_cli("train", "--resume", disk / "full", "train.steps=6", "--no-progress")
        assert proc.returncode == 2, proc.stderr[-2000:]
        (line,) = _one_line(proc.stderr)
        assert "no space left" in line and "free" in line and str(disk / "full" / "checkpoints") in line
        assert load_checkpoint(disk / "full" / "checkpoints" / "last.pt")["step"] == 3
        assert not list((disk / "full" / "checkpoints").glob(".*.tmp"))


# ------------------------------------------------------------------------------------------ concurrency
def test_a_second_process_on_the_same_run_is_refused(tmp_path):
    _tiny(tmp_path, "lock", "train.steps=2").fit()
    first = _popen("train", "--resume", tmp_path / "lock", "train.steps=100000", "train.log_every=1", "--no-progress")
    try:
        _wait_rows(tmp_path / "lock", 4, first)
        second = run_cli("train", "--resume", tmp_path / "lock", "train.steps=100000", "--no-progress")
        assert second.returncode == 2, second.stderr[-2000:]
        (line,) = _one_line(second.stderr)
        assert "in use by another normgan process" in line and str(first.pid) in line
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)
    assert first.returncode == 130


def _claim_many(runs_dir: str, n: int, queue) -> None:
    queue.put([str(new_run_dir(runs_dir, label="race")) for _ in range(n)])


def test_numbered_run_names_are_claimed_atomically(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_claim_many, args=(str(tmp_path), 15, queue)) for _ in range(6)]
    for p in procs:
        p.start()
    claimed = [path for _ in procs for path in queue.get(timeout=120)]
    for p in procs:
        p.join(timeout=60)
    assert len(claimed) == 90 and len(set(claimed)) == 90
    assert len(list(tmp_path.iterdir())) == 90


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_checkpoints_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = save_checkpoint({"generator": {"w": torch.ones(2)}}, tmp_path / "last.pt")
        other = tmp_path / "other.txt"
        other.write_text("x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode == other.stat().st_mode & 0o777


# ------------------------------------------------------------------------------------------ commands as typed
def test_paths_expand_tilde_and_variables(tmp_path):
    home = tmp_path / "home"
    pictures = home / "pictures"
    pictures.mkdir(parents=True)
    from PIL import Image

    for i in range(12):
        Image.new("L", (20, 20), color=i * 20).save(pictures / f"{i}.png")
    env = {**os.environ, "HOME": str(home), "RUNS": str(tmp_path / "runs")}
    proc = run_cli(
        "train",
        "data.name=folder",
        "data.root=~/pictures",
        "data.holdout=0",
        "data.batch_size=4",
        *TINY[2:],
        "train.steps=6",
        "--runs-dir",
        "$RUNS",
        "--name",
        "pictures",
        "--no-progress",
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "runs" / "pictures" / "checkpoints" / "last.pt").is_file()
    proc = run_cli("train", "--resume", "~/../runs/pictures", "train.steps=7", "--no-progress", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_overrides_are_accepted_after_options(tmp_path):
    proc = run_cli("train", "--name", "late", *TINY, "--runs-dir", tmp_path, "train.steps=2", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert load_checkpoint(tmp_path / "late" / "checkpoints" / "last.pt")["step"] == 2
    proc = run_cli("train", "--dry-run", "--bogus-option", cwd=tmp_path)
    assert proc.returncode == 2 and "unrecognized arguments" in proc.stderr


@pytest.mark.parametrize("name", ["..", ".", "a/b", "../x", ".hidden", ""])
def test_run_name_is_one_folder_name(tmp_path, name):
    proc = run_cli("train", *TINY, "--runs-dir", tmp_path / "runs", "--name", name, "--no-progress")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(_one_line(proc.stderr)) == 1 and "--name" in proc.stderr
    assert not (tmp_path / "config.yaml").exists() and not (tmp_path / "checkpoints").exists()


def test_cli_and_python_api_name_runs_alike(tmp_path):
    proc = run_cli("train", "configs/mnist.yaml", *TINY, "--runs-dir", tmp_path, "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    cli_run = Path(proc.stdout.strip().splitlines()[-1])
    api_run = Trainer(load_config("configs/mnist.yaml", overrides=TINY), runs_dir=tmp_path, progress=False).fit()
    assert cli_run.name.split("-", 1)[1] == api_run.name.split("-", 1)[1] == "mnist5k-bce"
    assert int(api_run.name[:5]) == int(cli_run.name[:5]) + 1
