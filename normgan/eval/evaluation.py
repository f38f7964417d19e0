"""Evaluate a run's generator: ``normgan eval RUN`` and the periodic evaluator of the training loop.

    from normgan.eval.evaluation import evaluate_run, make_periodic_evaluator
    res = evaluate_run("runs/00000-mnist5k-bce", n=5000)          # also writes runs/.../eval/*.json
    res["fid"], res["fid_floor"], res["class_coverage"]

    ev = make_periodic_evaluator(cfg, device="cpu", cache_dir=None)  # reference features computed once
    ev(trainer.G_ema)                                               # -> {"fid": ..., "kid_mean": ..., ...}

The reference is the run's HELD-OUT split (``data.holdout`` of the run's config; images never
seen in training) unless ``reference="train"`` is asked for.  The ``domain`` extractor is a
classifier trained on the run's TRAIN split and cached in ``cache_dir`` (default
``$NORMGAN_CACHE`` or ``~/.cache/normgan``).  With ``data.folds`` (cross-validation) "held-out"
is the fold ``data.fold`` of the training split and "train" its other folds, so the test split
is never read.  See docs/evaluation.md for every definition.

Extra numbers (computed from the same features and logits as the main metrics):

* ``class_coverage`` (extractor with logits only): the fraction of the K classes that the
  extractor predicts (argmax of its logits) for at least ``1/(4K)`` of the generated samples —
  a quarter of the uniform share.  1.0 when every class is represented, 1/K for a single mode.
* ``diversity``: mean pairwise Euclidean feature distance among the first ``min(N, 2000)``
  generated samples divided by the same quantity among the first ``min(N, 2000)`` of the
  reference images that FID/KID/PR use.
  ≈ 1 for a generator as varied as the data, → 0 under mode collapse.
* ``domain_heldout_accuracy``: the domain classifier's accuracy on the held-out split.
"""

from __future__ import annotations

import json
import os
import re
import time
import warnings
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import torch
from torch import Tensor, nn

from normgan.errors import UserError
from normgan.eval.metric_info import (  # noqa: F401  (re-exported)
    DOMAIN_FEATURES,
    DOMAIN_FULL_FOLDS,
    METRIC_NAMES,
    REFERENCES,
    check_eval_args,
)
from normgan.metrics.functional import DIVERSITY_SAMPLES, class_coverage, mean_pairwise_distance  # noqa: F401
from normgan.registry import Registry
from normgan.runtime.paths import expand_path
from normgan.tasks.info import TASK_INFO

__all__ = [
    "evaluate_run",
    "evaluate_generator",
    "make_periodic_evaluator",
    "default_cache_dir",
    "reference_dataset",
    "checkpoint_step",
    "eval_path",
    "find_eval",
    "check_eval_args",
    "class_coverage",
    "mean_pairwise_distance",
    "DIVERSITY_SAMPLES",
]


