"""What the evaluation metrics are called, what they produce and which way is better.

A leaf module: at import time it needs only the standard library and :mod:`normgan.errors`, so
``normgan.config``, the training loop and the evaluation code can all import it without cycles
(the ``features`` check of :func:`check_eval_args` imports the extractor registry lazily).

* :data:`METRIC_NAMES` — the metric groups of ``--metrics`` / ``eval.metrics``.
* :data:`RESULT_KEYS` — the result keys each group adds; :data:`ALWAYS_KEYS` are added by every
  evaluation (``class_coverage`` only with an extractor that has logits).
* :data:`MIN_SAMPLES` — the smallest N each group can be computed at: FID/KID need 2 samples per
  set (a covariance / an unbiased MMD² over pairs), precision/recall with ``k = 3`` nearest
  neighbours needs ``k + 1 = 4`` (each sample's radius is the distance to its 3rd neighbour
  excluding itself), IS needs 2 (one split per sample at most).
* :data:`HIGHER_IS_BETTER` / :data:`LOWER_IS_BETTER` — the direction of every score that can
  select ``best.pt`` (``eval.best_metric``); :func:`is_better` compares two values.
* :func:`format_eval` / :func:`format_paired` — the readable summaries ``normgan eval`` prints
  (torch-free, so :mod:`normgan.tasks.info` can name each task's summary).
"""

from __future__ import annotations

import math
from typing import Iterable, Optional

from normgan.errors import UserError
from normgan.runtime.resources import available_memory, format_bytes

__all__ = [
    "METRIC_NAMES",
    "MODE_METRIC_NAMES",
    "ALL_METRIC_NAMES",
    "PAIRED_METRIC_NAMES",
    "REFERENCES",
    "RESULT_KEYS",
    "ALWAYS_KEYS",
    "PR_K",
    "MIN_SAMPLES",
    "HIGHER_IS_BETTER",
    "LOWER_IS_BETTER",
    "BEST_METRIC_CHOICES",
    "min_samples",
    "produced_keys",
    "is_better",
    "check_eval_args",
    "check_paired_metrics",
    "check_best_metric",
    "check_paired_best_metric",
    "metric_group",
    "eval_memory_bytes",
    "check_eval_memory",
    "available_memory",
    "format_eval",
    "format_paired",
]

#: the metric groups of samples' features (the default of ``--metrics`` / ``eval.metrics``)
METRIC_NAMES = ("fid", "kid", "pr", "is")
#: metric groups of a dataset with known modes (``stacked_mnist``): counted by a digit classifier
#: per channel, not from features (:mod:`normgan.metrics.modes`)
MODE_METRIC_NAMES = ("modes",)
#: every group ``--metrics`` / ``eval.metrics`` accepts
ALL_METRIC_NAMES = METRIC_NAMES + MODE_METRIC_NAMES
#: the metrics of a paired (image-to-image) run, on its validation (training) or test (``normgan eval``)
#: split; ``sharpness_ratio`` is always added, ``classifier_score`` needs a labelled task (digits)
PAIRED_METRIC_NAMES = ("psnr", "ssim", "l1", "lpips", "classifier_score")
#: reference splits accepted by ``--reference`` / ``eval.reference``
REFERENCES = ("test", "train")
#: neighbours of the precision/recall k-NN manifolds
PR_K = 3
#: result keys of each metric group
RESULT_KEYS = {
    "fid": ("fid", "fid_floor", "fid_floor_n"),
    "kid": ("kid_mean", "kid_std", "kid_subset_size", "kid_subsets"),
    "pr": ("precision", "recall"),
    "is": ("is_mean", "is_std"),
    "modes": (
        "modes",
        "mode_kl",
        "modes_n",
        "modes_floor",
        "mode_kl_floor",
        "modes_floor_n",
        "mode_classifier_accuracy",
    ),
}
#: keys every evaluation adds whatever the groups (``class_coverage``: extractors with logits only)
ALWAYS_KEYS = ("class_coverage", "diversity")
#: the smallest number of generated (and real) samples each group is defined for
MIN_SAMPLES = {"fid": 2, "kid": 2, "pr": PR_K + 1, "is": 2, "modes": 1}
#: scores for which a larger value is better (``best.pt``); psnr/ssim are for paired synthesis
HIGHER_IS_BETTER = (
    "modes",
    "precision",
    "recall",
    "is_mean",
    "class_coverage",
    "diversity",
    "psnr",
    "ssim",
    "classifier_score",
)
#: scores for which a smaller value is better
LOWER_IS_BETTER = ("fid", "kid_mean", "lpips", "l1", "mode_kl")
#: the scores the unconditional evaluation can produce and ``eval.best_metric`` may name
BEST_METRIC_CHOICES = (
    "fid",
    "kid_mean",
    "precision",
    "recall",
    "is_mean",
    "class_coverage",
    "diversity",
    "modes",
    "mode_kl",
)

