"""Evaluate a sampler against a real reference set: FID (+ its real-vs-real floor), KID,
precision/recall and Inception Score in one call.

    scores = evaluate(sample_fn=lambda b: G(torch.randn(b, z_dim)), reference=train_data,
                      extractor=build_feature_extractor("domain", data=train_data), n=10_000)

``sample_fn(batch_size)`` must return float images in ``[-1, 1]`` of shape ``(B, C, H, W)``; the
caller wraps the generator (EMA weights, eval mode, conditioning...).  Features are gathered in
float64 under ``torch.inference_mode``.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import Tensor, nn

from normgan.errors import ConfigError
from normgan.metrics.functional import fid_from_features, inception_score, kid_from_features, precision_recall

__all__ = ["evaluate", "real_features", "generated_features", "METRICS"]

METRICS = ("fid", "kid", "pr", "is")


def _to_float(images: Tensor) -> Tensor:
    from normgan.data import batch_to_float

    return batch_to_float(images)


def _extract(extractor: nn.Module, x: Tensor, want_logits: bool) -> tuple[Tensor, Tensor | None]:
    if want_logits:
        if hasattr(extractor, "features_and_logits"):
            f, lg = extractor.features_and_logits(x)
        else:
            f, lg = extractor(x), extractor.logits(x)
        return f.reshape(f.shape[0], -1).double().cpu(), lg.reshape(lg.shape[0], -1).double().cpu()
    f = extractor(x)
    return f.reshape(f.shape[0], -1).double().cpu(), None


def _cat(parts: list[Tensor | None]) -> Tensor | None:
    return None if not parts or parts[0] is None else torch.cat(parts)


@torch.inference_mode()
def real_features(extractor: nn.Module, data, *, n: int | None = None, batch_size: int = 500, device="cpu",
                  indices: Tensor | None = None, logits: bool = False):
    """Features of real images: ``data.images[indices]`` (default: the first ``n``, or all).

    Returns a float64 ``(n, d)`` tensor, or ``(features, logits)`` when ``logits=True``.
    """
    if indices is None:
        indices = torch.arange(len(data) if n is None else min(int(n), len(data)))
    extractor.eval()
    feats, lgs = [], []
    for s in range(0, len(indices), batch_size):
        x = _to_float(data.images[indices[s : s + batch_size]]).to(device)
        f, lg = _extract(extractor, x, logits)
        feats.append(f)
        lgs.append(lg)
    out = _cat(feats)
    return (out, _cat(lgs)) if logits else out


@torch.inference_mode()
def generated_features(extractor: nn.Module, sample_fn: Callable[[int], Tensor], *, n: int, batch_size: int = 500,
                       device="cpu", logits: bool = False):
    """Features of ``n`` images drawn with ``sample_fn(b)`` in batches of at most ``batch_size``.

    Returns a float64 ``(n, d)`` tensor, or ``(features, logits)`` when ``logits=True``.
    """
    extractor.eval()
    feats, lgs, done = [], [], 0
    while done < n:
        b = min(batch_size, n - done)
        x = sample_fn(b)
        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[0] != b:
            raise ValueError(f"sample_fn({b}) must return a (B={b}, C, H, W) tensor, got {getattr(x, 'shape', type(x))}")
        f, lg = _extract(extractor, x.to(device=device, dtype=torch.float32), logits)
        feats.append(f)
        lgs.append(lg)
        done += b
    out = _cat(feats)
    return (out, _cat(lgs)) if logits else out


def evaluate(*, sample_fn: Callable[[int], Tensor], reference, extractor: nn.Module, n: int,
             metrics: Iterable[str] = METRICS, batch_size: int = 500, device="cpu", seed: int = 0,
             kid_subsets: int = 100, kid_subset_size: int = 1000, pr_k: int = 3, is_splits: int = 10) -> dict:
    """Score ``n`` generated images against the ``reference`` ImageData.

    Reference sampling: a permutation of the reference drawn with ``seed``.  If the reference has
    at least ``2n`` images, set A = its first ``n`` and B = the next ``n`` (disjoint); otherwise
    A and B are two disjoint halves of ``m = len(reference) // 2`` images each.  ``fid`` compares
    ``min(n, len(reference))`` reference images (A, then B) with the ``n`` generated ones;
    ``fid_floor`` is FID(A, B), the value a perfect generator would get at ``fid_floor_n``
    samples (FID is biased by N; compare at equal N).  KID and precision/recall use the same real
    set as ``fid``.  Generation runs under a forked RNG seeded with ``seed``, so the caller's
    global RNG is untouched and results are reproducible.

    Args:
        metrics: any of ``"fid"`` (adds ``fid``, ``fid_floor``, ``fid_floor_n``), ``"kid"``
            (``kid_mean``, ``kid_std``; ``kid_subsets`` × ``kid_subset_size``), ``"pr"``
            (``precision``, ``recall``; ``pr_k``-NN), ``"is"`` (``is_mean``, ``is_std`` over
            ``is_splits``; only when the extractor has ``logits``).

    Returns:
        A flat dict of floats plus ``n`` (generated count), ``n_real`` and ``features``
        (the extractor's name).
    """
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ConfigError(f"metrics: unknown metric {unknown[0]!r}; choose from: {', '.join(METRICS)}")
    n = int(n)
    if n < 2:
        raise ConfigError(f"eval n: {n} is too small; use at least 2 (10000 or more for reportable FID)")
    if len(reference) < 4:
        raise ConfigError(f"the reference set has {len(reference)} images; it needs at least 4")
    want_is = "is" in metrics and callable(getattr(extractor, "logits", None))

    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(reference), generator=gen)
    n_real = min(n, len(reference))
    floor_n = n if len(reference) >= 2 * n else len(reference) // 2
    need = max(n_real, 2 * floor_n) if "fid" in metrics else n_real
    real = real_features(extractor, reference, indices=perm[:need], batch_size=batch_size, device=device)
    real_main = real[:n_real]

    dev = torch.device(device)
    cuda_ids = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_ids):
        torch.manual_seed(seed)
        out = generated_features(extractor, sample_fn, n=n, batch_size=batch_size, device=device, logits=want_is)
    fake, fake_logits = out if want_is else (out, None)

    result: dict = {"n": n, "n_real": n_real, "features": str(getattr(extractor, "name", type(extractor).__name__))}
    if "fid" in metrics:
        result["fid"] = fid_from_features(real_main, fake)
        result["fid_floor"] = fid_from_features(real[:floor_n], real[floor_n : 2 * floor_n])
        result["fid_floor_n"] = floor_n
    if "kid" in metrics:
        result["kid_mean"], result["kid_std"] = kid_from_features(
            real_main, fake, subsets=kid_subsets, subset_size=kid_subset_size, generator=gen
        )
    if "pr" in metrics:
        result["precision"], result["recall"] = precision_recall(real_main, fake, k=pr_k)
    if want_is:
        result["is_mean"], result["is_std"] = inception_score(fake_logits, splits=min(is_splits, n), kind="logits")
    return result
