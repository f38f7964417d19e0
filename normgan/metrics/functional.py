"""Pure sample-quality metrics on feature arrays.

Every function takes feature tensors of shape ``(N, d)`` (any float dtype; computed in float64)
and returns Python floats.  Nothing here knows about images or networks: see
:mod:`normgan.metrics.features` for extractors and :mod:`normgan.metrics.evaluate` for the
high-level driver.

Conventions (stated once, used everywhere):

* FID uses the unbiased covariance (divide by ``N - 1``) and the matrix square root through the
  symmetric form ``Tr((Σ_r Σ_g)^½) = Tr((Σ_r^½ Σ_g Σ_r^½)^½)``, which equals the
  ``torchmetrics`` / ``scipy.linalg.sqrtm`` value but stays real and stable.
* KID is the unbiased MMD² with the cubic polynomial kernel, computed by ``torchmetrics``'
  ``poly_mmd``; its std is the population std (``ddof = 0``) over subsets, as in torchmetrics, and
  None when the subsets cannot differ (subsets as large as both sets); :func:`kid_subset_size`
  picks a subset size below ``N`` so that they do.
* Inception Score's std is the population std (``ddof = 0``) over splits, as in the original code;
  splits are contiguous chunks (``numpy.array_split`` order), no shuffling.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "fid_from_features",
    "kid_from_features",
    "kid_subset_size",
    "precision_recall",
    "inception_score",
    "class_coverage",
    "mean_pairwise_distance",
    "DIVERSITY_SAMPLES",
]

#: Samples used on each side of the ``diversity`` ratio (all pairs among them).
DIVERSITY_SAMPLES = 2000


def _as_features(x: Tensor, what: str) -> Tensor:
    x = torch.as_tensor(x)
    if x.ndim != 2:
        raise ValueError(f"{what} features must have shape (N, d), got {tuple(x.shape)}")
    return x.detach().to(torch.float64)


def _mean_cov(x: Tensor) -> tuple[Tensor, Tensor]:
    mu = x.mean(dim=0)
    xc = x - mu
    cov = xc.T @ xc / (x.shape[0] - 1)  # unbiased (N - 1)
    return mu, cov


def _psd_sqrt(a: Tensor) -> Tensor:
    """Square root of a symmetric positive semi-definite matrix (negative eigenvalues clipped)."""
    vals, vecs = torch.linalg.eigh((a + a.T) / 2)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def fid_from_features(real: Tensor, fake: Tensor) -> float:
    r"""Fréchet distance between Gaussians fitted to two feature sets.

    .. math::
        \mathrm{FID} = \lVert\mu_r - \mu_g\rVert_2^2
                       + \operatorname{Tr}\big(\Sigma_r + \Sigma_g - 2(\Sigma_r\Sigma_g)^{1/2}\big)

    with unbiased covariances (``N - 1``).  The trace of the square root is computed as
    ``Σ sqrt(λ_i)`` over the eigenvalues of the symmetric PSD matrix ``Σ_r^½ Σ_g Σ_r^½``, which
    has the same eigenvalues as ``Σ_r Σ_g``.  FID is biased by the sample count: compare values
    only at equal ``N``.

    Args:
        real: ``(N_r, d)`` features of real images, ``N_r >= 2``.
        fake: ``(N_g, d)`` features of generated images, ``N_g >= 2``.
    """
    real, fake = _as_features(real, "real"), _as_features(fake, "fake")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sizes differ: real {real.shape[1]}, fake {fake.shape[1]}")
    if real.shape[0] < 2 or fake.shape[0] < 2:
        raise ValueError("FID needs at least 2 samples in each set")
    mu_r, cov_r = _mean_cov(real)
    mu_g, cov_g = _mean_cov(fake)
    s = _psd_sqrt(cov_r)
    m = s @ cov_g @ s
    tr_sqrt = torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0).sqrt().sum()
    fid = (mu_r - mu_g).square().sum() + cov_r.trace() + cov_g.trace() - 2 * tr_sqrt
    return float(fid)


def kid_subset_size(n_real: int, n_fake: int, requested: int = 1000) -> int:
    """The KID subset size for ``n_real`` real and ``n_fake`` generated samples: ``requested``,
    capped at half the smaller set, so that every subset is a proper subset of both sets and the
    subsets differ (at ``N = 500`` and ``requested = 1000``: 250).  When half the smaller set is
    below 2 (``N < 4``) no spread can be had: the whole smaller set is used.

    The cap at ``N // 2`` (rather than ``N``) is what makes the spread mean something: subsets of
    the whole sample are the same sample in another order, and their "std" is rounding noise
    (``± 7e-16``).  At the usual ``N >= 2000`` this is the standard 1000 (Bińkowski et al. 2018,
    clean-fid, torchmetrics)."""
    n = min(int(n_real), int(n_fake))
    half = n // 2
    return min(int(requested), half) if half >= 2 else n


def kid_from_features(
    real: Tensor,
    fake: Tensor,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    generator: torch.Generator | None = None,
) -> tuple[float, float | None]:
    r"""Kernel Inception Distance: unbiased MMD² with ``k(x, y) = (xᵀy / d + 1)³``, over subsets.

    For each of ``subsets`` draws, ``m = min(subset_size, N_r, N_g)`` rows are taken without
    replacement from each set (``torch.randperm(N, generator=generator)[:m]``, real first, then
    fake) and

    .. math::
        \mathrm{MMD}^2_u = \frac{1}{m(m-1)}\sum_{i\ne j}\big(k(x_i,x_j) + k(y_i,y_j)\big)
                           - \frac{2}{m^2}\sum_{i,j} k(x_i, y_j).

    When ``m`` equals both ``N_r`` and ``N_g`` every subset is the whole sample (only reordered),
    so one estimate is computed and there is no spread; likewise for ``subsets = 1``.  Use
    :func:`kid_subset_size` to pick an ``m`` that leaves a spread.

    Returns:
        ``(mean, std)`` over subsets; std is the population std (``ddof = 0``) of the subset
        estimates, or None when there is only one distinct estimate (see above).
    """
    from torchmetrics.image.kid import poly_mmd

    real, fake = _as_features(real, "real"), _as_features(fake, "fake")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sizes differ: real {real.shape[1]}, fake {fake.shape[1]}")
    m = min(int(subset_size), real.shape[0], fake.shape[0])
    if m < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    if subsets < 1:
        raise ValueError("subsets must be >= 1")
    if m == real.shape[0] == fake.shape[0]:
        return float(poly_mmd(real, fake, degree=3, gamma=None, coef=1.0)), None
    scores = []
    for _ in range(int(subsets)):
        ir = torch.randperm(real.shape[0], generator=generator)[:m]
        ig = torch.randperm(fake.shape[0], generator=generator)[:m]
        scores.append(poly_mmd(real[ir], fake[ig], degree=3, gamma=None, coef=1.0))
    s = torch.stack(scores)
    return float(s.mean()), (float(s.std(unbiased=False)) if len(scores) > 1 else None)


def _chunk_rows(n_cols: int, budget: int = 1 << 23) -> int:
    """Rows per chunk so a (rows, n_cols) float64 distance block stays near ``budget`` elements."""
    return max(1, budget // max(1, n_cols))


def _knn_radii(x: Tensor, k: int) -> Tensor:
    """Distance from each row of ``x`` to its k-th nearest neighbour in ``x``, excluding itself."""
    n = x.shape[0]
    if n <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples per set, got {n}")
    out = torch.empty(n, dtype=x.dtype, device=x.device)
    step = _chunk_rows(n)
    for start in range(0, n, step):
        d = torch.cdist(x[start : start + step], x)
        # Exclude self exactly (rather than relying on the self distance being the smallest).
        rows = torch.arange(d.shape[0], device=x.device)
        d[rows, rows + start] = float("inf")
        out[start : start + step] = d.kthvalue(k, dim=1).values
    return out


def _coverage(queries: Tensor, centres: Tensor, radii: Tensor) -> float:
    """Fraction of ``queries`` lying in at least one closed ball ``‖q - c_i‖ <= r_i``."""
    inside = 0
    step = _chunk_rows(centres.shape[0])
    for start in range(0, queries.shape[0], step):
        d = torch.cdist(queries[start : start + step], centres)
        inside += int((d <= radii[None, :]).any(dim=1).sum())
    return inside / queries.shape[0]


def precision_recall(real: Tensor, fake: Tensor, *, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al., 2019) with k-NN manifolds.

    Each sample's radius is the Euclidean distance to its ``k``-th nearest neighbour within its
    own set, excluding itself.  The manifold of a set is the union of closed balls
    ``{z : ‖z - x_i‖ <= r_i}``.

    * precision = fraction of fake samples inside the real manifold;
    * recall    = fraction of real samples inside the fake manifold.

    Distances are computed in float64 with chunked ``torch.cdist`` (about 8M distances per
    block), so memory stays bounded for large ``N``.

    Returns:
        ``(precision, recall)``, both in ``[0, 1]``.
    """
    real, fake = _as_features(real, "real"), _as_features(fake, "fake")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sizes differ: real {real.shape[1]}, fake {fake.shape[1]}")
    r_real = _knn_radii(real, k)
    r_fake = _knn_radii(fake, k)
    return _coverage(fake, real, r_real), _coverage(real, fake, r_fake)


