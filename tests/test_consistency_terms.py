"""Consistency regularization (Zhao et al. 2021): the ``bcr`` and ``zcr`` terms and their formulas.

Every expected value is computed here independently, in numpy, from the formulas of
docs/regularizers.md. ``bcr``'s augmentation T comes from ``normgan.functional.augment``; these
tests put a deterministic T (a flip of the width) in its place (monkeypatching the name the term
calls), and the training runs use the real DiffAugment.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY_PAIRED, assert_same_weights
from torch import nn

import normgan
import normgan.regularizers.terms as terms_module
from normgan.config import validate
from normgan.errors import ConfigError
from normgan.functional.penalties import consistency_penalty, zcr_generator_penalty
from normgan.regularizers import TERMS, TermContext, build_regularizers

DT = torch.float64


def _randn(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=DT)


def _np(t):
    return t.detach().numpy()


@pytest.fixture
def flip_T(monkeypatch):
    """T = flip along the width, deterministic; records each call's ops."""
    calls = []

    def diffaugment(x, ops, *, generator=None):
        calls.append(list(ops))
        return x.flip(-1)

    monkeypatch.setattr(terms_module, "diffaugment", diffaugment)
    return calls


# ----------------------------------------------------------------------------- the formulas


@pytest.mark.parametrize("shape", [(6,), (6, 1), (6, 2, 3)])
def test_consistency_penalty_is_the_mean_squared_difference(shape):
    a, b = _randn(shape, 0), _randn(shape, 1)
    expected = np.mean((_np(a).reshape(6, -1) - _np(b).reshape(6, -1)) ** 2)
    assert float(consistency_penalty(a, b)) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert float(consistency_penalty((a, "features"), [b])) == pytest.approx(expected, rel=1e-12)
    assert float(consistency_penalty(a, a)) == 0.0


def test_consistency_penalty_views_logits_per_sample_and_refuses_other_shapes():
    a = _randn(5, 0)
    expected = np.mean((_np(a) - _np(a) * 2) ** 2)
    assert float(consistency_penalty(a, (2 * a)[:, None])) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="logit shapes differ"):
        consistency_penalty(a, _randn((5, 2), 1))


def test_consistency_penalty_gradient_reaches_both_sides():
    a, b = _randn(4, 0).requires_grad_(True), _randn(4, 1).requires_grad_(True)
    consistency_penalty(a, b).backward()
    d = _np(a) - _np(b)
    np.testing.assert_allclose(_np(a.grad), 2 * d / 4, rtol=1e-12)
    np.testing.assert_allclose(_np(b.grad), -2 * d / 4, rtol=1e-12)


def test_zcr_generator_penalty_is_minus_the_elementwise_mean_squared_difference():
    a, b = _randn((3, 2, 4, 4), 0).requires_grad_(True), _randn((3, 2, 4, 4), 1)
    value = zcr_generator_penalty(a, b)
    d = _np(a) - _np(b)
    assert value.item() == pytest.approx(-np.mean(d**2), rel=1e-12)
    assert value.item() < 0 and float(zcr_generator_penalty(b, b)) == 0.0
    value.backward()
    np.testing.assert_allclose(_np(a.grad), -2 * d / d.size, rtol=1e-12)
    with pytest.raises(ValueError, match="shapes differ"):
        zcr_generator_penalty(a, b[:2])


# ----------------------------------------------------------------------------- bcr


def _linear_D(w):
    return lambda x: x.flatten(1) @ w


def _bcr(**options):
    (reg,) = build_regularizers({"cr": {"term": "bcr", "weight": 10.0, **options}})
    return reg.term


