"""Small building blocks shared by the architectures."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

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