def inception_score(
    logits_or_probs: Tensor,
    *,
    splits: int = 10,
    kind: Literal["auto", "logits", "probs"] = "auto",
) -> tuple[float, float]:
    r"""Inception Score ``exp(E_x KL(p(y|x) ‖ p(y)))``, as mean and std over ``splits``.

    The ``N`` rows are cut into ``splits`` contiguous chunks (``numpy.array_split`` order); in
    each chunk ``p(y)`` is the mean of ``p(y|x)`` over the chunk and the score is
    ``exp(mean_x Σ_y p(y|x) (log p(y|x) − log p(y)))``.

    Args:
        logits_or_probs: ``(N, num_classes)``.  ``kind="auto"`` treats the input as
            probabilities when every entry is in ``[0, 1]`` and every row sums to 1 (±1e-4),
            otherwise as logits (softmax applied).
        splits: number of chunks; must be ``<= N``.
        kind: force ``"logits"`` or ``"probs"`` instead of detecting.

    Returns:
        ``(mean, std)`` over splits; std is the population std (``ddof = 0``).
    """
    x = _as_features(logits_or_probs, "logits/probs")
    if kind == "auto":
        is_probs = bool(
            (x >= 0).all() and (x <= 1).all() and torch.allclose(x.sum(1), torch.ones_like(x[:, 0]), atol=1e-4)
        )
        kind = "probs" if is_probs else "logits"
    if kind == "logits":
        logp = torch.log_softmax(x, dim=1)
    elif kind == "probs":
        logp = torch.log(x.clamp_min(1e-30))
    else:
        raise ValueError(f"kind must be 'auto', 'logits' or 'probs', got {kind!r}")
    if not 1 <= splits <= x.shape[0]:
        raise ValueError(f"splits must be between 1 and N={x.shape[0]}, got {splits}")
    p = logp.exp()
    scores = []
    for lp, pp in zip(torch.tensor_split(logp, splits), torch.tensor_split(p, splits)):
        log_py = torch.log(pp.mean(dim=0).clamp_min(1e-30))
        kl = (pp * (lp - log_py)).sum(dim=1).mean()
        scores.append(kl.exp())
    s = torch.stack(scores)
    return float(s.mean()), float(s.std(unbiased=False))


