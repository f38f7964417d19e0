"""Evaluate a paired (image-to-image) run: G(x) against y on a whole split.

    from normgan.eval.paired import PairedEvaluator
    ev = PairedEvaluator(cfg, split="val")          # the training loop: the validation split
    ev(G_ema)  # {"psnr": …, "ssim": …, "l1": …, "sharpness_ratio": …, "dropout_diversity": …, …}

Every pair of the split is translated once (under a forked, seeded RNG, so dropout kept on at
test time gives the same numbers for the same seed and the training RNG stream is untouched),
batch by batch: each batch is translated, converted to float, scored and dropped, so the memory
does not grow with the split beyond its uint8 pairs (``n=N``: a seeded subset of N pairs instead).

* ``psnr``, ``ssim`` (Gaussian window 11, σ 1.5), ``l1`` (mean |G(x) − y| on the [-1, 1] scale):
  means over images (see :mod:`normgan.metrics.paired`);
* ``sharpness_ratio``: mean gradient magnitude of the outputs ÷ that of the targets (< 1: blurrier);
* ``dropout_diversity``: pixel std across :data:`DIVERSITY_DRAWS` translations of the same
  :data:`DIVERSITY_INPUTS` inputs (0 for a deterministic G; dropout kept at test time raises it);
* ``lpips`` (AlexNet) when asked for and its weights are on disk; otherwise a one-line warning
  names the missing file (never a download);
* ``baseline_psnr|ssim|l1``: the built-in task's trivial prediction (``normgan.data.BASELINES``),
  scored the same way, so every figure comes with the number it must beat;
* ``classifier_score`` for labelled tasks (the digit tasks): the accuracy of the domain classifier
  (trained on the training targets, cached) on G(x) with the labels of x, beside
  ``classifier_score_real``, its accuracy on the real targets (pix2pix's FCN-score analogue).

The training loop scores the ``val`` split; ``normgan eval`` scores ``test``. The test split is
never used to choose anything during training.  With ``data.folds`` "val" is the held-out fold of
the training split and "train" its fit part (see :func:`paired_split`).
"""

from __future__ import annotations

import time
import warnings
from collections import OrderedDict
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from normgan.eval.evaluation import EVALUATIONS, TaskEvaluation, run_config  # noqa: F401  (run_config re-exported)
from normgan.eval.metric_info import PAIRED_METRIC_NAMES, format_paired  # noqa: F401  (format_paired moved there; re-exported)

PAIRED_SPLITS = ("train", "val", "test")
DIVERSITY_INPUTS = 64
DIVERSITY_DRAWS = 4


def paired_split(cfg, split: str):
    """The run's paired ``split`` (train, val, test) at ``data.resolution`` (no jitter).

    With ``data.folds`` (cross-validation) ``val`` is the held-out fold ``data.fold`` of the TRAIN
    split and ``train`` its fit part, so training and its evaluations read neither the val nor the
    test split; ``test`` stays the real test split (for ``normgan eval`` only).
    """
    from normgan.data import load_paired
    from normgan.tasks.builtin import fold_of

    d = cfg.data
    source = "train" if d.folds and split in ("train", "val") else split
    data = load_paired(
        name=d.name,
        root=d.root,
        resolution=d.resolution,
        split=source,
        direction=d.direction,
        strict=d.strict,
        seed=cfg.train.seed,
    )
    if d.folds and split in ("train", "val"):
        data = fold_of(data, d, "heldout" if split == "val" else "fit")
    return data


