import os
import subprocess
import sys

import pytest

# tests run on built-in data only and never touch the network
os.environ.setdefault("NORMGAN_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest -n N: N test processes share the cores, so each (and every command a test starts) uses
    # one torch thread; several OpenMP threads per process on shared cores run many times slower
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)  # in case a plugin imported torch before this file set the variable

TINY = [
    "train.steps=6",
    "data.batch_size=8",
    "model.generator.width=8",
    "model.discriminator.width=8",
    "train.log_every=2",
    "train.sample_every=3",
    "train.checkpoint_every=3",
    "train.num_samples=4",
    "train.tensorboard=false",
    "regularizers={}",
]


def run_cli(*args, timeout=300, **kwargs):
    """Run ``python -m normgan ARGS`` in a subprocess; returns CompletedProcess with text output."""
    return subprocess.run([sys.executable, "-m", "normgan", *map(str, args)], capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture
def tiny_overrides():
    return list(TINY)
