"""The R3GAN backbone: a normalization-free residual generator and discriminator.

Source: Huang, Gokaslan, Kuleshov and Tompkin, "The GAN is dead; long live the GAN! A Modern GAN
Baseline" (NeurIPS 2024), reference code brownvc/R3GAN (``R3GAN/Networks.py``). Written for normgan,
following the paper's architecture (config E); formulas in docs/regularizers.md, "The r3gan backbone".

Registered names: generator ``r3gan``, discriminator ``r3gan``.

* No normalization layer anywhere. Each stage works at one resolution: a *transition* (G: optional
  1×1 conv when the width changes, then 2× upsampling; D: 2× downsampling, then the optional 1×1
  conv) and ``blocks`` residual blocks ``x + W₃ φ(W₂ φ(W₁ x))``: W₁ 1×1 conv c → e·c, W₂ grouped 3×3
  conv (groups of ``group_size`` channels), W₃ 1×1 conv e·c → c; φ = leaky ReLU(0.2) after a learned
  per-channel bias (the convs have none); e = ``expansion``.
* Resampling is the fixed low-pass [1, 2, 1] ⊛ [1, 1] = [1, 3, 3, 1] (separable, normalized):
  up = transposed depthwise conv (stride 2, gain 4), down = depthwise conv (stride 2).
* Fix-up initialisation: W₃ = 0 (each block is the identity at init), W₁ and W₂ ~ N(0, g²/fan_in)
  with g = √(2/(1+0.2²)) · L^(-1/4), L = the number of residual blocks of that network (R3GAN's
  ``VarianceScalingParameter = sum(BlocksPerStage)``; the −1/4 is −1/(2m−2) for m = 3 convs per
  block). Every other layer is MSR-initialised with gain 1.
* G: z ↦ B ⊙ (A z) — a learned (C, s, s) basis B, A a linear map z → C (per-channel modulation) —
  then the stages up to the resolution, a 1×1 conv to ``channels`` and tanh (R3GAN's output is linear;
  normgan's images are in [-1, 1] and every normgan generator ends in tanh).
* D: a 1×1 conv from ``channels``, the stages down to s × s, then a depthwise s × s conv to (B, C)
  and a linear map to one logit per image, shape (B,).
* Class conditioning (R3GAN's conditional models): G ``concat`` — z ⊕ embed(y) into the basis's
  linear map; D ``projection`` — D(x, y) = ψ(φ) + ⟨embed(y), φ⟩ with φ the depthwise conv's (B, C)
  output and ψ the final linear map (embed: a Linear on one-hot labels, so spectral norm reaches it).

Geometry: resolution = s · 2^k with s ∈ {4, 7} and k ≥ 1 (32, 64, 128, 256 px; 28 px with s = 7).
Stage widths, from the base (s × s) stage up: 2w at every resolution up to R/4, w at R/2 and w/2 at R
(w = ``width``, the channels at half the resolution as in dcgan): 64, 64, 32, 16 at 32 px for the
default w = 32. D uses the same widths in reverse order.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from normgan.errors import ConfigError
from normgan.models.layers import balanced_labels, check_conditioning
from normgan.models.registry import DISCRIMINATORS, GENERATORS

SLOPE = 0.2
#: the MSR (He) gain of leaky ReLU(0.2): √(2 / (1 + 0.2²))
LRELU_GAIN = math.sqrt(2.0 / (1.0 + SLOPE**2))
#: the resampling filter before the box: R3GAN's ResamplingFilter
FILTER_TAPS = (1, 2, 1)


def msr_init_(weight: Tensor, gain: float = 1.0) -> Tensor:
    """MSR (He) initialisation: W ~ N(0, gain² / fan_in), fan_in = W[0].numel() (the inputs of one
    output unit: in_channels/groups · k² for a conv, in_features for a linear map); gain 0 gives W = 0."""
    with torch.no_grad():
        if gain == 0:
            return weight.zero_()
        return weight.normal_(0.0, gain / math.sqrt(weight[0].numel()))


def block_gain(total_blocks: int) -> float:
    """The init gain of a residual block's first two convs: √(2/(1+0.2²)) · L^(-1/4)."""
    return LRELU_GAIN * total_blocks ** (-0.25)


