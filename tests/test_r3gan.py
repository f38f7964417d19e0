"""The r3gan backbone (normgan/models/r3gan.py): fix-up init against its closed form, gradients to
every parameter, shapes, input gradients (gradcheck, R1's double backward), spectral norm, bf16
autocast, and short real training runs (eager and compiled)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import TINY

from normgan import Trainer, load_config
from normgan.config import DiscriminatorConfig, GeneratorConfig
from normgan.errors import ConfigError
from normgan.functional.penalties import r1_penalty
from normgan.models import build_discriminator, build_generator
from normgan.models.r3gan import R3GANDiscriminator, R3GANGenerator, ResidualBlock, lowpass_kernel
from normgan.regularizers.constraints import SpectralConstraint
from normgan.train.logger import read_metrics


def nets(res=32, ch=3, width=4, **options):
    G = build_generator(
        GeneratorConfig(name="r3gan", z_dim=8, width=width, options=options), resolution=res, channels=ch
    )
    D = build_discriminator(
        DiscriminatorConfig(name="r3gan", width=width, options=options), resolution=res, channels=ch
    )
    return G, D


def blocks_of(net):
    return [m for m in net.modules() if isinstance(m, ResidualBlock)]


def randomize_(net, scale=0.3):
    """Give the zero-initialised last convs (and the activation biases) random values, so that every
    residual branch is active and nonlinear."""
    with torch.no_grad():
        for b in blocks_of(net):
            b.project.weight.normal_(0.0, scale / math.sqrt(b.project.in_channels))
            b.act1.bias.normal_(0.0, 0.1)
            b.act2.bias.normal_(0.0, 0.1)
    return net


# ----------------------------------------------------------------------------- initialisation


@pytest.mark.parametrize("blocks", [1, 2, 3])
def test_fixup_init_matches_the_closed_form(blocks):
    """W₃ = 0 exactly; W₁, W₂ ~ N(0, g²/fan_in), g = √(2/1.04) · L^(-1/4), L = blocks per network."""
    torch.manual_seed(0)
    G, D = nets(res=32, width=128, blocks=blocks)
    for net in (G, D):
        L = len(blocks_of(net))
        assert L == 4 * blocks == net.total_blocks  # 4 stages at 32 px (4, 8, 16, 32)
        for b in blocks_of(net):
            assert torch.count_nonzero(b.project.weight) == 0
            for conv in (b.expand, b.conv):
                fan_in = conv.in_channels // conv.groups * conv.kernel_size[0] * conv.kernel_size[1]
                want = math.sqrt(2.0 / (1.0 + 0.2**2)) / math.sqrt(fan_in) * L**-0.25
                w = conv.weight.detach()
                assert w.numel() >= 4096
                # the sample std of n ≥ 4096 normal draws is within 6% of σ (≈ 5.6 standard errors)
                assert w.std().item() == pytest.approx(want, rel=0.06), (conv, w.numel())
                assert abs(w.mean().item()) < 4 * want / math.sqrt(w.numel())


def test_every_residual_block_is_the_identity_at_init():
    torch.manual_seed(0)
    G, D = nets(res=64, width=8)
    for net in (G, D):
        for b in blocks_of(net):
            x = torch.randn(2, b.expand.in_channels, 8, 8)
            assert torch.equal(b(x), x)


def test_resampling_kernel_is_the_normalized_1_3_3_1_filter():
    k = lowpass_kernel()
    torch.testing.assert_close(k, torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64)
    # upsampling then downsampling a constant keeps it (away from the zero-padded border)
    G, _ = nets(res=32, width=4)
    up = [m for m in G.modules() if type(m).__name__ == "Resample"][0]
    x = torch.ones(1, 2, 8, 8)
    assert torch.allclose(up(x)[..., 2:-2, 2:-2], torch.ones(1, 2, 12, 12))


# ----------------------------------------------------------------------------- gradients


def test_gradients_reach_every_parameter_after_one_step():
    """At init each block's W₃ = 0 blocks the gradient to W₁, W₂ and the activation biases of that
    block (exactly zero), while W₃ itself gets one. After one optimizer step W₃ ≠ 0 and a second
    backward reaches every parameter of G and D with a finite, non-zero gradient."""
    torch.manual_seed(0)
    G, D = nets(res=32, width=8)
    params = [*G.parameters(), *D.parameters()]
    opt = torch.optim.SGD(params, lr=0.1)
    z = torch.randn(4, 8)
    D(G(z)).mean().backward()
    for net in (G, D):
        for b in blocks_of(net):
            assert b.project.weight.grad.abs().sum() > 0
            for p in (b.expand.weight, b.conv.weight, b.act1.bias, b.act2.bias):
                assert torch.count_nonzero(p.grad) == 0
    opt.step()
    opt.zero_grad()
    D(G(z)).mean().backward()
    for prefix, net in (("G", G), ("D", D)):
        dead = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
        zero = [n for n, p in net.named_parameters() if p.grad is not None and p.grad.abs().sum() == 0]
        assert not dead and not zero, f"{prefix}: no gradient for {dead + zero}"


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("res", [28, 32, 64, 128, 256])
@pytest.mark.parametrize("ch", [1, 3])
def test_shapes_and_range(res, ch):
    torch.manual_seed(0)
    G, D = nets(res=res, ch=ch, width=4)
    x = G(torch.randn(2, 8))
    assert x.shape == (2, ch, res, res)
    assert x.min() >= -1 and x.max() <= 1 and x.std() > 0.01
    d = D(x)
    assert d.shape == (2,) and torch.isfinite(d).all()
    logits, feats = D.forward_with_features(x)
    torch.testing.assert_close(logits, d)
    torch.testing.assert_close(feats, D.features(x))


def test_bad_options_are_one_line_config_errors():
    with pytest.raises(ConfigError, match=r"data.resolution: bad value 48"):
        nets(res=48)
    with pytest.raises(ConfigError, match=r"model.generator.options.blocks: bad value 0"):
        nets(blocks=0)
    with pytest.raises(ConfigError, match=r"unknown option 'depth'"):
        nets(depth=3)


def test_group_size_sets_the_groups_of_the_3x3_conv():
    G = R3GANGenerator(resolution=32, channels=3, width=32, group_size=8)
    assert [b.conv.groups for b in blocks_of(G)] == [16, 16, 16, 16, 8, 8, 4, 4]  # hidden 128, 128, 64, 32
    D = R3GANDiscriminator(resolution=32, channels=3, width=32, group_size=1000, expansion=3)
    assert {b.conv.groups for b in blocks_of(D)} == {1}
    assert blocks_of(D)[0].conv.in_channels == 3 * 16


# ----------------------------------------------------------------------------- input gradients


def tiny_d64(res=8, width=2):
    torch.manual_seed(0)
    D = R3GANDiscriminator(resolution=res, channels=1, width=width, expansion=2, group_size=2)
    return randomize_(D).double()


def test_input_gradient_passes_gradcheck_and_gradgradcheck():
    D = tiny_d64()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(D, (x,), eps=1e-6, atol=1e-5)
    assert torch.autograd.gradgradcheck(D, (x,), eps=1e-6, atol=1e-5)


def test_r1_gradient_wrt_a_parameter_matches_finite_differences():
    D = tiny_d64(res=16)
    x = torch.randn(3, 1, 16, 16, dtype=torch.float64)
    penalty = r1_penalty(D, x)
    params = dict(D.named_parameters())
    grads = torch.autograd.grad(penalty, list(params.values()))
    assert all(torch.isfinite(g).all() for g in grads)
    for name, g in zip(params, grads):
        # ∇ₓD is a product of weights and leaky-ReLU slopes; a bias only picks the slopes (piecewise
        # constant), so R1's gradient w.r.t. the biases is exactly 0 and w.r.t. every weight is not
        assert (g.abs().sum() > 0) == (not name.endswith("bias")), name
    for name in ("body.1.conv.weight", "head.basis.weight"):  # a grouped 3×3 conv, the depthwise basis
        p, g = params[name], grads[list(params).index(name)]
        idx = (0,) * p.dim()
        h = 1e-6
        with torch.no_grad():
            p[idx] += h
            up = r1_penalty(D, x).item()
            p[idx] -= 2 * h
            down = r1_penalty(D, x).item()
            p[idx] += h
        assert g[idx].item() == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-9), name


# ----------------------------------------------------------------------------- constraints, precision


def test_spectral_norm_on_d_redraws_the_zero_convs_and_stays_finite():
    torch.manual_seed(0)
    G, D = nets(res=32, width=4)
    SpectralConstraint(net="D").setup(D)
    for b in blocks_of(D):
        assert b.project.parametrizations.weight.original.abs().sum() > 0  # W/σ(W) is undefined at W = 0
    x = G(torch.randn(4, 8)).detach()
    for mode in (True, False):
        D.train(mode)
        out = D(x)
        assert torch.isfinite(out).all()
        r1 = r1_penalty(D, x)
        (out.mean() + r1).backward()
        assert all(torch.isfinite(p.grad).all() for p in D.parameters())
        D.zero_grad()


def test_bf16_autocast_forward_and_backward_are_finite():
    torch.manual_seed(0)
    G, D = nets(res=32, width=4)
    randomize_(D)
    real = torch.rand(4, 3, 32, 32) * 2 - 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fake = G(torch.randn(4, 8))
        loss = torch.nn.functional.softplus(D(fake)).mean() + r1_penalty(D, real)
    assert fake.dtype == torch.bfloat16 and torch.isfinite(loss)
    loss.backward()
    for net in (G, D):
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


# ----------------------------------------------------------------------------- training


R3 = [
    *TINY,
    "model.generator.name=r3gan",
    "model.discriminator.name=r3gan",
    "model.generator.width=4",
    "model.discriminator.width=4",
    "train.steps=3",
    "train.log_every=1",
    "train.checkpoint_every=3",
    "train.sample_every=3",
    "regularizers.r1={term: grad, net: D, at: real, weight: 1.0}",
    "regularizers.r2={term: grad, net: D, at: fake, weight: 1.0}",
]


def test_training_runs_with_r1_r2_and_batchnorm_default_ignored(tmp_path):
    # model.discriminator.norm keeps its schema default (batch): r3gan has no norm option, so the
    # per-sample-gradient check does not refuse R1/R2
    cfg = load_config(overrides=R3)
    assert cfg.model.discriminator.norm == "batch"
    tr = Trainer(cfg, runs_dir=tmp_path, name="r3", progress=False)
    tr.fit()
    rows = [r for r in read_metrics(tr.run_dir / "metrics.jsonl") if "loss/D" in r]
    assert len(rows) == 3
    for r in rows:
        for key in ("loss/D", "loss/G", "reg/r1/raw", "reg/r2/raw"):
            assert math.isfinite(r[key]), key


def test_training_with_spectral_norm_on_d(tmp_path):
    cfg = load_config(overrides=[*R3, "constraints.sn={kind: spectral, net: D}"])
    tr = Trainer(cfg, runs_dir=tmp_path, name="sn", progress=False)
    tr.fit()
    rows = [r for r in read_metrics(tr.run_dir / "metrics.jsonl") if "loss/D" in r]
    assert len(rows) == 3 and all(math.isfinite(r["loss/D"]) and math.isfinite(r["loss/G"]) for r in rows)


@pytest.mark.slow
def test_compiled_training_equals_eager(tmp_path):
    """train.compile: the compiled forwards give the eager run's losses (R1/R2 run on the eager D)."""
    runs = {}
    for mode in ("false", "true"):
        tr = Trainer(
            load_config(overrides=[*R3, f"train.compile={mode}"]), runs_dir=tmp_path, name=f"c{mode}", progress=False
        )
        tr.fit()
        runs[mode] = [r for r in read_metrics(tr.run_dir / "metrics.jsonl") if "loss/D" in r]
    assert len(runs["true"]) == len(runs["false"]) == 3
    for a, b in zip(runs["false"], runs["true"]):
        for key in ("loss/D", "loss/G", "reg/r1/raw", "reg/r2/raw"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