def class_coverage(logits: Tensor, num_classes: int | None = None) -> float:
    """Fraction of the ``K`` classes (``num_classes``, default the logits' width) that are the
    argmax of at least ``N / (4K)`` of the ``N`` rows of ``logits``: a quarter of the uniform share.
    1.0 when every class is represented, ``1/K`` for a single mode."""
    logits = torch.as_tensor(logits)
    k = int(num_classes or logits.shape[1])
    counts = torch.bincount(logits.argmax(1), minlength=k).double()
    share = counts / max(1, logits.shape[0])
    return float((share >= 1.0 / (4 * k)).double().mean())


def mean_pairwise_distance(x: Tensor, *, max_samples: int = DIVERSITY_SAMPLES) -> float:
    r"""Mean Euclidean distance over all pairs ``i < j`` among the first ``m = min(N, max_samples)``
    rows of ``x`` (rows flattened): :math:`\frac{2}{m(m-1)}\sum_{i<j}\lVert x_i - x_j\rVert_2`,
    in float64; NaN when ``m < 2``."""
    x = torch.as_tensor(x)
    x = x[:max_samples].double()
    x = x.flatten(1) if x.ndim > 2 else x
    m = x.shape[0]
    if m < 2:
        return float("nan")
    total = 0.0
    for s in range(0, m, 500):  # chunked: m x m distances without an m x m x d tensor
        total += float(torch.cdist(x[s : s + 500], x).sum())
    return total / (m * (m - 1))  # the diagonal is 0; each pair counted twice over m(m-1) ordered pairs
