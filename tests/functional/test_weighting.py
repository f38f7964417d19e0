"""Reference checks for normgan.functional.weighting (adaptive weights and schedules)."""

import math

import pytest
import torch

from normgan.functional import weighting as W

DT = torch.float64


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).to(DT)
    x = torch.randn(5, 3, dtype=DT)
    target = torch.randn(5, 2, dtype=DT)
    return net, x, target


def _losses(net, x, target):
    out = net(x)
    rec = (out - target).abs().mean()
    adv = torch.nn.functional.softplus(-out[:, 0] * 3).mean()
    return rec, adv


def test_grad_ratio_weight_matches_hand_computation():
    net, x, target = _tiny_model()
    last = net[2].weight
    rec, adv = _losses(net, x, target)
    got = W.grad_ratio_weight(rec, adv, last)
    # independent computation on a fresh graph
    rec2, adv2 = _losses(net, x, target)
    g_rec = torch.autograd.grad(rec2, last, retain_graph=True)[0]
    g_adv = torch.autograd.grad(adv2, last)[0]
    want = g_rec.norm() / (g_adv.norm() + 1e-4)
    torch.testing.assert_close(got, want)
    assert not got.requires_grad
    # graphs are kept for the caller's backward
    (rec + got * adv).backward()
    assert last.grad is not None
    # clamped
    rec, adv = _losses(net, x, target)
    assert float(W.grad_ratio_weight(rec, adv, last, max_weight=1e-3)) == pytest.approx(1e-3)
    rec, adv = _losses(net, x, target)
    assert float(W.grad_ratio_weight(rec, adv * 0, last, delta=1e-4)) == pytest.approx(
        min(float(g_rec.norm()) / 1e-4, 1e4)
    )


def test_uncertainty_weighting_vs_hand():
    losses = [torch.tensor(2.0, dtype=DT), torch.tensor(0.5, dtype=DT)]
    s = torch.tensor([0.3, -1.0], dtype=DT, requires_grad=True)
    got = W.uncertainty_weighting(losses, s)
    want = 0.5 * math.exp(-0.3) * 2.0 + 0.15 + 0.5 * math.exp(1.0) * 0.5 - 0.5
    assert float(got.detach()) == pytest.approx(want, rel=1e-12)
    got.backward()
    # d/ds ½e^{-s}L + ½s = −½e^{-s}L + ½
    torch.testing.assert_close(
        s.grad, torch.tensor([-0.5 * math.exp(-0.3) * 2 + 0.5, -0.5 * math.exp(1.0) * 0.5 + 0.5], dtype=DT)
    )


def test_gradnorm_pieces():
    net, x, target = _tiny_model(1)
    last = net[2].weight
    rec, adv = _losses(net, x, target)
    w = torch.tensor([0.7, 1.3], dtype=DT, requires_grad=True)
    G = W.gradnorm_grad_norms([rec, adv], w, last)
    n_rec = torch.autograd.grad(rec, last, retain_graph=True)[0].norm()
    n_adv = torch.autograd.grad(adv, last, retain_graph=True)[0].norm()
    torch.testing.assert_close(G, torch.stack([0.7 * n_rec, 1.3 * n_adv]).detach())
    ratios = torch.tensor([0.5, 1.5], dtype=DT)
    tgt = W.gradnorm_targets(G, ratios, alpha=1.0)
    # r = ratios / mean(ratios) = [0.5, 1.5]
    torch.testing.assert_close(tgt, G.detach().mean() * torch.tensor([0.5, 1.5], dtype=DT))
    loss = W.gradnorm_loss(G, tgt)
    torch.testing.assert_close(loss, (G - tgt).abs().sum())
    loss.backward()
    assert w.grad is not None and last.grad is None
    with pytest.raises(ValueError):
        W.gradnorm_targets(G, ratios, alpha=-1)


def test_overfit_rt():
    logits = torch.tensor([[1.0], [-2.0], [3.0], [0.5]])
    torch.testing.assert_close(W.overfit_rt(logits), torch.tensor(0.5))
    assert float(W.overfit_rt(torch.tensor([-1.0, -1.0]))) == -1.0


