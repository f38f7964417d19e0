"""Small building blocks shared by the architectures."""

from __future__ import annotations

from torch import nn

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