_WHY = {
    "fid": "a covariance needs 2",
    "kid": "the unbiased MMD² needs 2",
    "pr": f"precision/recall with k={PR_K} needs k+1 = {PR_K + 1}",
    "is": "the Inception Score needs 2",
    "modes": "counting modes needs 1",
}


def metric_tuple(metrics) -> tuple:
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    return tuple(metrics)


def min_samples(metrics: Iterable[str] = METRIC_NAMES) -> int:
    """The smallest N valid for every group in ``metrics``: ``max(MIN_SAMPLES[m])`` (2 when empty)."""
    return max([2] + [MIN_SAMPLES[m] for m in metric_tuple(metrics) if m in MIN_SAMPLES])


def produced_keys(metrics: Iterable[str]) -> tuple:
    """The result keys an evaluation with these metric groups produces (``ALWAYS_KEYS`` included
    when a group of features is among them)."""
    metrics = metric_tuple(metrics)
    keys = [k for m in metrics for k in RESULT_KEYS.get(m, ())]
    return tuple(keys) + (ALWAYS_KEYS if any(m in METRIC_NAMES for m in metrics) else ())


def is_better(*, metric: str, value: float, best: Optional[float]) -> bool:
    """True when ``value`` improves on ``best`` (None: anything is better): ``value > best`` for
    :data:`HIGHER_IS_BETTER` metrics, ``value < best`` otherwise."""
    if best is None:
        return True
    return value > best if metric in HIGHER_IS_BETTER else value < best


def check_paired_metrics(metrics=None) -> Optional[tuple]:
    """``metrics`` of a paired run as a tuple (None when not given); a one-line :class:`UserError`
    for a name outside :data:`PAIRED_METRIC_NAMES` or an empty list (they are computed on every
    image of the split, so there is no ``n`` to check)."""
    metrics = metric_tuple(metrics) if metrics is not None else None
    for m in metrics or ():
        if m not in PAIRED_METRIC_NAMES:
            raise UserError(
                f"--metrics: unknown metric {m!r} for a paired run; choose from {','.join(PAIRED_METRIC_NAMES)}"
            )
    if metrics is not None and not metrics:
        raise UserError(f"--metrics: empty list; give a comma-separated subset of {','.join(PAIRED_METRIC_NAMES)}")
    return metrics


def check_eval_args(*, n=None, features=None, metrics=None, reference=None) -> Optional[tuple]:
    """Validate user-facing evaluation options of an evaluation of samples (FID/KID/PR/IS); returns
    ``metrics`` as a tuple (None when not given).

    Raises a one-line :class:`UserError` for an ``n`` below :func:`min_samples` of the requested
    metrics (all of :data:`METRIC_NAMES` when ``metrics`` is not given), an unknown feature name
    (not a registered name and not an import path ``pkg.mod:Class``), an unknown or empty metric
    list, or an unknown reference split. A paired run's metrics: :func:`check_paired_metrics`.
    """
    if metrics is not None:
        metrics = metric_tuple(metrics)
        if not metrics:
            raise UserError(f"--metrics: empty list; give a comma-separated subset of {','.join(ALL_METRIC_NAMES)}")
        for m in metrics:
            if m not in ALL_METRIC_NAMES:
                raise UserError(f"--metrics: unknown metric {m!r}; choose from {','.join(ALL_METRIC_NAMES)}")
    if n is not None:
        wanted = metrics if metrics is not None else METRIC_NAMES
        need = min_samples(wanted)
        if isinstance(n, bool) or not isinstance(n, int) or n < need:
            limiting = max(wanted, key=lambda m: MIN_SAMPLES[m])
            why = f" ({_WHY[limiting]} samples)" if need > 2 else ""
            raise UserError(
                f"--n: {n!r} is too small{why}; use at least {need} samples (5000-10000 for reportable FID)"
            )
    if features is not None:
        if not isinstance(features, str) or not features:
            raise UserError(f"--features: bad value {features!r}; use domain, inception or package.module:ClassName")
        if ":" not in features:
            from normgan.metrics.features import FEATURES  # lazy: the registry imports torch

            if features not in FEATURES:
                raise UserError(
                    f"--features: unknown feature extractor {features!r}; choose one of: "
                    f"{', '.join(FEATURES.names())}, or an import path package.module:ClassName"
                )
    if reference is not None and reference not in REFERENCES:
        raise UserError(f"--reference: unknown split {reference!r}; use test (held-out, the default) or train")
    return metrics