def test_rt_controller_update():
    assert W.rt_controller_update(1.0, 0.9, step_size=0.1) == pytest.approx(math.exp(0.1))
    assert W.rt_controller_update(1.0, torch.tensor(0.2), step_size=0.1) == pytest.approx(math.exp(-0.1))
    assert W.rt_controller_update(1.0, 0.6) == 1.0
    assert W.rt_controller_update(0.5, 0.9, mode="additive", step_size=0.25) == pytest.approx(0.75)
    assert W.rt_controller_update(0.1, 0.0, mode="additive", step_size=0.25) == 0.0  # clamped at min
    assert W.rt_controller_update(9.0, 1.0, step_size=1.0, max_value=10.0) == 10.0
    with pytest.raises(ValueError):
        W.rt_controller_update(1.0, 0.5, mode="pid")
    with pytest.raises(ValueError):
        W.rt_controller_update(1.0, 0.5, min_value=2.0, max_value=1.0)


def test_schedules_values():
    assert W.constant(7) == 1.0
    assert W.warmup(0, steps=10) == 0.0
    assert W.warmup(5, steps=10) == pytest.approx(0.5)
    assert W.warmup(5, steps=10, start_value=0.2) == pytest.approx(0.6)
    assert W.warmup(15, steps=10) == 1.0
    assert W.warmup(0, steps=0) == 1.0
    assert W.linear_decay(5, start=10, end=20) == 1.0
    assert W.linear_decay(15, start=10, end=20) == pytest.approx(0.5)
    assert W.linear_decay(12, start=10, end=20, final=0.5) == pytest.approx(0.9)
    assert W.linear_decay(25, start=10, end=20, final=0.5) == 0.5
    assert W.linear_decay(10, start=10, end=10, final=0.25) == 0.25
    assert W.cosine_decay(10, start=10, end=20) == pytest.approx(1.0)
    assert W.cosine_decay(15, start=10, end=20) == pytest.approx(0.5)
    assert W.cosine_decay(15, start=10, end=20, final=0.2) == pytest.approx(0.6)
    assert W.cosine_decay(12, start=10, end=20) == pytest.approx(0.5 * (1 + math.cos(0.2 * math.pi)))
    assert W.cosine_decay(30, start=10, end=20, final=0.1) == pytest.approx(0.1)
    assert W.step_decay(0, every=10, factor=0.5) == 1.0
    assert W.step_decay(9, every=10, factor=0.5) == 1.0
    assert W.step_decay(25, every=10, factor=0.5) == 0.25
    assert W.start_at(4, start=5) == 0.0
    assert W.start_at(5, start=5) == 1.0
    # cosine_warmup (R3GAN's burn-in): linear warm-up, hold, cosine decay to final, then final
    assert W.cosine_warmup(0, end=100) == pytest.approx(1.0)
    assert W.cosine_warmup(50, end=100, final=0.2) == pytest.approx(0.6)
    assert W.cosine_warmup(150, end=100, final=0.2) == pytest.approx(0.2)
    assert W.cosine_warmup(5, end=100, warmup=10, start_value=0.2) == pytest.approx(0.6)
    assert W.cosine_warmup(15, end=100, warmup=10, hold=10) == pytest.approx(1.0)
    assert set(W.SCHEDULES.names()) == {"constant", "warmup", "linear", "cosine", "cosine_warmup", "step", "start_at"}


@pytest.mark.parametrize(
    "fn, kwargs",
    [
        (W.linear_decay, dict(start=20, end=10)),
        (W.cosine_decay, dict(start=20, end=10)),
        (W.linear_decay, dict(start=0, end=10, final=-1.0)),
        (W.warmup, dict(steps=-1)),
        (W.step_decay, dict(every=0, factor=0.5)),
        (W.step_decay, dict(every=10, factor=-0.5)),
        (W.start_at, dict(start=-3)),
    ],
)
def test_schedules_bad_arguments_raise_value_error(fn, kwargs):
    with pytest.raises(ValueError) as info:
        fn(0, **kwargs)
    assert "\n" not in str(info.value)


def test_grad_ratio_bad_arguments():
    net, x, target = _tiny_model()
    rec, adv = _losses(net, x, target)
    with pytest.raises(ValueError):
        W.grad_ratio_weight(rec, adv, net[2].weight, delta=0.0)
