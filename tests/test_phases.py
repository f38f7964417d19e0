"""The step's phases (normgan/train/phases.py) and the objective's seam for relativistic losses."""

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY

from normgan import Trainer, load_config
from normgan.functional.losses import AdversarialLoss, bce_d_loss
from normgan.train.phases import build_phases, frozen, lazy_adam_correction


@pytest.mark.parametrize(
    "d_steps,k_d,k_g,names",
    [
        (1, 1, 1, ["D", "G"]),
        (3, 16, 1, ["D", "Dreg", "G"]),
        (1, 1, 4, ["D", "G", "Greg"]),
        (2, 8, 4, ["D", "Dreg", "G", "Greg"]),
    ],
)
def test_phases_in_order_with_their_intervals(d_steps, k_d, k_g, names):
    phases = build_phases(d_steps=d_steps, lazy_every={"D": k_d, "G": k_g})
    assert [p.name for p in phases] == names
    by = {p.name: p for p in phases}
    assert by["D"].repeat == d_steps and by["D"].freeze is None and not by["D"].checks
    assert by["G"].freeze == "D" and by["G"].checks
    for name, k in (("Dreg", k_d), ("Greg", k_g)):
        if name in by:
            assert by[name].lazy and by[name].every == k
            assert [s for s in range(3 * k) if by[name].due(s)] == [0, k, 2 * k]  # every k-th step from step 0


def test_lazy_adam_correction_closed_form():
    lr, betas = lazy_adam_correction(1e-3, (0.5, 0.99), 16)
    c = 16 / 17
    assert lr == pytest.approx(1e-3 * c, rel=1e-12)
    assert betas == pytest.approx((0.5**c, 0.99**c), rel=1e-12)
    assert lazy_adam_correction(1e-3, (0.5, 0.99), 1) == (1e-3, (0.5, 0.99))


def test_frozen_restores_gradients_also_on_errors():
    net = torch.nn.Linear(2, 2)
    with pytest.raises(RuntimeError):
        with frozen(net):
            assert not any(p.requires_grad for p in net.parameters())
            raise RuntimeError("boom")
    assert all(p.requires_grad for p in net.parameters())
    with frozen(None):  # nothing to freeze
        pass


def test_relativistic_g_loss_sees_d_on_the_real_batch(tmp_path):
    """A loss with g_real gets (D(x_f), D(x_r)) in the G phase, with D as updated by the D phase."""
    cfg = load_config(overrides=[*TINY, "model.discriminator.norm=none", "optim.ema=0"])
    tr = Trainer(cfg, runs_dir=tmp_path, name="rp", progress=False)
    seen, batches = {}, []
    next_batch = tr.task.next_batch
    tr.task.next_batch = lambda: batches.append(next_batch()) or batches[-1]

    def rp_g(fake, real):  # RpGAN's G loss, softplus(-(D(x_f) - D(x_r)))
        seen["fake"], seen["real"] = fake.detach(), real.detach()
        return F.softplus(-(fake - real)).mean()

    tr.objective.loss = AdversarialLoss(bce_d_loss, rp_g, g_real=True)
    out = tr.train_step(0)
    with torch.no_grad():  # G's update does not change D: D now is the D of the G phase
        want_real = tr.D(batches[0].real)
    torch.testing.assert_close(seen["real"], want_real, rtol=1e-5, atol=1e-6)
    want_loss = F.softplus(-(seen["fake"] - want_real)).mean()
    torch.testing.assert_close(out["loss/G"], want_loss, rtol=1e-5, atol=1e-6)
    assert all(p.requires_grad for p in tr.D.parameters())
