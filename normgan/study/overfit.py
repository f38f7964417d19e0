r"""Overfitting scores of a finished run: does the generator stay closer to its training images
than to unseen images of the same distribution?

    from normgan.study.overfit import overfitting_scores
    s = overfitting_scores("runs/00003-mnist5k-bce", n=1000)   # a run trained with data.holdout=0.9
    s["fid_gap"], s["memorization"], s["memorization_real"]

Definitions (features ``φ`` from the run's extractor, its ``eval.features`` by default, named in the
result's ``features``; ``T`` = the training split, ``M = |T|`` images; ``A``, ``B`` = two disjoint
random subsets of ``M`` held-out images each, drawn from one seeded permutation of the held-out
split; ``G`` = ``n`` generated images):

* ``fid_train   = FID(φ(T), φ(G))``
* ``fid_heldout = FID(φ(A), φ(G))`` — the same size as ``T``, because FID is biased by the
  reference size;
* ``fid_gap     = fid_heldout − fid_train`` (> 0: samples closer to the training images than to
  unseen ones);
* ``memorization = memorization_score(φ(G), train=φ(T), heldout=φ(A))``: the share of samples whose
  nearest training image is closer than their nearest held-out image (ties half), ≈ 0.5 for a
  generator that does not copy, 1.0 for one that returns training images;
* ``memorization_real = memorization_score(φ(B), train=φ(T), heldout=φ(A))``: the same score for
  real unseen images, the control (≈ 0.5 by construction, up to the extractor's own bias: the
  ``domain`` classifier was trained on ``T``); ``None`` when the held-out split has fewer than
  ``2M`` images.
* ``fid_gap_real = FID(φ(A), φ(B)) − FID(φ(T), φ(B))``: the gap of real unseen images, the FID
  control (the ``domain`` classifier, trained on ``T``, places ``T`` a little apart); a generator
  overfits when its ``fid_gap`` exceeds this; ``None`` without ``B``.

Generation and featurization are those of the normal evaluation (:class:`normgan.eval.evaluation.
PeriodicEvaluator`): ``G(z)`` with ``z ~ N(0, I)`` drawn by ``torch.randn`` under a forked RNG seeded
with ``seed``, in batches of 500, features in float64 under ``inference_mode``.  So with
``n >= M`` the generated images — and ``fid_train`` — equal those of
``evaluate_generator(G, cfg, n=n, features=features, reference="train", seed=seed)``.

With ``domain`` the classifier is trained on ``T`` alone: on a small ``T`` (100 digits) it is a poor
judge.  ``domain-full`` is the classifier of the source's default split (data.holdout 0.1), which
holds ``T`` and most held-out images alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from normgan.errors import UserError

__all__ = ["overfitting_scores"]

#: images per generator / extractor batch, as in the normal evaluation
BATCH_SIZE = 500


def _reference_splits(run_dir: str | Path, cfg) -> tuple:
    """The training and held-out reference datasets of the run's config ``cfg``; refuses a paired
    run, a run without a held-out split, a held-out split smaller than the training split and a
    training split of fewer than 2 images."""
    from normgan.eval.evaluation import reference_dataset
    from normgan.tasks.info import TASK_INFO

    TASK_INFO.get(cfg.task).require_noise_samples(run_dir, what="; overfitting scores need an unconditional generator")
    if cfg.data.holdout <= 0 and not cfg.data.folds:
        raise UserError(
            f"run '{run_dir}' was trained with data.holdout=0, so it has no held-out split; "
            "train with data.holdout=0.9 (any value that leaves at least as many held-out as training "
            "images)"
        )
    train = reference_dataset(cfg, "train")
    heldout = reference_dataset(cfg, "test")
    m = len(train)
    if len(heldout) < m:
        if cfg.data.folds:
            raise UserError(
                f"the held-out fold has {len(heldout)} images, fewer than the {m} training images; "
                "train without data.folds and with a larger data.holdout (e.g. 0.9) so both FIDs use "
                "references of equal size"
            )
        raise UserError(
            f"the held-out split has {len(heldout)} images, fewer than the {m} training images; "
            f"raise data.holdout (e.g. data.holdout=0.9) so both FIDs use references of equal size"
        )
    if m < 2:
        raise UserError(f"the training split has {m} image(s); FID needs at least 2 (lower data.holdout)")
    return train, heldout


def _heldout_subsets(n_heldout: int, *, m: int, seed: int) -> tuple:
    """Two disjoint subsets of ``m`` held-out indices, from a permutation seeded with ``seed`` (a
    private ``torch.Generator``); the second is None when the held-out split has fewer than ``2 m``."""
    perm = torch.randperm(n_heldout, generator=torch.Generator().manual_seed(int(seed)))
    idx_a = perm[:m]
    idx_b = perm[m : 2 * m] if n_heldout >= 2 * m else None
    return idx_a, idx_b


def _fake_features(extractor, G, *, device, n: int, seed: int) -> torch.Tensor:
    """The features of ``n`` images of ``G``, drawn exactly as ReferenceScorer.generate does: from
    the global RNG forked and seeded with ``seed`` (the caller's RNG untouched)."""
    from normgan.eval.evaluation import noise_sampler
    from normgan.metrics.evaluate import generated_features

    dev = device
    cuda = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(int(seed))
        return generated_features(extractor, noise_sampler(G, dev), n=int(n), batch_size=BATCH_SIZE, device=dev)


def _scores(fake, *, f_train, f_a, f_b, m: int, n_heldout: int, features: str) -> dict:
    """The result of :func:`overfitting_scores` from the generated features ``fake``, the training
    features ``f_train`` and the held-out subsets' features ``f_a`` and ``f_b`` (or None)."""
    from normgan.metrics.functional import fid_from_features
    from normgan.metrics.overfit import memorization_score

    fid_train = fid_from_features(f_train, fake)
    fid_heldout = fid_from_features(f_a, fake)
    return {
        "fid_train": fid_train,
        "fid_heldout": fid_heldout,
        "fid_gap": fid_heldout - fid_train,
        "memorization": memorization_score(fake, train=f_train, heldout=f_a),
        "memorization_real": None if f_b is None else memorization_score(f_b, train=f_train, heldout=f_a),
        "fid_gap_real": None if f_b is None else fid_from_features(f_a, f_b) - fid_from_features(f_train, f_b),
        "n_train": m,
        "n_heldout": n_heldout,
        "n": int(fake.shape[0]),
        "features": features,
    }


def overfitting_scores(
    run_dir: str | Path,
    *,
    n: int = 1000,
    features: Optional[str] = None,
    device="cpu",
    seed: int = 0,
    cache_dir=None,
    ema: bool = True,
) -> dict:
    """Train-vs-held-out FID and memorization of the generator of ``run_dir`` (see the module
    docstring for the definitions).

    Args:
        run_dir: a finished (unconditional) run; its config gives the dataset and ``data.holdout``.
        n: generated samples (FID is biased by ``n``: compare runs at equal ``n``).
        features: None (default: the run's ``eval.features``), ``domain`` (classifier trained on the
            run's training split, cached in ``cache_dir``), ``domain-full`` (the classifier of the
            source's default split, trained on far more images than a small run's split and on both
            ``T`` and most held-out images alike), ``inception`` or ``package.module:ClassName``.
        device: torch device of the generator and the extractor.
        seed: seeds the noise (forked global RNG, as the evaluation) and, through a
            ``torch.Generator``, the permutation that picks the held-out subsets.
        cache_dir: the domain classifier cache (default ``$NORMGAN_CACHE`` or ``~/.cache/normgan``).
        ema: score the EMA generator (default) or the raw one.

    Returns:
        ``fid_train``, ``fid_heldout``, ``fid_gap``, ``memorization``, ``memorization_real``,
        ``fid_gap_real`` (float or None), ``n_train`` (``M``), ``n_heldout`` (the held-out subset size, ``= M``),
        ``n`` and ``features`` (the extractor's name: ``domain``, ``domain-full``, ``inception``, …).

    Raises:
        UserError: a paired run, a run without a held-out split, or a held-out split smaller than
        the training split (raise ``data.holdout``).
    """
    from normgan.eval.evaluation import build_extractor, default_cache_dir
    from normgan.eval.metric_info import check_eval_args
    from normgan.inference.sample import load_generator
    from normgan.metrics.evaluate import real_features
    from normgan.runtime.device import resolve_device

    dev = resolve_device(str(device))
    G, cfg = load_generator(run_dir, ema=ema, device=str(dev))
    features = cfg.eval.features if features is None else features
    check_eval_args(n=n, features=features, metrics=("fid",))
    train, heldout = _reference_splits(run_dir, cfg)
    m = len(train)
    idx_a, idx_b = _heldout_subsets(len(heldout), m=m, seed=seed)
    extractor = build_extractor(
        features, cfg, device=dev, cache_dir=default_cache_dir(cache_dir), heldout=heldout, train=train
    )
    extractor = extractor.to(dev).eval()
    f_train = real_features(extractor, train, batch_size=BATCH_SIZE, device=dev)
    f_a = real_features(extractor, heldout, indices=idx_a, batch_size=BATCH_SIZE, device=dev)
    f_b = None if idx_b is None else real_features(extractor, heldout, indices=idx_b, batch_size=BATCH_SIZE, device=dev)
    fake = _fake_features(extractor, G, device=dev, n=n, seed=seed)
    name = str(getattr(extractor, "name", features))
    return _scores(fake, f_train=f_train, f_a=f_a, f_b=f_b, m=m, n_heldout=int(idx_a.numel()), features=name)