def _check_int(option: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{option}: bad value {value!r}; must be an integer >= {minimum}")
    return value


def geometry(resolution: int) -> tuple[int, int]:
    """(base size s, number of stages n) with s · 2^(n−1) == resolution, s ∈ {4, 7}, n ≥ 2."""
    for base in (4, 7):
        k = math.log2(resolution / base) if isinstance(resolution, int) and resolution > 0 else -1
        if k >= 1 and k == int(k):
            return base, int(k) + 1
    raise ConfigError(
        f"data.resolution: bad value {resolution!r}; r3gan supports 4·2^k or 7·2^k px (28, 32, 64, 128, 256)"
    )


def stage_widths(width: int, stages: int) -> list[int]:
    """Channels of each stage from the base resolution up: ``width`` at half the output resolution
    (as dcgan's ``width``), 2·width below it, width // 2 (at least 1) at the output resolution."""
    return [2 * width] * (stages - 2) + [width, max(1, width // 2)]


def group_count(hidden: int, group_size: int) -> int:
    """Groups of the 3×3 conv: the largest divisor of ``hidden`` that is ≤ max(1, hidden // group_size)
    (hidden / group_size exactly when it divides, R3GAN's cardinality)."""
    groups = max(1, hidden // group_size)
    while hidden % groups:
        groups -= 1
    return groups


def lowpass_kernel(taps=FILTER_TAPS) -> Tensor:
    """The normalized separable 2-D resampling kernel: (taps ⊛ [1, 1]) outer itself, summing to 1."""
    t = [float(a + b) for a, b in zip((0, *taps), (*taps, 0))]  # taps ⊛ [1, 1]: [1, 3, 3, 1]
    k = torch.tensor(t)
    k = torch.outer(k, k)
    return k / k.sum()


class Resample(nn.Module):
    """2× bilinear-type resampling of each channel with the fixed low-pass kernel K (4 × 4):
    ``up``: conv_transpose(x, 4K, stride 2, padding 1) (H → 2H); down: conv(x, K, stride 2, padding 1)
    (H → H/2). K is a non-persistent buffer: not a parameter, not in checkpoints, no constraint touches it."""

    def __init__(self, *, up: bool) -> None:
        super().__init__()
        self.up = up
        self.register_buffer("kernel", lowpass_kernel() * (4.0 if up else 1.0), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        c = int(x.shape[1])  # a constant when traced: ONNX needs the depthwise kernel's shape known
        k = self.kernel.to(x.dtype).expand(c, 1, *self.kernel.shape)
        if self.up:
            return F.conv_transpose2d(x, k, stride=2, padding=1, groups=c)
        return F.conv2d(x, k, stride=2, padding=1, groups=c)

    def extra_repr(self) -> str:
        return f"up={self.up}, taps={FILTER_TAPS}"


class BiasedLeakyReLU(nn.Module):
    """φ(x) = leaky_relu(x + b, 0.2) with a learned per-channel bias b (zero at init)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x + self.bias.to(x.dtype).view(1, -1, 1, 1), SLOPE)


class ResidualBlock(nn.Module):
    """x ↦ x + W₃ φ(W₂ φ(W₁ x)): inverted bottleneck c → e·c → e·c (grouped 3×3) → c, no conv biases.

    Fix-up init: W₃ = 0, W₁ and W₂ MSR with gain √(2/(1+0.2²)) · L^(-1/4) (``total_blocks`` = L)."""

    def __init__(self, channels: int, *, expansion: int, group_size: int, total_blocks: int) -> None:
        super().__init__()
        hidden = channels * expansion
        self.expand = nn.Conv2d(channels, hidden, 1, bias=False)
        self.act1 = BiasedLeakyReLU(hidden)
        self.conv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=group_count(hidden, group_size), bias=False)
        self.act2 = BiasedLeakyReLU(hidden)
        self.project = nn.Conv2d(hidden, channels, 1, bias=False)
        gain = block_gain(total_blocks)
        msr_init_(self.expand.weight, gain)
        msr_init_(self.conv.weight, gain)
        msr_init_(self.project.weight, 0.0)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.project(self.act2(self.conv(self.act1(self.expand(x)))))


def _conv1x1(c_in: int, c_out: int) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, 1, bias=False)
    msr_init_(conv.weight)
    return conv


def _transition(c_in: int, c_out: int, *, up: bool) -> nn.Module:
    """G: [1×1 conv if the width changes] then upsample; D: downsample then [1×1 conv]."""
    layers = [Resample(up=up)]
    if c_in != c_out:
        layers.insert(0 if up else 1, _conv1x1(c_in, c_out))
    return nn.Sequential(*layers)


def _blocks(c: int, n: int, *, expansion: int, group_size: int, total_blocks: int) -> list[nn.Module]:
    return [ResidualBlock(c, expansion=expansion, group_size=group_size, total_blocks=total_blocks) for _ in range(n)]


def _options(*, channels, width, blocks, expansion, group_size) -> None:
    _check_int("channels", channels, 1)
    _check_int("width", width, 1)
    _check_int("blocks", blocks, 1)
    _check_int("expansion", expansion, 1)
    _check_int("group_size", group_size, 1)


class GenerativeBasis(nn.Module):
    """z ↦ B ⊙ (A z): a learned basis B (C, s, s) ~ N(0, 1), modulated per channel by the linear map
    A: z_dim → C (no bias, MSR gain 1); output (N, C, s, s)."""

    def __init__(self, z_dim: int, channels: int, size: int) -> None:
        super().__init__()
        self.basis = nn.Parameter(torch.empty(channels, size, size))
        with torch.no_grad():
            self.basis.normal_(0.0, 1.0)
        self.linear = nn.Linear(z_dim, channels, bias=False)
        msr_init_(self.linear.weight)

    def forward(self, z: Tensor) -> Tensor:
        return self.basis.unsqueeze(0) * self.linear(z).unsqueeze(-1).unsqueeze(-1)


class R3GANGenerator(nn.Module):
    """z (B, z_dim) ↦ image in [-1, 1] of shape (B, channels, resolution, resolution)."""

    def __init__(
        self,
        *,
        resolution: int,
        channels: int,
        z_dim: int = 64,
        width: int = 32,
        blocks: int = 2,
        expansion: int = 2,
        group_size: int = 16,
        conditioning: str | None = None,
        classes: int | None = None,
    ) -> None:
        super().__init__()
        _options(channels=channels, width=width, blocks=blocks, expansion=expansion, group_size=group_size)
        _check_int("z_dim", z_dim, 1)
        check_conditioning("model.generator", conditioning, classes, ("concat",))
        base, stages = geometry(resolution)
        self.z_dim, self.resolution, self.channels = z_dim, resolution, channels
        self.classes = classes if conditioning else None
        self.num_classes = self.classes  # what normgan export reads (the y input's range)
        widths = stage_widths(width, stages)
        self.total_blocks = stages * blocks
        kw = {"expansion": expansion, "group_size": group_size, "total_blocks": self.total_blocks}
        z_in = 2 * z_dim if conditioning else z_dim  # concat: z ⊕ embed(y), embed(y) ∈ R^z_dim ~ N(0, 1) at init
        layers: list[nn.Module] = [GenerativeBasis(z_in, widths[0], base), *_blocks(widths[0], blocks, **kw)]
        for c_in, c in zip(widths, widths[1:]):
            layers += [_transition(c_in, c, up=True), *_blocks(c, blocks, **kw)]
        self.body = nn.Sequential(*layers)
        self.to_image = _conv1x1(widths[-1], channels)
        if conditioning:
            self.embed = nn.Embedding(classes, z_dim)

    @property
    def last_layer(self) -> Tensor:
        """The weight of the output layer (for gradient-ratio adaptive weights)."""
        return self.to_image.weight

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """G(z), or G(z, y) = G(z ⊕ embed(y)) for int64 classes y (B,) (y None: balanced labels)."""
        if self.classes is not None:
            y = balanced_labels(z.shape[0], classes=self.classes, device=z.device) if y is None else y
            z = torch.cat([z, self.embed(y).to(z.dtype)], dim=1)
        return torch.tanh(self.to_image(self.body(z)))


class DiscriminativeBasis(nn.Module):
    """(N, C, s, s) ↦ (N,): a depthwise s × s conv to (N, C) then a linear map C → 1 (both without
    bias, MSR gain 1)."""

    def __init__(self, channels: int, size: int) -> None:
        super().__init__()
        self.basis = nn.Conv2d(channels, channels, size, groups=channels, bias=False)
        self.linear = nn.Linear(channels, 1, bias=False)
        msr_init_(self.basis.weight)
        msr_init_(self.linear.weight)

    def forward(self, h: Tensor, embedding: Tensor | None = None) -> Tensor:
        """ψ(φ) = linear(φ), φ = basis(h) (N, C); plus ⟨embedding, φ⟩ when given (projection)."""
        phi = self.basis(h).flatten(1)
        out = self.linear(phi).view(-1)
        return out if embedding is None else out + (embedding.to(phi.dtype) * phi).sum(dim=1)


class R3GANDiscriminator(nn.Module):
    """image (B, channels, R, R) ↦ logit of shape (B,); ``features(x)`` is the flattened s × s map
    the basis reads."""

    def __init__(
        self,
        *,
        resolution: int,
        channels: int,
        width: int = 32,
        blocks: int = 2,
        expansion: int = 2,
        group_size: int = 16,
        conditioning: str | None = None,
        classes: int | None = None,
    ) -> None:
        super().__init__()
        _options(channels=channels, width=width, blocks=blocks, expansion=expansion, group_size=group_size)
        check_conditioning("model.discriminator", conditioning, classes, ("projection",))
        self.classes = classes if conditioning else None
        base, stages = geometry(resolution)
        widths = stage_widths(width, stages)[::-1]  # full resolution first
        self.total_blocks = stages * blocks
        kw = {"expansion": expansion, "group_size": group_size, "total_blocks": self.total_blocks}
        layers: list[nn.Module] = [_conv1x1(channels, widths[0])]
        for c, c_out in zip(widths, widths[1:]):
            layers += [*_blocks(c, blocks, **kw), _transition(c, c_out, up=False)]
        layers += _blocks(widths[-1], blocks, **kw)
        self.body = nn.Sequential(*layers)
        self.head = DiscriminativeBasis(widths[-1], base)
        if conditioning:  # embed(y) = W·onehot(y) ∈ R^C: a Linear, so constraints (SN) select it
            self.embed = nn.Linear(classes, widths[-1], bias=False)
            msr_init_(self.embed.weight)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x).flatten(1)

    def _embedding(self, y: Tensor | None) -> Tensor | None:
        if self.classes is None or y is None:
            return None
        return self.embed(nn.functional.one_hot(y, self.classes).to(self.embed.weight.dtype))

    def forward_with_features(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = self.body(x)
        return self.head(h, self._embedding(y)), h.flatten(1)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """D(x) (B,), or with projection D(x, y) = ψ(φ(x)) + ⟨embed(y), φ(x)⟩, φ the basis output (B, C)."""
        return self.head(self.body(x), self._embedding(y))


# the classes themselves: their keyword-only signatures are the options Registry.create checks
GENERATORS.register("r3gan")(R3GANGenerator)
DISCRIMINATORS.register("r3gan")(R3GANDiscriminator)
