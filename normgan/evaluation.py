"""Evaluate a run's generator: ``normgan eval RUN`` and the periodic evaluator of the training loop.

    from normgan.evaluation import evaluate_run, make_periodic_evaluator
    res = evaluate_run("runs/00000-mnist5k-bce", n=5000)          # also writes runs/.../eval/*.json
    res["fid"], res["fid_floor"], res["class_coverage"]

    ev = make_periodic_evaluator(cfg, device="cpu", cache_dir=None)  # reference features computed once
    ev(trainer.G_ema)                                               # -> {"fid": ..., "kid_mean": ..., ...}

The reference is the run's HELD-OUT split (``data.holdout`` of the run's config; images never
seen in training) unless ``reference="train"`` is asked for.  The ``domain`` extractor is a
classifier trained on the run's TRAIN split and cached in ``cache_dir`` (default
``$NORMGAN_CACHE`` or ``~/.cache/normgan``).  See docs/evaluation.md for every definition.

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
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import torch
from torch import Tensor, nn

from normgan.errors import UserError

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

METRIC_NAMES = ("fid", "kid", "pr", "is")
REFERENCES = ("test", "train")
#: Samples used on each side of the ``diversity`` ratio (all pairs among them).
DIVERSITY_SAMPLES = 2000


# ---------------------------------------------------------------------------------------------- helpers
def default_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir`` when given, else ``$NORMGAN_CACHE`` when set, else ``~/.cache/normgan``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("NORMGAN_CACHE")
    return Path(env).expanduser() if env else Path("~/.cache/normgan").expanduser()


def check_eval_args(*, n=None, features=None, metrics=None, reference=None) -> tuple:
    """Validate user-facing evaluation options; returns ``metrics`` as a tuple.

    Raises one-line :class:`UserError` for ``n < 2``, an unknown feature name (not a registered
    name and not an import path ``pkg.mod:Class``), an unknown metric or reference.
    """
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise UserError(f"--n: {n!r} is too small; use at least 2 samples (5000-10000 for reportable FID)")
    if features is not None:
        from normgan.metrics import FEATURES

        if not isinstance(features, str) or not features:
            raise UserError(f"--features: bad value {features!r}; use domain, inception or package.module:ClassName")
        if ":" not in features and features not in FEATURES:
            raise UserError(f"--features: unknown feature extractor {features!r}; choose one of: "
                            f"{', '.join(FEATURES.names())}, or an import path package.module:ClassName")
    if metrics is not None:
        if isinstance(metrics, str):
            metrics = [m.strip() for m in metrics.split(",") if m.strip()]
        metrics = tuple(metrics)
        if not metrics:
            raise UserError(f"--metrics: empty list; give a comma-separated subset of {','.join(METRIC_NAMES)}")
        for m in metrics:
            if m not in METRIC_NAMES:
                raise UserError(f"--metrics: unknown metric {m!r}; choose from {','.join(METRIC_NAMES)}")
    if reference is not None and reference not in REFERENCES:
        raise UserError(f"--reference: unknown split {reference!r}; use test (held-out, the default) or train")
    return metrics


def _cfg_from_any(cfg):
    from normgan.config import Config, load_config

    return cfg if isinstance(cfg, Config) else load_config(base=cfg)


def reference_dataset(cfg, split: str = "test"):
    """The run's dataset split (``test`` = held-out, ``train``) with the run's loading options."""
    from normgan.data import load_dataset

    cfg = _cfg_from_any(cfg)
    d = cfg.data
    if split not in REFERENCES:
        raise UserError(f"--reference: unknown split {split!r}; use test (held-out, the default) or train")
    if split == "test" and d.holdout <= 0:
        raise UserError("the run was trained with data.holdout=0, so it has no held-out split; "
                        "evaluate against the training images with --reference train")
    return load_dataset(name=d.name, root=d.root, resolution=d.resolution, channels=d.channels, split=split,
                        holdout=d.holdout, strict=d.strict, seed=cfg.train.seed)


def checkpoint_step(run, checkpoint: str = "last.pt") -> int:
    """The training step stored in the run's checkpoint."""
    from normgan.train.checkpoint import find_checkpoint, load_checkpoint

    return int(load_checkpoint(find_checkpoint(run, checkpoint), map_location="cpu").get("step", 0))


