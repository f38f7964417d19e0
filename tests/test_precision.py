"""train.precision: bf16 (autocast) and fp16 (autocast + loss scaling) train with gradient
penalties without NaN, keep fp32 weights, and resume with the scaler's state."""

import math

import pytest
import torch

from normgan.config import load_config
from normgan.errors import ConfigError
from normgan.train import Trainer

TINY = [
    "data.batch_size=8",
    "model.generator.width=8",
    "model.discriminator.width=8",
    "model.discriminator.norm=none",
    "train.tensorboard=false",
    "train.num_samples=4",
    "train.log_every=2",
    "train.sample_every=100",
    "train.checkpoint_every=100",
    "regularizers={}",
]
TERMS = {
    "r1": "regularizers.r1={term: grad, net: D, at: real, weight: 1.0}",
    "wgan_gp": "regularizers.gp={term: grad, net: D, at: interpolates, center: 1, weight: 10.0}",
}


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("term", sorted(TERMS))
def test_mixed_precision_trains_penalties_without_nan(tmp_path, precision, term):
    loss = "wasserstein" if term == "wgan_gp" else "bce"
    cfg = load_config(overrides=TINY + [TERMS[term], f"train.precision={precision}", "train.steps=12", f"loss={loss}"])
    tr = Trainer(cfg, run_dir=tmp_path, progress=False)
    init = [p.detach().clone() for p in tr.D.parameters()]
    rows = []
    for step in range(12):
        out = tr.train_step(step, log=True)
        rows.append({k: float(v.float().mean()) for k, v in out.items()})
        rows[-1]["raw"] = float(tr.objective.term_log[f"reg/{'r1' if term == 'r1' else 'gp'}/raw"])
    assert all(math.isfinite(v) for r in rows for v in r.values()), rows
    assert all(p.dtype == torch.float32 for p in tr.G.parameters()) and all(
        p.dtype == torch.float32 for p in tr.D.parameters()
    )
    assert all(r["raw"] > 0 for r in rows)  # the input gradients did not underflow to zero
    assert any(not torch.equal(a, b) for a, b in zip(init, tr.D.parameters()))  # no step was skipped for good


def test_bf16_forward_matches_fp32_within_bf16_precision(tmp_path):
    """One D loss under bf16 autocast against fp32 on the same weights and batch: relative error ~1e-2."""
    cfg32 = load_config(overrides=TINY + ["train.steps=1"])
    cfg16 = load_config(overrides=TINY + ["train.steps=1", "train.precision=bf16"])
    a = Trainer(cfg32, run_dir=tmp_path / "a", progress=False)
    b = Trainer(cfg16, run_dir=tmp_path / "b", progress=False)
    la, lb = a.train_step(0)["loss/D"], b.train_step(0)["loss/D"]
    assert float(lb) == pytest.approx(float(la), rel=3e-2)
    assert float(lb) != float(la)  # autocast really ran in bf16


def test_fp16_scaler_state_is_checkpointed_and_restored(tmp_path):
    cfg = load_config(
        overrides=TINY + [TERMS["r1"], "train.precision=fp16", "train.steps=4", "train.checkpoint_every=2"]
    )
    tr = Trainer(cfg, runs_dir=tmp_path, name="r", progress=False)
    tr.fit()
    state = torch.load(tmp_path / "r" / "checkpoints" / "last.pt", weights_only=True)
    assert set(state["scalers"]) == {"G", "D"} and state["scalers"]["D"]["scale"] > 0
    resumed = Trainer.resume(tmp_path / "r", overrides=["train.steps=6"], progress=False)
    assert resumed.scalers["D"].get_scale() == pytest.approx(float(state["scalers"]["D"]["scale"]))


def test_unknown_precision_is_a_config_error():
    with pytest.raises(ConfigError, match="train.precision"):
        load_config(overrides=["train.precision=fp8"])
