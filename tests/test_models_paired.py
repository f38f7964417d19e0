"""Image-to-image architectures (normgan.models.pix2pix): unet / resnet generators, patchgan discriminator,
KeepDropout. Shapes, ranges, gradients, receptive field by autograd, skip paths, test-time dropout,
spectral norm."""

import inspect

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normgan.errors import ConfigError
from normgan.models import DISCRIMINATORS, GENERATORS
from normgan.models.layers import KeepDropout
from normgan.regularizers import build_constraints
from normgan.regularizers.terms import first_layer_features

RESOLUTIONS = [64, 128, 256]


def unet(**kw):
    kw = {"resolution": 64, "channels": 3, "in_channels": 3, "width": 4, **kw}
    return GENERATORS.get("unet")(**kw)


def resnet(**kw):
    kw = {"resolution": 64, "channels": 3, "in_channels": 3, "width": 4, "blocks": 2, **kw}
    return GENERATORS.get("resnet")(**kw)


def patchgan(**kw):
    kw = {"resolution": 64, "channels": 6, "width": 4, **kw}
    return DISCRIMINATORS.get("patchgan")(**kw)


def images(b, c, r, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, r, r, generator=g) * 2 - 1


def backward_random_projection(out, seed=1):
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    (out * w).sum().backward()


def assert_every_param_has_gradient(module):
    bad = [
        n
        for n, p in module.named_parameters()
        if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0
    ]
    assert not bad, f"parameters without a non-zero finite gradient: {bad}"
    assert len(list(module.parameters())) > 0


def conv_out(size, kernel, stride, pad):
    return (size + 2 * pad - kernel) // stride + 1


# ----------------------------------------------------------------------------- registry / signatures


@pytest.mark.parametrize(
    "registry,name,params",
    [
        (
            GENERATORS,
            "unet",
            ["resolution", "channels", "in_channels", "width", "norm", "dropout", "test_dropout", "depth"],
        ),
        (
            GENERATORS,
            "resnet",
            ["resolution", "channels", "in_channels", "width", "norm", "dropout", "test_dropout", "blocks"],
        ),
        (DISCRIMINATORS, "patchgan", ["resolution", "channels", "width", "norm", "dropout", "layers"]),
    ],
)
def test_factories_take_exactly_these_keyword_arguments(registry, name, params):
    sig = inspect.signature(registry.get(name))
    assert list(sig.parameters) == params
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in sig.parameters.values())
    with pytest.raises(TypeError):
        registry.get(name)(resolution=64, channels=3, in_channels=3, z_dim=8, layers=3, depth=3, blocks=2)


def test_defaults_follow_pix2pix_and_cyclegan():
    u = inspect.signature(GENERATORS.get("unet")).parameters
    r = inspect.signature(GENERATORS.get("resnet")).parameters
    d = inspect.signature(DISCRIMINATORS.get("patchgan")).parameters
    assert (u["width"].default, u["norm"].default, u["depth"].default, u["test_dropout"].default) == (
        64,
        "batch",
        None,
        False,
    )
    assert (r["width"].default, r["norm"].default, r["blocks"].default) == (64, "instance", 9)
    assert (d["width"].default, d["norm"].default, d["layers"].default) == (64, "batch", 3)


# ----------------------------------------------------------------------------- generators


@pytest.mark.parametrize("res", RESOLUTIONS)
@pytest.mark.parametrize("in_ch,ch", [(1, 1), (3, 3), (1, 3)])
@pytest.mark.parametrize("make,norm", [(unet, "batch"), (resnet, "instance"), (unet, "instance"), (resnet, "batch")])
def test_generator_shapes_range_and_gradients(make, norm, res, in_ch, ch):
    torch.manual_seed(0)
    G = make(resolution=res, in_channels=in_ch, channels=ch, norm=norm, dropout=0.5)
    assert (G.in_channels, G.channels, G.resolution, G.z_dim) == (in_ch, ch, res, None)
    x = images(2, in_ch, res)
    out = G(x)
    assert out.shape == (2, ch, res, res)
    assert out.min() >= -1 and out.max() <= 1
    assert out.std() > 0
    backward_random_projection(out)
    assert_every_param_has_gradient(G)


