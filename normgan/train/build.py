"""Build the networks a config describes, the same way for training, sampling and evaluation."""

from __future__ import annotations

from torch import nn

from normgan.models import build_discriminator, build_generator
from normgan.regularizers import build_constraints, build_regularizers


def build_networks(cfg, *, resolution: int, channels: int, in_channels: int | None = None):
    """(G, D, regularizers, constraints) for ``cfg``.

    ``in_channels``: the input image's channels of a paired run; G then maps it to ``channels``
    and D is conditional, seeing ``in_channels + channels`` (the condition and the image).

    G gets hard-concrete gates when an L0 weights term asks for them, and the constraints'
    parametrizations (spectral normalization) are applied, so state dict keys match checkpoints.
    """
    regs = build_regularizers(cfg.regularizers, paired=cfg.paired)
    gates = any(getattr(r.term, "needs_gates", False) for r in regs)
    G = build_generator(cfg.model.generator, resolution=resolution, channels=channels, in_channels=in_channels, gates=gates)
    D = build_discriminator(cfg.model.discriminator, resolution=resolution, channels=channels + (in_channels or 0))
    constraints = build_constraints(cfg.constraints, G=G, D=D)
    return G, D, regs, constraints


def build_generator_for(cfg, *, resolution: int, channels: int, in_channels: int | None = None) -> nn.Module:
    """Only the generator of ``cfg`` (with its gates and G constraints), for loading checkpoints."""
    return build_networks(cfg, resolution=resolution, channels=channels, in_channels=in_channels)[0]