#: per-sample feature (and logit) sizes of the built-in extractors, for :func:`eval_memory_bytes`;
#: an import-path extractor is counted as the smallest (domain) size, so its estimate is a lower bound
FEATURE_SIZES = {"domain": (128, 10), "domain-full": (128, 10), "inception": (2048, 1008)}

#: the domain classifiers: ``domain`` (trained on the run's training split) and ``domain-full`` (the
#: classifier of the data source's default split, data.holdout 0.1, whatever the run's split)
DOMAIN_FEATURES = ("domain", "domain-full")
#: why ``domain-full`` is refused on a cross-validated run
DOMAIN_FULL_FOLDS = (
    "eval.features: domain-full trains its classifier on the default split and measures it on the test split, "
    "which a cross-validated run (data.folds) never reads; use eval.features: domain"
)


def eval_memory_bytes(n: int, features: str = "domain", metrics=METRIC_NAMES) -> int:
    """Bytes an evaluation of ``n`` generated samples holds at once, at least: their float64
    features (plus logits for IS), twice while the batches are concatenated.  The real side is
    bounded by the reference split and left out; images are made in batches and not kept."""
    d, logits = FEATURE_SIZES.get(features, FEATURE_SIZES["domain"])
    per = d + (logits if "is" in metric_tuple(metrics) else 0)
    return 2 * int(n) * per * 8


def check_eval_memory(
    n: int, *, features: str = "domain", metrics=METRIC_NAMES, available: Optional[int] = None, option: str = "--n"
) -> None:
    """A one-line :class:`UserError` when :func:`eval_memory_bytes` of ``n`` exceeds the memory
    available (``available``, default :func:`available_memory`; unknown: no check), naming
    ``option``, the estimated size and the fix."""
    available = available_memory() if available is None else available
    need = eval_memory_bytes(n, features, metrics)
    if available is None or need <= available:
        return
    d, logits = FEATURE_SIZES.get(features, FEATURE_SIZES["domain"])
    per = d + (logits if "is" in metric_tuple(metrics) else 0)
    least = "" if features in FEATURE_SIZES else "at least "
    raise UserError(
        f"{option}: {n} samples need {least}{format_bytes(need)} of memory for their {features} features "
        f"({n} × {per} float64 values, twice while gathered), more than the {format_bytes(available)} available; "
        f"use a smaller {option} (5000-10000 is usual for FID, 50000 the most in the literature)"
    )


def check_paired_best_metric(*, best_metric: str, metrics) -> str:
    """``best_metric`` when it is among a paired run's ``metrics`` (each paired metric is one score),
    else a one-line :class:`UserError`."""
    metrics = metric_tuple(metrics)
    if best_metric not in metrics:
        raise UserError(
            f"eval.best_metric: {best_metric!r} is not among eval.metrics [{', '.join(metrics)}] of this paired run, "
            f"so best.pt would never be written; choose one of: {', '.join(metrics)}"
        )
    return best_metric


def check_best_metric(*, best_metric: str, metrics) -> str:
    """Raise a one-line :class:`UserError` unless an evaluation with ``metrics`` produces
    ``best_metric`` (one of :data:`BEST_METRIC_CHOICES`); returns ``best_metric``.

    E.g. ``best_metric="precision"`` needs ``pr`` in ``metrics``; ``class_coverage`` and
    ``diversity`` are produced by every evaluation. A paired run: :func:`check_paired_best_metric`.
    """
    metrics = metric_tuple(metrics)
    if best_metric not in BEST_METRIC_CHOICES:
        raise UserError(
            f"eval.best_metric: unknown score {best_metric!r}; choose one of: {', '.join(BEST_METRIC_CHOICES)}"
        )
    if best_metric in produced_keys(metrics):
        return best_metric
    group = next(m for m, keys in RESULT_KEYS.items() if best_metric in keys)
    available = [k for k in produced_keys(metrics) if k in BEST_METRIC_CHOICES]
    raise UserError(
        f"eval.best_metric: {best_metric!r} is not produced by eval.metrics [{', '.join(metrics)}], so best.pt "
        f"would never be written; add {group} to eval.metrics or choose one of: {', '.join(available)}"
    )


