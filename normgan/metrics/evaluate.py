"""Evaluate a sampler against a real reference set: FID (+ its real-vs-real floor), KID,
precision/recall and Inception Score in one call.

    scores = evaluate(sample_fn=lambda b: G(torch.randn(b, z_dim)), reference=train_data,
                      extractor=build_feature_extractor("domain", data=train_data), n=10_000)

``sample_fn(batch_size)`` must return float images in ``[-1, 1]`` of shape ``(B, C, H, W)``; the
caller wraps the generator (EMA weights, eval mode, conditioning...).  Features are gathered in
float64 under ``torch.inference_mode``.

:class:`ReferenceScorer` is the one implementation of the reference sampling and scoring: it
prepares the reference features once and scores any number of generated sets against them.
:func:`evaluate` is one scorer called once; ``normgan.eval.evaluation`` (``normgan eval``, the periodic
evaluator of the training loop) builds one per evaluation target and adds its extra numbers.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

import torch
from torch import Tensor, nn

from normgan.errors import ConfigError
from normgan.eval.metric_info import PR_K, min_samples
from normgan.metrics.functional import (
    fid_from_features,
    inception_score,
    kid_from_features,
    kid_subset_size,
    precision_recall,
)

__all__ = ["evaluate", "real_features", "generated_features", "ReferenceScorer", "METRICS"]

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
def real_features(
    extractor: nn.Module,
    data,
    *,
    n: int | None = None,
    batch_size: int = 500,
    device="cpu",
    indices: Tensor | None = None,
    logits: bool = False,
    progress: Optional[bool] = False,
):
    """Features of real images: ``data.images[indices]`` (default: the first ``n``, or all).

    Batched: only ``batch_size`` images are decoded (a streamed folder), converted to float and
    moved to the device at a time; the result is ``d`` float64 numbers per image.  ``progress``:
    a bar on stderr (True, False, or None: when stderr is a terminal).

    Returns a float64 ``(n, d)`` tensor, or ``(features, logits)`` when ``logits=True``.
    """
    from normgan.metrics import progress as prog

    if indices is None:
        indices = torch.arange(len(data) if n is None else min(int(n), len(data)))
    extractor.eval()
    feats, lgs = [], []
    bar = prog.bar(total=len(indices), desc="reference features", unit="image", progress=progress)
    try:
        for s in range(0, len(indices), batch_size):
            x = _to_float(data.images[indices[s : s + batch_size]]).to(device)
            f, lg = _extract(extractor, x, logits)
            feats.append(f)
            lgs.append(lg)
            bar.update(x.shape[0])
    finally:
        bar.close()
    out = _cat(feats)
    return (out, _cat(lgs)) if logits else out


@torch.inference_mode()
def generated_features(
    extractor: nn.Module,
    sample_fn: Callable[[int], Tensor],
    *,
    n: int,
    batch_size: int = 500,
    device="cpu",
    logits: bool = False,
):
    """Features of ``n`` images drawn with ``sample_fn(b)`` in batches of at most ``batch_size``.

    Returns a float64 ``(n, d)`` tensor, or ``(features, logits)`` when ``logits=True``.
    """
    extractor.eval()
    feats, lgs, done = [], [], 0
    while done < n:
        b = min(batch_size, n - done)
        x = sample_fn(b)
        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[0] != b:
            raise ValueError(
                f"sample_fn({b}) must return a (B={b}, C, H, W) tensor, got {getattr(x, 'shape', type(x))}"
            )
        f, lg = _extract(extractor, x.to(device=device, dtype=torch.float32), logits)
        feats.append(f)
        lgs.append(lg)
        done += b
    out = _cat(feats)
    return (out, _cat(lgs)) if logits else out


def _checked_metrics_and_n(metrics: Iterable[str], *, n: int, reference, pr_k: int) -> tuple:
    """``(metrics as a tuple, n as an int)``; a ConfigError for an unknown metric, an ``n`` too small for
    the metrics, or a reference set too small for them."""
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ConfigError(f"metrics: unknown metric {unknown[0]!r}; choose from: {', '.join(METRICS)}")
    n = int(n)
    need = max(min_samples(metrics), pr_k + 1 if "pr" in metrics else 2)
    if n < need:
        raise ConfigError(
            f"eval n: {n} is too small for metrics {','.join(metrics)}; use at least {need} "
            "(10000 or more for reportable FID)"
        )
    if len(reference) < max(4, need):
        raise ConfigError(f"the reference set has {len(reference)} images; it needs at least {max(4, need)}")
    return metrics, n


class ReferenceScorer:
    """Reference features computed once; generated sets scored against them.

    Reference sampling: a permutation of the reference drawn with a ``torch.Generator`` seeded
    with ``seed``.  ``n_real = min(n, len(reference))``.  If the reference has at least ``2n``
    images, set A = its first ``n`` and B = the next ``n`` (disjoint); otherwise A and B are two
    disjoint halves of ``fid_floor_n = len(reference) // 2`` images each.  ``fid`` compares the
    first ``n_real`` permuted reference images with the ``n`` generated ones; ``fid_floor`` is
    FID(A, B), the value a perfect generator would get at ``fid_floor_n`` samples per side (FID
    is biased by N; compare at equal N).  KID and precision/recall use the same ``n_real`` real
    images as ``fid``; KID's subsets continue the permutation's generator stream (restored at
    every :meth:`score`, so equal inputs give equal numbers).  :meth:`generate` runs under a
    forked RNG seeded with ``seed``: the caller's global RNG is untouched and results are
    reproducible.

    ``progress``: a bar on stderr while the reference features are extracted (True, False, or
    None: when stderr is a terminal).

    Attributes: ``real`` (the ``(n_real, d)`` float64 features), ``n_real``, ``fid_floor``,
    ``fid_floor_n``, ``has_logits`` (the extractor has ``logits``), ``want_is``.
    """

    def __init__(
        self,
        *,
        reference,
        extractor: nn.Module,
        n: int,
        metrics: Iterable[str] = METRICS,
        batch_size: int = 500,
        device="cpu",
        seed: int = 0,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        pr_k: int = PR_K,
        is_splits: int = 10,
        progress: Optional[bool] = False,
    ) -> None:
        metrics, n = _checked_metrics_and_n(metrics, n=n, reference=reference, pr_k=pr_k)
        self.metrics, self.n, self.seed = metrics, n, int(seed)
        self.batch_size, self.device = int(batch_size), torch.device(device)
        self.kid_subsets, self.kid_subset_size, self.pr_k, self.is_splits = (
            kid_subsets,
            kid_subset_size,
            pr_k,
            is_splits,
        )
        self.extractor = extractor
        self.features = str(getattr(extractor, "name", type(extractor).__name__))
        self.has_logits = callable(getattr(extractor, "logits", None))
        self.want_is = "is" in metrics and self.has_logits

        gen = torch.Generator().manual_seed(self.seed)
        perm = torch.randperm(len(reference), generator=gen)
        self._kid_state = gen.get_state()  # KID subsets continue this stream
        self.n_real = min(n, len(reference))
        self.fid_floor_n = n if len(reference) >= 2 * n else len(reference) // 2
        count = max(self.n_real, 2 * self.fid_floor_n) if "fid" in metrics else self.n_real
        real = real_features(
            extractor,
            reference,
            indices=perm[:count],
            batch_size=self.batch_size,
            device=self.device,
            progress=progress,
        )
        self.real = real[: self.n_real]
        self.fid_floor = (
            fid_from_features(real[: self.fid_floor_n], real[self.fid_floor_n : 2 * self.fid_floor_n])
            if "fid" in metrics
            else None
        )

    def generate(self, sample_fn: Callable[[int], Tensor], *, logits: Optional[bool] = None):
        """``(features, logits or None)`` of ``n`` images of ``sample_fn``, drawn under a forked RNG
        seeded with ``seed``; logits when ``logits`` (default: only when IS is wanted)."""
        logits = self.want_is if logits is None else bool(logits and self.has_logits)
        dev = self.device
        cuda_ids = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda_ids):
            torch.manual_seed(self.seed)
            out = generated_features(
                self.extractor, sample_fn, n=self.n, batch_size=self.batch_size, device=dev, logits=logits
            )
        return out if logits else (out, None)

    def score(self, fake: Tensor, fake_logits: Optional[Tensor] = None) -> dict:
        """The metrics of ``fake`` (``(n, d)`` features; logits for IS) against the reference."""
        result: dict = {"n": int(fake.shape[0]), "n_real": self.n_real, "features": self.features}
        if "fid" in self.metrics:
            result["fid"] = fid_from_features(self.real, fake)
            result["fid_floor"] = self.fid_floor
            result["fid_floor_n"] = self.fid_floor_n
        if "kid" in self.metrics:
            gen = torch.Generator()
            gen.set_state(self._kid_state)
            m = kid_subset_size(self.real.shape[0], fake.shape[0], self.kid_subset_size)
            result["kid_mean"], result["kid_std"] = kid_from_features(
                self.real, fake, subsets=self.kid_subsets, subset_size=m, generator=gen
            )
            # the subset size actually used (kid_subset_size caps the request at half the smaller
            # set so that subsets differ); one subset and no std when even that is impossible (N < 4)
            result["kid_subset_size"] = m
            result["kid_subsets"] = self.kid_subsets if result["kid_std"] is not None else 1
        if "pr" in self.metrics:
            result["precision"], result["recall"] = precision_recall(self.real, fake, k=self.pr_k)
        if self.want_is and fake_logits is not None:
            result["is_mean"], result["is_std"] = inception_score(
                fake_logits, splits=min(self.is_splits, int(fake.shape[0])), kind="logits"
            )
        return result

    def __call__(self, sample_fn: Callable[[int], Tensor]) -> dict:
        return self.score(*self.generate(sample_fn))


def evaluate(
    *,
    sample_fn: Callable[[int], Tensor],
    reference,
    extractor: nn.Module,
    n: int,
    metrics: Iterable[str] = METRICS,
    batch_size: int = 500,
    device="cpu",
    seed: int = 0,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    pr_k: int = PR_K,
    is_splits: int = 10,
) -> dict:
    """Score ``n`` generated images against the ``reference`` ImageData: one
    :class:`ReferenceScorer` (whose docstring defines the reference sampling) called once.

    Args:
        metrics: any of ``"fid"`` (adds ``fid``, ``fid_floor``, ``fid_floor_n``), ``"kid"``
            (``kid_mean``, ``kid_std`` over ``kid_subsets`` subsets of ``kid_subset_size`` — the
            request capped at half the smaller set, :func:`~normgan.metrics.functional.kid_subset_size`,
            both stored under those names; ``kid_std`` None when no spread exists), ``"pr"``
            (``precision``, ``recall``; ``pr_k``-NN), ``"is"`` (``is_mean``, ``is_std`` over
            ``is_splits``; only when the extractor has ``logits``).  ``n`` must be at least
            :func:`normgan.eval.metric_info.min_samples` of them (``pr_k + 1`` for ``pr``).

    Returns:
        A flat dict of floats plus ``n`` (generated count), ``n_real`` and ``features``
        (the extractor's name).
    """
    scorer = ReferenceScorer(
        reference=reference,
        extractor=extractor,
        n=n,
        metrics=metrics,
        batch_size=batch_size,
        device=device,
        seed=seed,
        kid_subsets=kid_subsets,
        kid_subset_size=kid_subset_size,
        pr_k=pr_k,
        is_splits=is_splits,
    )
    return scorer(sample_fn)
