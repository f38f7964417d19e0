"""DCGAN-style generator and discriminator for 28, 32, 64 and 128 px.

Generator: z (B, z_dim) → ConvTranspose(k=s, stride 1) to an s×s map (s = 7 for 28 px, else 4), then
stride-2 ConvTranspose(k=4) blocks [norm, ReLU, dropout] doubling the size and halving the channels
down to ``width``, and a last stride-2 ConvTranspose to ``channels`` with tanh. With ``gates=True`` each
hidden block ends with a hard-concrete L0 gate per channel (see :mod:`normgan.models.prune`). Discriminator: the
mirror image with stride-2 Conv(k=4) blocks [norm (not on the first), LeakyReLU(0.2), dropout] and a
final Conv(k=s) to one logit per image.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from normgan.errors import ConfigError
from normgan.functional.gates import HardConcreteGate
from normgan.models.layers import dcgan_init, make_norm
from normgan.models.registry import DISCRIMINATORS, GENERATORS


def _geometry(resolution: int) -> tuple[int, int]:
    """(base size s, number of stride-2 stages) with s · 2**stages == resolution."""
    for base in (4, 7):
        stages = math.log2(resolution / base)
        if stages >= 1 and stages == int(stages):
            return base, int(stages)
    raise ConfigError(f"data.resolution: bad value {resolution}; dcgan supports 28, 32, 64 and 128")


class DCGANGenerator(nn.Module):
    """z ↦ image in [-1, 1] of shape (B, channels, resolution, resolution)."""

    def __init__(
        self,
        *,
        resolution: int,
        channels: int,
        z_dim: int = 64,
        width: int = 32,
        norm: str = "batch",
        dropout: float = 0.0,
        gates: bool = False,
    ) -> None:
        super().__init__()
        base, stages = _geometry(resolution)
        self.z_dim, self.resolution, self.channels = z_dim, resolution, channels
        c = width * 2 ** (stages - 1)
        blocks: list[nn.Module] = [
            nn.Unflatten(1, (z_dim, 1, 1)),
            *self._block(nn.ConvTranspose2d(z_dim, c, base, 1, 0, bias=norm == "none"), c, norm, dropout, gates),
        ]
        for _ in range(stages - 1):
            blocks += self._block(
                nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=norm == "none"), c // 2, norm, dropout, gates
            )
            c //= 2
        self.body = nn.Sequential(*blocks)
        self.to_image = nn.ConvTranspose2d(c, channels, 4, 2, 1)
        dcgan_init(self)

    @staticmethod
    def _block(conv: nn.Module, c: int, norm: str, dropout: float, gates: bool = False) -> list[nn.Module]:
        layers = [conv, make_norm(norm, c), nn.ReLU(inplace=True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        if gates:  # hard-concrete L0 gate per channel (sampled in training, deterministic in eval)
            layers.append(HardConcreteGate(c))
        return layers

    @property
    def last_layer(self) -> Tensor:
        """The weight of the output layer (for gradient-ratio adaptive weights)."""
        return self.to_image.weight

    def forward(self, z: Tensor) -> Tensor:
        return torch.tanh(self.to_image(self.body(z)))


class DCGANDiscriminator(nn.Module):
    """image ↦ logit of shape (B,); ``features(x)`` gives the flattened last hidden feature map."""

    def __init__(
        self, *, resolution: int, channels: int, width: int = 32, norm: str = "none", dropout: float = 0.0
    ) -> None:
        super().__init__()
        base, stages = _geometry(resolution)
        layers: list[nn.Module] = []
        c_in, c = channels, width
        for i in range(stages):
            layers.append(nn.Conv2d(c_in, c, 4, 2, 1, bias=(i == 0 or norm == "none")))
            if i > 0:
                layers.append(make_norm(norm, c))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            c_in, c = c, c * 2
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(c_in, 1, base, 1, 0)
        dcgan_init(self)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x).flatten(1)

    def forward_with_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.body(x)
        return self.head(h).flatten(), h.flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x)).flatten()


# the classes themselves: their keyword-only signatures are the options Registry.create checks
GENERATORS.register("dcgan")(DCGANGenerator)
DISCRIMINATORS.register("dcgan")(DCGANDiscriminator)
