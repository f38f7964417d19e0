"""Weight rules: schedules (base × multiplier), adaptive weights against hand computations, and their
checkpointed state."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from normgan.errors import ConfigError
from normgan.functional.weighting import SCHEDULES
from normgan.models.dcgan import DCGANDiscriminator, DCGANGenerator
from normgan.regularizers import WEIGHTS, WeightContext, build_regularizers, build_weight

KEY = "regularizers.t.weight"


@pytest.mark.parametrize(
    "spec,step,expected",
    [
        ({"schedule": "warmup", "base": 10, "steps": 500}, 0, 0.0),
        ({"schedule": "warmup", "base": 10, "steps": 500}, 250, 5.0),
        ({"schedule": "warmup", "base": 10, "steps": 500}, 900, 10.0),
        ({"schedule": "linear", "base": 2, "start": 100, "end": 200}, 150, 1.0),
        ({"schedule": "cosine", "base": 2, "start": 0, "end": 100, "final": 0.0}, 50, 1.0),
        ({"schedule": "step", "base": 8, "every": 10, "factor": 0.5}, 25, 2.0),
        ({"schedule": "start_at", "base": 3, "start": 5}, 4, 0.0),
        ({"schedule": "start_at", "base": 3, "start": 5}, 5, 3.0),
    ],
)
def test_schedule_weight_is_base_times_multiplier(spec, step, expected):
    w = build_weight(spec, key=KEY)
    raw = torch.tensor(2.0)
    weighted, lam = w.apply(raw, WeightContext(step=step))
    assert lam == pytest.approx(expected)
    torch.testing.assert_close(weighted, raw * expected)


def test_every_schedule_is_a_weight_rule():
    assert set(SCHEDULES.names()) <= set(WEIGHTS.names())


@pytest.mark.parametrize(
    "spec,pattern",
    [
        ({"schedule": "linear", "start": 100, "end": 10}, r"^regularizers\.t\.weight\.end: bad value 10"),
        ({"schedule": "cosine", "start": 5, "end": 1}, r"^regularizers\.t\.weight\.end: "),
        ({"schedule": "warmup", "steps": 10, "base": -1}, r"^regularizers\.t\.weight\.base: bad value -1"),
        ({"schedule": "warmup", "stepz": 10}, r"^regularizers\.t\.weight: schedule 'warmup' takes"),
        ({"schedule": "nope"}, r"^regularizers\.t\.weight\.schedule: unknown schedule 'nope'"),
        ({"adaptive": "warmup"}, r"^regularizers\.t\.weight\.adaptive: unknown adaptive 'warmup'"),
        ({"base": 1}, r"^regularizers\.t\.weight: a weight mapping needs"),
        ({"adaptive": "target", "target": 2}, r"^regularizers\.t\.weight\.target: bad value 2"),
        (-0.5, r"^regularizers\.t\.weight: bad value -0.5"),
        (float("nan"), r"^regularizers\.t\.weight: bad value nan"),
    ],
)
def test_bad_weight_specs_name_the_key(spec, pattern):
    with pytest.raises(ConfigError, match=pattern):
        build_weight(spec, key=KEY)


def test_adaptive_weights_refuse_the_wrong_network():
    with pytest.raises(ConfigError, match=r"^regularizers\.t\.weight: this adaptive weight works on D only"):
        build_regularizers({"t": {"term": "tv", "weight": {"adaptive": "target"}}})
    with pytest.raises(ConfigError, match=r"^regularizers\.t\.weight: this adaptive weight works on G only"):
        build_regularizers({"t": {"term": "grad", "weight": {"adaptive": "grad_ratio"}}})


def _g_and_losses(seed=0):
    torch.manual_seed(seed)
    G = DCGANGenerator(resolution=32, channels=1, z_dim=8, width=4)
    D = DCGANDiscriminator(resolution=32, channels=1, width=4)
    fake = G(torch.randn(4, 8))
    rec = (fake[..., 1:, :] - fake[..., :-1, :]).abs().mean()  # a TV-like term
    adv = F.softplus(-D(fake)).mean()
    return G, rec, adv


def test_grad_ratio_matches_a_hand_computation_at_the_last_layer():
    G, rec, adv = _g_and_losses()
    w = build_weight({"adaptive": "grad_ratio", "base": 0.8}, key=KEY)
    (g_rec,) = torch.autograd.grad(rec, G.to_image.weight, retain_graph=True)
    (g_adv,) = torch.autograd.grad(adv, G.to_image.weight, retain_graph=True)
    expected = 0.8 * g_rec.norm() / (g_adv.norm() + 1e-4)
    weighted, lam = w.apply(rec, WeightContext(step=0, module=G, adv_loss=adv))
    assert lam == pytest.approx(float(expected), rel=1e-5)
    torch.testing.assert_close(weighted, rec * expected)
    # the weight is detached: backprop of the weighted term equals λ·∇rec
    (g_w,) = torch.autograd.grad(weighted, G.to_image.weight, retain_graph=True)
    torch.testing.assert_close(g_w, float(expected) * g_rec)
    # lazy phase (no adversarial loss): the last ratio is reused, from the buffer
    _, lam_lazy = w.apply(rec.detach(), WeightContext(step=1, module=G))
    assert lam_lazy == pytest.approx(lam)
    fresh = build_weight({"adaptive": "grad_ratio", "base": 0.8}, key=KEY)
    fresh.load_state_dict(w.state_dict())
    assert fresh.apply(rec.detach(), WeightContext(step=2))[1] == pytest.approx(lam)


def test_uncertainty_weight_is_kendall_and_trains_s():
    w = build_weight({"adaptive": "uncertainty", "init": 0.3}, key=KEY)
    raw = torch.tensor(2.0, requires_grad=True)
    weighted, lam = w.apply(raw, WeightContext(step=0))
    s = 0.3
    assert float(weighted.detach()) == pytest.approx(0.5 * math.exp(-s) * 2.0 + 0.5 * s, rel=1e-6)
    assert lam == pytest.approx(0.5 * math.exp(-s), rel=1e-6)
    weighted.backward()
    assert float(w.log_var.grad) == pytest.approx(-0.5 * math.exp(-s) * 2.0 + 0.5, rel=1e-5)
    assert [n for n, _ in w.named_parameters()] == ["log_var"]


def test_gradnorm_reports_w_raw_gives_the_net_w_grad_and_moves_w_toward_balance():
    G, rec, adv = _g_and_losses()
    w = build_weight({"adaptive": "gradnorm", "init": 1.0, "alpha": 0.0}, key=KEY)
    weighted, lam = w.apply(rec, WeightContext(step=0, module=G, adv_loss=adv))
    assert lam == pytest.approx(1.0)
    torch.testing.assert_close(weighted, rec)
    (g_net,) = torch.autograd.grad(weighted, G.to_image.weight, retain_graph=True)
    (g_rec,) = torch.autograd.grad(rec, G.to_image.weight, retain_graph=True)
    torch.testing.assert_close(g_net, g_rec)
    # GradNorm with α = 0: targets are the mean of G_i; w's gradient is sign(G_rec − mean)·‖∇rec‖/2
    (g_adv,) = torch.autograd.grad(adv, G.to_image.weight, retain_graph=True)
    (g_w,) = torch.autograd.grad(weighted, w.w)
    n_rec, n_adv = float(g_rec.norm()), float(g_adv.norm())
    expected = math.copysign(1.0, n_rec - (n_rec + n_adv) / 2) * n_rec / 2 + math.copysign(
        1.0, n_adv - (n_rec + n_adv) / 2
    ) * (-n_rec / 2)
    assert float(g_w) == pytest.approx(expected, rel=1e-4)


def test_target_controller_moves_lambda_and_checkpoints_it():
    w = build_weight({"adaptive": "target", "base": 1.0, "target": 0.6, "step_size": 0.1}, key=KEY)
    raw = torch.tensor(1.0)
    _, lam = w.apply(raw, WeightContext(step=0, d_real=torch.ones(8)))  # r_t = 1 > 0.6: D overfits → raise
    assert lam == pytest.approx(math.exp(0.1))
    _, lam = w.apply(raw, WeightContext(step=1, d_real=-torch.ones(8)))  # r_t = −1 → lower
    assert lam == pytest.approx(1.0)
    w.apply(raw, WeightContext(step=2, d_real=torch.ones(8)))
    _, lam_lazy = w.apply(raw, WeightContext(step=3))  # no d_real: unchanged
    assert lam_lazy == pytest.approx(math.exp(0.1))
    fresh = build_weight({"adaptive": "target", "base": 1.0, "target": 0.6, "step_size": 0.1}, key=KEY)
    fresh.load_state_dict(w.state_dict())
    assert fresh.apply(raw, WeightContext(step=4))[1] == pytest.approx(math.exp(0.1))