def _bcr_numpy(w, real, fake, lam_r, lam_f, *, d_real=None):
    """λ_r·mean_b (D(x) − D(T x))² + λ_f·mean_b (D(x̃) − D(T x̃))², D(x) = vec(x)·w, T = flip of the width."""
    w, x, xf = _np(w), _np(real), _np(fake)
    D = lambda v: v.reshape(v.shape[0], -1) @ w
    dr = D(x) if d_real is None else d_real
    value = lam_r * np.mean((dr - D(x[..., ::-1])) ** 2) + lam_f * np.mean((D(xf) - D(xf[..., ::-1])) ** 2)
    # d/dw mean_b (u_b·w)² = mean_b 2 (u_b·w) u_b with u_b = vec(x_b − T x_b)
    grad = np.zeros_like(w)
    for lam, v in ((lam_r, x), (lam_f, xf)):
        u = (v - v[..., ::-1]).reshape(v.shape[0], -1)
        grad += lam * np.mean(2 * (u @ w)[:, None] * u, axis=0)
    return value, grad


def test_bcr_is_the_weighted_sum_of_both_consistencies_with_its_gradient(flip_T):
    w = _randn(2 * 3 * 4, 0).requires_grad_(True)
    real, fake = _randn((5, 2, 3, 4), 1), _randn((5, 2, 3, 4), 2).requires_grad_(True)
    term = _bcr(real_weight=0.7, fake_weight=1.9)
    raw = term(TermContext(G=None, D=None, critic=_linear_D(w), real=real, fake=fake))
    value, grad = _bcr_numpy(w, real, fake, 0.7, 1.9)
    assert raw.item() == pytest.approx(value, rel=1e-10)
    raw.backward()
    np.testing.assert_allclose(_np(w.grad), grad, rtol=1e-10, atol=1e-12)
    assert fake.grad is None  # G's images are detached: the term trains D only
    assert flip_T == [["xflip", "translation"], ["xflip", "translation"]]  # the defaults, once per side


def test_bcr_gradient_passes_gradcheck():
    # T a fixed linear map (flip), D linear: bcr is a smooth function of w in float64
    def T(x, ops, *, generator=None):
        return x.flip(-1)

    real, fake = _randn((3, 1, 2, 3), 1), _randn((3, 1, 2, 3), 2)

    def f(w):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(terms_module, "diffaugment", T)
            term = _bcr(real_weight=2.0, fake_weight=0.5)
            return term(
                TermContext(G=None, D=None, critic=lambda x: torch.tanh(x.flatten(1) @ w), real=real, fake=fake)
            )

    assert torch.autograd.gradcheck(f, (_randn(6, 0).requires_grad_(True),))


def test_bcr_reuses_the_phase_logits(flip_T):
    """A d_real unequal to D(real) is the one used: the term makes no forward of its own on x."""
    w = _randn(12, 0)
    real, fake = _randn((4, 1, 3, 4), 1), _randn((4, 1, 3, 4), 2)
    D = _linear_D(w)
    d_real, d_fake = D(real) + 1.5, D(fake) - 0.25
    term = _bcr(real_weight=1.0, fake_weight=0.0)
    raw = term(TermContext(G=None, D=None, critic=D, real=real, fake=fake, d_real=d_real, d_fake=d_fake))
    value, _ = _bcr_numpy(w, real, fake, 1.0, 0.0, d_real=_np(d_real))
    assert raw.item() == pytest.approx(value, rel=1e-10)
    assert raw.item() != pytest.approx(_bcr_numpy(w, real, fake, 1.0, 0.0)[0], rel=1e-3)
    # the fake side reuses d_fake the same way
    term = _bcr(real_weight=0.0, fake_weight=1.0)
    raw = term(TermContext(G=None, D=None, critic=D, real=real, fake=fake, d_real=d_real, d_fake=d_fake))
    expected = np.mean((_np(d_fake) - _np(fake)[..., ::-1].reshape(4, -1) @ _np(w)) ** 2)
    assert raw.item() == pytest.approx(expected, rel=1e-10)