@pytest.mark.parametrize("make", [unet, resnet])
@pytest.mark.parametrize("norm", ["layer", "none"])
def test_generator_other_norms(make, norm):
    torch.manual_seed(0)
    G = make(norm=norm, in_channels=1, channels=1)
    out = G(images(2, 1, 64))
    assert out.shape == (2, 1, 64, 64)
    backward_random_projection(out)
    assert_every_param_has_gradient(G)


@pytest.mark.parametrize("make", [unet, resnet])
def test_generator_last_layer_is_the_output_conv(make):
    G = make(in_channels=1, channels=2)
    w = G.last_layer
    assert any(w is p for p in G.parameters())
    x = images(1, 1, 64)
    G(x).sum().backward()
    # the output conv: the only weight whose 2-channel axis is the output one
    out_axis = 1 if make is unet else 0  # ConvTranspose weights are (in, out, k, k)
    assert w.shape[out_axis] == 2
    assert w.grad is not None and w.grad.abs().sum() > 0
    last_conv = [m for m in G.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    if make is resnet:
        assert w is last_conv[-1].weight
    else:  # the outermost block's up conv (modules() lists it after all nested blocks)
        assert w is G.model.up[1].weight and w.shape == (2 * 4, 2, 4, 4)


def test_unet_norm_and_bias_follow_pix2pix():
    batch = unet(norm="batch")
    inst = unet(norm="instance")
    # batch norm: no conv bias except the outermost up conv; instance norm: every conv has a bias
    biased = [m for m in batch.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.bias is not None]
    assert biased == [batch.model.up[1]]
    assert all(m.bias is not None for m in inst.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))
    # norm layers: every level but the outermost has one in the decoder; encoders but outermost/innermost
    depth = batch.depth
    assert sum(isinstance(m, nn.BatchNorm2d) for m in batch.modules()) == (depth - 1) + (depth - 2)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in batch.model.down)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in batch.innermost.down)


def test_unet_channels_double_and_cap_at_eight_widths():
    G = unet(resolution=256, width=4)
    downs = [m for m in G.modules() if isinstance(m, nn.Conv2d)]  # modules() goes outermost → innermost
    assert [m.out_channels for m in downs] == [4, 8, 16, 32, 32, 32, 32, 32]
    assert [m.stride for m in downs] == [(2, 2)] * 8


def test_unet_default_depth_reaches_a_one_pixel_bottleneck():
    G = unet(resolution=256)
    assert G.depth == 8
    sizes = []
    G.innermost.down[-1].register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[-2:])))
    assert isinstance(G.innermost.down[-1], nn.Conv2d)
    G.eval()
    G(images(1, 3, 256))
    assert sizes == [(1, 1)]
    sizes.clear()
    G5 = unet(resolution=256, depth=5)
    G5.innermost.down[-1].register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[-2:])))
    G5(images(2, 3, 256))
    assert sizes == [(8, 8)]


@pytest.mark.parametrize("res,depth", [(256, 0), (256, 9), (64, 7), (192, 7), (256, 2.0), (256, True), (256, "4")])
def test_unet_bad_depth_is_a_config_error(res, depth):
    with pytest.raises(ConfigError, match=r"^depth: bad value"):
        unet(resolution=res, depth=depth)


def test_unet_accepts_every_valid_depth():
    for depth in range(1, 7):
        G = unet(resolution=64, depth=depth, dropout=0.5)
        assert G.depth == depth
        assert G(images(2, 3, 64)).shape == (2, 3, 64, 64)


@pytest.mark.parametrize("blocks", [0, -1, 1.5, True, "9"])
def test_resnet_bad_blocks_is_a_config_error(blocks):
    with pytest.raises(ConfigError, match=r"^blocks: bad value"):
        resnet(blocks=blocks)


@pytest.mark.parametrize("res", [30, 4, 66])
def test_resnet_needs_a_multiple_of_four(res):
    with pytest.raises(ConfigError, match="resolution"):
        resnet(resolution=res)


