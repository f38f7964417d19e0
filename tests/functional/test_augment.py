"""DiffAugment and ADA ops against hand computations (numpy loops), their gradients, their
probabilities, and ADA's p update against its closed form."""

import math

import numpy as np
import pytest
import torch

from normgan.functional.augment import (
    ADA_OPS,
    DIFFAUGMENT_OPS,
    ada_apply,
    ada_augment,
    ada_p_update,
    ada_params,
    brightness,
    contrast,
    cutout,
    diffaugment,
    diffaugment_apply,
    diffaugment_params,
    hflip,
    saturation,
    translate,
)


def _x(b=3, c=3, s=6, seed=0, dtype=torch.float64):
    return torch.rand(b, c, s, s, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 2 - 1


def test_colour_ops_against_numpy():
    x = _x()
    a = x.numpy()
    shift, f = torch.tensor([0.1, -0.3, 0.45], dtype=x.dtype), torch.tensor([0.0, 1.7, 0.6], dtype=x.dtype)
    np.testing.assert_allclose(brightness(x, shift).numpy(), a + shift.numpy()[:, None, None, None], rtol=0, atol=1e-12)
    sat = np.empty_like(a)
    con = np.empty_like(a)
    for b in range(a.shape[0]):
        m_pix = a[b].mean(axis=0)  # mean over channels at each pixel
        sat[b] = (a[b] - m_pix) * f[b].item() + m_pix
        m = a[b].mean()
        con[b] = (a[b] - m) * f[b].item() + m
    np.testing.assert_allclose(saturation(x, f).numpy(), sat, rtol=0, atol=1e-12)
    np.testing.assert_allclose(contrast(x, f).numpy(), con, rtol=0, atol=1e-12)


def test_translate_cutout_flip_against_loops():
    x = _x(b=4, c=2, s=5)
    a = x.numpy()
    sh, sw = torch.tensor([0, 1, -2, 3]), torch.tensor([2, -1, 0, -4])
    want = np.zeros_like(a)
    for b in range(4):
        for i in range(5):
            for j in range(5):
                si, sj = i + int(sh[b]), j + int(sw[b])
                if 0 <= si < 5 and 0 <= sj < 5:
                    want[b, :, i, j] = a[b, :, si, sj]
    np.testing.assert_array_equal(translate(x, sh, sw).numpy(), want)
    ch, cw, size = torch.tensor([0, 2, 4, 5]), torch.tensor([1, 2, 5, 0]), 3
    want = a.copy()
    for b in range(4):
        top, left = int(ch[b]) - size // 2, int(cw[b]) - size // 2
        for i in range(max(0, top), min(5, top + size)):
            for j in range(max(0, left), min(5, left + size)):
                want[b, :, i, j] = 0
    np.testing.assert_array_equal(cutout(x, ch, cw, size=size).numpy(), want)
    flip = torch.tensor([True, False, True, False])
    want = np.where(flip.numpy()[:, None, None, None], a[..., ::-1], a)
    np.testing.assert_array_equal(hflip(x, flip).numpy(), want)


@pytest.mark.parametrize("op", DIFFAUGMENT_OPS)
def test_diffaugment_op_gradients_reach_the_input(op):
    x = _x(b=2, s=8).requires_grad_(True)
    torch.manual_seed(3)
    params = diffaugment_params(2, [op], size=8)
    # twice differentiable (gradient penalties go through T): gradcheck and gradgradcheck in float64
    assert torch.autograd.gradcheck(lambda y: diffaugment_apply(y, params), (x,))
    assert torch.autograd.gradgradcheck(lambda y: diffaugment_apply(y, params).square(), (x,))
    g = torch.autograd.grad(diffaugment_apply(x, params).sum(), x)[0]
    assert g.abs().sum() > 0


def test_diffaugment_draws_follow_diffaugment_ranges():
    g = torch.Generator().manual_seed(0)
    n, size = 4000, 32
    p = diffaugment_params(n, ["color", "translation", "cutout"], size=size, generator=g)
    assert -0.5 <= p["brightness"].min() < -0.45 and 0.45 < p["brightness"].max() < 0.5
    assert 0.0 <= p["saturation"].min() < 0.05 and 1.95 < p["saturation"].max() < 2.0
    assert 0.5 <= p["contrast"].min() < 0.55 and 1.45 < p["contrast"].max() < 1.5
    s = int(size * 0.125 + 0.5)  # DiffAugment: 4 px at 32
    assert set(p["shift_h"].tolist()) == set(range(-s, s + 1))
    assert set(p["centre_w"].tolist()) == set(range(0, size + 1))  # cutout 16 (even): offsets 0..size
    assert bool(p["cut"].all())
    # with probability p per op: where an op is off its parameters are the identity
    q = diffaugment_params(n, ["color", "translation", "cutout", "xflip"], size=size, p=0.3, generator=g)
    on = (q["brightness"] != 0).double().mean().item()
    assert 0.26 < on < 0.34
    assert 0.26 < q["cut"].double().mean().item() < 0.34
    assert 0.12 < q["flip"].double().mean().item() < 0.18  # a flip is itself a coin: p/2
    x = _x(b=5, s=8)
    torch.testing.assert_close(
        diffaugment(x, ["color", "translation", "cutout", "xflip"], p=0.0), x, atol=1e-12, rtol=0
    )


def test_unknown_op_is_one_line():
    with pytest.raises(ValueError, match="unknown diffaugment op 'rotate'"):
        diffaugment_params(2, ["rotate"], size=8)
    with pytest.raises(ValueError, match="unknown ada op 'cutout'"):
        ada_params(2, ["cutout"], p=1.0, size=8)


def _symmetric_shift(a, t_h, t_w):
    """out[i, j] = a[i − t_h, j − t_w] with 'symmetric' (edge-repeating) reflection outside."""
    s = a.shape[-1]
    pad = np.pad(a, ((0, 0), (s, s), (s, s)), mode="symmetric")
    return pad[:, s - t_h : 2 * s - t_h, s - t_w : 2 * s - t_w]


def test_ada_integer_ops_are_exact_pixel_moves():
    torch.manual_seed(0)
    x = _x(b=64, c=3, s=8, dtype=torch.float32)
    a = x.numpy()
    out = ada_augment(x, ["xflip"], p=1.0).numpy()
    flipped = [np.allclose(o, xi[..., ::-1], atol=1e-5) for o, xi in zip(out, a)]
    same = [np.allclose(o, xi, atol=1e-5) for o, xi in zip(out, a)]
    assert all(f or s for f, s in zip(flipped, same)) and 20 < sum(flipped) < 44  # ADA: a flip with prob p/2
    out = ada_augment(x, ["rotate90"], p=1.0).numpy()
    ks = []
    for o, xi in zip(out, a):
        k = [kk for kk in range(4) if np.allclose(o, np.rot90(xi, kk, axes=(1, 2)), atol=1e-5)]
        assert len(k) == 1
        ks.append(k[0])
    assert len(set(ks)) == 4
    params = ada_params(64, ["xint"], p=1.0, size=8)
    out = ada_apply(x, params).numpy()
    shifts = (-params["theta"][:, :, 2] * 8 / 2).round().long()  # whole pixels (x: width, y: height)
    assert shifts.abs().max() <= 1 and (shifts != 0).any()
    for b in range(64):
        want = _symmetric_shift(a[b], int(shifts[b, 1]), int(shifts[b, 0]))
        np.testing.assert_allclose(out[b], want, atol=1e-5)


def test_ada_geometric_matrices():
    torch.manual_seed(1)
    n = 2000
    th = ada_params(n, ["rotate"], p=1.0, size=32)["theta"].double()
    r = th[:, :, :2]
    eye = torch.eye(2, dtype=th.dtype).expand(n, 2, 2)
    torch.testing.assert_close(r @ r.transpose(1, 2), eye, atol=1e-5, rtol=0)  # rotations
    assert torch.allclose(th[:, :, 2], torch.zeros(n, 2, dtype=th.dtype))
    th = ada_params(n, ["scale"], p=1.0, size=32)["theta"].double()
    log_s = -torch.log2(th[:, 0, 0])
    assert torch.allclose(th[:, 0, 0], th[:, 1, 1]) and abs(log_s.std().item() - 0.2) < 0.02
    th = ada_params(n, ["aniso"], p=1.0, size=32)["theta"].double()
    torch.testing.assert_close(th[:, 0, 0] * th[:, 1, 1], torch.ones(n, dtype=th.dtype), atol=1e-5, rtol=0)
    th = ada_params(n, ["xfrac"], p=1.0, size=32)["theta"].double()
    t_px = th[:, :, 2] * 32 / 2
    assert abs(t_px.std().item() - 0.125 * 32) < 0.3


@pytest.mark.parametrize("op", ["rotate", "scale", "aniso", "xflip", "brightness"])
def test_ada_ops_happen_with_probability_p(op):
    torch.manual_seed(2)
    n, p = 20000, 0.3
    params = ada_params(n, [op], p=p, size=16)
    if op == "brightness":
        rate = (params["brightness"] != 0).double().mean().item()
    else:
        th = params["theta"]
        ident = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        rate = (~torch.isclose(th, ident).all(dim=(1, 2))).double().mean().item()
    want = p / 2 if op == "xflip" else p  # rotate: two coins of 1 − √(1 − p) each make p
    assert abs(rate - want) < 0.015


def test_ada_colour_ops_against_closed_forms():
    x = _x(b=4, c=3, s=5)
    params = {
        "brightness": torch.tensor([0.0, 0.2, -0.1, 0.3]),
        "contrast": torch.tensor([1.0, 2.0, 0.5, 1.5]),
        "saturation": torch.tensor([1.0, 0.0, 3.0, 0.7]),
    }
    a = x.numpy()
    want = np.empty_like(a)
    for b in range(4):
        y = (a[b] + params["brightness"][b].item()) * params["contrast"][b].item()
        m = y.mean(axis=0)
        want[b] = m + (y - m) * params["saturation"][b].item()
    np.testing.assert_allclose(ada_apply(x, params).numpy(), want, atol=1e-6)
    grey = _x(b=4, c=1, s=5)
    assert "saturation" not in ada_params(4, ADA_OPS, p=1.0, size=5, channels=1)
    assert ada_apply(grey, ada_params(4, ADA_OPS, p=1.0, size=5, channels=1)).shape == grey.shape


def test_ada_apply_is_twice_differentiable():
    torch.manual_seed(4)
    x = _x(b=2, c=3, s=8).requires_grad_(True)
    params = {k: v.double() for k, v in ada_params(2, ADA_OPS, p=1.0, size=8).items()}
    assert torch.autograd.gradcheck(lambda y: ada_apply(y, params), (x,))
    assert torch.autograd.gradgradcheck(lambda y: ada_apply(y, params).square(), (x,))


def test_ada_p_update_closed_form():
    b, k, speed = 64, 4, 500_000
    step = b * k / speed
    assert ada_p_update(0.2, 0.9, target=0.6, batch_size=b, interval=k, speed=speed) == pytest.approx(0.2 + step)
    assert ada_p_update(0.2, 0.1, target=0.6, batch_size=b, interval=k, speed=speed) == pytest.approx(0.2 - step)
    assert ada_p_update(0.2, 0.6, target=0.6, batch_size=b, interval=k, speed=speed) == pytest.approx(0.2)
    assert ada_p_update(0.0, -1.0, target=0.6, batch_size=b, interval=k, speed=speed) == 0.0  # never below 0
    assert ada_p_update(1.0, 1.0, target=0.6, batch_size=b, interval=k, speed=speed) == 1.0


def test_ada_p_follows_synthetic_logits():
    """r_t = E[sign D(x_real)] of synthetic logits: an overfitting D (real logits mostly positive)
    raises p by B·k/speed per adjustment; a D that does not lowers it to 0 and keeps it there."""
    from normgan.functional.weighting import overfit_rt

    g = torch.Generator().manual_seed(0)
    b, k, speed, p = 32, 4, 10_000, 0.0
    for _ in range(50):  # overfitting: logits ~ N(2, 1): r_t ≈ 0.95
        rt = overfit_rt(torch.randn(b * k, generator=g) + 2.0)
        p = ada_p_update(p, rt, target=0.6, batch_size=b, interval=k, speed=speed)
    assert p == pytest.approx(50 * b * k / speed)
    for _ in range(200):  # not overfitting: logits ~ N(−0.5, 1): r_t ≈ −0.4
        rt = overfit_rt(torch.randn(b * k, generator=g) - 0.5)
        p = ada_p_update(p, rt, target=0.6, batch_size=b, interval=k, speed=speed)
    assert p == 0.0
    assert math.isclose(float(overfit_rt(torch.tensor([1.0, -2.0, 3.0, 0.5]))), 0.5)
