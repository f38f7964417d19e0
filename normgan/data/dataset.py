"""The dataset container, the loader registry, the held-out split and :func:`load_dataset`.

A loader registered in :data:`DATASETS` is called as
``loader(root=..., resolution=..., seed=..., strict=...)`` and returns a
:class:`Source`: every image already centre-cropped and resized to
``resolution``, in the source's own channel count (1 or 3).
:func:`load_dataset` then converts channels, selects the split and computes the
fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from normgan.data.transforms import convert_channels
from normgan.errors import ConfigError, DataError
from normgan.registry import Registry

#: Maps ``data.name`` to a loader function (see the module docstring).
DATASETS = Registry("dataset")

#: Seed of the held-out permutation; constant so train/test never overlap for any training seed.
SPLIT_SEED = 0
SPLITS = ("train", "test", "all")
_FINGERPRINT_VERSION = 1  # bump when the pixel pipeline changes, to invalidate caches


@dataclass(frozen=True, eq=False)
class ImageData:
    """A whole dataset split held in memory.

    ``images`` is uint8 ``(N, C, H, W)`` with ``H == W`` and C in {1, 3};
    ``labels`` is int64 ``(N,)`` or None; ``fingerprint`` is a 12-hex-digit sha1
    of the source identity and loading options, stable across runs.
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    name: str
    fingerprint: str

    def __post_init__(self) -> None:
        x = self.images
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] not in (1, 3) or x.shape[2] != x.shape[3]:
            raise ValueError(f"images must be uint8 (N, C, R, R) with C in 1, 3; got {x.dtype} {tuple(x.shape)}")
        if self.labels is not None and (self.labels.dtype != torch.int64 or self.labels.shape != (x.shape[0],)):
            raise ValueError(
                f"labels must be int64 ({x.shape[0]},); got {self.labels.dtype} {tuple(self.labels.shape)}"
            )

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass(frozen=True, eq=False)
class Source:
    """What a loader returns: resized images in native channels, labels, a display name and identity.

    ``identity`` holds JSON-serialisable facts that pin the source down (absolute
    root, file paths, sizes, mtimes, crop seed...); it feeds the fingerprint.
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    name: str
    identity: dict[str, Any] = field(default_factory=dict)
    #: True when the loader built the requested split itself (``stacked_mnist`` stacks digits of one
    #: split of its source); :func:`load_dataset` then takes the images as they are
    presplit: bool = False


class LeakError(RuntimeError):
    """A split forbidden by :func:`forbid_splits` was loaded: a bug in the code that loaded it."""


_FORBIDDEN: Counter = Counter()  # split -> number of active forbid_splits blocks naming it
_FORBIDDEN_LOCK = threading.Lock()


@contextmanager
def forbid_splits(splits: tuple[str, ...]):
    """While the block runs, loading any of ``splits`` (:func:`load_dataset`, ``load_paired``) raises
    :class:`LeakError`.  Process-wide (every thread), nestable; a hyper-parameter search wraps its
    trials in ``forbid_splits(("test", "all"))`` so that the test split can never steer it."""
    splits = tuple(splits)
    with _FORBIDDEN_LOCK:
        _FORBIDDEN.update(splits)
    try:
        yield
    finally:
        with _FORBIDDEN_LOCK:
            _FORBIDDEN.subtract(splits)
            for s in splits:
                if _FORBIDDEN[s] <= 0:
                    del _FORBIDDEN[s]


def check_split_allowed(split: str, *, name: str) -> None:
    """Raise :class:`LeakError` when ``split`` of dataset ``name`` is forbidden by an active :func:`forbid_splits`."""
    if _FORBIDDEN[split] > 0:
        raise LeakError(
            f"the {split} split was read during a search that forbids it (dataset {name!r}, "
            "forbid_splits is active): this is a bug"
        )


def split_indices(n: int, *, split: str, holdout: float) -> torch.Tensor:
    """Indices of ``split`` among ``n`` items.

    A permutation drawn with the constant seed :data:`SPLIT_SEED` gives its first
    ``round(holdout * n)`` entries to "test" and the rest, in permutation order,
    to "train"; "all" is ``0..n-1`` in source order.
    """
    if split == "all":
        return torch.arange(n)
    perm = torch.from_numpy(np.random.default_rng(SPLIT_SEED).permutation(n))
    n_test = round(holdout * n)
    return perm[:n_test] if split == "test" else perm[n_test:]


def fingerprint(parts: dict[str, Any]) -> str:
    """First 12 hex digits of sha1 over the canonical JSON of ``parts``."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(blob.encode("utf-8")).hexdigest()[:12]


def _check_options(*, resolution: Any, channels: Any, split: Any, holdout: Any) -> None:
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 8:
        raise ConfigError(f"data.resolution: {resolution!r} is not an integer >= 8; set data.resolution to e.g. 32")
    if channels is not None and (isinstance(channels, bool) or channels not in (1, 3)):
        raise ConfigError(
            f"data.channels: {channels!r} is not allowed; set data.channels to 1, 3 or null (keep the source's)"
        )
    if split not in SPLITS:
        raise ConfigError(f"data.split: unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    if (
        isinstance(holdout, bool)
        or not isinstance(holdout, (int, float))
        or not math.isfinite(holdout)
        or not 0 <= holdout < 1
    ):
        raise ConfigError(f"data.holdout: {holdout!r} is not a fraction in [0, 1); set data.holdout to e.g. 0.1")


def load_dataset(
    *,
    name: str,
    root: str | os.PathLike | None = None,
    resolution: int = 32,
    channels: int | None = None,
    split: str = "train",
    holdout: float = 0.1,
    strict: bool = False,
    seed: int = 0,
) -> ImageData:
    """Load dataset ``name`` as uint8 images at ``resolution`` px, ``channels`` channels, one split.

    ``name`` is a key of :data:`DATASETS` (built-ins, ``folder``, ``idx``);
    ``root`` is the folder / IDX file for those two.  ``split`` is "train",
    "test" (the held-out ``round(holdout * N)`` images) or "all".  ``strict``
    makes unreadable folder images an error; ``seed`` drives sources that
    sample (``textures`` crops), never the split.  A split forbidden by
    :func:`forbid_splits` raises :class:`LeakError`.
    """
    check_split_allowed(split, name=name)
    _check_options(resolution=resolution, channels=channels, split=split, holdout=holdout)
    loader = DATASETS.get(name, key="data.name")
    src: Source = loader(root=root, resolution=resolution, seed=seed, strict=strict, split=split, holdout=holdout)
    images = convert_channels(src.images, channels)
    idx = (
        torch.arange(images.shape[0]) if src.presplit else split_indices(images.shape[0], split=split, holdout=holdout)
    )
    if idx.numel() == 0:
        raise DataError(
            f"data.split: the {split!r} split of {src.name!r} is empty ({images.shape[0]} images, holdout {holdout}); "
            + ("set data.holdout above 0" if split == "test" else "lower data.holdout or add images")
        )
    if split == "all" or src.presplit:
        images = images.clone() if images is src.images else images
        labels = src.labels.clone() if src.labels is not None else None
    else:
        images = images[idx]
        labels = src.labels[idx] if src.labels is not None else None
    parts = {
        "v": _FINGERPRINT_VERSION,
        "name": name,
        "source": src.identity,
        "resolution": resolution,
        "channels": int(images.shape[1]),
        "split": split,
        "holdout": float(holdout),
    }
    return ImageData(images=images, labels=labels, name=src.name, fingerprint=fingerprint(parts))
