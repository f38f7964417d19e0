"""K-fold cross-validation inside the training split, and the guard that keeps a search off the test split.

    from normgan.data import apply_fold, forbid_splits, load_dataset
    train = load_dataset(name="mnist5k", split="train")
    fit = apply_fold(train, folds=5, fold=2, part="fit")          # 4/5 of train: what G trains on
    heldout = apply_fold(train, folds=5, fold=2, part="heldout")  # 1/5 of train: what it is scored on
    with forbid_splits(("test", "all")):                          # loading those now raises LeakError
        ...

The folds are a permutation of the split's rows drawn with the constant seed :data:`FOLD_SEED`
(independent of the training seed) cut into ``folds`` contiguous chunks whose sizes differ by at
most one; chunk ``fold`` is held out and the others are the fit part.  Both parts keep the order
of the rows in the given split.
"""

from __future__ import annotations

import numpy as np
import torch

from normgan.data.dataset import ImageData, LeakError, fingerprint, forbid_splits
from normgan.data.paired import PairedData
from normgan.errors import ConfigError

__all__ = [
    "FOLD_SEED",
    "MIN_FOLD_SIZE",
    "PARTS",
    "LeakError",
    "apply_fold",
    "check_folds",
    "fold_part",
    "forbid_splits",
    "kfold_indices",
]

#: Seed of the fold permutation; constant so a fold holds the same rows for every training seed.
FOLD_SEED = 0
#: The fewest rows a fold may hold.
MIN_FOLD_SIZE = 8
#: ``heldout`` = the chosen fold, ``fit`` = every other fold.
PARTS = ("fit", "heldout")
_FOLD_VERSION = 1  # bump when the fold assignment changes, to invalidate caches


def kfold_indices(n: int, *, folds: int) -> list[torch.Tensor]:
    """``folds`` disjoint int64 index tensors covering ``0..n-1``: a permutation of ``range(n)`` drawn
    with ``numpy.random.default_rng(FOLD_SEED)`` cut into contiguous chunks by ``np.array_split``
    (sizes differ by at most one, the larger ones first)."""
    if folds < 1:
        raise ValueError(f"folds must be >= 1; got {folds}")
    perm = np.random.default_rng(FOLD_SEED).permutation(n)
    return [torch.from_numpy(chunk.astype(np.int64)) for chunk in np.array_split(perm, folds)]


def fold_part(n: int, *, folds: int, fold: int, part: str) -> torch.Tensor:
    """Sorted int64 indices among ``n`` rows: chunk ``fold`` of :func:`kfold_indices` for
    ``part="heldout"``, every other chunk for ``part="fit"``."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {', '.join(PARTS)}; got {part!r}")
    if not 0 <= fold < folds:
        raise ValueError(f"fold must be in 0..{folds - 1}; got {fold}")
    chunks = kfold_indices(n, folds=folds)
    idx = chunks[fold] if part == "heldout" else torch.cat([c for i, c in enumerate(chunks) if i != fold])
    return idx.sort().values


def check_folds(n: int, *, folds: int, what: str = "the training split") -> None:
    """A one-line :class:`ConfigError` unless ``folds >= 2`` and every fold of ``n`` rows holds at least
    :data:`MIN_FOLD_SIZE` of them (``n // folds >= MIN_FOLD_SIZE``)."""
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ConfigError(f"data.folds: {folds!r} folds are not cross-validation; set data.folds to 0 (off) or >= 2")
    if n // folds < MIN_FOLD_SIZE:
        most = n // MIN_FOLD_SIZE
        fix = (
            f"use at most {most} folds"
            if most >= 2
            else f"it needs at least {2 * MIN_FOLD_SIZE} items for 2 folds; set data.folds=0"
        )
        raise ConfigError(
            f"data.folds: {folds} folds of {what} ({n} items) leave fewer than {MIN_FOLD_SIZE} per fold; {fix}"
        )


def checked_fold_part(n: int, *, folds: int, fold: int, part: str, name: str) -> torch.Tensor:
    """:func:`fold_part` of a training split of ``n`` items named ``name``, after :func:`check_folds`;
    ``fold`` outside ``0..folds-1`` is a ConfigError, an unknown ``part`` a ValueError."""
    check_folds(n, folds=folds, what=f"the training split of {name!r}")
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < folds:
        raise ConfigError(f"data.fold: {fold!r} is not a fold of {folds}; set data.fold to 0..{folds - 1}")
    if part not in PARTS:
        raise ValueError(f"part must be one of {', '.join(PARTS)}; got {part!r}")
    return fold_part(n, folds=folds, fold=fold, part=part)


def apply_fold(data, *, folds: int, fold: int, part: str):
    """The rows of ``data`` (an :class:`ImageData` or a :class:`PairedData`, normally a training split)
    in ``part`` ("fit" or "heldout") of fold ``fold`` of ``folds``, as the same type with the same
    ``name`` and a new fingerprint derived from ``data.fingerprint`` and the fold (so caches keyed by
    fingerprint differ per fold and part).  :func:`check_folds` first: ConfigError when the folds
    are too small; ``fold`` outside ``0..folds-1`` is a ConfigError too."""
    idx = checked_fold_part(len(data), folds=folds, fold=fold, part=part, name=data.name)
    fp = fingerprint({"v": _FOLD_VERSION, "data": data.fingerprint, "folds": folds, "fold": fold, "part": part})
    labels = data.labels[idx] if data.labels is not None else None
    if isinstance(data, ImageData):
        return ImageData(images=data.images[idx], labels=labels, name=data.name, fingerprint=fp)
    if isinstance(data, PairedData):
        return PairedData(
            inputs=data.inputs[idx], targets=data.targets[idx], labels=labels, name=data.name, fingerprint=fp
        )
    raise TypeError(f"apply_fold needs ImageData or PairedData; got {type(data).__name__}")