@torch.no_grad()
def translate(G: nn.Module, inputs: Tensor, *, device, batch_size: int = 64) -> Tensor:
    """G applied to uint8 (or [-1, 1] float) ``inputs`` in batches; float [-1, 1] outputs on the CPU."""
    from normgan.data import batch_to_float

    out = []
    for start in range(0, inputs.shape[0], batch_size):
        x = inputs[start : start + batch_size]
        x = batch_to_float(x) if x.dtype == torch.uint8 else x.float()
        out.append(G(x.to(device)).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


#: In-process cache of the trivial baselines: a search evaluates the same held-out split once per
#: trial and fold, and the baseline depends only on the split (not on the model).  Keyed by
#: :func:`_baseline_key`; at most :data:`_BASELINE_CACHE_SIZE` entries (a few floats each).
_BASELINE_CACHE: "OrderedDict[tuple, dict]" = OrderedDict()
_BASELINE_CACHE_SIZE = 64


def _baseline_key(cfg, data, with_ssim: bool) -> tuple:
    """What the baseline of ``data`` depends on: the dataset (name, root, resolution, direction,
    and ``data.fingerprint``, which covers the source, the split, the fold and the subset) and
    whether SSIM is computed."""
    d = cfg.data
    return (d.name, str(d.root), int(d.resolution), d.direction, data.fingerprint, len(data), bool(with_ssim))


def clear_baseline_cache() -> None:
    """Forget the cached baselines (tests; a process that rewrites its data folders)."""
    _BASELINE_CACHE.clear()


def _subset(data, *, n: int, seed: int):
    """``n`` pairs of ``data`` drawn without replacement by a ``torch.Generator`` seeded with
    ``seed``, kept in split order; ``data`` itself when ``n >= len(data)``."""
    from normgan.data import PairedData
    from normgan.data.dataset import fingerprint

    if n >= len(data):
        return data
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(int(seed)))[:n].sort().values
    fp = fingerprint({"paired": data.fingerprint, "subset": int(n), "seed": int(seed)})
    return PairedData(
        inputs=data.inputs[idx],
        targets=data.targets[idx],
        labels=None if data.labels is None else data.labels[idx],
        name=data.name,
        fingerprint=fp,
    )


def check_n(n) -> Optional[int]:
    """``n`` (pairs to evaluate) as an int >= 1, or None (all); a one-line UserError otherwise."""
    from normgan.errors import UserError

    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UserError(
            f"--n: {n!r} is not a number of pairs; use a positive integer (or leave it out for the whole split)"
        )
    return int(n)


