"""Image-to-image (paired) architectures from pix2pix and CycleGAN.

Sources: Isola et al. 2017, "Image-to-Image Translation with Conditional Adversarial Networks"
(pix2pix) and Zhu et al. 2017, "Unpaired Image-to-Image Translation using Cycle-Consistent
Adversarial Networks" (CycleGAN); reference code junyanz/pytorch-CycleGAN-and-pix2pix,
``models/networks.py`` (UnetGenerator / UnetSkipConnectionBlock, ResnetGenerator / ResnetBlock,
NLayerDiscriminator).

Registered names:

* generator ``unet`` -- U-Net encoder-decoder with skip connections (pix2pix's default G);
* generator ``resnet`` -- two stride-2 downsamplings, residual blocks, two upsamplings (CycleGAN's G);
* discriminator ``patchgan`` -- fully convolutional N-layer PatchGAN: one logit per overlapping
  patch (70×70 receptive field with ``layers=3``).

The generators map an image x (B, in_channels, R, R) in [-1, 1] to an image (B, channels, R, R) in
[-1, 1]; they take no noise (``z_dim = None``): pix2pix's only noise is dropout, which
``test_dropout=True`` keeps on in eval mode (:class:`~normgan.models.layers.KeepDropout`).
Convolutions carry a bias only where no batch/layer norm follows them (pix2pix: bias iff norm is
instance or none). Weights are initialised as in :func:`~normgan.models.layers.dcgan_init` (N(0, 0.02)).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from normgan.errors import ConfigError
from normgan.models.layers import KeepDropout, dcgan_init, make_norm
from normgan.models.registry import DISCRIMINATORS, GENERATORS


def _conv_bias(norm: str) -> bool:
    """pix2pix's ``use_bias``: a conv followed by a norm layer has a bias only for instance / none."""
    return norm in ("instance", "none")


