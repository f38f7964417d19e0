"""A stand-in for ``normgan.functional.augment`` in tests of the ``bcr`` term.

``bcr`` imports ``DIFFAUGMENT_OPS`` and ``diffaugment`` from ``normgan.functional.augment`` when it is
built and run. :func:`install` puts a module with a given ``diffaugment`` in ``sys.modules`` for one
test (monkeypatch undoes it), so a test can choose a deterministic T. :func:`ensure` does so only
where the real module is missing (the augmentations are written on another branch), with a random
per-sample horizontal flip, and otherwise leaves the real module in place.
"""

from __future__ import annotations

import importlib.util
import sys
import types

import torch

NAME = "normgan.functional.augment"
#: the op names of the real module's API
OPS = ("color", "translation", "cutout", "xflip")


def install(monkeypatch, diffaugment) -> types.ModuleType:
    """Put a module with ``diffaugment`` and ``DIFFAUGMENT_OPS`` at ``normgan.functional.augment``."""
    module = types.ModuleType(NAME)
    module.DIFFAUGMENT_OPS = OPS
    module.diffaugment = diffaugment
    monkeypatch.setitem(sys.modules, NAME, module)
    return module


def random_flip(x, ops, *, generator=None):
    """Each sample flipped along the width with probability ½ (differentiable; unknown ops raise)."""
    unknown = [op for op in ops if op not in OPS]
    if unknown:
        raise ValueError(f"unknown augmentation {unknown[0]!r}")
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flip.reshape((-1,) + (1,) * (x.dim() - 1)), x.flip(-1), x)


def real_module_exists() -> bool:
    return NAME in sys.modules or importlib.util.find_spec(NAME) is not None


def ensure(monkeypatch) -> None:
    """The real module where it exists, else :func:`random_flip` as a stand-in."""
    if not real_module_exists():
        install(monkeypatch, random_flip)