def metric_direction(metric: str) -> str:
    """``"maximize"`` for :data:`HIGHER_IS_BETTER` scores, ``"minimize"`` for :data:`LOWER_IS_BETTER`
    ones (the search's default direction); a one-line :class:`UserError` for any other name."""
    if metric in HIGHER_IS_BETTER:
        return "maximize"
    if metric in LOWER_IS_BETTER:
        return "minimize"
    raise UserError(f"--metric: {metric!r} has no known direction; give --direction min or max")


def metric_group(score: str) -> Optional[str]:
    """The ``eval.metrics`` entry that produces ``score`` (``kid_mean`` → ``kid``); None for the
    scores every evaluation of samples adds (``class_coverage``, ``diversity``)."""
    return next((m for m, keys in RESULT_KEYS.items() if score in keys), None)


# ------------------------------------------------------------------ what ``normgan eval`` prints
def _fmt(v, fmt: str = ".4g") -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def _split_name(res: dict) -> str:
    return "held-out split" if res.get("reference", "test") == "test" else f"{res.get('reference')} split"


def _sizes(res: dict) -> str:
    n, n_real = res.get("n"), res.get("n_real")
    if n_real is None or n_real == n:
        return f"N={n}"
    return f"N={n} generated vs all {n_real} images of the {_split_name(res)}"


def floor_text(res: dict) -> str:
    """``real-vs-real floor F at N=M`` plus, when ``M`` differs from the generated N, why: the
    reference split is too small for two disjoint real sets of N images, so the floor compares its
    two halves (FID is biased by N: a floor at a smaller N is higher than it would be at N)."""
    floor, fn, n = res.get("fid_floor"), res.get("fid_floor_n"), res.get("n")
    text = f"real-vs-real floor {_fmt(floor, '.1f' if floor is not None and floor >= 10 else '.2g')} at N={fn}"
    if fn is not None and fn != n:
        total = res.get("n_reference")
        has = f"has {total} images" if total is not None else "is too small"
        text += (
            f": the {_split_name(res)} {has}, too few for two disjoint sets of {n} (a floor at N={n} would be lower)"
        )
    return text


def kid_text(res: dict) -> str:
    """``KID m ± s (std over K subsets of M per set, …)``, or the one estimate without a spread
    when the subsets could not differ; results written before the subset size was recorded say so
    instead of printing their spread (subsets as large as N gave a meaningless ± 1e-16)."""
    m, std, size, k = res.get("kid_mean"), res.get("kid_std"), res.get("kid_subset_size"), res.get("kid_subsets")
    if size is None:
        return (
            f"KID {_fmt(m)} (subset size not recorded: an evaluation saved by an older normgan; "
            "re-evaluate for its spread)"
        )
    if std is None:
        return f"KID {_fmt(m)} (one estimate on all {size} samples per set: too few for differing subsets, no spread)"
    return (
        f"KID {_fmt(m)} ± {_fmt(std, '.2g')} (population std over {k} subsets of {size} samples per set, "
        "drawn without replacement)"
    )


def modes_text(res: dict) -> str:
    """Stacked MNIST's line: modes of 1000 and KL to uniform, beside the real-data floor at the same N
    and the digit classifier's held-out accuracy."""
    return (
        f"modes {res['modes']} of 1000, KL {_fmt(res['mode_kl'], '.4f')} (N = {res.get('modes_n')}; real held-out "
        f"digits: {res.get('modes_floor', 'n/a')} modes, KL {_fmt(res.get('mode_kl_floor'), '.4f')} at N = "
        f"{res.get('modes_floor_n')}; digit classifier held-out accuracy "
        f"{_fmt(res.get('mode_classifier_accuracy'), '.4f')})"
    )


