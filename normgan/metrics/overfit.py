r"""Pure nearest-neighbour functions for overfitting studies (memorization of the training set).

Inputs are feature tensors of shape ``(N, d)`` (any float dtype; computed in float64); nothing here
knows about images or networks.  FID for the train/held-out gap is
:func:`normgan.metrics.functional.fid_from_features`; the driver that reads a run is
:func:`normgan.study.overfit.overfitting_scores`.

Distances are Euclidean and computed pair by pair (``torch.cdist`` with
``compute_mode="donot_use_mm_for_euclid_dist"``, not the ``‖x‖² + ‖y‖² − 2xᵀy`` matrix-product
shortcut), so an exact copy is at distance exactly 0 and equal inputs give bitwise equal distances:
ties are real ties, not rounding noise.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["nearest_distance", "memorization_score", "DISTANCE_BLOCK"]


def _as_features(x: Tensor, what: str) -> Tensor:
    x = torch.as_tensor(x)
    if x.ndim != 2:
        raise ValueError(f"{what} features must have shape (N, d), got {tuple(x.shape)}")
    return x.detach().to(torch.float64)


#: Largest block of distances held at once (float64: 32 MB), whatever the set sizes.
DISTANCE_BLOCK = 1 << 22


def nearest_distance(x: Tensor, ref: Tensor, *, batch: int = 1024) -> Tensor:
    r"""Distance from each row of ``x`` to its nearest row of ``ref``.

    .. math::
        d_i = \min_{j} \lVert x_i - r_j \rVert_2, \qquad i = 1..N_x

    Computed in float64 in blocks of at most ``batch`` rows of ``x`` and at most
    :data:`DISTANCE_BLOCK` distances (rows of ``ref`` taken in slices too when a block of rows would
    exceed it, with a running minimum), so the memory does not grow with either set; blocking does
    not change any distance.

    Args:
        x: ``(N_x, d)`` query features.
        ref: ``(N_ref, d)`` reference features, ``N_ref >= 1``.
        batch: most rows of ``x`` per ``torch.cdist`` call.

    Returns:
        A float64 ``(N_x,)`` tensor on ``x``'s device.
    """
    x = _as_features(x, "query")
    ref = _as_features(ref, "reference").to(x.device)
    if x.shape[1] != ref.shape[1]:
        raise ValueError(f"feature sizes differ: query {x.shape[1]}, reference {ref.shape[1]}")
    if ref.shape[0] < 1:
        raise ValueError("the reference set is empty")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    rows = max(1, min(int(batch), DISTANCE_BLOCK // ref.shape[0]))
    cols = min(ref.shape[0], max(1, DISTANCE_BLOCK // rows))
    out = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
    for s in range(0, x.shape[0], rows):
        best = None
        for c in range(0, ref.shape[0], cols):
            d = (
                torch.cdist(x[s : s + rows], ref[c : c + cols], compute_mode="donot_use_mm_for_euclid_dist")
                .min(dim=1)
                .values
            )
            best = d if best is None else torch.minimum(best, d)
        out[s : s + rows] = best
    return out


def memorization_score(samples: Tensor, *, train: Tensor, heldout: Tensor) -> float:
    r"""Share of ``samples`` whose nearest training point is closer than their nearest held-out point.

    .. math::
        M = \frac{1}{N}\sum_{i=1}^{N}\Big(\mathbb{1}[d^{tr}_i < d^{ho}_i]
            + \tfrac12\,\mathbb{1}[d^{tr}_i = d^{ho}_i]\Big),
        \qquad d^{tr}_i = \min_j \lVert s_i - t_j\rVert_2,\;
               d^{ho}_i = \min_k \lVert s_i - h_k\rVert_2

    (ties count half).  ``train`` and ``heldout`` must have the same number of rows: the nearest of
    more points is closer, so only equal sizes make ``M`` ≈ 0.5 for samples that are as close to
    the training set as to unseen data of the same distribution, and ``M`` → 1 for samples that
    copy training points (an exact copy has ``d^{tr} = 0``).

    Args:
        samples: ``(N, d)`` features of the points scored (generated images, or real held-out
            images disjoint from ``heldout`` as a control), ``N >= 1``.
        train: ``(M, d)`` features of the training images.
        heldout: ``(M, d)`` features of held-out images (never trained on).

    Returns:
        ``M`` in ``[0, 1]``.
    """
    samples = _as_features(samples, "sample")
    train, heldout = _as_features(train, "train"), _as_features(heldout, "held-out")
    if train.shape[0] != heldout.shape[0]:
        raise ValueError(
            f"train and held-out sets must have the same size, got {train.shape[0]} and {heldout.shape[0]}"
        )
    if samples.shape[0] < 1:
        raise ValueError("no samples to score")
    d_tr = nearest_distance(samples, train)
    d_ho = nearest_distance(samples, heldout)
    score = (d_tr < d_ho).double() + 0.5 * (d_tr == d_ho).double()
    return float(score.mean())