# ---------------------------------------------------------------------------------------------- helpers
def default_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir`` when given, else ``$NORMGAN_CACHE`` when set, else ``~/.cache/normgan``
    (``~`` and ``$VAR`` expanded)."""
    if cache_dir is not None:
        return Path(expand_path(cache_dir))
    env = os.environ.get("NORMGAN_CACHE")
    return Path(expand_path(env)) if env else Path("~/.cache/normgan").expanduser()


def _cfg_from_any(cfg):
    from normgan.config import Config, load_config

    return cfg if isinstance(cfg, Config) else load_config(base=cfg)


def reference_dataset(cfg, split: str = "test"):
    """The run's dataset split (``test`` = held-out, ``train``) with the run's loading options.

    With ``data.folds`` (cross-validation) both come from the TRAIN split: ``test`` is its held-out
    fold ``data.fold`` and ``train`` its fit part (the images the run trained on); the real test
    split is never read.

    A streamed folder (``data.stream``, :func:`normgan.data.should_stream`) is not loaded: the split is
    its file list (:class:`normgan.data.FileSplit`), whose ``images[idx]`` decodes only the images that
    an evaluation samples — the same pixels, so the same scores, as in memory.
    """
    from normgan.data import list_split, load_dataset, should_stream
    from normgan.tasks.builtin import fold_of

    cfg = _cfg_from_any(cfg)
    d = cfg.data
    if split not in REFERENCES:
        raise UserError(f"--reference: unknown split {split!r}; use test (held-out, the default) or train")
    if split == "test" and d.holdout <= 0 and not d.folds:
        raise UserError(
            "the run was trained with data.holdout=0, so it has no held-out split; "
            "evaluate against the training images with --reference train"
        )
    if should_stream(d.stream, name=d.name, root=d.root, resolution=d.resolution):
        listed = list_split(
            d.root, resolution=d.resolution, channels=d.channels, split="train" if d.folds else split, holdout=d.holdout
        )
        return (
            listed.fold(folds=d.folds, fold=d.fold, part="heldout" if split == "test" else "fit") if d.folds else listed
        )
    if d.folds:
        train = load_dataset(
            name=d.name,
            root=d.root,
            resolution=d.resolution,
            channels=d.channels,
            split="train",
            holdout=d.holdout,
            strict=d.strict,
            seed=cfg.train.seed,
        )
        return fold_of(train, d, "heldout" if split == "test" else "fit")
    return load_dataset(
        name=d.name,
        root=d.root,
        resolution=d.resolution,
        channels=d.channels,
        split=split,
        holdout=d.holdout,
        strict=d.strict,
        seed=cfg.train.seed,
    )


def checkpoint_step(run, checkpoint: str = "last.pt") -> int:
    """The training step stored in the run's checkpoint."""
    from normgan.models.checkpoint import find_checkpoint, load_checkpoint

    return int(load_checkpoint(find_checkpoint(run, checkpoint), map_location="cpu").get("step", 0))


