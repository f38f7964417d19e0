"""Reference checks for normgan.functional.penalties (closed forms, finite differences, numpy)."""

import math

import numpy as np
import pytest
import torch

from normgan.errors import ConfigError
from normgan.functional import penalties as P

DT = torch.float64


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _randn(shape, seed):
    return torch.randn(shape, generator=_gen(seed), dtype=DT)


def linear_D(w, b=0.3, out="flat"):
    def D(x):
        y = x.flatten(1) @ w + b
        if out == "col":
            return y[:, None]
        if out == "tuple":
            return y, x.flatten(1)
        return y

    return D


def mlp_D(W1, w2):
    return lambda x: torch.tanh(x.flatten(1) @ W1) @ w2


# ----------------------------------------------------------------------------- R1 / R2


@pytest.mark.parametrize("out", ["flat", "col", "tuple"])
def test_r1_linear_closed_form(out):
    w = _randn(12, 0)
    x = _randn((3, 3, 2, 2), 1) * 5
    D = linear_D(w, out=out)
    sq = (w**2).sum()
    torch.testing.assert_close(P.r1_penalty(D, x), 0.5 * sq)
    torch.testing.assert_close(P.r1_penalty(D, x, half=False), sq)
    torch.testing.assert_close(P.r2_penalty(D, x + 1), 0.5 * sq)
    torch.testing.assert_close(P.r2_penalty(D, x - 7, half=False), sq)


def test_r1_works_under_no_grad_and_detaches_input():
    w = _randn(4, 0)
    x = _randn((2, 4), 1).requires_grad_(True)
    with torch.no_grad():
        v = P.r1_penalty(linear_D(w), x * 2)
    torch.testing.assert_close(v, 0.5 * (w**2).sum())


def _fd_input_grads(D, x, h=1e-6):
    g = torch.zeros_like(x)
    flat = g.view(x.shape[0], -1)
    for b in range(x.shape[0]):
        xb = x[b : b + 1]
        for i in range(xb.numel()):
            e = torch.zeros_like(xb).view(-1)
            e[i] = h
            e = e.view_as(xb)
            flat[b, i] = (D(xb + e) - D(xb - e)).sum() / (2 * h)
    return g


