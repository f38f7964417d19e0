"""Model registries and builders.

A factory is registered under a config name and declares its options as keyword-only parameters.
The builders pass it the shared fields of ``model.generator`` / ``model.discriminator`` (``width``,
``norm``, ``dropout``, ``z_dim``, ``conditioning``) that it declares, plus ``options`` (architecture-specific, e.g.
``unet``'s ``depth``); an option the factory does not declare is a one-line ConfigError.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict

from torch import nn

from normgan.errors import ConfigError
from normgan.registry import Registry

GENERATORS = Registry("generator")
DISCRIMINATORS = Registry("discriminator")

#: fields of the model configs that every factory may declare (passed when it does)
SHARED_FIELDS = ("z_dim", "width", "norm", "dropout", "conditioning")


def _parameters(factory) -> list[str]:
    return [p for p in inspect.signature(factory).parameters if p not in ("self", "kwargs")]


def declares(registry: Registry, name: str, option: str) -> bool:
    """True when entry ``name`` of ``registry`` takes ``option`` (a keyword parameter of its factory):
    e.g. whether a discriminator uses the shared ``norm`` field at all (r3gan has no norm layer)."""
    return option in _parameters(registry.get(name))


def takes_image_input(name: str) -> bool:
    """True for an image-to-image generator (its factory takes ``in_channels``), False for z -> image."""
    return "in_channels" in _parameters(GENERATORS.get(name, key="model.generator.name"))


def check_models(
    model_cfg, *, resolution: int, channels: int, in_channels: int | None, classes: int | None = None
) -> None:
    """Build G and D on the ``meta`` device (no memory, no compute) so that bad options and sizes
    (an unknown option, a U-Net deeper than the resolution allows, a PatchGAN with no patch left)
    are one-line ConfigErrors before any data is loaded."""
    import torch

    for key, net, build, kwargs in (
        (
            "model.generator",
            model_cfg.generator,
            build_generator,
            {"channels": channels, "in_channels": in_channels, "classes": classes},
        ),
        (
            "model.discriminator",
            model_cfg.discriminator,
            build_discriminator,
            {"channels": channels + (in_channels or 0), "classes": classes},
        ),
    ):
        try:
            with torch.device("meta"):
                build(net, resolution=resolution, **kwargs)
        except (RuntimeError, OverflowError, MemoryError) as e:  # a tensor too large to even describe
            if isinstance(e, RuntimeError) and "overflow" not in str(e).lower():
                raise
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
            raise ConfigError(
                f"{key}.width={net.width}: a weight of this network is too large to allocate ({first}); "
                f"use a smaller {key}.width (default 32)"
            ) from None


def _build(registry: Registry, cfg, *, key: str, fixed: Dict[str, Any]) -> nn.Module:
    """``registry.create`` with ``cfg.options`` as the options; the shared fields the factory
    declares (all of them when it takes ``**kwargs``) and ``fixed`` are the caller's arguments."""
    params = inspect.signature(registry.get(cfg.name, key=f"{key}.name")).parameters
    accepts_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    shared = {k: getattr(cfg, k) for k in SHARED_FIELDS if hasattr(cfg, k) and (accepts_any or k in params)}
    return registry.create(cfg.name, dict(cfg.options or {}), key=key, fixed={**shared, **fixed}, options_key="options")


def build_generator(
    cfg,
    *,
    resolution: int,
    channels: int,
    in_channels: int | None = None,
    gates: bool = False,
    classes: int | None = None,
) -> nn.Module:
    """The generator named by ``cfg.name`` (a GeneratorConfig) for ``channels``-channel images.

    ``in_channels``: the input image's channels of an image-to-image generator (paired runs).
    ``gates``: insert hard-concrete L0 gates on hidden channels (set by the loop when an L0 weights
    term asks for them). ``classes``: the number of classes of a class-conditional run (passed
    only when ``cfg.conditioning`` is set).
    """
    return _build(
        GENERATORS,
        cfg,
        key="model.generator",
        fixed={
            "resolution": resolution,
            "channels": channels,
            "in_channels": in_channels,
            "gates": True if gates else None,
            "classes": classes if getattr(cfg, "conditioning", None) else None,
        },
    )


def build_discriminator(cfg, *, resolution: int, channels: int, classes: int | None = None) -> nn.Module:
    """The discriminator named by ``cfg.name`` for ``channels`` input channels (condition + image
    for a paired D); ``classes`` as for :func:`build_generator`."""
    fixed = {"resolution": resolution, "channels": channels}
    fixed["classes"] = classes if getattr(cfg, "conditioning", None) else None
    return _build(DISCRIMINATORS, cfg, key="model.discriminator", fixed=fixed)