class PairedEvaluator:
    """Scores a generator on one paired split; the classifier and LPIPS are prepared once here.

    Memory is bounded by ``batch_size`` (and :data:`normgan.metrics.paired.CHUNK_VALUES`), not by
    the split: each batch is translated, converted to float and scored, then dropped; only the
    uint8 split itself and the :data:`DIVERSITY_INPUTS` outputs kept for the dropout diversity stay
    in memory.  ``n`` (default: every pair) evaluates a seeded subset of ``n`` pairs instead (drawn
    with ``seed``, in split order; the result's ``n`` says how many, ``n_split`` of how many).
    The trivial baseline is computed once per process for a given split (:func:`_baseline_key`).
    ``progress``: a bar on stderr for the scoring (True, False, or None: when stderr is a
    terminal; see :mod:`normgan.metrics.progress`).
    """

    def __init__(
        self,
        cfg,
        *,
        device="cpu",
        cache_dir=None,
        split: str = "val",
        metrics: Optional[Sequence[str]] = None,
        seed: int = 0,
        batch_size: int = 64,
        n: Optional[int] = None,
        progress: Optional[bool] = None,
    ) -> None:
        from normgan.errors import UserError
        from normgan.metrics.paired import lpips_or_none

        if split not in PAIRED_SPLITS:
            raise UserError(f"--split: unknown split {split!r}; use val or test")
        self.cfg, self.split, self.seed, self.batch_size = cfg, split, int(seed), int(batch_size)
        self.progress = progress
        self.device = torch.device(device)
        self.requested_n = check_n(n)  # before a minute of loading
        data = paired_split(cfg, split)
        self.n_split = len(data)
        self.data = data if self.requested_n is None else _subset(data, n=self.requested_n, seed=self.seed)
        del data
        self.metrics = tuple(metrics) if metrics is not None else PAIRED_METRIC_NAMES
        self.lpips = self.lpips_note = None
        if "lpips" in self.metrics:
            self.lpips, self.lpips_note = lpips_or_none(device=str(self.device))
            if self.lpips is None:
                warnings.warn(f"LPIPS skipped: {self.lpips_note}")
        self.baseline = self._baseline()
        self.classifier, self.classifier_score_real = None, None
        if "classifier_score" in self.metrics and self.data.labels is not None:
            self.classifier = self._classifier(cache_dir)
            self.classifier_score_real = self._accuracy(self.data.targets)  # uint8, converted per batch

    def _baseline(self) -> dict:
        """PSNR/SSIM/L1 of the built-in task's trivial prediction (``normgan.data.BASELINES``: the
        grey input as colour, the noisy/blurred/bicubic input, …); empty for user data.  Scored in
        batches (each converted to float on its own); cached per process (:func:`_baseline_key`)."""
        from normgan.data import BASELINES, batch_to_float
        from normgan.metrics.paired import PairedScores

        fn = BASELINES.get(self.cfg.data.name) if self.cfg.data.direction == "AtoB" else None
        if fn is None:
            return {}
        with_ssim = "ssim" in self.metrics
        key = _baseline_key(self.cfg, self.data, with_ssim)
        if key in _BASELINE_CACHE:
            _BASELINE_CACHE.move_to_end(key)
            return dict(_BASELINE_CACHE[key])
        scores = PairedScores(ssim=with_ssim)
        for start in range(0, len(self.data), self.batch_size):
            sl = slice(start, start + self.batch_size)
            scores.update(batch_to_float(fn(self.data.inputs[sl])), batch_to_float(self.data.targets[sl]))
        res = scores.compute()
        out = {f"baseline_{k}": res[k] for k in ("psnr", "ssim", "l1") if k in res}
        _BASELINE_CACHE[key] = dict(out)
        while len(_BASELINE_CACHE) > _BASELINE_CACHE_SIZE:
            _BASELINE_CACHE.popitem(last=False)
        return out

    def _classifier(self, cache_dir):
        from normgan.data import targets_as_imagedata
        from normgan.eval.evaluation import default_cache_dir
        from normgan.metrics import load_or_train

        train = targets_as_imagedata(paired_split(self.cfg, "train"))
        # the held-out targets are loaded only when the classifier must be trained (not cached yet)
        heldout = lambda: targets_as_imagedata(paired_split(self.cfg, "val"))  # noqa: E731
        return load_or_train(
            train, heldout=heldout, cache_dir=default_cache_dir(cache_dir), device=self.device, progress=self.progress
        ).eval()

    def _accuracy(self, images: Tensor) -> float:
        """The classifier's accuracy on uint8 ``images`` with the split's labels (batched: each batch
        is converted to float and moved to the device on its own)."""
        from normgan.metrics.paired import classifier_score

        return classifier_score(self.classifier, images, self.data.labels, batch_size=max(self.batch_size, 256))

    def outputs(self, G: nn.Module, *, seed: int, count: Optional[int] = None) -> Tensor:
        """G(x) for the split's inputs (the first ``count``, default all), in eval mode, under a
        forked RNG seeded by ``seed``.  Holds every output in memory: for the few outputs of the
        diversity draws and for callers that want the images; :meth:`__call__` scores the split in
        batches instead."""
        was_training = G.training
        G.eval()
        devices = [self.device] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                return translate(G, self.data.inputs[:count], device=self.device, batch_size=self.batch_size)
        finally:
            G.train(was_training)

    def _score_split(self, G: nn.Module, scores) -> Tensor:
        """Translate the split batch by batch under a forked RNG seeded with ``seed`` (the same
        stream, hence the same outputs, as :meth:`outputs`), add each batch to ``scores``, and return
        the first :data:`DIVERSITY_INPUTS` outputs."""
        from normgan.data import batch_to_float
        from normgan.metrics import progress as prog

        kept, n = [], len(self.data)
        was_training = G.training
        G.eval()
        devices = [self.device] if self.device.type == "cuda" else []
        bar = prog.bar(total=n, desc=f"evaluate {self.split}", unit="pair", progress=self.progress)
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                torch.manual_seed(self.seed)
                for start in range(0, n, self.batch_size):
                    sl = slice(start, start + self.batch_size)
                    out = translate(G, self.data.inputs[sl], device=self.device, batch_size=self.batch_size)
                    labels = self.data.labels[sl] if self.classifier is not None else None
                    scores.update(out.to(self.device), batch_to_float(self.data.targets[sl]).to(self.device), labels)
                    if start < DIVERSITY_INPUTS:
                        kept.append(out[: DIVERSITY_INPUTS - start])
                    bar.update(out.shape[0])
        finally:
            bar.close()
            G.train(was_training)
        return torch.cat(kept) if kept else torch.empty(0)

    def __call__(self, G: nn.Module) -> dict:
        from normgan.metrics.paired import PairedScores, dropout_diversity

        t0 = time.perf_counter()
        scores = PairedScores(lpips=self.lpips, classifier=self.classifier, ssim="ssim" in self.metrics)
        first = self._score_split(G, scores)
        res = scores.compute()
        k = first.shape[0]
        draws = [first] + [self.outputs(G, seed=self.seed + i, count=k) for i in range(1, DIVERSITY_DRAWS)]
        res["dropout_diversity"] = dropout_diversity(torch.stack(draws)) if k else float("nan")  # [-1, 1] outputs
        if self.classifier_score_real is not None:
            res["classifier_score_real"] = self.classifier_score_real
        res.update(self.baseline)
        res.update(
            {"split": self.split, "n": int(res["n"]), "n_split": self.n_split, "eval_seconds": time.perf_counter() - t0}
        )
        if self.requested_n is not None and self.requested_n < self.n_split:
            res["subset_seed"] = self.seed
        return res


