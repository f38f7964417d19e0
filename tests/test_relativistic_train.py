"""RpGAN + R1 + R2 (the R3GAN objective) through the real training loop: G's loss sees D on the
step's real batch, paired index by index with the fakes, and the run trains with finite losses."""

import math

import torch
from conftest import TINY
from torch.testing import assert_close

from normgan.config import load_config
from normgan.functional.losses import AdversarialLoss
from normgan.train import Trainer

R3 = [
    "loss=rpgan",
    "model.discriminator.norm=none",
    "regularizers.r1={term: grad, net: D, at: real, weight: 1.0}",
    "regularizers.r2={term: grad, net: D, at: fake, weight: 1.0}",
]


def test_rpgan_g_phase_gets_d_on_the_steps_real_batch(tmp_path):
    tr = Trainer(load_config(overrides=TINY + R3), run_dir=tmp_path / "run", progress=False)
    seen, batches = {}, []
    next_batch = tr.task.next_batch
    tr.task.next_batch = lambda: batches.append(next_batch()) or batches[-1]
    loss = tr.objective.loss

    def spy_g(fake, real):
        seen["fake"], seen["real"] = fake.detach(), real.detach()
        return loss.g(fake, real)

    tr.objective.loss = AdversarialLoss(loss.d, spy_g, g_real=True)
    out = tr.train_step(0)
    assert len(batches) == 1  # one real batch per step, shared by the D and G phases
    with torch.no_grad():  # D after its update of this step, on that batch, by the test's own call
        expect_real = tr.D(batches[0].real)
    assert_close(seen["real"], expect_real, rtol=1e-5, atol=1e-6)
    by_hand = sum(math.log1p(math.exp(r - f)) for r, f in zip(seen["real"].tolist(), seen["fake"].tolist()))
    assert_close(float(out["loss/G"]), by_hand / len(seen["real"]), rtol=1e-5, atol=1e-6)


def test_rpgan_with_r1_and_r2_trains(tmp_path):
    tr = Trainer(load_config(overrides=TINY + R3), run_dir=tmp_path / "run", progress=False)
    for step in range(12):
        out = tr.train_step(step)
        assert math.isfinite(float(out["loss/D"])) and math.isfinite(float(out["loss/G"]))
    log = tr.objective.term_log
    assert float(log["reg/r1/raw"]) > 0 and float(log["reg/r2/raw"]) > 0


def test_r2_reusing_ds_forward_on_the_fakes_equals_its_own_forward(tmp_path):
    """R2 (and R1) computed from the D step's logits give the same update as on their own D forwards."""
    states = []
    for share in (True, False):
        tr = Trainer(load_config(overrides=TINY + R3), run_dir=tmp_path / f"run{share}", progress=False)
        assert tr.objective.share_fake_forward and tr.objective.share_real_forward
        tr.objective.share_fake_forward = tr.objective.share_real_forward = share
        for step in range(3):
            tr.train_step(step)
        states.append({k: v.clone() for k, v in tr.D.state_dict().items()})
    for k in states[0]:
        assert_close(states[0][k], states[1][k], rtol=1e-5, atol=1e-6)