def test_resnet_structure_follows_cyclegan():
    G = resnet(resolution=64, width=4, blocks=3)
    convs = [m for m in G.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.kernel_size[0], m.stride[0], m.out_channels) for m in convs] == [(7, 1, 4), (3, 2, 8), (3, 2, 16)] + [
        (3, 1, 16)
    ] * 6 + [(7, 1, 3)]
    ups = [m for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(m.kernel_size[0], m.stride[0], m.padding[0], m.output_padding[0], m.out_channels) for m in ups] == [
        (3, 2, 1, 1, 8),
        (3, 2, 1, 1, 4),
    ]
    assert sum(isinstance(m, nn.ReflectionPad2d) for m in G.modules()) == 2 + 2 * 3


def test_resnet_blocks_are_residual():
    """x + block(x): with the block's last norm scale and bias zeroed, each block is the identity."""
    torch.manual_seed(0)
    G = resnet(norm="instance", blocks=2).eval()
    x = torch.randn(2, 16, 16, 16)
    for block in [m for m in G.modules() if type(m).__name__ == "ResnetBlock"]:
        assert not torch.allclose(block(x), x)
        with torch.no_grad():
            block.block[-1].weight.zero_()
            block.block[-1].bias.zero_()
        torch.testing.assert_close(block(x), x, rtol=0, atol=0)


@pytest.mark.parametrize("make", [unet, resnet])
def test_changing_the_input_changes_the_output(make):
    torch.manual_seed(0)
    G = make().eval()
    x = images(2, 3, 64)
    y = x.clone()
    y[:, :, 20:30, 20:30] = -y[:, :, 20:30, 20:30]
    with torch.no_grad():
        a, b = G(x), G(y)
    assert (a - b).abs().max() > 1e-6
    torch.testing.assert_close(G(x), a)  # deterministic in eval mode


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_unet_output_reaches_input_pixels_through_the_skips(norm):
    """With the bottleneck's output zeroed, the output still depends on each input pixel (skip path)."""
    torch.manual_seed(0)
    G = unet(resolution=64, norm=norm).eval()
    handle = G.innermost.register_forward_hook(lambda m, i, o: torch.zeros_like(o))
    x = images(1, 3, 64).requires_grad_(True)
    out = G(x)
    for i, j in [(5, 7), (32, 32), (60, 3)]:
        (g,) = torch.autograd.grad(out[0, :, i, j].sum(), x, retain_graph=True)
        assert g[0, :, i, j].abs().sum() > 0
        assert g[0, :, :, :].abs().sum() > 0
    with torch.no_grad():
        y = x.detach().clone()
        y[:, :, 8:16, 8:16] += 0.5
        assert (G(y) - out).abs().max() > 1e-6
    handle.remove()
    # the hook really cut the bottleneck: without it the output differs
    with torch.no_grad():
        assert (G(x) - out).abs().max() > 0


def test_unet_zeroed_bottleneck_without_skips_would_be_constant():
    """Control for the skip test: zeroing the *outermost* block's submodule (every skip inside) makes
    the output independent of the input, so the skip test above can fail."""
    G = unet(resolution=64, norm="none").eval()
    G.model.submodule.register_forward_hook(lambda m, i, o: torch.zeros_like(o))
    with torch.no_grad():
        torch.testing.assert_close(G(images(1, 3, 64, seed=0)), G(images(1, 3, 64, seed=1)))


# ----------------------------------------------------------------------------- KeepDropout


def test_keep_dropout_is_f_dropout():
    x = torch.randn(4, 8, 5, 5)
    for keep in (False, True):
        for train in (False, True):
            layer = KeepDropout(0.3, keep=keep).train(train)
            torch.manual_seed(7)
            got = layer(x)
            torch.manual_seed(7)
            want = F.dropout(x, 0.3, training=train or keep)
            torch.testing.assert_close(got, want, rtol=0, atol=0)
            assert torch.equal(got, x) == (not (train or keep))
    assert isinstance(KeepDropout(0.5), nn.Dropout) and KeepDropout(0.5).keep is False


def keep_dropouts(G):
    return [m for m in G.modules() if isinstance(m, KeepDropout)]


