"""Generators and discriminators behind registries.

``build_generator(cfg.model.generator, resolution=..., channels=...)`` and ``build_discriminator``
construct the configured networks; new architectures register with ``@GENERATORS.register(name)``.
"""

from normgan.models import (
    dcgan,  # noqa: F401  (registers "dcgan")
    pix2pix,  # noqa: F401  (registers "unet", "resnet", "patchgan")
    r3gan,  # noqa: F401  (registers "r3gan")
)
from normgan.models.layers import NORM_LAYERS, make_norm
from normgan.models.registry import DISCRIMINATORS, GENERATORS, build_discriminator, build_generator

__all__ = ["GENERATORS", "DISCRIMINATORS", "NORM_LAYERS", "make_norm", "build_generator", "build_discriminator"]