def _check_int(option: str, value, minimum: int, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{option}: bad value {value!r}; {hint}")
    return value


def _check_common(*, resolution, channels: int, width: int, dropout: float, in_channels: Optional[int] = None) -> None:
    _check_int("data.resolution", resolution, 1, "must be a positive integer")
    _check_int("channels", channels, 1, "must be a positive integer")
    if in_channels is not None:
        _check_int("in_channels", in_channels, 1, "must be a positive integer")
    _check_int("width", width, 1, "must be a positive integer")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout: bad value {dropout!r}; must be a number in [0, 1)")


def _check_bool(option: str, value) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{option}: bad value {value!r}; use true or false")
    return value


# ----------------------------------------------------------------------------- U-Net


class UnetBlock(nn.Module):
    """One U-Net level: ``down`` → ``submodule`` → ``up``, then the skip concatenation.

    Input (B, in_c, H, W). ``down`` halves H and W to ``inner_c`` channels: [LeakyReLU(0.2) (not on the
    outermost), Conv(4, 2, 1), norm (not on the outermost or innermost)]. ``up`` doubles them back to
    ``outer_c`` channels: [ReLU, ConvTranspose(4, 2, 1), norm, dropout] -- the outermost ends in tanh
    instead of a norm. Output: the input concatenated with ``up``'s output, (B, in_c + outer_c, H, W);
    the outermost returns ``up``'s output alone, (B, outer_c, H, W).
    """

    def __init__(
        self,
        outer_c: int,
        inner_c: int,
        *,
        in_c: Optional[int] = None,
        submodule: Optional[nn.Module] = None,
        outermost: bool = False,
        innermost: bool = False,
        norm: str = "batch",
        dropout: float = 0.0,
        test_dropout: bool = False,
    ) -> None:
        super().__init__()
        in_c = outer_c if in_c is None else in_c
        bias = _conv_bias(norm)
        self.is_outermost, self.is_innermost = outermost, innermost
        down: list[nn.Module] = [] if outermost else [nn.LeakyReLU(0.2)]
        down.append(nn.Conv2d(in_c, inner_c, 4, 2, 1, bias=bias))
        if not (outermost or innermost):
            down.append(make_norm(norm, inner_c))
        self.down = nn.Sequential(*down)
        self.submodule = submodule if submodule is not None else nn.Identity()
        up_in = inner_c if submodule is None else 2 * inner_c  # a submodule returns [its input, its up-output]
        if outermost:
            up: list[nn.Module] = [nn.ReLU(), nn.ConvTranspose2d(up_in, outer_c, 4, 2, 1), nn.Tanh()]
        else:
            up = [nn.ReLU(), nn.ConvTranspose2d(up_in, outer_c, 4, 2, 1, bias=bias), make_norm(norm, outer_c)]
            if dropout > 0:
                up.append(KeepDropout(dropout, keep=test_dropout))
        self.up = nn.Sequential(*up)

    def forward(self, x: Tensor) -> Tensor:
        y = self.up(self.submodule(self.down(x)))
        return y if self.is_outermost else torch.cat([x, y], 1)


class UnetGenerator(nn.Module):
    """pix2pix's U-Net: image (B, in_channels, R, R) ↦ image (B, channels, R, R) in [-1, 1].

    ``depth`` stride-2 levels (default: the number of times R halves exactly, log2(R) for powers of
    two, giving a 1×1 bottleneck as pix2pix's 8 levels at 256 px); encoder channels width, 2w, 4w, 8w,
    8w, ... (capped at 8·width). ``self.model`` is the outermost :class:`UnetBlock`; the property
    ``innermost`` is the bottleneck block. Dropout (``KeepDropout(dropout, keep=test_dropout)``, only
    if dropout > 0) sits after the decoders of the levels directly outside the bottleneck: 3 levels
    for depth >= 5, ``depth - 2`` for depth 3-4, the bottleneck's own decoder for depth 2, none for
    depth 1 (never on the outermost).
    """

    z_dim = None  # no noise input

    def __init__(
        self,
        *,
        resolution: int,
        channels: int,
        in_channels: int,
        width: int = 64,
        norm: str = "batch",
        dropout: float = 0.0,
        test_dropout: bool = False,
        depth: Optional[int] = None,
    ) -> None:
        super().__init__()
        _check_common(resolution=resolution, channels=channels, width=width, dropout=dropout, in_channels=in_channels)
        _check_bool("test_dropout", test_dropout)
        halvings = 0
        while resolution % 2 ** (halvings + 1) == 0:
            halvings += 1
        if halvings == 0:
            raise ConfigError(
                f"data.resolution: bad value {resolution}; unet needs an even resolution (a power of two is usual)"
            )
        if depth is None:
            depth = halvings
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= halvings:
            raise ConfigError(
                f"depth: bad value {depth!r}; unet at resolution {resolution} needs an integer depth from 1 to {halvings}"
                f" (the resolution must divide by 2**depth)"
            )
        self.in_channels, self.channels, self.resolution, self.depth = in_channels, channels, resolution, depth
        make_norm(norm, 1)  # unknown norm names fail here with the list of choices

        enc = [width * min(2**i, 8) for i in range(depth)]  # down-conv output channels of level i (0 = outermost)
        if depth == 2:
            dropout_levels = {1}
        else:
            dropout_levels = {i for i in range(depth - 4, depth - 1) if i >= 1}
        block: Optional[UnetBlock] = None
        for i in reversed(range(depth)):  # build from the bottleneck outwards
            outer_c = channels if i == 0 else enc[i - 1]
            block = UnetBlock(
                outer_c,
                enc[i],
                in_c=in_channels if i == 0 else None,
                submodule=block,
                outermost=i == 0,
                innermost=i == depth - 1,
                norm=norm,
                dropout=dropout if i in dropout_levels else 0.0,
                test_dropout=test_dropout,
            )
        self.model = block
        dcgan_init(self)

    @property
    def innermost(self) -> UnetBlock:
        """The bottleneck block (its down conv outputs (B, enc, R / 2**depth, R / 2**depth))."""
        block = self.model
        while not block.is_innermost:
            block = block.submodule
        return block

    @property
    def last_layer(self) -> Tensor:
        """The weight of the output ConvTranspose (for gradient-ratio adaptive weights)."""
        return self.model.up[1].weight

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


@GENERATORS.register("unet")
def unet_generator(
    *,
    resolution: int,
    channels: int,
    in_channels: int,
    width: int = 64,
    norm: str = "batch",
    dropout: float = 0.0,
    test_dropout: bool = False,
    depth: Optional[int] = None,
) -> nn.Module:
    return UnetGenerator(
        resolution=resolution,
        channels=channels,
        in_channels=in_channels,
        width=width,
        norm=norm,
        dropout=dropout,
        test_dropout=test_dropout,
        depth=depth,
    )


# ----------------------------------------------------------------------------- ResNet generator


class ResnetBlock(nn.Module):
    """x (B, c, H, W) ↦ x + block(x), same shape; block = [ReflectionPad(1), Conv3, norm, ReLU,
    (KeepDropout), ReflectionPad(1), Conv3, norm]."""

    def __init__(self, c: int, *, norm: str, dropout: float, test_dropout: bool) -> None:
        super().__init__()
        bias = _conv_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(c, c, 3, bias=bias),
            make_norm(norm, c),
            nn.ReLU(True),
        ]
        if dropout > 0:
            layers.append(KeepDropout(dropout, keep=test_dropout))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3, bias=bias), make_norm(norm, c)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's ResNet generator: image (B, in_channels, R, R) ↦ image (B, channels, R, R) in [-1, 1].

    ReflectionPad(3), Conv7 (width), norm, ReLU; two Conv(3, 2, 1) downsamplings (2w, 4w) with norm +
    ReLU; ``blocks`` :class:`ResnetBlock` at R/4 × R/4 (CycleGAN: 6 for 128 px, 9 for 256 px); two
    ConvTranspose(3, 2, 1, output_padding 1) upsamplings (2w, w) with norm + ReLU; ReflectionPad(3),
    Conv7 to ``channels``, tanh. R must be a multiple of 4 and at least 8.
    """

    z_dim = None  # no noise input

    def __init__(
        self,
        *,
        resolution: int,
        channels: int,
        in_channels: int,
        width: int = 64,
        norm: str = "instance",
        dropout: float = 0.0,
        test_dropout: bool = False,
        blocks: int = 9,
    ) -> None:
        super().__init__()
        _check_common(resolution=resolution, channels=channels, width=width, dropout=dropout, in_channels=in_channels)
        _check_bool("test_dropout", test_dropout)
        if resolution % 4 or resolution < 8:
            raise ConfigError(
                f"data.resolution: bad value {resolution}; resnet needs a multiple of 4 that is at least 8"
            )
        _check_int("blocks", blocks, 1, "must be an integer >= 1 (CycleGAN uses 6 at 128 px and 9 at 256 px)")
        self.in_channels, self.channels, self.resolution = in_channels, channels, resolution
        bias = _conv_bias(norm)
        w = width
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, w, 7, bias=bias),
            make_norm(norm, w),
            nn.ReLU(True),
        ]
        for mult in (1, 2):  # downsampling: w → 2w → 4w
            layers += [
                nn.Conv2d(w * mult, w * mult * 2, 3, 2, 1, bias=bias),
                make_norm(norm, w * mult * 2),
                nn.ReLU(True),
            ]
        layers += [ResnetBlock(4 * w, norm=norm, dropout=dropout, test_dropout=test_dropout) for _ in range(blocks)]
        for mult in (4, 2):  # upsampling: 4w → 2w → w
            layers += [
                nn.ConvTranspose2d(w * mult, w * mult // 2, 3, 2, 1, output_padding=1, bias=bias),
                make_norm(norm, w * mult // 2),
                nn.ReLU(True),
            ]
        self.body = nn.Sequential(*layers)
        self.to_image = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(w, channels, 7))
        dcgan_init(self)

    @property
    def last_layer(self) -> Tensor:
        """The weight of the output Conv7 (for gradient-ratio adaptive weights)."""
        return self.to_image[1].weight

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.to_image(self.body(x)))


@GENERATORS.register("resnet")
def resnet_generator(
    *,
    resolution: int,
    channels: int,
    in_channels: int,
    width: int = 64,
    norm: str = "instance",
    dropout: float = 0.0,
    test_dropout: bool = False,
    blocks: int = 9,
) -> nn.Module:
    return ResnetGenerator(
        resolution=resolution,
        channels=channels,
        in_channels=in_channels,
        width=width,
        norm=norm,
        dropout=dropout,
        test_dropout=test_dropout,
        blocks=blocks,
    )


# ----------------------------------------------------------------------------- PatchGAN


def receptive_field(convs) -> int:
    """Receptive field (px) of one output unit of a chain of convolutions: r = 1, then backwards
    r = (r - 1)·stride + kernel."""
    r = 1
    for conv in reversed(list(convs)):
        r = (r - 1) * conv.stride[0] + conv.kernel_size[0]
    return r


class PatchDiscriminator(nn.Module):
    """pix2pix's N-layer PatchGAN: image (B, channels, R, R) ↦ patch logits (B, P), P = S·S.

    ``channels`` counts the input channels (condition + image for a conditional D). ``self.body``:
    Conv(4, 2, 1) + LeakyReLU(0.2) (no norm); ``layers - 1`` blocks Conv(4, 2, 1) + norm + LeakyReLU
    with channels doubling (capped at 8·width); one Conv(4, 1, 1) + norm + LeakyReLU block.
    ``self.head``: Conv(4, 1, 1) to one channel. S = ⌊R / 2**layers⌋ − 2 (30 at 256 px with 3 layers);
    ``receptive_field`` is 70 px for ``layers=3``, 34 for 2, 16 for 1. ``features(x)`` is the body's
    output flattened, (B, 8w·(S+1)²) at most. Optional ``dropout``: nn.Dropout after every LeakyReLU
    but the first.
    """

    def __init__(
        self,
        *,
        resolution: int,
        channels: int,
        width: int = 64,
        norm: str = "batch",
        dropout: float = 0.0,
        layers: int = 3,
    ) -> None:
        super().__init__()
        _check_common(resolution=resolution, channels=channels, width=width, dropout=dropout)
        _check_int("layers", layers, 1, "must be an integer >= 1 (pix2pix uses 3: 70×70 patches)")
        max_layers = 0
        while resolution // 2 ** (max_layers + 1) - 2 >= 1:
            max_layers += 1
        if layers > max_layers:
            fix = f"use layers <= {max_layers}" if max_layers else "use a resolution of at least 6"
            raise ConfigError(
                f"layers: bad value {layers}; the patch map would be empty at resolution {resolution}; {fix}"
            )
        bias = _conv_bias(norm)
        body: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        c = width
        for n in range(1, layers + 1):  # layers-1 stride-2 blocks, then one stride-1 block
            c_out = width * min(2**n, 8)
            body += [
                nn.Conv2d(c, c_out, 4, 2 if n < layers else 1, 1, bias=bias),
                make_norm(norm, c_out),
                nn.LeakyReLU(0.2, True),
            ]
            if dropout > 0:
                body.append(nn.Dropout(dropout))
            c = c_out
        self.body = nn.Sequential(*body)
        self.head = nn.Conv2d(c, 1, 4, 1, 1)
        self.resolution, self.channels, self.layers = resolution, channels, layers
        self.receptive_field = receptive_field(m for m in self.modules() if isinstance(m, nn.Conv2d))
        self.patches = resolution // 2**layers - 2  # S: the logit map is S × S
        dcgan_init(self)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x).flatten(1)

    def forward_with_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.body(x)
        return self.head(h).flatten(1), h.flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x)).flatten(1)


@DISCRIMINATORS.register("patchgan")
def patchgan_discriminator(
    *, resolution: int, channels: int, width: int = 64, norm: str = "batch", dropout: float = 0.0, layers: int = 3
) -> nn.Module:
    return PatchDiscriminator(
        resolution=resolution, channels=channels, width=width, norm=norm, dropout=dropout, layers=layers
    )
