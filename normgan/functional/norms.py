"""Norms of residuals and tensors, each a pure function ``fn(residual, **params) -> scalar``.

Conventions shared by every norm here:

* Dimension 0 is the batch.  A sample's residual is everything else, ``r.flatten(1)``
  (a 1-D residual has one element per sample; a 0-D residual is one sample of one element).
* The REDUCTION is stated in each docstring.  Two families exist:

  - *element-mean* norms (``l1``, ``sql2_mean``, ``huber``, ``l0_smooth``, ``sl0``, ``logsum``):
    the mean over all B·N elements (N = C·H·W).  They are **independent of resolution**, so a
    weight λ (e.g. pix2pix's λ = 100 on ``l1``) carries over between image sizes.
  - *per-sample* norms (``l2``, ``sql2``, ``lp``, ``linf``, ``l21``): a norm of each sample's
    residual, then the batch mean.  Their scale depends on N as stated (``sql2`` scales with
    C·H·W, like R1 whose per-sample sum of squared gradients it matches).

``NORMS`` maps config names to the functions; :func:`residual_norm` looks one up and applies it.
"""

from __future__ import annotations

import inspect

import torch
from torch import Tensor

from normgan.registry import Registry

NORMS = Registry("norm")


#: norms whose reduction is the mean over all B·N elements (the others: a per-sample norm, batch mean)
ELEMENT_MEAN = ("l1", "sql2_mean", "huber", "l0_smooth", "sl0", "logsum")


def sum_scale(name: str, residual: Tensor) -> int:
    """The factor that turns norm ``name``'s mean reduction into a SUM: B·N for element-mean norms
    (``Σ_{b,i}``), B for per-sample norms (``Σ_b ‖r_b‖``). E.g. ``l1`` × B·N = Σ_b ‖r_b‖₁ and
    ``sql2`` × B = Σ_b ‖r_b‖₂², the article's two reconstruction sums."""
    r = _per_sample(residual)
    return r.shape[0] * r.shape[1] if name in ELEMENT_MEAN else r.shape[0]


def _per_sample(r: Tensor) -> Tensor:
    """View ``r`` as (B, N): batch first, all other dims flattened."""
    if r.dim() == 0:
        return r.reshape(1, 1)
    if r.dim() == 1:
        return r.reshape(-1, 1)
    return r.flatten(1)


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"norm parameter {name} must be > 0, got {value!r}")


@NORMS.register("l1")
def l1(residual: Tensor) -> Tensor:
    """Mean absolute value: ``mean_{b,i} |r_{b,i}|``.

    REDUCTION: per-sample mean over elements, then batch mean (= the overall element mean, the
    pix2pix ``L1Loss`` convention for which λ = 100).  Independent of resolution.
    """
    return residual.abs().mean()


@NORMS.register("l2")
def l2(residual: Tensor) -> Tensor:
    """Euclidean norm per sample: ``mean_b ‖r_b‖₂`` with ``‖r_b‖₂ = sqrt(Σ_i r_{b,i}²)``.

    REDUCTION: per-sample L2 norm over all non-batch dims, then batch mean.  Scales with
    sqrt(C·H·W).  The gradient at r_b = 0 is taken as 0.
    """
    return torch.linalg.vector_norm(_per_sample(residual), ord=2, dim=1).mean()


@NORMS.register("sql2")
def sql2(residual: Tensor) -> Tensor:
    """Squared L2 norm per sample: ``mean_b Σ_i r_{b,i}²`` (no ½).

    REDUCTION: per-sample SUM of squares, then batch mean; the same reduction as R1
    (per-sample sum of squared gradients).  Scales with C·H·W.  For the resolution-independent
    mean of squares (MSE) use ``sql2_mean``.
    """
    return _per_sample(residual).square().sum(dim=1).mean()


@NORMS.register("sql2_mean")
def sql2_mean(residual: Tensor) -> Tensor:
    """Mean squared value (MSE): ``mean_{b,i} r_{b,i}²``.

    REDUCTION: overall element mean.  Independent of resolution (= ``sql2`` / N).
    """
    return residual.square().mean()


@NORMS.register("lp")
def lp(residual: Tensor, *, p: float = 2.0) -> Tensor:
    """L_p norm per sample: ``mean_b (Σ_i |r_{b,i}|^p)^(1/p)``, p ≥ 1 (p = 2 equals ``l2``).

    REDUCTION: per-sample p-norm over all non-batch dims, then batch mean.  Scales with
    (C·H·W)^(1/p).
    """
    if not p >= 1:
        raise ValueError(f"norm parameter p must be >= 1, got {p!r}")
    return torch.linalg.vector_norm(_per_sample(residual), ord=float(p), dim=1).mean()


