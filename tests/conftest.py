import os
import subprocess
import sys

import pytest

# tests run on built-in data only and never touch the network
os.environ.setdefault("NORMGAN_OFFLINE", "1")

# normgan's cache (domain classifiers) goes to a temporary folder of this test session, never to
# the user's ~/.cache/normgan: the process that loads this file first makes it (with `pytest -n N`
# the controller, whose environment the workers inherit, so they share one) and removes it at exit.
# Tests of a fresh machine set HOME/NORMGAN_CACHE/TORCH_HOME themselves. $TORCH_HOME stays: the
# tests only read it (offline, nothing is downloaded), and the real-LPIPS test runs where the
# user's AlexNet weights are.
if not os.environ.get("NORMGAN_TESTS_TMP"):
    import atexit
    import shutil
    import tempfile

    _session_tmp = tempfile.mkdtemp(prefix="normgan-tests-")
    atexit.register(shutil.rmtree, _session_tmp, ignore_errors=True)
    os.environ["NORMGAN_TESTS_TMP"] = _session_tmp
    os.environ["NORMGAN_CACHE"] = os.path.join(_session_tmp, "normgan-cache")
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


#: a tiny paired (edges2digit) model: U-Net G, 2-layer PatchGAN D with instance norm, batch 4
TINY_PAIRED = [
    "data.name=edges2digit",
    "data.resolution=32",
    "data.batch_size=4",
    "model.generator.name=unet",
    "model.generator.width=4",
    "model.discriminator.name=patchgan",
    "model.discriminator.width=4",
    "model.discriminator.norm=instance",
    "+model.discriminator.options.layers=2",
]


def assert_same_weights(*pairs):
    """Every state-dict entry of each (a, b) module pair is bit-identical (resume exactness)."""
    import torch

    for a, b in pairs:
        sb = b.state_dict()
        for k, v in a.state_dict().items():
            torch.testing.assert_close(v, sb[k], rtol=0, atol=0, msg=k)


def run_cli(*args, timeout=300, **kwargs):
    """Run ``python -m normgan ARGS`` in a subprocess; returns CompletedProcess with text output."""
    return subprocess.run(
        [sys.executable, "-m", "normgan", *map(str, args)], capture_output=True, text=True, timeout=timeout, **kwargs
    )


@pytest.fixture
def tiny_overrides():
    return list(TINY)