def test_bcr_one_side_off(flip_T):
    w = _randn(12, 0)
    real, fake = _randn((4, 1, 3, 4), 1), _randn((4, 1, 3, 4), 2)
    D = _linear_D(w)
    raw = _bcr(fake_weight=0.0)(TermContext(G=None, D=None, critic=D, real=real))  # no fake needed
    assert raw.item() == pytest.approx(_bcr_numpy(w, real, fake, 1.0, 0.0)[0], rel=1e-10)
    assert len(flip_T) == 1
    raw = _bcr(real_weight=0.0, ops=["color"])(TermContext(G=None, D=None, critic=D, fake=fake))
    assert raw.item() == pytest.approx(_bcr_numpy(w, real, fake, 0.0, 1.0)[0], rel=1e-10)
    assert flip_T[1:] == [["color"]]


def test_bcr_gives_d_a_gradient_through_both_logits(flip_T):
    """StudioGAN detaches neither D(x) nor D(T(x)): the gradient w.r.t. w has both parts."""
    w = _randn(12, 0).requires_grad_(True)
    real = _randn((4, 1, 3, 4), 1)
    D = _linear_D(w)
    _bcr(fake_weight=0.0)(TermContext(G=None, D=None, critic=D, real=real, d_real=D(real))).backward()
    _, grad = _bcr_numpy(w, real, real, 1.0, 0.0)
    np.testing.assert_allclose(_np(w.grad), grad, rtol=1e-10)


# ----------------------------------------------------------------------------- zcr


def _zcr(net, sigma=0.2):
    (reg,) = build_regularizers({"z": {"term": "zcr", "net": net, "sigma": sigma}})
    return reg.term


def _nets(seed=0):
    torch.manual_seed(seed)
    G = nn.Linear(3, 8).double()
    D = nn.Linear(8, 1).double()
    return G, D


def _dz(seed, shape, sigma):
    torch.manual_seed(seed)
    return sigma * _np(torch.randn(shape, dtype=DT))  # the draw the term makes: randn(z.shape), first


@pytest.mark.parametrize("with_logits", [True, False], ids=["main-phase", "lazy-phase"])
def test_zcr_on_d_is_the_logit_consistency_of_nearby_latents(with_logits):
    G, D = _nets()
    z = _randn((6, 3), 1)
    fake = G(z).detach()
    ctx = TermContext(G=G, D=D, z=z, fake=fake, d_fake=D(fake) if with_logits else None)
    torch.manual_seed(7)
    raw = _zcr("D")(ctx)
    A, b, wd, bd = (_np(p) for p in (G.weight, G.bias, D.weight, D.bias))
    dz = _dz(7, (6, 3), 0.2)
    Dn = lambda x: x @ wd.T + bd
    expected = np.mean((Dn(_np(z) @ A.T + b) - Dn((_np(z) + dz) @ A.T + b)) ** 2)
    assert raw.item() == pytest.approx(expected, rel=1e-10)
    assert raw.item() > 0
    raw.backward()
    assert all(p.grad is None for p in G.parameters())  # G's outputs are detached
    # d/dwd mean_b ((f_b − f'_b)·wd)² = mean_b 2 ((f_b − f'_b)·wd)(f_b − f'_b), f − f' = −Δz Aᵀ
    u = -dz @ A.T
    np.testing.assert_allclose(_np(D.weight.grad)[0], np.mean(2 * (u @ wd[0])[:, None] * u, axis=0), rtol=1e-10)
    assert float(D.bias.grad) == pytest.approx(0.0, abs=1e-12)


def test_zcr_on_d_uses_the_phase_d_fake():
    G, D = _nets()
    z = _randn((6, 3), 1)
    fake = G(z).detach()
    d_fake = D(fake) + 2.0
    torch.manual_seed(7)
    raw = _zcr("D")(TermContext(G=G, D=D, z=z, fake=fake, d_fake=d_fake))
    A, b, wd, bd = (_np(p) for p in (G.weight, G.bias, D.weight, D.bias))
    fake_eps = (_np(z) + _dz(7, (6, 3), 0.2)) @ A.T + b
    expected = np.mean((_np(d_fake) - (fake_eps @ wd.T + bd)) ** 2)
    assert raw.item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("with_fake", [True, False], ids=["main-phase", "lazy-phase"])
