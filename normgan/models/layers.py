"""Small building blocks shared by the architectures."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from normgan.errors import ConfigError
from normgan.registry import Registry

NORM_LAYERS = Registry("normalization")
NORM_LAYERS.register("batch")(lambda c: nn.BatchNorm2d(c))
NORM_LAYERS.register("instance")(lambda c: nn.InstanceNorm2d(c, affine=True))
NORM_LAYERS.register("layer")(lambda c: nn.GroupNorm(1, c))  # LayerNorm over (C, H, W) of each sample
NORM_LAYERS.register("none")(lambda c: nn.Identity())


def make_norm(name: str, channels: int) -> nn.Module:
    """A normalization layer for ``channels`` feature maps: batch | instance | layer | none."""
    return NORM_LAYERS.get(name)(channels)


def dcgan_init(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights ~ N(0, 0.02), norm scales ~ N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class KeepDropout(nn.Dropout):
    """nn.Dropout that can stay active in eval mode; shape-preserving, any input shape.

    ``keep=False``: exactly nn.Dropout (zeroes elements with probability ``p`` and scales the rest by
    1/(1-p) in train mode, identity in eval mode). ``keep=True``: dropout is applied in eval mode too
    -- pix2pix's noise source, "dropout kept on at test time" (Isola et al. 2017, §3.1).
    ``forward(x) = F.dropout(x, p, training or keep, inplace)``.
    """

    def __init__(self, p: float = 0.5, inplace: bool = False, *, keep: bool = False) -> None:
        super().__init__(p, inplace)
        self.keep = keep

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training or self.keep, self.inplace)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, keep={self.keep}"


class ConditionalBatchNorm2d(nn.Module):
    """Class-conditional BatchNorm (de Vries et al. 2017; Miyato & Koyama 2018; BigGAN): BatchNorm's
    affine replaced by one (γ_k, β_k) per class k,

        out[b, c] = γ_{y_b, c} · x̂[b, c] + β_{y_b, c},   x̂ = (x − μ_c) / √(σ²_c + ε)

    with μ_c, σ²_c the batch statistics over (B, H, W) in training mode (running ones in eval
    mode), as ``nn.BatchNorm2d(affine=False)``. γ starts at 1 and β at 0 (plain BatchNorm at init).
    ``forward(x, y)``: x (B, C, H, W), y (B,) int64 classes in [0, classes).
    """

    def __init__(self, channels: int, *, classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gamma, self.beta = nn.Embedding(classes, channels), nn.Embedding(classes, channels)
        nn.init.ones_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.bn(x) * self.gamma(y)[:, :, None, None] + self.beta(y)[:, :, None, None]


def run_conditioned(body: nn.Sequential, x: Tensor, y) -> Tensor:
    """``body(x)`` with ``y`` handed to each :class:`ConditionalBatchNorm2d` (the other layers get x only)."""
    for layer in body:
        x = layer(x, y) if isinstance(layer, ConditionalBatchNorm2d) else layer(x)
    return x


def balanced_labels(n: int, *, classes: int, device) -> Tensor:
    """Labels 0, 1, …, classes − 1, 0, 1, … (n of them): a conditional G's default when called as
    ``G(z)`` (sampling, evaluation), an equal share of every class."""
    return torch.arange(n, device=device) % classes


def check_conditioning(key: str, conditioning, classes, choices) -> None:
    """A one-line ConfigError unless ``conditioning`` is None or one of ``choices`` with ``classes`` ≥ 1."""
    if conditioning is None:
        return
    if conditioning not in choices:
        raise ConfigError(
            f"{key}.conditioning: bad value {conditioning!r}; choose one of: {', '.join(choices)} (or null)"
        )
    if not isinstance(classes, int) or classes < 1:
        raise ConfigError(f"{key}.conditioning: {conditioning} needs a labelled dataset (classes: {classes!r})")