def _slug(features: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", features)


def eval_path(run, *, step: int, features: str, n: int, reference: str = "test", seed: int = 0, ema: bool = True) -> Path:
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


def find_eval(run, *, step: int, features: str, n: int, reference: str = "test", seed: int = 0, ema: bool = True,
              metrics: Iterable[str] = METRIC_NAMES) -> Optional[dict]:
    """A previously written evaluation with the same step/features/n/reference/seed/ema that covers
    ``metrics``, or None."""
    path = eval_path(run, step=step, features=features, n=n, reference=reference, seed=seed, ema=ema)
    if not path.is_file():
        return None
    try:
        res = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    same = (res.get("step") == step and res.get("n") == n and res.get("features_spec", res.get("features")) == features
            and res.get("reference") == reference and res.get("seed") == seed and res.get("ema") == ema)
    if not same or not set(metrics) <= set(res.get("metrics", ())):
        return None
    return res


def _write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------- extra metrics
def class_coverage(logits: Tensor, num_classes: Optional[int] = None) -> float:
    """Fraction of classes predicted (argmax) for at least ``1/(4K)`` of the samples, K = classes."""
    k = int(num_classes or logits.shape[1])
    counts = torch.bincount(logits.argmax(1), minlength=k).double()
    share = counts / max(1, logits.shape[0])
    return float((share >= 1.0 / (4 * k)).double().mean())


def mean_pairwise_distance(x: Tensor, *, max_samples: int = DIVERSITY_SAMPLES) -> float:
    """Mean Euclidean distance over all pairs ``i < j`` among the first ``max_samples`` rows."""
    x = x[:max_samples].double()
    m = x.shape[0]
    if m < 2:
        return float("nan")
    total = 0.0
    for s in range(0, m, 500):  # chunked: m x m distances without an m x m x d tensor
        total += float(torch.cdist(x[s : s + 500], x).sum())
    return total / (m * (m - 1))  # the diagonal is 0; each pair counted twice over m(m-1) ordered pairs


def _diversity(fake: Tensor, real: Tensor) -> float:
    dr = mean_pairwise_distance(real)
    return mean_pairwise_distance(fake) / dr if dr > 0 else float("nan")


class _Recorder(nn.Module):
    """Wraps an extractor and keeps the features (and logits, when it has any) of every call,
    split into real and generated by the ``armed`` flag that the wrapped sampler sets."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.name = getattr(inner, "name", type(inner).__name__)
        self.num_features = getattr(inner, "num_features", None)
        self.has_logits = callable(getattr(inner, "logits", None))
        self.armed = False
        self.real: list = []
        self.fake: list = []
        self.fake_logits: list = []

    def features_and_logits(self, x: Tensor):
        if hasattr(self.inner, "features_and_logits"):
            f, lg = self.inner.features_and_logits(x)
        else:
            f, lg = self.inner(x), self.inner.logits(x)
        self._keep(f, lg)
        return f, lg

    def forward(self, x: Tensor) -> Tensor:
        if self.armed and self.has_logits:
            return self.features_and_logits(x)[0]
        f = self.inner(x)
        self._keep(f, None)
        return f

    def logits(self, x: Tensor) -> Tensor:  # only used by evaluate() through features_and_logits
        return self.features_and_logits(x)[1]

    def _keep(self, f: Tensor, lg: Optional[Tensor]) -> None:
        f = f.reshape(f.shape[0], -1).detach().double().cpu()
        if self.armed:
            self.fake.append(f)
            if lg is not None:
                self.fake_logits.append(lg.reshape(lg.shape[0], -1).detach().double().cpu())
            self.armed = False
        else:
            self.real.append(f)


def _sampler(G: nn.Module, device, recorder: Optional[_Recorder] = None) -> Callable[[int], Tensor]:
    z_dim = int(G.z_dim)

    def sample_fn(b: int) -> Tensor:
        x = G(torch.randn(b, z_dim, device=device)).float()
        if recorder is not None:
            recorder.armed = True
        return x

    return sample_fn


def _build_extractor(features: str, cfg, *, device, cache_dir, heldout=None, train=None):
    from normgan.metrics import build_feature_extractor

    if features == "domain":
        if train is None:
            train = reference_dataset(cfg, "train")
        if heldout is None and cfg.data.holdout > 0:
            heldout = lambda: reference_dataset(cfg, "test")  # noqa: E731  (only if it must train)
        return build_feature_extractor("domain", data=train, cache_dir=cache_dir, device=device,
                                       heldout=heldout, seed=0)
    return build_feature_extractor(features, data=train, cache_dir=cache_dir, device=device)


# ---------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate_generator(G: nn.Module, cfg, *, n: int = 5000, features: str = "domain",
                       metrics: Sequence[str] = METRIC_NAMES, reference: str = "test", device="cpu", seed: int = 0,
                       cache_dir=None, batch_size: int = 500, extractor: Optional[nn.Module] = None) -> dict:
    """Score generator ``G`` (``G(z)`` with ``z ~ N(0, I)`` of size ``G.z_dim``, images in
    ``[-1, 1]``) against the ``reference`` split of ``cfg``'s dataset with
    :func:`normgan.metrics.evaluate`, plus ``class_coverage``, ``diversity`` and (domain)
    ``domain_heldout_accuracy``.  ``extractor`` overrides building one from ``features``.
    """
    from normgan.metrics import evaluate

    cfg = _cfg_from_any(cfg)
    metrics = check_eval_args(n=n, features=None if extractor is not None else features, metrics=metrics,
                              reference=reference)
    ref = reference_dataset(cfg, reference)
    if extractor is None:
        heldout = ref if reference == "test" else None
        extractor = _build_extractor(features, cfg, device=device, cache_dir=default_cache_dir(cache_dir), heldout=heldout)
    was_training = G.training
    G.eval()
    rec = _Recorder(extractor).to(device).eval()
    if not rec.has_logits:  # no logits: no Inception Score (evaluate() would look for them on the wrapper)
        metrics = tuple(m for m in metrics if m != "is")
    t0 = time.perf_counter()
    try:
        res = evaluate(sample_fn=_sampler(G, device, rec), reference=ref, extractor=rec, n=n, metrics=metrics,
                       batch_size=batch_size, device=device, seed=seed)
    finally:
        G.train(was_training)
    res["eval_seconds"] = time.perf_counter() - t0
    res["features"] = str(getattr(extractor, "name", features))
    res["reference"] = reference
    res["reference_fingerprint"] = ref.fingerprint
    res["n_reference"] = len(ref)
    fake = torch.cat(rec.fake) if rec.fake else None
    real = torch.cat(rec.real) if rec.real else None
    if fake is not None and real is not None:
        res["diversity"] = _diversity(fake, real[: res["n_real"]])  # the same real set as fid/kid/pr
    if rec.fake_logits:
        res["class_coverage"] = class_coverage(torch.cat(rec.fake_logits), getattr(extractor, "num_classes", None))
    acc = getattr(extractor, "heldout_accuracy", None)
    if res["features"] == "domain":
        res["domain_heldout_accuracy"] = None if acc is None else float(acc)
        res["domain_fingerprint"] = getattr(extractor, "fingerprint", None)
    return res


def evaluate_run(run, *, n: int = 5000, features: str = "domain", metrics: Sequence[str] = METRIC_NAMES,
                 reference: str = "test", checkpoint: str = "last.pt", ema: bool = True, device="cpu", seed: int = 0,
                 cache_dir=None, batch_size: int = 500, reuse: bool = False, write: bool = True) -> dict:
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

    Returns:
        The metrics of :func:`normgan.metrics.evaluate` (``fid``, ``fid_floor``, ``fid_floor_n``,
        ``kid_mean``, ``kid_std``, ``precision``, ``recall``, ``is_mean``, ``is_std``) plus ``n``,
        ``features``, ``reference``, ``step``, ``class_coverage``, ``diversity``,
        ``domain_heldout_accuracy`` (domain only), ``run``, ``path`` (the JSON written).
    """
    from normgan.sample import load_generator
    from normgan.device import resolve_device

    metrics = check_eval_args(n=n, features=features, metrics=metrics, reference=reference)
    step = checkpoint_step(run, checkpoint)
    device = resolve_device(str(device))
    if reuse:
        old = find_eval(run, step=step, features=features, n=n, reference=reference, seed=seed, ema=ema, metrics=metrics)
        if old is not None:
            old["reused"] = True
            return old
    G, cfg = load_generator(run, ema=ema, device=str(device), checkpoint=checkpoint)
    res = evaluate_generator(G, cfg, n=n, features=features, metrics=metrics, reference=reference, device=device,
                             seed=seed, cache_dir=cache_dir, batch_size=batch_size)
    res.update({"step": step, "run": str(run), "checkpoint": checkpoint, "ema": bool(ema), "seed": int(seed),
                "features_spec": features, "metrics": list(metrics)})
    if write:
        path = eval_path(run, step=step, features=features, n=n, reference=reference, seed=seed, ema=ema)
        res["path"] = str(path)
        _write_json(path, res)
    return res


# ---------------------------------------------------------------------------------------------- periodic
class PeriodicEvaluator:
    """Scores generators against reference features computed once at construction.

    Uses the same reference sampling as :func:`normgan.metrics.evaluate` (a permutation drawn
    with ``seed``; ``fid_floor`` at ``fid_floor_n``), so for equal ``n``/``seed`` its numbers equal
    :func:`evaluate_generator`'s.  Each call forks the RNG: the training RNG stream is untouched.
    """

    def __init__(self, cfg, *, device="cpu", cache_dir=None, n: int = 2000, features: str = "domain",
                 metrics: Sequence[str] = METRIC_NAMES, reference: str = "test", seed: int = 0,
                 batch_size: int = 500, extractor: Optional[nn.Module] = None) -> None:
        from normgan.metrics import fid_from_features, real_features

        cfg = _cfg_from_any(cfg)
        self.metrics = check_eval_args(n=n, features=None if extractor is not None else features, metrics=metrics,
                                       reference=reference)
        self.n, self.seed, self.batch_size, self.device = int(n), int(seed), int(batch_size), torch.device(device)
        self.reference = reference
        ref = reference_dataset(cfg, reference)
        if len(ref) < 4:
            raise UserError(f"the {reference} split has {len(ref)} images; the evaluation needs at least 4 (raise data.holdout)")
        if extractor is None:
            extractor = _build_extractor(features, cfg, device=device, cache_dir=default_cache_dir(cache_dir),
                                         heldout=ref if reference == "test" else None)
        self.extractor = extractor.to(self.device).eval()
        self.features = str(getattr(extractor, "name", features))
        self.want_is = "is" in self.metrics and callable(getattr(extractor, "logits", None))
        self.want_logits = callable(getattr(extractor, "logits", None))
        gen = torch.Generator().manual_seed(self.seed)
        perm = torch.randperm(len(ref), generator=gen)
        self._gen_state = gen.get_state()  # KID subsets continue this stream, as in evaluate()
        self.n_real = min(self.n, len(ref))
        self.floor_n = self.n if len(ref) >= 2 * self.n else len(ref) // 2
        need = max(self.n_real, 2 * self.floor_n) if "fid" in self.metrics else self.n_real
        real = real_features(self.extractor, ref, indices=perm[:need], batch_size=batch_size, device=self.device)
        self.real = real[: self.n_real]
        self.fid_floor = fid_from_features(real[: self.floor_n], real[self.floor_n : 2 * self.floor_n]) if "fid" in self.metrics else None
        self.real_spread = mean_pairwise_distance(self.real)
        self.heldout_accuracy = getattr(extractor, "heldout_accuracy", None)

    @torch.no_grad()
    def __call__(self, G: nn.Module) -> dict:
        from normgan.metrics import fid_from_features, generated_features, inception_score, kid_from_features, precision_recall

        t0 = time.perf_counter()
        was_training = G.training
        G.eval()
        dev = self.device
        cuda_ids = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=cuda_ids):
                torch.manual_seed(self.seed)
                out = generated_features(self.extractor, _sampler(G, dev), n=self.n, batch_size=self.batch_size,
                                         device=dev, logits=self.want_logits)
        finally:
            G.train(was_training)
        fake, logits = out if self.want_logits else (out, None)
        res: dict = {"n": self.n, "n_real": self.n_real, "features": self.features, "reference": self.reference}
        if "fid" in self.metrics:
            res["fid"] = fid_from_features(self.real, fake)
            res["fid_floor"], res["fid_floor_n"] = self.fid_floor, self.floor_n
        if "kid" in self.metrics:
            gen = torch.Generator()
            gen.set_state(self._gen_state)
            res["kid_mean"], res["kid_std"] = kid_from_features(self.real, fake, generator=gen)
        if "pr" in self.metrics:
            res["precision"], res["recall"] = precision_recall(self.real, fake, k=3)
        if self.want_is:
            res["is_mean"], res["is_std"] = inception_score(logits, splits=min(10, self.n), kind="logits")
        if logits is not None:
            res["class_coverage"] = class_coverage(logits, getattr(self.extractor, "num_classes", None))
        res["diversity"] = mean_pairwise_distance(fake) / self.real_spread if self.real_spread > 0 else float("nan")
        if self.heldout_accuracy is not None:
            res["domain_heldout_accuracy"] = float(self.heldout_accuracy)
        res["eval_seconds"] = time.perf_counter() - t0
        return res


def make_periodic_evaluator(cfg, *, device="cpu", cache_dir=None, n: int = 2000, features: str = "domain",
                            metrics: Sequence[str] = METRIC_NAMES, reference: str = "test", seed: int = 0,
                            batch_size: int = 500) -> PeriodicEvaluator:
    """A callable ``evaluator(G) -> dict`` for the training loop: the extractor (domain classifier,
    trained once and cached in ``cache_dir``) and the reference features are prepared here, once;
    each call generates ``n`` images with ``G`` (put in eval mode, restored afterwards) under a
    forked RNG and returns the same keys as :func:`evaluate_generator` (no JSON is written)."""
    return PeriodicEvaluator(cfg, device=device, cache_dir=cache_dir, n=n, features=features, metrics=metrics,
                             reference=reference, seed=seed, batch_size=batch_size)
