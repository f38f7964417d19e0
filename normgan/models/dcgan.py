"""DCGAN-style generator and discriminator for 28, 32, 64 and 128 px.

Generator: z (B, z_dim) → ConvTranspose(k=s, stride 1) to an s×s map (s = 7 for 28 px, else 4), then
stride-2 ConvTranspose(k=4) blocks [norm, ReLU, dropout] doubling the size and halving the channels
down to ``width``, and a last stride-2 ConvTranspose to ``channels`` with tanh. With ``gates=True`` each
hidden block ends with a hard-concrete L0 gate per channel (see :mod:`normgan.models.prune`). Discriminator: the
mirror image with stride-2 Conv(k=4) blocks [norm (not on the first), LeakyReLU(0.2), dropout] and a
final Conv(k=s) to one logit per image.

Class conditioning (``conditioning``, with ``classes`` set by the task): G ``cbn`` (every BatchNorm
becomes a :class:`~normgan.models.layers.ConditionalBatchNorm2d`) or ``concat`` (z ⊕ embed(y), R3GAN);
D ``projection`` (D(x, y) = ψ(φ(x)) + ⟨embed(y), φ(x)⟩, φ the flattened last hidden map, ψ the head)
or ``ac`` (an auxiliary classifier head, :meth:`DCGANDiscriminator.class_logits`; D's logit ignores y).
G(z) and D(x) without y stay valid: G then uses balanced labels, D its unconditional part ψ(φ(x)).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from normgan.errors import ConfigError
from normgan.functional.gates import HardConcreteGate
from normgan.models.layers import (
    ConditionalBatchNorm2d,
    balanced_labels,
    check_conditioning,
    dcgan_init,
    make_norm,
    run_conditioned,
)
from normgan.models.registry import DISCRIMINATORS, GENERATORS


def _geometry(resolution: int) -> tuple[int, int]:
    """(base size s, number of stride-2 stages) with s · 2**stages == resolution."""
    for base in (4, 7):
        stages = math.log2(resolution / base)
        if stages >= 1 and stages == int(stages):
            return base, int(stages)
    raise ConfigError(f"data.resolution: bad value {resolution}; dcgan supports 28, 32, 64 and 128")


G_CONDITIONING = ("cbn", "concat")
D_CONDITIONING = ("projection", "ac")


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
        conditioning: str | None = None,
        classes: int | None = None,
    ) -> None:
        super().__init__()
        base, stages = _geometry(resolution)
        check_conditioning("model.generator", conditioning, classes, G_CONDITIONING)
        if conditioning == "cbn" and norm != "batch":
            raise ConfigError(
                f"model.generator.conditioning: cbn replaces BatchNorm's affine; norm is {norm!r}, set batch"
            )
        self.z_dim, self.resolution, self.channels = z_dim, resolution, channels
        self.conditioning, self.classes = conditioning, classes if conditioning else None
        self.num_classes = self.classes  # what normgan export reads (the y input's range)
        cbn = classes if conditioning == "cbn" else None
        z_in = 2 * z_dim if conditioning == "concat" else z_dim  # z ⊕ embed(y), embed(y) ∈ R^z_dim
        c = width * 2 ** (stages - 1)
        blocks: list[nn.Module] = [
            nn.Unflatten(1, (z_in, 1, 1)),
            *self._block(nn.ConvTranspose2d(z_in, c, base, 1, 0, bias=norm == "none"), c, norm, dropout, gates, cbn),
        ]
        for _ in range(stages - 1):
            blocks += self._block(
                nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=norm == "none"), c // 2, norm, dropout, gates, cbn
            )
            c //= 2
        self.body = nn.Sequential(*blocks)
        self.to_image = nn.ConvTranspose2d(c, channels, 4, 2, 1)
        dcgan_init(self)
        if conditioning == "concat":
            self.embed = nn.Embedding(classes, z_dim)  # N(0, 1) like z (after dcgan_init: not touched)

    @staticmethod
    def _block(
        conv: nn.Module, c: int, norm: str, dropout: float, gates: bool = False, cbn: int | None = None
    ) -> list[nn.Module]:
        norm_layer = ConditionalBatchNorm2d(c, classes=cbn) if cbn else make_norm(norm, c)
        layers = [conv, norm_layer, nn.ReLU(inplace=True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        if gates:  # hard-concrete L0 gate per channel (sampled in training, deterministic in eval)
            layers.append(HardConcreteGate(c))
        return layers

    @property
    def last_layer(self) -> Tensor:
        """The weight of the output layer (for gradient-ratio adaptive weights)."""
        return self.to_image.weight

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """G(z) or, conditional, G(z, y) for int64 classes y (B,); y None: balanced labels."""
        if self.classes is None:
            return torch.tanh(self.to_image(self.body(z)))
        y = balanced_labels(z.shape[0], classes=self.classes, device=z.device) if y is None else y
        if self.conditioning == "concat":
            z = torch.cat([z, self.embed(y).to(z.dtype)], dim=1)
        return torch.tanh(self.to_image(run_conditioned(self.body, z, y)))


class DCGANDiscriminator(nn.Module):
    """image ↦ logit of shape (B,); ``features(x)`` gives the flattened last hidden feature map."""

    def __init__(
        self,
        *,
        resolution: int,
        channels: int,
        width: int = 32,
        norm: str = "none",
        dropout: float = 0.0,
        conditioning: str | None = None,
        classes: int | None = None,
    ) -> None:
        super().__init__()
        base, stages = _geometry(resolution)
        check_conditioning("model.discriminator", conditioning, classes, D_CONDITIONING)
        self.conditioning, self.classes = conditioning, classes if conditioning else None
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
        if conditioning == "projection":  # embed(y) = W·onehot(y): a Linear, so constraints (SN) select it
            self.embed = nn.Linear(classes, c_in * base * base, bias=False)
        elif conditioning == "ac":
            self.classify = nn.Conv2d(c_in, classes, base, 1, 0)
        dcgan_init(self)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x).flatten(1)

    def _logit(self, h: Tensor, y: Tensor | None) -> Tensor:
        """ψ(φ) = head(h), plus ⟨embed(y), φ⟩ (φ = h flattened) for a projection D given y."""
        out = self.head(h).flatten()
        if self.conditioning == "projection" and y is not None:
            onehot = nn.functional.one_hot(y, self.classes).to(h.dtype)
            out = out + (self.embed(onehot) * h.flatten(1)).sum(dim=1)
        return out

    def forward_with_features(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = self.body(x)
        return self._logit(h, y), h.flatten(1)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """D(x) (B,), or D(x, y) for int64 classes y (B,): ψ(φ(x)) + ⟨embed(y), φ(x)⟩ with projection."""
        return self._logit(self.body(x), y)

    def class_logits(self, x: Tensor) -> Tensor:
        """The auxiliary classifier's logits (B, classes) of an ``ac`` D (AC-GAN)."""
        if self.conditioning != "ac":
            raise ConfigError("regularizers: term 'ac' needs model.discriminator.conditioning: ac")
        return self.classify(self.body(x)).flatten(1)


# the classes themselves: their keyword-only signatures are the options Registry.create checks
GENERATORS.register("dcgan")(DCGANGenerator)
DISCRIMINATORS.register("dcgan")(DCGANDiscriminator)
