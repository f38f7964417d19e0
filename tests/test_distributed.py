"""Several processes, one run (gloo on CPU): a step on 2 shards equals a single-process step on
the whole batch; torchrun runs resume exactly; a killed rank stops the run instead of hanging."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from normgan.config import load_config

BASE = [
    "data.batch_size=8",
    "model.generator.width=8",
    "model.discriminator.width=8",
    "model.generator.norm=none",
    "model.discriminator.norm=none",
    "train.tensorboard=false",
    "train.num_samples=4",
    "regularizers={}",
    "optim.ema=0.9",
]
CASES = {
    "plain": [],
    "r1": ["regularizers.r1={term: grad, net: D, at: real, weight: 1.0}"],
    "lazy_r1": ["regularizers.r1={term: grad, net: D, at: real, weight: 1.0, every: 2}"],
    "adaptive": ["regularizers.l2={term: weights, net: G, norm: l2, weight: {adaptive: uncertainty}}"],
    "spectral": ["constraints.sn={kind: spectral, net: D}"],
    # R3GAN's objective: pairs are per shard, so the mean over ranks is the mean over the whole batch
    "rpgan_r1_r2": [
        "loss=rpgan",
        "regularizers.r1={term: grad, net: D, at: real, weight: 1.0}",
        "regularizers.r2={term: grad, net: D, at: fake, weight: 1.0}",
    ],  # u, v buffers: equal on every rank and to one process
    # D's inputs augmented: each rank keeps its rows of the global batch's draws; R1 through T
    "diffaugment_r1": ["augment.kind=diffaugment", "regularizers.r1={term: grad, net: D, at: real, weight: 1.0}"],
    # adaptive p: r_t summed over the ranks, the same p everywhere (it moves every step here)
    "ada_adaptive": ["augment.kind=ada", "augment.interval=1", "augment.speed=100"],
    # class-conditional: G's labels drawn for the global batch, each rank its rows; R1 w.r.t. x with y fixed
    "conditional_r1": [
        "model.generator.conditioning=concat",
        "model.discriminator.conditioning=projection",
        "regularizers.r1={term: grad, net: D, at: real, weight: 1.0}",
    ],
    "conditional_ac": [
        "model.generator.conditioning=concat",
        "model.discriminator.conditioning=ac",
        "regularizers.ac_d={term: ac, net: D, weight: 1.0}",
        "regularizers.ac_g={term: ac, net: G, weight: 1.0}",
    ],
}
STEPS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _steps(overrides, run_dir):
    """Run STEPS train steps; returns the losses of each step and every parameter and buffer."""
    from normgan.train import Trainer

    tr = Trainer(load_config(overrides=overrides), run_dir=run_dir, progress=False)
    losses = []
    for step in range(STEPS):
        out = tr.train_step(step)
        losses.append([float(out["loss/D"]), float(out["loss/G"])])
    state = {f"G.{k}": v for k, v in tr.G.state_dict().items()} | {f"D.{k}": v for k, v in tr.D.state_dict().items()}
    state |= {f"ema.{k}": v for k, v in tr.G_ema.state_dict().items()}
    state |= {f"reg.{r.name}.{k}": v for r in tr.regs for k, v in r.state_dict().items()}
    if tr.augment is not None:
        state["augment.p"] = torch.tensor(tr.augment.p, dtype=torch.float64)
    return losses, state


def _rank(rank, world, port, overrides, out_dir):
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    run_dir = Path(out_dir) / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    losses, state = _steps(overrides, run_dir)
    torch.save({"losses": losses, "state": state}, Path(out_dir) / f"rank{rank}.pt")
    import torch.distributed as td

    td.destroy_process_group()


@pytest.mark.parametrize("case", sorted(CASES))
def test_two_process_step_equals_single_process_step(case, tmp_path):
    _check_two_processes_equal_one(tmp_path, BASE + CASES[case], BASE + CASES[case], case)


def test_two_process_streamed_step_equals_single_process_in_memory_step(tmp_path):
    """Each rank decodes only its half of every streamed global batch; the step equals one process
    training on the same folder loaded into memory."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(20):
        sub = tmp_path / "imgs" / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)).save(sub / f"{i}.png")
    folder = [*BASE, "data.name=folder", f"data.root={tmp_path / 'imgs'}", "data.channels=3", "data.workers=0"]
    _check_two_processes_equal_one(tmp_path, [*folder, "data.stream=true"], [*folder, "data.stream=false"], "stream")