def test_zcr_on_g_is_minus_the_image_difference_with_a_gradient_to_g(with_fake):
    G, _ = _nets()
    z = _randn((6, 3), 1)
    ctx = TermContext(G=G, D=None, z=z, fake=G(z) if with_fake else None)
    torch.manual_seed(11)
    raw = _zcr("G", sigma=0.05)(ctx)
    A, b = _np(G.weight), _np(G.bias)
    dz = _dz(11, (6, 3), 0.05)
    diff = (_np(z) @ A.T + b) - ((_np(z) + dz) @ A.T + b)  # = −Δz Aᵀ
    assert raw.item() == pytest.approx(-np.mean(diff**2), rel=1e-9)
    assert raw.item() <= 0
    raw.backward()
    # ∂/∂A_ij of −mean(diff²), diff_bi = −Σ_j Δz_bj A_ij: (2/N) Σ_b diff_bi Δz_bj
    np.testing.assert_allclose(_np(G.weight.grad), 2 * diff.T @ dz / diff.size, rtol=1e-8, atol=1e-14)
    assert float(G.bias.grad.abs().max()) < 1e-12  # the bias cancels in the difference


def test_zcr_draws_a_new_dz_each_call():
    G, D = _nets()
    z = _randn((4, 3), 1)
    term = _zcr("G")
    torch.manual_seed(0)
    a, b = term(TermContext(G=G, D=D, z=z)).item(), term(TermContext(G=G, D=D, z=z)).item()
    assert a != b


# ----------------------------------------------------------------------------- config


def test_terms_build_from_the_config_with_their_defaults(flip_T):
    regs = build_regularizers(
        {
            "b": {"term": "bcr", "weight": 10.0},
            "zd": {"term": "zcr", "weight": 20.0},
            "zg": {"term": "zcr", "net": "G", "weight": 0.5},
            "b2": {"term": "bcr", "real_weight": 0, "ops": ["color", "cutout"]},
        }
    )
    b, zd, zg, b2 = (r.term for r in regs)
    assert (b.net, b.real_weight, b.fake_weight, b.ops) == ("D", 1.0, 1.0, ["xflip", "translation"])
    assert (zd.net, zd.sigma, zg.net, zg.sigma) == ("D", 0.05, "G", 0.05)
    assert (b2.real_weight, b2.ops) == (0.0, ["color", "cutout"])
    assert TERMS.get("bcr").nets == ("D",) and TERMS.get("zcr").nets == ("D", "G")
    for name in ("bcr", "zcr"):  # no input gradients: a BatchNorm D is allowed
        assert not TERMS.get(name).per_sample_gradients


BAD = [
    ({"term": "bcr", "net": "G"}, r"^regularizers\.x\.net: term 'bcr' cannot regularize G"),
    ({"term": "bcr", "real_weight": -1}, r"^regularizers\.x\.real_weight: bad value -1"),
    ({"term": "bcr", "fake_weight": "a"}, r"^regularizers\.x\.fake_weight: bad value 'a'"),
    ({"term": "bcr", "fake_weight": float("nan")}, r"^regularizers\.x\.fake_weight: bad value nan"),
    ({"term": "bcr", "real_weight": 0, "fake_weight": 0.0}, r"^regularizers\.x\.real_weight: bad value 0 with"),
    ({"term": "bcr", "ops": []}, r"^regularizers\.x\.ops: bad value \[\]"),
    ({"term": "bcr", "ops": "xflip"}, r"^regularizers\.x\.ops: bad value 'xflip'"),
    ({"term": "bcr", "ops": ["xflip", "rotate"]}, r"^regularizers\.x\.ops: bad value 'rotate'; choose one of: color"),
    ({"term": "bcr", "sigma": 0.1}, r"^regularizers\.x: unknown option 'sigma' for regularization term 'bcr'"),
    ({"term": "zcr", "sigma": 0}, r"^regularizers\.x\.sigma: bad value 0; must be a number > 0"),
    ({"term": "zcr", "sigma": -0.1}, r"^regularizers\.x\.sigma: bad value -0\.1"),
    ({"term": "zcr", "sigma": True}, r"^regularizers\.x\.sigma: bad value True"),
    ({"term": "zcr", "ops": ["xflip"]}, r"^regularizers\.x: unknown option 'ops' for regularization term 'zcr'"),
]