def test_nonlinear_gradient_norm_matches_finite_differences():
    W1 = _randn((6, 5), 2)
    w2 = _randn(5, 3)
    D = mlp_D(W1, w2)
    x = _randn((4, 6), 4)
    g = _fd_input_grads(D, x)
    norms = g.flatten(1).norm(dim=1)
    torch.testing.assert_close(P.r1_penalty(D, x, half=False), (norms**2).mean(), rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(P.grad_penalty(D, x, center=1.0), ((norms - 1) ** 2).mean(), rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(
        P.grad_penalty(D, x, center=1.0, one_sided=True), (torch.relu(norms - 1) ** 2).mean(), rtol=1e-7, atol=1e-9
    )
    torch.testing.assert_close(P.input_gradient(D, x), g, rtol=1e-7, atol=1e-9)


def test_grad_penalty_lp_norm():
    w = torch.tensor([1.0, -2.0, 2.0], dtype=DT)
    x = _randn((2, 3), 0)
    # ‖w‖_1 = 5, ‖w‖_inf = 2
    torch.testing.assert_close(P.grad_penalty(linear_D(w), x, center=1.0, p=1), torch.tensor(16.0, dtype=DT))
    torch.testing.assert_close(P.grad_penalty(linear_D(w), x, center=0.0, p=math.inf), torch.tensor(4.0, dtype=DT))


# ----------------------------------------------------------------------------- WGAN-GP / DRAGAN


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_wgan_gp_linear_closed_form(scale):
    w = _randn(8, 5)
    w = w / w.norm() * scale
    real, fake = _randn((3, 2, 2, 2), 6), _randn((3, 2, 2, 2), 7)
    D = linear_D(w)
    g = _gen(0)
    torch.testing.assert_close(P.wgan_gp_penalty(D, real, fake, generator=g), torch.tensor((scale - 1) ** 2, dtype=DT))
    torch.testing.assert_close(
        P.wgan_gp_penalty(D, real, fake, one_sided=True), torch.tensor(max(0.0, scale - 1) ** 2, dtype=DT)
    )
    torch.testing.assert_close(P.wgan_gp_penalty(D, real, fake, center=0.0), torch.tensor(scale**2, dtype=DT))


def test_wgan_gp_uses_one_eps_per_sample():
    real, fake = _randn((4, 2, 3), 8), _randn((4, 2, 3), 9)
    D = lambda x: (x**2).flatten(1).sum(1)  # ∇D = 2x: depends on where we interpolate
    got = P.wgan_gp_penalty(D, real, fake, center=0.0, generator=_gen(42))
    eps = torch.rand(4, generator=_gen(42), dtype=DT)
    assert len(set(eps.tolist())) == 4
    x_hat = real + eps[:, None, None] * (fake - real)
    want = (4 * (x_hat**2).flatten(1).sum(1)).mean()
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(P.wgan_gp_interpolates(real, fake, generator=_gen(42)), x_hat)
    # one shared eps would give a different number
    x_shared = real + eps[0] * (fake - real)
    assert not torch.allclose(got, (4 * (x_shared**2).flatten(1).sum(1)).mean())


def test_dragan_reference_notebook_variant():
    real = _randn((3, 2, 2), 10)
    D = lambda x: (x**2).flatten(1).sum(1)
    got = P.dragan_penalty(D, real, generator=_gen(5))
    g = _gen(5)
    noise = torch.rand(real.shape, generator=g, dtype=DT)
    alpha = torch.rand(3, generator=g, dtype=DT)
    std = float(np.std(real.numpy()))  # population std over the whole batch
    x_hat = real + alpha[:, None, None] * (0.5 * std * noise)
    want = ((2 * x_hat.flatten(1).norm(dim=1) - 1) ** 2).mean()
    torch.testing.assert_close(got, want)
    w = _randn(4, 11)
    torch.testing.assert_close(P.dragan_penalty(linear_D(w), real), (w.norm() - 1) ** 2)


def test_gradcheck_wrt_discriminator_params():
    W1 = _randn((4, 3), 12).requires_grad_(True)
    w2 = _randn(3, 13).requires_grad_(True)
    real, fake = _randn((2, 4), 14), _randn((2, 4), 15)
    assert torch.autograd.gradcheck(lambda a, b: P.r1_penalty(mlp_D(a, b), real), (W1, w2))
    assert torch.autograd.gradcheck(
        lambda a, b: P.wgan_gp_penalty(mlp_D(a, b), real, fake, generator=_gen(1)), (W1, w2)
    )
    assert torch.autograd.gradcheck(lambda a, b: P.r2_penalty(mlp_D(a, b), fake, half=False), (W1, w2))


def test_penalty_does_not_reach_inputs():
    w = _randn(4, 0).requires_grad_(True)
    fake = _randn((2, 4), 1).requires_grad_(True)
    P.r2_penalty(linear_D(w), fake * 3).backward()
    assert fake.grad is None
    torch.testing.assert_close(w.grad, w.detach())  # d/dw ½‖w‖² = w


# ----------------------------------------------------------------------------- path length


def test_path_length_linear_generator_explicit_y():
    A = _randn((8, 3), 20)
    G = lambda z: (z @ A.T).reshape(-1, 2, 2, 2)
    z = _randn((5, 3), 21)
    y = _randn((5, 2, 2, 2), 22)
    pen, mean_len = P.path_length_penalty(G, z, target=1.5, y=y)
    lengths = (y.reshape(5, 8) @ A).norm(dim=1)  # ‖Aᵀ y_b‖
    torch.testing.assert_close(pen, ((lengths - 1.5) ** 2).mean())
    torch.testing.assert_close(mean_len, lengths.mean())
    assert not mean_len.requires_grad


def test_path_length_random_y_is_scaled_by_spatial_size():
    A = _randn((8, 3), 20)
    G = lambda z: (z @ A.T).reshape(-1, 2, 2, 2)
    z = _randn((5, 3), 21)
    pen, mean_len = P.path_length_penalty(G, z, target=torch.tensor(0.2, dtype=DT), generator=_gen(3))
    y = torch.randn((5, 2, 2, 2), generator=_gen(3), dtype=DT) / math.sqrt(4)
    lengths = (y.reshape(5, 8) @ A).norm(dim=1)
    torch.testing.assert_close(pen, ((lengths - 0.2) ** 2).mean())
    torch.testing.assert_close(mean_len, lengths.mean())


def test_path_length_differentiable_wrt_generator_params():
    A = _randn((6, 3), 23).requires_grad_(True)
    z, y = _randn((4, 3), 24), _randn((4, 6), 25)
    f = lambda a: P.path_length_penalty(lambda t: torch.tanh(t @ a.T), z, target=0.5, y=y)[0]
    assert torch.autograd.gradcheck(f, (A,))


def test_path_length_target_update():
    assert P.path_length_target_update(0.0, 2.0) == pytest.approx(0.02)
    a = P.path_length_target_update(torch.tensor(1.0), torch.tensor(3.0), decay=0.5)
    torch.testing.assert_close(a, torch.tensor(2.0))
    with pytest.raises(ValueError):
        P.path_length_target_update(0.0, 1.0, decay=2.0)


# ----------------------------------------------------------------------------- statistics


def test_feature_matching_vs_numpy_and_real_is_constant():
    fr = _randn((4, 3, 2, 2), 30).requires_grad_(True)
    ff = _randn((4, 3, 2, 2), 31).requires_grad_(True)
    got = P.feature_matching(fr, ff)
    want = ((fr.detach().numpy().reshape(4, -1).mean(0) - ff.detach().numpy().reshape(4, -1).mean(0)) ** 2).mean()
    torch.testing.assert_close(got, torch.tensor(want, dtype=DT))
    got.backward()
    assert fr.grad is None and ff.grad is not None
    two = P.feature_matching([fr, fr * 2], [ff, ff])
    torch.testing.assert_close(two, got.detach() + P.feature_matching(fr * 2, ff).detach())


def test_colour_stats_vs_numpy():
    real, fake = _randn((3, 3, 4, 4), 32), _randn((3, 3, 4, 4), 33) * 0.5 + 0.2
    got = P.colour_stats(real, fake)
    r, f = real.numpy(), fake.numpy()
    mu = lambda a: a.mean(axis=(0, 2, 3))
    sd = lambda a: np.sqrt(a.var(axis=(0, 2, 3)) + 1e-8)
    want = ((mu(r) - mu(f)) ** 2).sum() + ((sd(r) - sd(f)) ** 2).sum()
    torch.testing.assert_close(got, torch.tensor(want, dtype=DT))
    assert P.colour_stats(real, real).item() == pytest.approx(0.0, abs=1e-14)


def test_gram_and_texture_stats_vs_numpy():
    fr, ff = _randn((2, 3, 2, 5), 34), _randn((2, 3, 2, 5), 35)
    F = ff.numpy().reshape(2, 3, 10)
    gram = np.einsum("bcn,bdn->bcd", F, F) / 30
    torch.testing.assert_close(P.gram_matrix(ff), torch.tensor(gram, dtype=DT))
    R = fr.numpy().reshape(2, 3, 10)
    gram_r = np.einsum("bcn,bdn->bcd", R, R) / 30
    want = ((gram_r.mean(0) - gram.mean(0)) ** 2).mean()
    torch.testing.assert_close(P.texture_stats(fr, ff), torch.tensor(want, dtype=DT))


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_total_variation_vs_numpy(norm):
    img = _randn((2, 3, 4, 5), 36)
    a = img.numpy()
    dh, dw = np.diff(a, axis=2), np.diff(a, axis=3)
    f = np.abs if norm == "l1" else np.square
    want = f(dh).mean() + f(dw).mean()
    torch.testing.assert_close(P.total_variation(img, norm=norm), torch.tensor(want, dtype=DT))


def test_total_variation_bad_norm():
    with pytest.raises(ValueError):
        P.total_variation(torch.zeros(1, 1, 2, 2), norm="l3")


# ----------------------------------------------------------------------------- LeCam


def test_lecam_vs_hand_formula():
    dr = torch.tensor([0.5, -1.0, 2.0], dtype=DT)
    df = torch.tensor([-0.3, 1.2, 0.1, -2.0], dtype=DT)
    ar, af = 0.4, -0.2
    want = np.mean(np.maximum(dr.numpy() - af, 0) ** 2) + np.mean(np.maximum(ar - df.numpy(), 0) ** 2)
    got = P.lecam_penalty(dr, df, anchor_real=torch.tensor(ar, dtype=DT), anchor_fake=af)
    torch.testing.assert_close(got, torch.tensor(want, dtype=DT))
    want2 = np.mean((dr.numpy() - af) ** 2) + np.mean((df.numpy() - ar) ** 2)
    got2 = P.lecam_penalty(dr, df, anchor_real=ar, anchor_fake=af, one_sided=False)
    torch.testing.assert_close(got2, torch.tensor(want2, dtype=DT))


def test_lecam_anchor_update():
    assert P.lecam_anchor_update(1.0, torch.tensor([2.0, 4.0])) == pytest.approx(0.99 + 0.03)
    a = P.lecam_anchor_update(torch.tensor(0.0), torch.tensor([1.0], requires_grad=True), decay=0.9)
    torch.testing.assert_close(a, torch.tensor(0.1))
    assert not a.requires_grad


def test_recon_penalty():
    fake, target = _randn((2, 3, 4, 4), 40), _randn((2, 3, 4, 4), 41)
    torch.testing.assert_close(P.recon_penalty(fake, target), (fake - target).abs().mean())
    torch.testing.assert_close(
        P.recon_penalty(fake, target, norm="huber", delta=0.3),
        torch.nn.functional.huber_loss(fake, target, delta=0.3),
    )
    with pytest.raises(ConfigError):
        P.recon_penalty(fake, target, norm="nope")


# ----------------------------------------------------------------------------- weight norms


def _params():
    return [_randn((4, 3, 3, 3), 50), _randn(4, 51), _randn((5, 6), 52)]


def test_weight_l1_l2_vs_numpy():
    ps = _params()
    arrs = [p.numpy() for p in ps]
    torch.testing.assert_close(P.weight_l1(ps), torch.tensor(sum(np.abs(a).sum() for a in arrs), dtype=DT))
    sq = sum((a**2).sum() for a in arrs)
    torch.testing.assert_close(P.weight_l2(ps), torch.tensor(sq, dtype=DT))
    torch.testing.assert_close(P.weight_l2(iter(ps), half=True), torch.tensor(sq / 2, dtype=DT))


def test_weight_l1_l2_gradients_closed_form_on_views_and_empty():
    """∂Σθ²/∂θ = 2θ and ∂Σ|θ|/∂θ = sign θ for every tensor, a transposed (non-contiguous) view
    included; no parameter gives 0."""
    base = [p.clone().requires_grad_(True) for p in _params()]
    views = [base[0].transpose(0, 1), base[1], base[2].t()]
    P.weight_l2(views).backward()
    for p in base:
        torch.testing.assert_close(p.grad, 2 * p.detach())
        p.grad = None
    P.weight_l1(views).backward()
    for p in base:
        torch.testing.assert_close(p.grad, torch.sign(p.detach()))
    assert float(P.weight_l2([])) == 0.0 and float(P.weight_l1([])) == 0.0


def test_weight_group_l21_vs_numpy_skips_vectors():
    ps = _params()
    want = 0.0
    for a in [ps[0].numpy(), ps[2].numpy()]:
        m = a.reshape(a.shape[0], -1)
        want += np.sqrt(m.shape[1]) * np.sqrt((m**2).sum(1)).sum()
    torch.testing.assert_close(P.weight_group_l21(ps), torch.tensor(want, dtype=DT))
    torch.testing.assert_close(P.weight_group_l21([ps[1]]), torch.tensor(0.0, dtype=DT))


def test_weight_orthogonal():
    q, _ = torch.linalg.qr(_randn((5, 5), 53))
    torch.testing.assert_close(P.weight_orthogonal([q]), torch.tensor(0.0, dtype=DT), atol=1e-12, rtol=0)
    q2, _ = torch.linalg.qr(_randn((6, 3), 54))  # orthonormal rows of a (3, 6) matrix
    torch.testing.assert_close(
        P.weight_orthogonal([q2.T.contiguous()]), torch.tensor(0.0, dtype=DT), atol=1e-12, rtol=0
    )
    ps = _params()
    want = 0.0
    for a in [ps[0].numpy(), ps[2].numpy()]:
        m = a.reshape(a.shape[0], -1)
        g = m @ m.T
        want += (g**2).sum() - (np.diag(g) ** 2).sum()
    got = P.weight_orthogonal(ps)
    assert got.item() > 0
    torch.testing.assert_close(got, torch.tensor(want, dtype=DT))


def test_weight_orthogonal_gradient_is_twice_biggan_update():
    w = _randn((3, 4), 55).requires_grad_(True)
    P.weight_orthogonal([w]).backward()
    wd = w.detach()
    biggan = 2 * ((wd @ wd.T) * (1 - torch.eye(3, dtype=DT))) @ wd  # BigGAN adds β·this
    torch.testing.assert_close(w.grad, 2 * biggan)  # so BigGAN's β equals weight β/2 here


def test_r1_from_logits_equals_r1_penalty():
    """Sharing D's forward with the adversarial loss gives the same R1 and the same D gradient."""
    from normgan.functional.penalties import r1_from_logits

    torch.manual_seed(0)
    D = torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3), torch.nn.Tanh(), torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 1)
    ).double()
    x = torch.randn(4, 1, 6, 6, dtype=torch.float64)
    expected = P.r1_penalty(D, x)
    weights = [p for p in D.parameters() if p.ndim > 1]  # R1 does not depend on the biases
    g_expected = torch.autograd.grad(expected, weights)
    xr = x.clone().requires_grad_(True)
    got = r1_from_logits(D(xr).flatten(), xr)
    g_got = torch.autograd.grad(got, weights)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    for a, b in zip(g_got, g_expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