def _check_two_processes_equal_one(tmp_path, overrides, single_overrides, case):
    mp.start_processes(
        _rank, args=(2, _free_port(), overrides, str(tmp_path)), nprocs=2, join=True, start_method="spawn"
    )
    torch.set_num_threads(1)
    (tmp_path / "single").mkdir()
    losses, state = _steps(single_overrides, tmp_path / "single")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    # each rank's loss is the mean over its half: the global mean is their average
    for step in range(STEPS):
        for j in range(2):
            shard_mean = (ranks[0]["losses"][step][j] + ranks[1]["losses"][step][j]) / 2
            assert shard_mean == pytest.approx(losses[step][j], rel=1e-4, abs=1e-5), (case, step, j)
    assert set(ranks[0]["state"]) == set(state)
    for key, want in state.items():
        for r in range(2):
            got = ranks[r]["state"][key]
            if want.is_floating_point():
                torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, msg=lambda m: f"{case} {key} rank {r}: {m}")
            else:
                assert torch.equal(got, want), key
    # the parameters moved: the comparison is not of two untouched initialisations
    from normgan.train import Trainer

    init = Trainer(load_config(overrides=single_overrides), run_dir=tmp_path / "single", progress=False).G.state_dict()
    assert any(not torch.allclose(v, state[f"G.{k}"]) for k, v in init.items() if v.is_floating_point())


# ------------------------------------------------------------------------------------------- torchrun
def _torchrun(tmp_path, *args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "normgan",
        "train",
        *BASE,
        "train.log_every=1",
        "train.sample_every=3",
        "train.checkpoint_every=3",
        "--runs-dir",
        str(tmp_path / "runs"),
        "--no-progress",
        *args,
    ]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )


def _weights(run):
    state = torch.load(Path(run) / "checkpoints" / "last.pt", weights_only=True)
    return state["step"], state["generator"], state["discriminator"], state["generator_ema"]


def test_torchrun_run_stopped_and_resumed_equals_a_straight_run(tmp_path):
    straight = _torchrun(tmp_path, "train.steps=6", "--name", "straight")
    first = _torchrun(tmp_path, "train.steps=3", "--name", "resumed")
    for p in (straight, first):
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    second = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "normgan",
            "train",
            "--resume",
            str(tmp_path / "runs" / "resumed"),
            "train.steps=6",
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    a, b = _weights(tmp_path / "runs" / "straight"), _weights(tmp_path / "runs" / "resumed")
    assert a[0] == b[0] == 6
    for x, y in zip(a[1:], b[1:]):
        for k in x:
            torch.testing.assert_close(x[k], y[k], rtol=0, atol=0, msg=lambda m: f"{k}: {m}")
    # one writer: a single metrics row per logged step
    rows = (tmp_path / "runs" / "straight" / "metrics.jsonl").read_text().splitlines()
    assert len([r for r in rows if '"loss/D"' in r]) == 6


def _children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(x) for x in out]


@contextlib.contextmanager
def _training(tmp_path, name):
    """A 2-process torchrun run of 100,000 steps, yielded once it has logged two rows; killed at the end."""
    p = _torchrun(tmp_path, "train.steps=100000", "--name", name)
    try:
        metrics = tmp_path / "runs" / name / "metrics.jsonl"
        deadline = time.monotonic() + 120
        while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
            assert time.monotonic() < deadline and p.poll() is None, p.communicate()
            time.sleep(0.2)
        yield p
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_killing_one_rank_stops_the_run(tmp_path):
    with _training(tmp_path, "killed") as p:
        workers = _children(p.pid)
        assert len(workers) == 2, workers
        t0 = time.monotonic()
        os.kill(workers[1], signal.SIGKILL)
        out, err = p.communicate(timeout=120)
        assert p.returncode != 0
        assert time.monotonic() - t0 < 100  # stopped, not hung
        assert all(
            not Path(f"/proc/{w}").exists() or "zombie" in Path(f"/proc/{w}/status").read_text() for w in workers
        )


def test_sigterm_to_torchrun_checkpoints_and_stops_every_rank(tmp_path):
    with _training(tmp_path, "stopped") as p:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=120)
        assert p.returncode != 0
        step = torch.load(tmp_path / "runs" / "stopped" / "checkpoints" / "last.pt", weights_only=True)["step"]
        assert step >= 2
        assert "--resume" in err
