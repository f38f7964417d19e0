"""Constraints: spectral normalization, max-norm and clipping, their config validation and a short run."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import normgan
from normgan.config import validate
from normgan.errors import ConfigError
from normgan.models.dcgan import DCGANDiscriminator, DCGANGenerator
from normgan.regularizers import CONSTRAINTS, build_constraints
from normgan.regularizers.constraints import validate_constraints


def _nets(seed=0):
    torch.manual_seed(seed)
    return DCGANGenerator(resolution=32, channels=1, z_dim=8, width=4), DCGANDiscriminator(
        resolution=32, channels=1, width=4
    )


def _sigma(w: torch.Tensor, transposed: bool) -> float:
    m = (w.transpose(0, 1) if transposed else w).reshape(w.shape[1] if transposed else w.shape[0], -1)
    return float(torch.linalg.matrix_norm(m.detach(), ord=2))


@pytest.mark.parametrize("net", ["G", "D"])
def test_spectral_norm_wraps_every_layer_and_normalizes_sigma(net):
    G, D = _nets()
    (c,) = build_constraints({"sn": {"kind": "spectral", "net": net, "n_power_iterations": 30}}, G=G, D=D)
    module = G if net == "G" else D
    layers = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert layers and all(parametrize.is_parametrized(m, "weight") for m in layers)
    module.train()
    for m in layers:
        w = m.weight  # a training-mode access runs the power iterations
        assert _sigma(w, isinstance(m, nn.ConvTranspose2d)) == pytest.approx(1.0, rel=2e-2)
    assert any("parametrizations.weight.original" in k for k in module.state_dict())
    c.project(module)  # a no-op


_SN_LAYERS = {
    "conv": (lambda: nn.Conv2d(3, 8, 4), (3, 9, 9)),
    "conv_transpose": (lambda: nn.ConvTranspose2d(6, 5, 4), (6, 5, 5)),
    "linear": (lambda: nn.Linear(7, 3), (7,)),
}


def _sn_pair(kind: str):
    """The same layer under torch's spectral_norm and under normgan's, from the same random start."""
    from torch.nn.utils.parametrizations import spectral_norm

    from normgan.regularizers.constraints import SpectralConstraint

    make, shape = _SN_LAYERS[kind]
    torch.manual_seed(3)
    ref = make().double()
    ours = copy.deepcopy(ref)
    torch.manual_seed(4)
    spectral_norm(ref, dim=1 if kind == "conv_transpose" else 0)
    torch.manual_seed(4)
    SpectralConstraint(net="D").setup(ours)
    return ref, ours, torch.randn(5, *shape, dtype=torch.float64)


@pytest.mark.parametrize("kind", sorted(_SN_LAYERS))
def test_spectral_norm_step_equals_torchs_parametrization(kind):
    """A second implementation: for a weight being trained, normgan's output, new u and v and the
    weight's gradient equal torch.nn.utils.parametrizations.spectral_norm's (same start), over two
    updates; the state dict keys are torch's."""
    ref, ours, x = _sn_pair(kind)
    assert ref.state_dict().keys() == ours.state_dict().keys()
    opt_r, opt_o = (torch.optim.SGD(m.parameters(), lr=0.1) for m in (ref, ours))
    for _ in range(2):
        y_r, y_o = ref(x), ours(x)
        torch.testing.assert_close(y_o, y_r, rtol=1e-10, atol=1e-12)
        (y_r.square().sum() + y_r.sum()).backward()
        (y_o.square().sum() + y_o.sum()).backward()
        g_r, g_o = ref.parametrizations.weight.original.grad, ours.parametrizations.weight.original.grad
        torch.testing.assert_close(g_o, g_r, rtol=1e-9, atol=1e-11)
        assert float(g_r.abs().max()) > 1e-3
        for name in ("_u", "_v"):
            torch.testing.assert_close(
                getattr(ours.parametrizations.weight[0], name),
                getattr(ref.parametrizations.weight[0], name),
                rtol=1e-10,
                atol=1e-12,
            )
        for opt in (opt_r, opt_o):
            opt.step()
            opt.zero_grad()