@pytest.mark.parametrize("make", [unet, resnet])
def test_test_time_dropout(make):
    torch.manual_seed(0)
    x = images(2, 3, 64)
    with torch.no_grad():
        kept = make(dropout=0.5, test_dropout=True)
        plain = make(dropout=0.5, test_dropout=False)
        for G in (kept, plain):  # training: both sample
            G.train()
            assert (G(x) - G(x)).abs().max() > 1e-6
        kept.eval()
        plain.eval()
        assert (kept(x) - kept(x)).abs().max() > 1e-6
        torch.testing.assert_close(plain(x), plain(x), rtol=0, atol=0)
    assert all(m.keep for m in keep_dropouts(kept)) and not any(m.keep for m in keep_dropouts(plain))


def test_unet_dropout_placement():
    G = unet(resolution=256, dropout=0.5)
    assert len(keep_dropouts(G)) == 3
    assert keep_dropouts(unet(resolution=256, dropout=0.0)) == []
    assert all(m.p == 0.5 for m in keep_dropouts(G))
    blocks = [G.model]
    while not blocks[-1].is_innermost:
        blocks.append(blocks[-1].submodule)
    assert len(blocks) == 8
    with_dropout = [i for i, b in enumerate(blocks) if any(isinstance(m, KeepDropout) for m in b.up)]
    assert with_dropout == [4, 5, 6]  # the three 8w levels directly outside the bottleneck (7)
    for depth, expected in [(1, []), (2, [1]), (3, [1]), (4, [1, 2]), (5, [1, 2, 3]), (6, [2, 3, 4])]:
        G = unet(resolution=64, depth=depth, dropout=0.5)
        blocks = [G.model]
        while not blocks[-1].is_innermost:
            blocks.append(blocks[-1].submodule)
        assert [i for i, b in enumerate(blocks) if any(isinstance(m, KeepDropout) for m in b.up)] == expected, depth


def test_resnet_dropout_is_inside_every_block():
    G = resnet(blocks=3, dropout=0.5)
    assert len(keep_dropouts(G)) == 3
    assert keep_dropouts(resnet(blocks=3)) == []


# ----------------------------------------------------------------------------- patchgan


@pytest.mark.parametrize("res", RESOLUTIONS)
@pytest.mark.parametrize("ch", [2, 6])
@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_patchgan_shapes_and_gradients(res, ch, norm):
    torch.manual_seed(0)
    D = patchgan(resolution=res, channels=ch, norm=norm, dropout=0.5, width=4)
    x = images(2, ch, res)
    s = res
    for _ in range(3):
        s = conv_out(s, 4, 2, 1)
    s_feat = conv_out(s, 4, 1, 1)
    s_out = conv_out(s_feat, 4, 1, 1)
    logits = D(x)
    assert logits.shape == (2, s_out * s_out)
    assert D.patches == s_out
    torch.manual_seed(3)
    logits2, feats = D.forward_with_features(x)
    assert logits2.shape == logits.shape and feats.shape == (2, 32 * s_feat * s_feat)
    backward_random_projection(D(x))
    assert_every_param_has_gradient(D)


def test_patchgan_features_match_forward_and_the_first_layer_is_conv_then_leaky_relu():
    torch.manual_seed(0)
    D = patchgan(norm="batch").eval()
    x = images(2, 6, 64)
    logits, feats = D.forward_with_features(x)
    torch.testing.assert_close(logits, D(x))
    torch.testing.assert_close(feats, D.features(x))
    torch.testing.assert_close(logits, D.head(feats.view(2, 32, 7, 7)).flatten(1))
    conv = D.body[0]
    want = F.leaky_relu(F.conv2d(x, conv.weight, conv.bias, stride=2, padding=1), 0.2)
    torch.testing.assert_close(first_layer_features(D, x), want)
    assert isinstance(D.body[1], nn.LeakyReLU) and D.body[1].negative_slope == 0.2


def test_patchgan_structure_follows_pix2pix():
    D = patchgan(width=4, norm="batch", layers=3)
    convs = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0], m.bias is not None) for m in convs] == [
        (4, 4, 2, 1, True),
        (8, 4, 2, 1, False),
        (16, 4, 2, 1, False),
        (32, 4, 1, 1, False),
        (1, 4, 1, 1, True),
    ]
    assert D.head is convs[-1]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in D.modules()) == 3
    wide = patchgan(width=4, layers=5, resolution=256)
    assert [m.out_channels for m in wide.modules() if isinstance(m, nn.Conv2d)] == [4, 8, 16, 32, 32, 32, 1]
    inst = patchgan(norm="instance")
    assert all(m.bias is not None for m in inst.modules() if isinstance(m, nn.Conv2d))
    assert sum(isinstance(m, nn.Dropout) for m in patchgan(dropout=0.3).modules()) == 3


