"""On a CUDA GPU (skipped without one): every shipped config trains and resumes, fp16 and bf16 train
gradient penalties without NaN (fp16's scaler state checkpointed), spectral norm keeps σ in fp32
under autocast, train.compile equals eager, and a streamed folder gives the in-memory batches
through pinned memory.

``NORMGAN_TEST_DEVICE=cpu python -m pytest tests/test_cuda.py`` runs the same checks on the CPU (a
check of the tests themselves; fp16 on CPU is slow but works)."""

import math
import os

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn.utils import parametrize

from normgan import Trainer, load_config
from normgan.config import packaged_config_dir
from normgan.train.compiled import compiler_missing
from normgan.train.logger import read_metrics

DEVICE = os.environ.get("NORMGAN_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(), reason="no CUDA GPU")

TINY = [
    "data.batch_size=8",
    "model.generator.width=8",
    "model.discriminator.width=8",
    "train.tensorboard=false",
    "train.num_samples=4",
    "train.log_every=1",
    f"train.device={DEVICE}",
]
CONFIGS = sorted(
    p.stem for p in packaged_config_dir().glob("*.yaml") if p.stem != "pix2pix-facades"
)  # needs the user's data
R1 = "regularizers.r1={term: grad, net: D, at: real, weight: 1.0}"
GP = "regularizers.gp={term: grad, net: D, at: interpolates, center: 1, weight: 10.0}"


def weights(tr):
    return {
        f"{n}.{k}": v.detach().cpu()
        for n, m in (("G", tr.G), ("D", tr.D), ("G_ema", tr.G_ema))
        for k, v in m.state_dict().items()
    }


@pytest.mark.parametrize("name", CONFIGS)
def test_every_shipped_config_trains_and_resumes_exactly(name, tmp_path):
    over = [*TINY, "train.checkpoint_every=2", "train.sample_every=2"]
    straight = Trainer(
        load_config(name, overrides=[*over, "train.steps=4"]), runs_dir=tmp_path, name="straight", progress=False
    )
    straight.fit()
    assert straight.device.type == torch.device(DEVICE).type
    half = Trainer(
        load_config(name, overrides=[*over, "train.steps=2"]), runs_dir=tmp_path, name="half", progress=False
    )
    half.fit()
    resumed = Trainer.resume(tmp_path / "half", overrides=["train.steps=4"], progress=False)
    resumed.fit()
    a, b = weights(straight), weights(resumed)
    for k in a:  # cuDNN may pick other algorithms in a new process: equal within float tolerance
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=lambda m: f"{name} {k}: {m}")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_spectral_norm_keeps_sigma_in_fp32_under_autocast(precision, tmp_path):
    """CUDA autocasts mv to half precision; the power iteration and W/σ run outside autocast, so the
    normalized weight under autocast equals the one without, and an SN-GAN run stays finite."""
    over = [
        *TINY,
        f"train.precision={precision}",
        "train.steps=6",
        "train.sample_every=100",
        "train.checkpoint_every=100",
    ]
    tr = Trainer(load_config("sngan", overrides=over), runs_dir=tmp_path, name="sn", progress=False)
    tr.fit()
    rows = [r for r in read_metrics(tr.run_dir / "metrics.jsonl") if "loss/D" in r]
    assert len(rows) == 6 and all(math.isfinite(v) for r in rows for v in r.values() if isinstance(v, float))
    layers = [m for m in tr.D.modules() if parametrize.is_parametrized(m, "weight")]
    assert layers
    for m in layers:
        sn = m.parametrizations.weight[0]
        assert sn._u.dtype == torch.float32
        with torch.no_grad():  # D as a function (G step, evaluation): σ = uᵀ W v
            plain = m.weight
            with torch.autocast(device_type=tr.device.type, dtype=tr.precision):
                cast = m.weight
        assert cast.dtype == torch.float32 and torch.equal(cast, plain)
        u0, v0 = sn._u.clone(), sn._v.clone()  # a D step (power iteration), with and without autocast
        with torch.autocast(device_type=tr.device.type, dtype=tr.precision):
            cast, u_cast = m.weight.detach(), sn._u.clone()
        sn._u.copy_(u0)
        sn._v.copy_(v0)
        plain = m.weight.detach()
        assert cast.dtype == torch.float32 and torch.equal(cast, plain) and torch.equal(u_cast, sn._u)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("term", ["r1", "wgan_gp"])
def test_mixed_precision_penalties_stay_finite(precision, term, tmp_path):
    extra = [R1] if term == "r1" else [GP, "loss=wasserstein"]
    over = [
        *TINY,
        "model.discriminator.norm=none",
        "regularizers={}",
        *extra,
        f"train.precision={precision}",
        "train.steps=30",
        "train.checkpoint_every=15",
        "train.sample_every=100",
    ]
    tr = Trainer(load_config(overrides=over), runs_dir=tmp_path, name="mp", progress=False)
    tr.fit()
    rows = [r for r in read_metrics(tr.run_dir / "metrics.jsonl") if "loss/D" in r]
    assert len(rows) == 30 and all(math.isfinite(v) for r in rows for v in r.values() if isinstance(v, float))
    key = "reg/r1/raw" if term == "r1" else "reg/gp/raw"
    assert all(r[key] > 0 for r in rows)  # the penalty's input gradients did not underflow
    ck = torch.load(tr.run_dir / "checkpoints" / "last.pt", weights_only=True)
    if precision == "fp16":
        assert set(ck["scalers"]) == {"G", "D"} and ck["scalers"]["D"]["scale"] > 0
        resumed = Trainer.resume(tr.run_dir, overrides=["train.steps=32"], progress=False)
        assert resumed.scalers["D"].get_scale() == pytest.approx(ck["scalers"]["D"]["scale"])
        resumed.fit()


@pytest.mark.skipif(compiler_missing(torch.device(DEVICE).type) is not None, reason="no compiler for torch.compile")
def test_compiled_steps_equal_eager_steps(tmp_path):
    runs = {}
    for mode in ("false", "true"):
        tr = Trainer(
            load_config("sngan", overrides=[*TINY, R1, "train.steps=3", f"train.compile={mode}"]),
            runs_dir=tmp_path,
            name=mode,
            progress=False,
        )
        for s in range(3):
            tr.train_step(s)
        runs[mode] = weights(tr)
    for k, v in runs["false"].items():
        torch.testing.assert_close(runs["true"][k], v, rtol=1e-3, atol=1e-5, msg=lambda m: f"{k}: {m}")


def test_streamed_folder_equals_memory_through_pinned_memory(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(24):
        sub = tmp_path / "imgs" / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)).save(sub / f"{i}.png")
    over = [
        *TINY,
        "data.name=folder",
        f"data.root={tmp_path / 'imgs'}",
        "data.channels=3",
        "data.workers=2",
        "train.steps=3",
    ]
    trainers = {}
    for mode in ("true", "false"):
        tr = Trainer(
            load_config(overrides=[*over, f"data.stream={mode}"]), runs_dir=tmp_path, name=f"s{mode}", progress=False
        )
        tr.fit()
        trainers[mode] = tr
    trainers["true"].task.close()
    a, b = weights(trainers["false"]), weights(trainers["true"])
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=lambda m: f"{k}: {m}")