def test_spectral_divide_gradcheck():
    """autograd.gradcheck: the closed-form backward of W/σ, σ = uᵀ W v with u, v constant."""
    from normgan.functional.spectral import spectral_divide

    torch.manual_seed(0)
    u, v = torch.randn(4, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    u, v = u / u.norm(), v / v.norm()
    w = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    # the numerical Jacobian perturbs w, so σ must follow w: recompute it inside from w's values
    assert torch.autograd.gradcheck(
        lambda w: spectral_divide(w, torch.vdot(u, torch.mv(w.detach(), v)), torch.outer(u, v)), (w,)
    )
    # and the analytic one equals autograd through σ(W) = uᵀ W v
    (spectral_divide(w, torch.vdot(u, torch.mv(w.detach(), v)), torch.outer(u, v)).sin().sum()).backward()
    ours, w.grad = w.grad, None
    (w / torch.vdot(u, torch.mv(w, v))).sin().sum().backward()
    torch.testing.assert_close(ours, w.grad)


@pytest.mark.parametrize("kind", sorted(_SN_LAYERS))
def test_spectral_norm_frozen_or_no_grad_uses_current_u_v_without_iterating(kind):
    """The G step (D's weights frozen) and no_grad evaluations leave u, v as they are and give
    W / (uᵀ W v) with them."""
    _, ours, x = _sn_pair(kind)
    sn = ours.parametrizations.weight[0]
    original = ours.parametrizations.weight.original
    with torch.no_grad():
        original.add_(0.05 * torch.randn_like(original))  # an update: the kept u, v are no longer exact
    u0, v0 = sn._u.clone(), sn._v.clone()
    w_mat = (original.transpose(0, 1) if kind == "conv_transpose" else original).reshape(len(u0), -1)
    expect = original / torch.vdot(u0, w_mat @ v0)
    ours.requires_grad_(False)
    torch.testing.assert_close(ours.weight, expect)
    ours.requires_grad_(True)
    with torch.no_grad():
        torch.testing.assert_close(ours.weight, expect)
    assert torch.equal(sn._u, u0) and torch.equal(sn._v, v0)
    _ = ours.weight  # trained: one power iteration moves them
    assert not torch.equal(sn._u, u0)


def test_max_norm_caps_each_output_unit_and_leaves_small_ones():
    G, D = _nets()
    (c,) = build_constraints({"mn": {"kind": "max_norm", "net": "G", "c": 0.1}}, G=G, D=D)
    with torch.no_grad():
        G.to_image.weight.mul_(100)
        before = G.body[1].weight.clone()
    c.project(G)
    for m in G.modules():
        if isinstance(m, nn.ConvTranspose2d):
            norms = m.weight.transpose(0, 1).flatten(1).norm(dim=1)  # per output unit
            assert float(norms.detach().max()) <= 0.1 * (1 + 1e-5)
    small = before.transpose(0, 1).flatten(1).norm(dim=1) <= 0.1
    torch.testing.assert_close(
        G.body[1].weight.transpose(0, 1).flatten(1)[small], before.transpose(0, 1).flatten(1)[small]
    )


def test_clip_clamps_every_parameter():
    G, D = _nets()
    (c,) = build_constraints({"clip": {"kind": "clip", "net": "D"}}, G=G, D=D)
    c.project(D)
    assert all(float(p.detach().abs().max()) <= 0.01 for p in D.parameters())
    assert any(float(p.detach().abs().max()) == pytest.approx(0.01) for p in D.parameters())


@pytest.mark.parametrize(
    "specs,pattern",
    [
        ({"c": {"kind": "nope"}}, r"^constraints\.c\.kind: unknown constraint 'nope'"),
        ({"c": {"net": "D"}}, r"^constraints\.c: expected a mapping with 'kind'"),
        ({"c": {"kind": "clip", "net": "E"}}, r"^constraints\.c\.net: bad value 'E'"),
        ({"c": {"kind": "clip", "c": -1}}, r"^constraints\.c\.c: bad value -1"),
        ({"c": {"kind": "max_norm", "cc": 3}}, r"^constraints\.c: unknown option 'cc'"),
        ({"c": {"kind": "spectral", "n_power_iterations": 0}}, r"^constraints\.c\.n_power_iterations: bad value 0"),
    ],
)
def test_bad_constraints_are_config_errors_without_networks(specs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        validate_constraints(specs)
    cfg = normgan.load_config()
    cfg.constraints = specs
    with pytest.raises(ConfigError, match=pattern):
        validate(cfg)


def test_constraints_validate_through_overrides():
    with pytest.raises(ConfigError, match=r"^constraints\.sn\.kind: "):
        normgan.load_config(overrides=["+constraints.sn.kind=spectrall"])
    assert set(CONSTRAINTS.names()) == {"clip", "max_norm", "spectral"}


def test_short_run_with_constraints(tmp_path):
    cfg = normgan.load_config(
        overrides=[
            "train.steps=6",
            "data.batch_size=8",
            "model.generator.width=4",
            "model.discriminator.width=4",
            "train.tensorboard=false",
            "train.threads=1",
            "train.log_every=3",
            "train.num_samples=4",
            "loss=hinge",
        ]
    )
    cfg.constraints = {"sn": {"kind": "spectral", "net": "D"}, "mn": {"kind": "max_norm", "net": "G", "c": 0.5}}
    validate(cfg)
    tr = normgan.Trainer(cfg, runs_dir=tmp_path, progress=False)
    run = tr.fit()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor([r["loss/D"], r["loss/G"]])).all() for r in rows)
    for m in tr.G.modules():
        if isinstance(m, nn.ConvTranspose2d):
            assert float(m.weight.detach().transpose(0, 1).flatten(1).norm(dim=1).max()) <= 0.5 * (1 + 1e-5)
    assert set(tr.G_ema.state_dict()) == set(tr.G.state_dict())
