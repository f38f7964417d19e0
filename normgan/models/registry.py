"""Model registries and builders."""

from __future__ import annotations

from torch import nn

from normgan.registry import Registry

GENERATORS = Registry("generator")
DISCRIMINATORS = Registry("discriminator")


def build_generator(cfg, *, resolution: int, channels: int, gates: bool = False) -> nn.Module:
    """The generator named by ``cfg.name``, built from the rest of ``cfg`` (a GeneratorConfig).

    ``gates``: insert hard-concrete L0 gates on hidden channels (set by the loop when an L0 weights
    term asks for them).
    """
    factory = GENERATORS.get(cfg.name, key="model.generator.name")
    kwargs = dict(resolution=resolution, channels=channels, z_dim=cfg.z_dim, width=cfg.width, norm=cfg.norm, dropout=cfg.dropout)
    if gates:
        kwargs["gates"] = True
    return factory(**kwargs)


def build_discriminator(cfg, *, resolution: int, channels: int) -> nn.Module:
    """The discriminator named by ``cfg.name``, built from the rest of ``cfg``."""
    factory = DISCRIMINATORS.get(cfg.name, key="model.discriminator.name")
    return factory(resolution=resolution, channels=channels, width=cfg.width, norm=cfg.norm, dropout=cfg.dropout)