@EVALUATIONS.register("paired")
class PairedEvaluation(TaskEvaluation):
    """The paired metrics of G(x) against y: on ``val`` while training, on ``test`` (or ``--split``) after."""

    @classmethod
    def periodic(cls, cfg, *, device="cpu", progress: Optional[bool] = None):
        e = cfg.eval
        return PairedEvaluator(
            cfg,
            device=device,
            cache_dir=e.cache_dir,
            split="val",
            metrics=tuple(e.metrics),
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
        # every pair of the split is scored (``n``: a subset), against its targets: no features or reference
        return evaluate_paired_run(
            run,
            split=split or "test",
            metrics=metrics,
            checkpoint=checkpoint,
            ema=ema,
            device=device,
            seed=seed,
            cache_dir=cache_dir,
            n=n,
            progress=progress,
        )

    @classmethod
    def test(cls, cfg, run_dir, *, device) -> dict:
        return evaluate_paired_run(
            run_dir,
            split="test",
            metrics=list(cfg.eval.metrics),
            device=device,
            seed=cfg.eval.seed,
            cache_dir=cfg.eval.cache_dir,
        )


def task_evaluation(task: str) -> type:
    """The :class:`~normgan.eval.evaluation.TaskEvaluation` of task ``task`` (every task's is registered
    once this module is imported)."""
    return EVALUATIONS.get(task, key="task")


def evaluate_paired_run(
    run,
    *,
    split: str = "test",
    metrics: Optional[Sequence[str]] = None,
    checkpoint: str = "last.pt",
    ema: bool = True,
    device="cpu",
    seed: int = 0,
    cache_dir=None,
    write: bool = True,
    n: Optional[int] = None,
    progress: Optional[bool] = None,
) -> dict:
    """Score a paired run's generator on ``split`` (default: the test split) and write
    ``run/eval/eval-step<NNNNNN>-paired-<split>.json`` (suffixes ``-n<N>`` for a subset,
    ``-seed<S>``, ``-noema`` as for unconditional evaluations). ``metrics``: default every paired
    metric.  ``n``: evaluate a subset of ``n`` pairs drawn with ``seed`` (default, or ``n`` at least
    the split's size: every pair); the result states ``n`` and ``n_split``."""
    from pathlib import Path

    from normgan.eval.evaluation import checkpoint_step, write_json
    from normgan.eval.metric_info import check_paired_metrics
    from normgan.inference.sample import load_generator
    from normgan.runtime.device import resolve_device

    metrics = check_paired_metrics(metrics) or PAIRED_METRIC_NAMES
    n = check_n(n)
    device = resolve_device(str(device))
    G, cfg = load_generator(run, ema=ema, device=str(device), checkpoint=checkpoint)
    step = checkpoint_step(run, checkpoint)
    res = PairedEvaluator(
        cfg, device=device, cache_dir=cache_dir, split=split, metrics=metrics, seed=seed, n=n, progress=progress
    )(G)
    res.update(
        {
            "step": step,
            "run": str(run),
            "checkpoint": checkpoint,
            "ema": bool(ema),
            "seed": int(seed),
            "metrics": list(metrics),
            "task": "paired",
            "dataset": cfg.data.name,
        }
    )
    if write:
        subset = f"-n{res['n']}" if res["n"] < res["n_split"] else ""
        name = (
            f"eval-step{step:06d}-paired-{split}"
            + subset
            + (f"-seed{seed}" if seed else "")
            + ("" if ema else "-noema")
        )
        path = Path(run) / "eval" / f"{name}.json"
        res["path"] = str(path)
        write_json(path, res)
    return res