def _rf_extent(D, res, seed):
    """Rows and columns spanned by the non-zero gradient of the central logit w.r.t. the input."""
    x = (
        torch.rand(1, D.channels, res, res, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + 0.1
    ).requires_grad_(True)
    logits = D(x)
    s = int(round(logits.shape[1] ** 0.5))
    assert s * s == logits.shape[1]
    logits.view(s, s)[s // 2, s // 2].backward()
    mask = x.grad[0].abs().sum(0) > 0
    rows = mask.any(1).nonzero().flatten()
    cols = mask.any(0).nonzero().flatten()
    assert (
        rows.min() > 0 and cols.min() > 0 and rows.max() < res - 1 and cols.max() < res - 1
    )  # not clipped by the border
    # contiguous: every row/column between the extremes is reached
    assert len(rows) == rows.max() - rows.min() + 1 and len(cols) == cols.max() - cols.min() + 1
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


@pytest.mark.parametrize("layers,res,expected", [(1, 64, 16), (2, 128, 34), (3, 256, 70)])
@pytest.mark.parametrize("weights", ["constant", "random"])
def test_patchgan_receptive_field_by_autograd(layers, res, expected, weights):
    torch.manual_seed(0)
    D = patchgan(resolution=res, channels=2, width=2, norm="none", layers=layers).double()
    with torch.no_grad():
        for m in D.modules():
            if isinstance(m, nn.Conv2d):
                if weights == "constant":
                    m.weight.fill_(0.05)
                else:
                    m.weight.normal_()
                m.bias.zero_()
    assert D.receptive_field == expected
    assert _rf_extent(D, res, seed=layers) == (expected, expected)


def test_patchgan_receptive_field_is_seventy_by_default():
    assert patchgan(resolution=256).receptive_field == 70
    assert patchgan(resolution=64).receptive_field == 70


@pytest.mark.parametrize("layers,res", [(0, 64), (-1, 64), (1.0, 64), (True, 64), (4, 32), (5, 64), (1, 4)])
def test_patchgan_bad_layers_is_a_config_error(layers, res):
    with pytest.raises(ConfigError, match=r"^layers: bad value"):
        patchgan(layers=layers, resolution=res)


def test_patchgan_largest_valid_layers():
    D = patchgan(layers=3, resolution=24)  # 24 / 8 - 2 = 1: a single patch
    assert D(images(1, 6, 24)).shape == (1, 1)
    with pytest.raises(ConfigError, match="use layers <= 3"):
        patchgan(layers=4, resolution=24)


def test_patchgan_with_spectral_norm_and_state_dict_round_trip():
    spec = {"sn": {"kind": "spectral", "net": "D"}}
    torch.manual_seed(0)
    G, D = unet(), patchgan(norm="instance")
    ref = patchgan(norm="instance")
    ref.load_state_dict(D.state_dict())
    build_constraints(spec, G=G, D=D)
    convs = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 5 and all(hasattr(m, "parametrizations") for m in convs)
    assert not any(hasattr(m, "parametrizations") for m in G.modules())  # net: D only
    x = images(2, 6, 64)
    D.train()
    for _ in range(30):  # power iterations converge
        D(x)
    logits, feats = D.forward_with_features(x)
    assert logits.shape == (2, 36) and torch.isfinite(logits).all()
    for m in convs:  # the effective weight has spectral norm ≈ 1 (independent: an SVD)
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
        assert 0.9 < sigma < 1.01
    assert (D.eval()(x) - ref.eval()(x)).abs().max() > 1e-4  # the constraint changed the function

    fresh = patchgan(norm="instance")
    build_constraints(spec, G=unet(), D=fresh)
    state = D.state_dict()
    assert any(k.endswith("parametrizations.weight.original") for k in state)
    assert any(k.endswith("_u") for k in state)
    fresh.load_state_dict(state)  # strict
    fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), D(x), rtol=0, atol=0)
        torch.testing.assert_close(fresh.features(x), D.features(x), rtol=0, atol=0)