@pytest.mark.parametrize("spec,pattern", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_options_are_one_line_errors_naming_the_option(flip_T, spec, pattern):
    with pytest.raises(ConfigError, match=pattern) as info:
        build_regularizers({"x": spec})
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- training

TINY = [
    "data.batch_size=8",
    "model.generator.width=8",
    "model.discriminator.width=8",
    "train.tensorboard=false",
    "train.threads=1",
    "train.log_every=2",
    "train.sample_every=100",
    "train.checkpoint_every=100",
    "train.num_samples=4",
]

TERMS_RUN = {
    "bcr": {"term": "bcr", "net": "D", "weight": 10.0},
    "zcr_d": {"term": "zcr", "net": "D", "weight": 20.0},
    "zcr_g": {"term": "zcr", "net": "G", "weight": 0.5},
}


def _cfg(steps, every, extra=()):
    cfg = normgan.load_config(overrides=TINY + [f"train.steps={steps}", *extra])
    cfg.regularizers = {k: {**v, "every": every} for k, v in TERMS_RUN.items()}
    validate(cfg)
    return cfg


@pytest.mark.parametrize("every", [1, 2], ids=["main-phases", "lazy-phases"])
def test_training_with_both_terms_logs_finite_raw_values(tmp_path, monkeypatch, every):
    run = normgan.Trainer(_cfg(4, every), runs_dir=tmp_path, progress=False).fit()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]
    for row in rows:
        assert np.isfinite([row["loss/D"], row["loss/G"]]).all()
        raw = {name: row[f"reg/{name}/raw"] for name in TERMS_RUN}
        assert np.isfinite(list(raw.values())).all(), raw
        assert raw["bcr"] >= 0 and raw["zcr_d"] >= 0 and raw["zcr_g"] <= 0, raw
        assert row["reg/zcr_g/loss"] == pytest.approx(0.5 * raw["zcr_g"], rel=1e-5, abs=1e-12)


def test_paired_training_with_both_terms(tmp_path, monkeypatch):
    """A paired run: D is conditional (T and G(x + Δx) enter as the image next to the condition)."""
    paired = [
        *TINY_PAIRED,
        "train.steps=2",
        "train.log_every=2",
        "train.tensorboard=false",
        "train.sample_every=100",
        "train.checkpoint_every=100",
    ]
    cfg = normgan.load_config(overrides=paired)
    cfg.regularizers = {**TERMS_RUN, "l1": {"term": "recon", "net": "G", "weight": 100.0}}
    validate(cfg)
    run = normgan.Trainer(cfg, runs_dir=tmp_path, progress=False).fit()
    (row,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    raw = {name: row[f"reg/{name}/raw"] for name in TERMS_RUN}
    assert np.isfinite(list(raw.values())).all() and raw["zcr_g"] <= 0 and raw["bcr"] >= 0, raw


def test_resume_with_both_terms_is_exact(tmp_path, monkeypatch):
    """Δz and T are drawn from torch's default generator, which the checkpoint restores."""
    full = normgan.Trainer(_cfg(4, 1), runs_dir=tmp_path, name="full", progress=False)
    full.fit()
    normgan.Trainer(_cfg(2, 1), runs_dir=tmp_path, name="split", progress=False).fit()
    resumed = normgan.Trainer.resume(tmp_path / "split", overrides=["train.steps=4"], progress=False)
    resumed.fit()
    assert_same_weights((full.G, resumed.G), (full.D, resumed.D))