def _slug(features: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", features)


def eval_path(
    run, *, step: int, features: str, n: int, reference: str = "test", seed: int = 0, ema: bool = True
) -> Path:
    """``run/eval/eval-step<NNNNNN>-<features>-n<N>.json``; non-default options add suffixes
    ``-ref_train``, ``-seed<S>``, ``-noema`` so that different evaluations never overwrite each other."""
    name = f"eval-step{int(step):06d}-{_slug(features)}-n{int(n)}"
    if reference != "test":
        name += f"-ref_{reference}"
    if seed != 0:
        name += f"-seed{seed}"
    if not ema:
        name += "-noema"
    return Path(run) / "eval" / f"{name}.json"


def find_eval(
    run,
    *,
    step: int,
    features: str,
    n: int,
    reference: str = "test",
    seed: int = 0,
    ema: bool = True,
    metrics: Iterable[str] = METRIC_NAMES,
) -> Optional[dict]:
    """A previously written evaluation with the same step/features/n/reference/seed/ema that covers
    ``metrics``, or None."""
    path = eval_path(run, step=step, features=features, n=n, reference=reference, seed=seed, ema=ema)
    if not path.is_file():
        return None
    try:
        res = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    same = (
        res.get("step") == step
        and res.get("n") == n
        and res.get("features_spec", res.get("features")) == features
        and res.get("reference") == reference
        and res.get("seed") == seed
        and res.get("ema") == ema
    )
    if not same or not set(metrics) <= set(res.get("metrics", ())):
        return None
    return res


def write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def noise_sampler(G: nn.Module, device) -> Callable[[int], Tensor]:
    z_dim = int(G.z_dim)

    def sample_fn(b: int) -> Tensor:
        return G(torch.randn(b, z_dim, device=device)).float()

    return sample_fn


#: ``eval.features: domain`` on a training split smaller than this warns (its classifier is a poor judge)
SMALL_DOMAIN_SPLIT = 1000


def default_split_config(cfg):
    """``cfg`` with its data source's default split: ``data.holdout`` at :class:`~normgan.config.DataConfig`'s
    default (0.1) and no ``data.folds``; the same source (built-in name, folder or IDX ``root``) otherwise."""
    from dataclasses import replace

    from normgan.config import DataConfig

    cfg = _cfg_from_any(cfg)
    return replace(cfg, data=replace(cfg.data, holdout=DataConfig.holdout, folds=0, fold=0))


def build_extractor(features: str, cfg, *, device, cache_dir, heldout=None, train=None, progress=None):
    """The extractor ``features`` of a run with config ``cfg``.

    ``domain``: the classifier of ``train`` (default: the run's training split), its accuracy measured on
    ``heldout`` (default: the run's held-out split or fold), with one warning when that split has fewer than
    :data:`SMALL_DOMAIN_SPLIT` images.  ``domain-full``: the classifier of the same source's default split
    (:func:`default_split_config`), the one (and the cache file) a default run uses, whatever the run's own
    split; ``train`` and ``heldout`` are ignored.  Others: :func:`normgan.metrics.build_feature_extractor`.
    """
    from normgan.metrics import build_feature_extractor

    if features not in DOMAIN_FEATURES:
        return build_feature_extractor(features, data=train, cache_dir=cache_dir, device=device)
    cfg = _cfg_from_any(cfg)
    if features == "domain-full":
        if cfg.data.folds:
            raise UserError(DOMAIN_FULL_FOLDS)
        cfg, train, heldout = default_split_config(cfg), None, None
    if train is None:
        train = reference_dataset(cfg, "train")
    if features == "domain" and len(train) < SMALL_DOMAIN_SPLIT:
        warnings.warn(
            f"eval.features domain: the domain classifier is trained on only {len(train)} images (the run's "
            "training split), a poor judge of FID and overfitting; set eval.features: domain-full "
            "(--features domain-full), the classifier of the data source's default split"
        )
    if heldout is None and (cfg.data.holdout > 0 or cfg.data.folds):
        # the held-out split, or with data.folds the held-out fold; never left to the extractor's
        # own default, which would load the real test split
        heldout = lambda: reference_dataset(cfg, "test")  # noqa: E731  (only if it must train)
    return build_feature_extractor(
        features, data=train, cache_dir=cache_dir, device=device, heldout=heldout, seed=0, progress=progress
    )


# ---------------------------------------------------------------------------------------------- evaluation
def evaluate_generator(
    G: nn.Module,
    cfg,
    *,
    n: int = 5000,
    features: str = "domain",
    metrics: Sequence[str] = METRIC_NAMES,
    reference: str = "test",
    device="cpu",
    seed: int = 0,
    cache_dir=None,
    batch_size: int = 500,
    extractor: Optional[nn.Module] = None,
    progress: Optional[bool] = None,
) -> dict:
    """Score generator ``G`` (``G(z)`` with ``z ~ N(0, I)`` of size ``G.z_dim``, images in
    ``[-1, 1]``) against the ``reference`` split of ``cfg``'s dataset: a :class:`PeriodicEvaluator`
    built for this one call (so the numbers equal the training loop's for equal ``n``/``seed``),
    plus ``reference_fingerprint``, ``n_reference`` and (domain) ``domain_heldout_accuracy`` /
    ``domain_fingerprint``.  ``extractor`` overrides building one from ``features``.

    The extractor is built outside any ``no_grad`` context (a domain classifier that is not
    cached yet is trained here); only the generation and feature extraction run without grad.
    """
    t0 = time.perf_counter()
    ev = PeriodicEvaluator(
        cfg,
        device=device,
        cache_dir=cache_dir,
        n=n,
        features=features,
        metrics=metrics,
        reference=reference,
        seed=seed,
        batch_size=batch_size,
        extractor=extractor,
        progress=progress,
    )
    res = ev(G)
    res["eval_seconds"] = time.perf_counter() - t0  # reference features included
    res["reference_fingerprint"] = ev.reference_fingerprint
    res["n_reference"] = ev.n_reference
    if res["features"] in DOMAIN_FEATURES:
        res["domain_heldout_accuracy"] = None if ev.heldout_accuracy is None else float(ev.heldout_accuracy)
        res["domain_fingerprint"] = getattr(ev.extractor, "fingerprint", None)
    return res


def evaluate_run(
    run,
    *,
    n: int = 5000,
    features: str = "domain",
    metrics: Sequence[str] = METRIC_NAMES,
    reference: str = "test",
    checkpoint: str = "last.pt",
    ema: bool = True,
    device="cpu",
    seed: int = 0,
    cache_dir=None,
    batch_size: int = 500,
    reuse: bool = False,
    write: bool = True,
    progress: Optional[bool] = None,
) -> dict:
    """Evaluate the generator of ``run`` (EMA weights by default) and write
    ``run/eval/eval-step<NNNNNN>-<features>-n<N>.json`` (see :func:`eval_path`).

    Args:
        n: generated samples (FID is biased by N: compare runs at equal N only).
        features: ``domain`` (offline classifier cached in ``cache_dir``), ``inception`` or
            ``package.module:ClassName``.
        metrics: subset of ``fid, kid, pr, is``.
        reference: ``test`` (the held-out split, default) or ``train``.
        reuse: return an existing JSON for the same step/features/n/reference/seed/ema instead of
            recomputing (``normgan compare`` uses this).
        progress: a line and bars on stderr for the slow steps (classifier training, reference
            features); True, False, or None (default: when stderr is a terminal).

    Returns:
        The metrics of :func:`normgan.metrics.evaluate` (``fid``, ``fid_floor``, ``fid_floor_n``,
        ``kid_mean``, ``kid_std``, ``precision``, ``recall``, ``is_mean``, ``is_std``) plus ``n``,
        ``features``, ``reference``, ``step``, ``class_coverage``, ``diversity``,
        ``domain_heldout_accuracy`` (domain only), ``run``, ``path`` (the JSON written).
    """
    from normgan.runtime.device import resolve_device

    metrics = check_eval_args(n=n, features=features, metrics=metrics, reference=reference)
    step = checkpoint_step(run, checkpoint)
    device = resolve_device(str(device))
    names = {"features": features, "n": n, "reference": reference, "seed": seed, "ema": ema}  # name the JSON file
    compute = {"device": device, "cache_dir": cache_dir, "batch_size": batch_size, "progress": progress}
    old = find_eval(run, step=step, metrics=metrics, **names) if reuse else None
    if old is not None:
        old["reused"] = True
        return old
    res = _evaluate_checkpoint(run, checkpoint=checkpoint, step=step, metrics=metrics, **names, **compute)
    if write:
        path = eval_path(run, step=step, **names)
        res["path"] = str(path)
        write_json(path, res)
    return res


def _evaluate_checkpoint(
    run,
    *,
    checkpoint: str,
    step: int,
    ema: bool,
    device,
    n: int,
    features: str,
    metrics: Sequence[str],
    reference: str,
    seed: int,
    cache_dir,
    batch_size: int,
    progress: Optional[bool],
) -> dict:
    """The metrics of :func:`evaluate_generator` for the generator of ``run/checkpoints/<checkpoint>``,
    with the run's ``step``, ``run``, ``checkpoint``, ``ema``, ``seed``, ``features_spec`` and ``metrics``."""
    from normgan.inference.sample import load_generator

    G, cfg = load_generator(run, ema=ema, device=str(device), checkpoint=checkpoint)
    TASK_INFO.get(cfg.task).require_noise_samples(run)
    res = evaluate_generator(
        G,
        cfg,
        n=n,
        features=features,
        metrics=metrics,
        reference=reference,
        device=device,
        seed=seed,
        cache_dir=cache_dir,
        batch_size=batch_size,
        progress=progress,
    )
    res.update(
        {
            "step": step,
            "run": str(run),
            "checkpoint": checkpoint,
            "ema": bool(ema),
            "seed": int(seed),
            "features_spec": features,
            "metrics": list(metrics),
        }
    )
    return res


def run_config(run, checkpoint: str = "last.pt"):
    """The validated config stored in a run's checkpoint (the run's config.yaml when it has none)."""
    from normgan.config import load_config
    from normgan.errors import UserError
    from normgan.models.checkpoint import find_checkpoint, load_checkpoint

    path = find_checkpoint(run, checkpoint)
    saved = load_checkpoint(path, map_location="cpu").get("config")
    if not isinstance(saved, dict):
        raise UserError(f"checkpoint '{path}' has no config; it was not written by 'normgan train'")
    return load_config(base=saved)


def run_data_name(run, checkpoint: str = "last.pt") -> str:
    """``data.name`` of the run's saved config."""
    return run_config(run, checkpoint).data.name


# ---------------------------------------------------------------------------------------------- periodic
class PeriodicEvaluator:
    """Scores generators against reference features computed once at construction.

    The reference sampling and the FID/KID/PR/IS numbers are those of
    :class:`normgan.metrics.ReferenceScorer` (the one implementation, also behind
    :func:`normgan.metrics.evaluate` and :func:`evaluate_generator`); each call adds
    ``class_coverage`` (extractors with logits), ``diversity`` and ``domain_heldout_accuracy``.
    Each call forks the RNG: the training RNG stream is untouched.
    """

    def __init__(
        self,
        cfg,
        *,
        device="cpu",
        cache_dir=None,
        n: int = 2000,
        features: str = "domain",
        metrics: Sequence[str] = METRIC_NAMES,
        reference: str = "test",
        seed: int = 0,
        batch_size: int = 500,
        extractor: Optional[nn.Module] = None,
        progress: Optional[bool] = None,
    ) -> None:
        cfg = _cfg_from_any(cfg)
        self.metrics = check_eval_args(
            n=n, features=None if extractor is not None else features, metrics=metrics, reference=reference
        )
        self.reference = reference
        self.device = torch.device(device)
        ref = reference_dataset(cfg, reference)
        if len(ref) < 4:
            raise UserError(
                f"the {reference} split has {len(ref)} images; the evaluation needs at least 4 (raise data.holdout)"
            )
        self.reference_fingerprint, self.n_reference = ref.fingerprint, len(ref)
        self.modes = mode_counter(
            cfg,
            ref,
            self.metrics,
            n=n,
            seed=seed,
            batch_size=batch_size,
            device=self.device,
            cache_dir=cache_dir,
            progress=progress,
        )
        self.scorer, self.n, self.seed, self.features = None, int(n), int(seed), "none"
        self.extractor, self.heldout_accuracy = None, None
        if any(m in METRIC_NAMES for m in self.metrics):
            self._feature_scorer(
                cfg,
                ref,
                n=n,
                features=features,
                reference=reference,
                seed=seed,
                batch_size=batch_size,
                extractor=extractor,
                cache_dir=cache_dir,
                progress=progress,
            )

    def _feature_scorer(self, cfg, ref, *, n, features, reference, seed, batch_size, extractor, cache_dir, progress):
        """The extractor and the reference features of the feature metrics (FID/KID/PR/IS)."""
        from normgan.metrics import ReferenceScorer

        device = self.device
        if extractor is None:
            extractor = build_extractor(
                features,
                cfg,
                device=device,
                cache_dir=default_cache_dir(cache_dir),
                heldout=ref if reference == "test" else None,
                progress=progress,
            )
        self.extractor = extractor.to(self.device).eval()
        self.scorer = ReferenceScorer(
            reference=ref,
            extractor=self.extractor,
            n=n,
            metrics=tuple(m for m in self.metrics if m in METRIC_NAMES),
            batch_size=batch_size,
            device=self.device,
            seed=seed,
            progress=progress,
        )
        self.n, self.seed, self.features = self.scorer.n, self.scorer.seed, self.scorer.features
        self.real_spread = mean_pairwise_distance(self.scorer.real)
        self.heldout_accuracy = getattr(extractor, "heldout_accuracy", None)

    def __call__(self, G: nn.Module) -> dict:
        t0 = time.perf_counter()
        was_training = G.training
        G.eval()
        try:
            res = {"n": self.n, "features": self.features} if self.scorer is None else self._score_features(G)
            if self.modes is not None:
                res.update(self.modes[0](noise_sampler(G, self.device)), **self.modes[1])
        finally:
            G.train(was_training)
        res["reference"] = self.reference
        res["eval_seconds"] = time.perf_counter() - t0
        return res

    def _score_features(self, G: nn.Module) -> dict:
        fake, logits = self.scorer.generate(noise_sampler(G, self.device), logits=self.scorer.has_logits)
        res = self.scorer.score(fake, logits)
        if logits is not None:
            res["class_coverage"] = class_coverage(logits, getattr(self.extractor, "num_classes", None))
        res["diversity"] = mean_pairwise_distance(fake) / self.real_spread if self.real_spread > 0 else float("nan")
        if self.heldout_accuracy is not None:
            res["domain_heldout_accuracy"] = float(self.heldout_accuracy)
        return res


def mode_counter(cfg, ref, metrics, *, n: int, seed: int, batch_size: int, device, cache_dir, progress):
    """``(ModeCounter, its real-data floor and classifier accuracy)`` when ``metrics`` holds ``modes``
    (the dataset must have known modes: stacked_mnist), else None."""
    if "modes" not in metrics:
        return None
    from normgan.metrics.modes import ModeCounter, digit_classifier

    if cfg.data.name != "stacked_mnist":
        raise UserError(
            f"metric modes counts the 1000 digit triples of Stacked MNIST; this run's data is {cfg.data.name!r}: "
            "drop modes from the metrics (or train on data.name stacked_mnist)"
        )
    clf = digit_classifier(
        resolution=cfg.data.resolution,
        holdout=cfg.data.holdout,
        cache_dir=default_cache_dir(cache_dir),
        device=device,
        progress=progress,
    )
    counter = ModeCounter(clf, n=n, batch_size=batch_size, seed=seed, device=device)
    fixed = counter.floor(ref) | {"mode_classifier_accuracy": counter.accuracy}
    return counter, fixed


def make_periodic_evaluator(
    cfg,
    *,
    device="cpu",
    cache_dir=None,
    n: int = 2000,
    features: str = "domain",
    metrics: Sequence[str] = METRIC_NAMES,
    reference: str = "test",
    seed: int = 0,
    batch_size: int = 500,
    progress: Optional[bool] = None,
) -> PeriodicEvaluator:
    """A callable ``evaluator(G) -> dict`` for the training loop: the extractor (domain classifier,
    trained once and cached in ``cache_dir``) and the reference features are prepared here, once;
    each call generates ``n`` images with ``G`` (put in eval mode, restored afterwards) under a
    forked RNG and returns the same keys as :func:`evaluate_generator` (no JSON is written).
    ``progress``: a line and bars on stderr while the classifier trains and the reference features
    are extracted (True, False, or None: when stderr is a terminal)."""
    return PeriodicEvaluator(
        cfg,
        device=device,
        cache_dir=cache_dir,
        n=n,
        features=features,
        metrics=metrics,
        reference=reference,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
    )


# ------------------------------------------------------------------------------ each task's evaluation
#: task name -> its :class:`TaskEvaluation`; the paired one registers in :mod:`normgan.eval.paired`,
#: whose :func:`~normgan.eval.paired.task_evaluation` looks them up (it imports both modules)
EVALUATIONS = Registry("task")


class TaskEvaluation:
    """The evaluation side of a task (:class:`normgan.tasks.builtin.Task`, same name), kept here because the
    evaluators sit a layer above the tasks. A task's evaluation provides:

    * :meth:`periodic` — the training loop's evaluator for ``cfg.eval``, a callable ``G -> {score: value}``;
    * :meth:`score_run` — ``normgan eval RUN``: score a run folder's generator, write ``RUN/eval/*.json``
      and return the result (what it prints: the task's ``format_result``);
    * :meth:`test` — a search's final, once-only score of a run on the test split.
    """

    @classmethod
    def periodic(cls, cfg, *, device="cpu", progress: Optional[bool] = None):
        raise NotImplementedError

    @classmethod
    def score_run(
        cls,
        run,
        *,
        n: Optional[int],
        default_n: int,
        features: str,
        metrics,
        reference: str,
        split: Optional[str],
        checkpoint: str,
        ema: bool,
        device,
        seed: int,
        cache_dir,
        progress: bool,
    ) -> dict:
        raise NotImplementedError

    @classmethod
    def test(cls, cfg, run_dir, *, device) -> dict:
        raise NotImplementedError


@EVALUATIONS.register("unconditional")
class UnconditionalEvaluation(TaskEvaluation):
    """FID/KID/PR (and IS) of samples G(z) against the held-out split."""

    @classmethod
    def periodic(cls, cfg, *, device="cpu", progress: Optional[bool] = None):
        e = cfg.eval
        return make_periodic_evaluator(
            cfg,
            device=device,
            cache_dir=e.cache_dir,
            n=e.n,
            features=e.features,
            metrics=tuple(e.metrics),
            reference=e.reference,
            seed=e.seed,
            progress=progress,
        )

    @classmethod
    def score_run(
        cls,
        run,
        *,
        n,
        default_n,
        features,
        metrics,
        reference,
        split,
        checkpoint,
        ema,
        device,
        seed,
        cache_dir,
        progress,
    ) -> dict:
        from normgan.eval.metric_info import check_eval_memory

        if split:
            raise UserError(
                "--split is for paired runs (val or test); "
                "an unconditional run is scored against --reference test|train"
            )
        stacked = run_data_name(run, checkpoint) == "stacked_mnist"
        if stacked:  # Stacked MNIST's protocol: its modes among 26,000 samples
            from normgan.metrics.modes import DEFAULT_N as MODES_N

            default_n, metrics = (MODES_N if n is None else n), metrics or "modes"
        n = default_n if n is None else n
        metrics = check_eval_args(n=n, features=features, metrics=metrics or "fid,kid,pr,is", reference=reference)
        check_eval_memory(n, features=features, metrics=metrics)
        return evaluate_run(
            run,
            n=n,
            features=features,
            metrics=metrics,
            reference=reference,
            checkpoint=checkpoint,
            ema=ema,
            device=device,
            seed=seed,
            cache_dir=cache_dir,
            progress=progress,
        )

    @classmethod
    def test(cls, cfg, run_dir, *, device) -> dict:
        return evaluate_run(
            run_dir,
            n=cfg.eval.n,
            features=cfg.eval.features,
            metrics=list(cfg.eval.metrics),
            reference="test",
            device=device,
            seed=cfg.eval.seed,
            cache_dir=cfg.eval.cache_dir,
        )


@EVALUATIONS.register("conditional")
class ConditionalEvaluation(UnconditionalEvaluation):
    """The unconditional scores (FID/KID/PR/IS) of a class-conditional G's samples: ``G(z)`` gives
    every class an equal share (balanced labels, :func:`normgan.models.layers.balanced_labels`).
    Conditional accuracy and intra-class FID (issue 23, item 2) are not yet built."""
