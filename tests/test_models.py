"""Every registered model × loss: one D step and one G step (shapes, finite values, gradients)."""

import pytest
import torch

from normgan.config import DiscriminatorConfig, GeneratorConfig
from normgan.errors import ConfigError
from normgan.functional.losses import LOSSES
from normgan.models import DISCRIMINATORS, GENERATORS, NORM_LAYERS, build_discriminator, build_generator
from normgan.models.registry import takes_image_input


def nets(gname, dname, res, ch, norm="batch", dropout=0.0):
    in_ch = ch if takes_image_input(gname) else None  # image-to-image generators take an image of ch channels
    G = build_generator(
        GeneratorConfig(name=gname, z_dim=8, width=4, norm=norm, dropout=dropout),
        resolution=res,
        channels=ch,
        in_channels=in_ch,
    )
    D = build_discriminator(DiscriminatorConfig(name=dname, width=4, norm="none"), resolution=res, channels=ch)
    return G, D


def all_params_have_grad(module):
    missing = [
        n
        for n, p in module.named_parameters()
        if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())
    ]
    assert not missing, f"parameters without a finite gradient: {missing}"
    assert any(p.grad.abs().sum() > 0 for p in module.parameters())


# every model pair at every size with two losses, and every loss on one pair: the losses are pure
# functions of the logits (tests/test_losses.py), so the full product would test nothing more
LOSS_CASES = [
    (loss, "dcgan", "dcgan", 32, 3) for loss in LOSSES.names() if loss not in ("none", "bce")
]  # "none" gives zero gradients by design
MODEL_CASES = [
    (loss, g, d, res, ch)
    for loss in ("bce", "rpgan")
    for g in GENERATORS.names()
    for d in DISCRIMINATORS.names()
    for res, ch in [(28, 1), (32, 3), (64, 1), (128, 3)]
]


@pytest.mark.parametrize("loss_name,gname,dname,res,ch", MODEL_CASES + LOSS_CASES)
def test_one_d_and_one_g_step(gname, dname, loss_name, res, ch):
    torch.manual_seed(0)
    G, D = nets(gname, dname, res, ch)
    loss = LOSSES.get(loss_name)
    real = torch.rand(2, ch, res, res) * 2 - 1
    z = torch.rand(2, ch, res, res) * 2 - 1 if takes_image_input(gname) else torch.randn(2, 8)
    fake = G(z)
    assert fake.shape == (2, ch, res, res)
    assert fake.min() >= -1 and fake.max() <= 1
    d_real, d_fake = D(real), D(fake.detach())
    assert d_real.shape[0] == 2 and d_real.dim() in (1, 2)  # one logit per image, or a patch map (B, P)
    ld = loss.d(d_real, d_fake)
    assert torch.isfinite(ld)
    ld.backward()
    all_params_have_grad(D)
    G.zero_grad()
    lg = loss.g(D(fake), D(real)) if loss.g_real else loss.g(D(fake))
    assert torch.isfinite(lg)
    lg.backward()
    all_params_have_grad(G)


@pytest.mark.parametrize("norm", NORM_LAYERS.names())
@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_generator_norms_and_dropout(norm, dropout):
    torch.manual_seed(0)
    G, _ = nets("dcgan", "dcgan", 32, 1, norm=norm, dropout=dropout)
    z = torch.randn(3, 8)
    out = G(z)
    out.mean().backward()
    all_params_have_grad(G)
    G.eval()
    with torch.no_grad():
        torch.testing.assert_close(G(z), G(z))  # eval mode is deterministic (dropout off)
    if dropout:
        G.train()
        with torch.no_grad():
            assert not torch.allclose(G(z), G(z))  # dropout is active in training


def test_every_loss_and_model_is_exercised():
    cases = MODEL_CASES + LOSS_CASES
    assert {c[0] for c in cases} == set(LOSSES.names()) - {"none"}
    assert {c[1] for c in cases} == set(GENERATORS.names()) and {c[2] for c in cases} == set(DISCRIMINATORS.names())


def test_unsupported_resolution_is_a_config_error():
    with pytest.raises(ConfigError, match="resolution"):
        build_generator(GeneratorConfig(), resolution=48, channels=1)


def test_discriminator_features_match_forward():
    torch.manual_seed(0)
    _, D = nets("dcgan", "dcgan", 32, 1)
    x = torch.randn(2, 1, 32, 32)
    logits, feats = D.forward_with_features(x)
    torch.testing.assert_close(logits, D(x))
    torch.testing.assert_close(feats, D.features(x))