@NORMS.register("linf")
def linf(residual: Tensor) -> Tensor:
    """Max norm per sample: ``mean_b max_i |r_{b,i}|``.

    REDUCTION: per-sample max over all non-batch dims, then batch mean.  Independent of
    resolution (in scale; the max over more elements tends to be larger).
    """
    return _per_sample(residual).abs().amax(dim=1).mean()


@NORMS.register("huber")
def huber(residual: Tensor, *, delta: float = 1.0) -> Tensor:
    """Huber loss with threshold δ, ``torch.nn.functional.huber_loss`` semantics.

    Per element: ``½ r²`` if ``|r| < δ`` else ``δ(|r| − ½δ)``.  (``smooth_l1`` with β = δ equals
    this divided by δ; this module uses the Huber form.)
    REDUCTION: overall element mean.  Independent of resolution.
    """
    _positive("delta", delta)
    return torch.nn.functional.huber_loss(residual, torch.zeros_like(residual), reduction="mean", delta=float(delta))


@NORMS.register("l21")
def l21(residual: Tensor) -> Tensor:
    """Group L2,1 norm per sample: ``mean_b Σ_c ‖r_{b,c,:}‖₂``.

    Each sample's residual is viewed as a matrix with one ROW per index of dim 1 (the channel
    for images: rows = ``r[b].reshape(C, -1)``); the L2,1 norm of a matrix is the sum of the L2
    norms of its rows.  A (B, D) residual has one row per sample, so ``l21`` equals ``l2`` there.
    REDUCTION: per-sample sum over rows of row L2 norms, then batch mean.  Scales with C·sqrt(H·W).
    """
    if residual.dim() <= 2:
        return l2(residual)
    rows = residual.flatten(2)  # (B, C, H*W)
    return torch.linalg.vector_norm(rows, ord=2, dim=2).sum(dim=1).mean()


@NORMS.register("l0_smooth")
def l0_smooth(residual: Tensor, *, eps: float = 1e-2) -> Tensor:
    """Smooth L0 surrogate: ``mean_{b,i} r²/(r² + ε)`` (≈ fraction of non-zero elements).

    ε should be scaled to the data range (default 1e-2, i.e. |r| ≫ 0.1 counts as "non-zero";
    the gradient vanishes there).  REDUCTION: overall element mean (the sheet's Σ normalized by
    element count).  Independent of resolution.
    """
    _positive("eps", eps)
    sq = residual.square()
    return (sq / (sq + eps)).mean()


@NORMS.register("sl0")
def sl0(residual: Tensor, *, sigma: float = 0.1) -> Tensor:
    """SL0 surrogate: ``mean_{b,i} (1 − exp(−r²/(2σ²)))`` (the sheet's n − Σ exp(·), over n).

    σ is annealed downward by a schedule outside this function.  REDUCTION: overall element
    mean.  Independent of resolution.
    """
    _positive("sigma", sigma)
    return (1.0 - torch.exp(-residual.square() / (2.0 * sigma * sigma))).mean()


@NORMS.register("logsum")
def logsum(residual: Tensor, *, eps: float = 1e-2) -> Tensor:
    """Log-sum penalty: ``mean_{b,i} log(1 + |r|/ε)``.

    REDUCTION: overall element mean (the sheet's Σ normalized by element count).  Independent of
    resolution.
    """
    _positive("eps", eps)
    return torch.log1p(residual.abs() / eps).mean()


def residual_norm(residual: Tensor, name: str = "l1", **params) -> Tensor:
    """Apply the registered norm ``name`` to ``residual`` with its parameters.

    Unknown names raise the registry's :class:`~normgan.errors.ConfigError` listing the choices;
    unknown parameters raise TypeError, bad values ValueError.
    """
    fn = NORMS.get(name)
    try:
        inspect.signature(fn).bind(residual, **params)
    except TypeError as exc:
        raise TypeError(f"norm {name!r}: bad parameters {sorted(params)} ({exc})") from None
    return fn(residual, **params)


__all__ = [
    "NORMS",
    "ELEMENT_MEAN",
    "sum_scale",
    "residual_norm",
    "l1",
    "l2",
    "sql2",
    "sql2_mean",
    "lp",
    "linf",
    "huber",
    "l21",
    "l0_smooth",
    "sl0",
    "logsum",
]