def format_eval(res: dict, *, metrics=None) -> str:
    """The readable summary ``normgan eval`` prints.  ``metrics`` (the groups of ``--metrics`` when
    given): only their lines are printed, even when ``res`` holds more (a reused result computed
    with more groups); class coverage and diversity, which every evaluation computes, are always
    printed.  The JSON keeps everything."""
    lines = [
        f"run {res.get('run', '?')} at step {res.get('step', '?')} "
        f"({'EMA' if res.get('ema', True) else 'raw'} generator), reference: {res.get('reference')} split "
        f"({res.get('n_reference', '?')} images)"
    ]
    feats = res.get("features")
    if metrics is not None:
        keep = {k for m in metrics for k in RESULT_KEYS.get(m, ())}
        res = {k: v for k, v in res.items() if k in keep or not any(k in keys for keys in RESULT_KEYS.values())}
    if "fid" in res:
        lines.append(
            f"FID {_fmt(res['fid'], '.1f' if res['fid'] >= 10 else '.3g')} ({_sizes(res)}, features={feats}, "
            f"{floor_text(res)})"
        )
    if "kid_mean" in res:
        lines.append(kid_text(res))
    if "precision" in res:
        lines.append(f"precision {_fmt(res['precision'], '.3f')}, recall {_fmt(res['recall'], '.3f')} (k=3)")
    if "is_mean" in res:
        lines.append(f"IS {_fmt(res['is_mean'], '.3f')} ± {_fmt(res['is_std'], '.2g')}")
    if "modes" in res:
        lines.append(modes_text(res))
    extra = []
    if res.get("class_coverage") is not None:
        extra.append(f"class coverage {_fmt(res['class_coverage'], '.2f')}")
    if res.get("diversity") is not None:
        extra.append(f"diversity {_fmt(res['diversity'], '.2f')} (generated/real mean pairwise feature distance)")
    if extra:
        lines.append(", ".join(extra))
    if feats in DOMAIN_FEATURES:
        lines.append(
            f"domain classifier held-out accuracy {_fmt(res.get('domain_heldout_accuracy'), '.4f')} "
            "(domain FID is comparable only with domain FID of the same dataset)"
        )
    if res.get("path"):
        lines.append(f"written to {res['path']}" + (" (reused)" if res.get("reused") else ""))
    return "\n".join(lines)


def format_paired(res: dict) -> str:
    """The readable summary ``normgan eval`` prints for a paired run.

    Only the metrics asked for (``res["metrics"]``, from ``--metrics``) are printed, with the
    trivial baseline of those among psnr/ssim/l1; ``sharpness_ratio`` and ``dropout_diversity``
    (always computed) are printed when every metric was asked for (the default).  Everything
    computed stays in the JSON (``--json``, ``eval/*.json``)."""

    def f(key, fmt=".4f"):
        v = res.get(key)
        return "n/a" if v is None else format(v, fmt)

    def _pairs_text(res: dict) -> str:  # "500 pairs", or "50 of its 500 pairs (a subset drawn with seed 0)"
        n, total = res.get("n"), res.get("n_split")
        if isinstance(n, int) and isinstance(total, int) and n < total:
            return f"{n} of its {total} pairs (a subset drawn with seed {res.get('subset_seed', res.get('seed', 0))})"
        return f"{n} pairs"

    asked = tuple(res.get("metrics") or PAIRED_METRIC_NAMES)
    everything = set(PAIRED_METRIC_NAMES) <= set(asked)
    lines = [
        f"run {res.get('run', '?')} at step {res.get('step', '?')} ({'EMA' if res.get('ema', True) else 'raw'} generator), "
        f"{res.get('split')} split of {res.get('dataset', '?')} ({_pairs_text(res)})"
    ]
    shown = {"psnr": f"PSNR {f('psnr', '.2f')} dB", "ssim": f"SSIM {f('ssim')}", "l1": f"L1 {f('l1')} (on [-1, 1])"}
    main = [text for key, text in shown.items() if key in asked]
    if everything:
        main += [
            f"sharpness ratio {f('sharpness_ratio', '.3f')} (outputs/targets)",
            f"dropout diversity {f('dropout_diversity', '.4f')}",
        ]
    if main:
        lines.append(", ".join(main))
    base = {
        "psnr": f"PSNR {f('baseline_psnr', '.2f')} dB",
        "ssim": f"SSIM {f('baseline_ssim')}",
        "l1": f"L1 {f('baseline_l1')}",
    }
    base = [text for key, text in base.items() if key in asked and f"baseline_{key}" in res]
    if base:
        lines.append(f"trivial baseline of {res.get('dataset')} (docs/paired.md): " + ", ".join(base))
    if "lpips" in res:
        lines.append(f"LPIPS {f('lpips')} (AlexNet)")
    elif "lpips" in asked and not everything:  # asked for by name: say why it is missing
        lines.append("LPIPS n/a (skipped: its AlexNet weights are not on disk; see the warning above)")
    if "classifier_score" in res:
        lines.append(
            f"classifier score {f('classifier_score', '.3f')} on G(x) with the labels of x "
            f"(real targets: {f('classifier_score_real', '.3f')})"
        )
    elif "classifier_score" in asked and not everything:
        lines.append("classifier score n/a (the dataset has no labels)")
    if res.get("path"):
        lines.append(f"written to {res['path']}")
    return "\n".join(lines)
