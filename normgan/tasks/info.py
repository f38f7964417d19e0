"""What a task declares without loading data or torch: the class side of :class:`normgan.tasks.builtin.Task`.

A leaf like :mod:`normgan.eval.metric_info` (standard library, :mod:`normgan.errors`,
:mod:`normgan.registry` and :mod:`normgan.eval.metric_info` only), so that the config validation (a
lower layer than the tasks), the run report (which loads no torch) and the search/study planners
can ask a task what it is without building it:

    info = TASK_INFO.get(cfg.task)          # UnconditionalInfo, PairedInfo or ConditionalInfo (builtin subclasses them)
    info.scores, info.eval_defaults, info.check_eval_args(metrics=...), info.format_result(res)

:class:`TaskInfo` states this part of the contract; :class:`normgan.tasks.builtin.Task` adds the part that
needs data (batches, G's input, D's condition, sample grids), and
:class:`normgan.eval.evaluation.TaskEvaluation` the part that needs the evaluators.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

from normgan.errors import ConfigError, UserError
from normgan.eval.metric_info import (
    BEST_METRIC_CHOICES,
    PAIRED_METRIC_NAMES,
    check_best_metric,
    check_eval_args,
    check_paired_best_metric,
    check_paired_metrics,
    format_eval,
    format_paired,
    metric_group,
    metric_tuple,
)
from normgan.registry import Registry

#: task name -> its :class:`TaskInfo` class, in registration order by :func:`task_names`
TASK_INFO = Registry("task")
_ORDER: list = []


def register(name: str) -> Callable:
    """Register a :class:`TaskInfo` subclass under ``name`` (sets ``cls.name``)."""

    def decorator(cls):
        cls.name = name
        TASK_INFO.register(name)(cls)
        _ORDER.append(name)
        return cls

    return decorator


def task_names() -> Tuple[str, ...]:
    """The registered task names, in registration order (``task: auto`` tries them in this order)."""
    return tuple(_ORDER)


def auto_task(dataset: str, *, conditioned: bool = False) -> str:
    """``task: auto``: the first registered task whose :meth:`TaskInfo.fits_dataset` accepts ``dataset``
    among those whose ``conditioned`` is ``conditioned`` (class conditioning set in the models); when
    none fits, the first of those (its :meth:`TaskInfo.dataset_error` then names the problem)."""
    names = [n for n in task_names() if TASK_INFO.get(n).conditioned == conditioned]
    return next((n for n in names if TASK_INFO.get(n).fits_dataset(dataset)), names[0])


#: the value range of the images G takes and makes (pixels p in [0, 255] map to p / 127.5 - 1)
IMAGE_RANGE = (-1.0, 1.0)


def noise_spec(z_dim: int, *, name: str = "z") -> dict:
    """The spec of a noise input: (batch, ``z_dim``) float32 drawn from N(0, I)."""
    return {
        "name": name,
        "shape": ["batch", int(z_dim)],
        "dtype": "float32",
        "distribution": "normal",
        "mean": 0.0,
        "std": 1.0,
    }


def label_spec(classes: int, *, name: str = "y") -> dict:
    """The spec of a class-label input: (batch,) int64 in [0, ``classes`` − 1] (inclusive)."""
    return {"name": name, "shape": ["batch"], "dtype": "int64", "range": [0, int(classes) - 1]}


def image_spec(name: str, *, channels: int, resolution: int) -> dict:
    """The spec of an image input or output: (batch, C, R, R) float32 (NCHW) in [-1, 1]."""
    return {
        "name": name,
        "shape": ["batch", int(channels), int(resolution), int(resolution)],
        "dtype": "float32",
        "range": list(IMAGE_RANGE),
        "layout": "NCHW",
    }


class TaskInfo:
    """The declarations of a task, all class attributes and classmethods (nothing is built).

    A new task subclasses this (registered with :func:`register`) and sets or overrides:

    * what it is: ``name`` (set by :func:`register`), ``run_kind`` (how messages name its runs),
      ``conditioned`` (G and D take class labels: ``model.*.conditioning`` is set; ``task: auto``
      and the config check, :meth:`conditioning_error`);
    * its data and generator: :meth:`fits_dataset` / :meth:`dataset_error` (``task: auto`` and the
      config check), ``image_input`` (G maps an image rather than noise: the generator check, G's
      input channels, ``normgan translate``), ``generator_mismatch``; :meth:`checkpoint_in_channels`
      (G's input channels from a checkpoint, for ``normgan sample`` / ``eval``), :meth:`checkpoint_classes`
      (a class-conditional G's number of classes, likewise);
      :meth:`generator_inputs` (what G takes, in order: the exported file's inputs and contract,
      ``normgan export``);
    * its evaluation: ``scores`` (what ``eval`` produces and a search/study may optimize),
      ``eval_defaults`` (eval.metrics, eval.best_metric), :meth:`check_eval_args`,
      :meth:`check_best_metric`, :meth:`metric_group`, :meth:`trial_eval` (a search trial's eval
      settings), :meth:`format_result` (what ``normgan eval`` prints), ``noise_samples`` (FID/KID/PR
      of samples G(z) apply: ``compare``, the overfitting measure), ``study_columns``;
    * its search: ``single_split_folds`` (``--folds 1``: None for the validation split, else the K
      whose fold 0 is held out);
    * its report: ``grid_caption``, ``report_eval_size`` (eval.n / features are shown),
      ``legacy_eval_keys`` (eval/* keys that identify a run whose config names no task).
    """

    name: str = ""
    run_kind: str = ""
    conditioned: bool = False
    image_input: bool = False
    generator_mismatch: str = ""
    noise_samples: bool = True
    noise_samples_refusal: str = ""
    #: (eval.metrics, eval.best_metric) defaults of this task
    eval_defaults: Tuple[Tuple[str, ...], str] = (("fid", "kid", "pr"), "fid")
    scores: Tuple[str, ...] = ()
    study_columns: Tuple[str, ...] = ()
    single_split_folds: Optional[int] = None
    grid_caption: str = ""
    report_eval_size: bool = True
    legacy_eval_keys: Tuple[str, ...] = ()

    @classmethod
    def fits_dataset(cls, dataset: str) -> bool:
        raise NotImplementedError

    @classmethod
    def dataset_error(cls, dataset: str) -> ConfigError:
        """The one-line error for a ``dataset`` this task cannot train on."""
        raise NotImplementedError

    @classmethod
    def conditioning_error(cls) -> ConfigError:
        """The one-line error when ``model.*.conditioning`` does not match :attr:`conditioned`."""
        return ConfigError(
            f"task: bad value {cls.name!r}; model.generator/discriminator.conditioning is set (a class-conditional "
            "run): use task: conditional (or auto) on a labelled dataset, or set the conditioning to null"
        )

    @classmethod
    def config_in_channels(cls, channels: int) -> Optional[int]:
        """G's input channels known from the config alone (``channels``: the data's)."""
        return channels if cls.image_input else None

    @classmethod
    def checkpoint_in_channels(cls, state: dict, *, path) -> Optional[int]:
        """G's input channels from a checkpoint's entries (None: G maps noise)."""
        return None

    @classmethod
    def checkpoint_classes(cls, state: dict, *, path) -> Optional[int]:
        """The number of classes of a class-conditional G from a checkpoint's entries (None: not conditional)."""
        return None

    @classmethod
    def generator_inputs(
        cls, *, z_dim: Optional[int], in_channels: Optional[int], resolution: int, classes: Optional[int] = None
    ) -> Tuple[dict, ...]:
        """G's inputs in the order G takes them (``G(*inputs)``), one spec each: ``name``, ``shape``
        (``"batch"`` first: the batch dimension is dynamic), ``dtype`` and the values it expects
        (``distribution`` for noise, ``range`` [low, high] for images and, inclusive, for integer
        labels). ``normgan export`` names the exported file's inputs after them and writes them into
        the contract; a task whose G takes several inputs (class-conditional: z and y) lists each.
        ``classes``: the number of classes of a class-conditional G (None otherwise)."""
        raise NotImplementedError

    @classmethod
    def apply_eval_defaults(cls, e, *, schema: Tuple[list, str]) -> None:
        """Replace eval.metrics / eval.best_metric left at the schema's defaults (``schema``) by this
        task's :data:`eval_defaults` (written into the resolved config)."""
        metrics, best = cls.eval_defaults
        if (list(metrics), best) == (list(schema[0]), schema[1]):
            return
        if list(e.metrics) == list(schema[0]):
            e.metrics = list(metrics)
        if e.best_metric == schema[1]:
            e.best_metric = best if best in e.metrics else str(e.metrics[0]) if e.metrics else e.best_metric

    @classmethod
    def check_eval_args(cls, *, n=None, features=None, metrics=None, reference=None) -> Optional[tuple]:
        raise NotImplementedError

    @classmethod
    def check_best_metric(cls, *, best_metric: str, metrics) -> str:
        raise NotImplementedError

    @classmethod
    def metric_group(cls, score: str) -> Optional[str]:
        """The ``eval.metrics`` entry that produces ``score`` (None: every evaluation adds it)."""
        return score

    @classmethod
    def trial_eval(cls, e: dict) -> None:
        """A search trial's further eval settings (``e``: the trial config's ``eval`` mapping)."""

    @classmethod
    def format_result(cls, res: dict, *, metrics=None) -> str:
        """What ``normgan eval`` prints for ``res`` (``metrics``: ``--metrics`` as given, or None)."""
        raise NotImplementedError

    @classmethod
    def require_noise_samples(cls, run, *, what: Optional[str] = None) -> None:
        """A one-line UserError naming ``run`` unless FID/KID/PR of samples G(z) apply to this task
        (``what``: the rest of the message, default :attr:`noise_samples_refusal`)."""
        if not cls.noise_samples:
            raise UserError(f"run '{run}' is {cls.run_kind}{cls.noise_samples_refusal if what is None else what}")


@register("unconditional")
class UnconditionalInfo(TaskInfo):
    run_kind = "unconditional (its generator maps noise to images, it has no input image)"
    generator_mismatch = "maps an image to an image; an unconditional run needs a noise-to-image generator (dcgan)"
    scores = BEST_METRIC_CHOICES
    study_columns = ("fid", "kid_mean", "precision", "recall")
    #: --folds 1 holds out one fixed fifth of the training split
    single_split_folds = 5
    grid_caption = "each grid: the EMA generator's images for the same fixed noise"

    @classmethod
    def fits_dataset(cls, dataset: str) -> bool:
        from normgan.data import is_paired

        return not is_paired(dataset)

    @classmethod
    def generator_inputs(
        cls, *, z_dim: Optional[int], in_channels: Optional[int], resolution: int, classes: Optional[int] = None
    ) -> Tuple[dict, ...]:
        return (noise_spec(z_dim),)

    @classmethod
    def dataset_error(cls, dataset: str) -> ConfigError:
        return ConfigError(
            f"task: bad value {cls.name!r}; data.name={dataset} is a paired dataset; use task: paired (or auto)"
        )

    @classmethod
    def check_eval_args(cls, *, n=None, features=None, metrics=None, reference=None) -> Optional[tuple]:
        return check_eval_args(n=n, features=features, metrics=metrics, reference=reference)

    @classmethod
    def check_best_metric(cls, *, best_metric: str, metrics) -> str:
        return check_best_metric(best_metric=best_metric, metrics=metrics)

    @classmethod
    def metric_group(cls, score: str) -> Optional[str]:
        return metric_group(score)

    @classmethod
    def trial_eval(cls, e: dict) -> None:
        e["reference"] = "test"  # the held-out part: with folds on, the held-out fold

    @classmethod
    def format_result(cls, res: dict, *, metrics=None) -> str:
        return format_eval(res, metrics=metric_tuple(metrics) if metrics else None)


@register("paired")
class PairedInfo(TaskInfo):
    run_kind = "a paired (image-to-image) run"
    image_input = True
    generator_mismatch = "maps noise to images; a paired run needs an image-to-image generator (unet or resnet)"
    noise_samples = False
    noise_samples_refusal = (
        ": FID/KID/PR score unconditional generators; 'normgan eval RUN' reports its PSNR/SSIM/L1 on the test split"
    )
    eval_defaults = (("psnr", "ssim", "l1"), "psnr")
    scores = PAIRED_METRIC_NAMES
    study_columns = ("psnr", "ssim", "l1")
    grid_caption = "each grid: rows of validation inputs, generator outputs and targets (EMA generator)"
    report_eval_size = False
    legacy_eval_keys = ("psnr", "ssim", "l1")

    @classmethod
    def fits_dataset(cls, dataset: str) -> bool:
        from normgan.data import is_paired

        return is_paired(dataset)

    @classmethod
    def dataset_error(cls, dataset: str) -> ConfigError:
        from normgan.data import PAIRED_DATASETS

        return ConfigError(
            f"data.name: bad value {dataset!r}; task=paired needs a paired dataset: "
            f"{', '.join(sorted(PAIRED_DATASETS.names()))}"
        )

    @classmethod
    def generator_inputs(
        cls, *, z_dim: Optional[int], in_channels: Optional[int], resolution: int, classes: Optional[int] = None
    ) -> Tuple[dict, ...]:
        return (image_spec("x", channels=in_channels, resolution=resolution),)

    @classmethod
    def checkpoint_in_channels(cls, state: dict, *, path) -> Optional[int]:
        try:
            return int(state["input_shape"][0])
        except (KeyError, TypeError, ValueError, IndexError):
            raise UserError(
                f"checkpoint '{path}' of a paired run has no valid 'input_shape' entry; "
                "it was not written by 'normgan train'"
            ) from None

    @classmethod
    def check_eval_args(cls, *, n=None, features=None, metrics=None, reference=None) -> Optional[tuple]:
        return check_paired_metrics(metrics)  # every pair of the split is scored: no n, features or reference

    @classmethod
    def check_best_metric(cls, *, best_metric: str, metrics) -> str:
        return check_paired_best_metric(best_metric=best_metric, metrics=metrics)

    @classmethod
    def format_result(cls, res: dict, *, metrics=None) -> str:
        return format_paired(res)


@register("conditional")
class ConditionalInfo(UnconditionalInfo):
    """Class-conditional synthesis: G(z, y) and D(x, y) for the class labels y of a labelled dataset
    (built-in datasets, a folder with class sub-folders, an IDX file with its labels file). Its
    scores are the unconditional ones, of samples with an equal share of every class."""

    run_kind = "class-conditional (its generator maps noise and a class label to images)"
    conditioned = True
    grid_caption = "each grid: the EMA generator's images, one row per class, the same fixed noise in each column"

    @classmethod
    def generator_inputs(
        cls, *, z_dim: Optional[int], in_channels: Optional[int], resolution: int, classes: Optional[int] = None
    ) -> Tuple[dict, ...]:
        return (noise_spec(z_dim), label_spec(classes))

    @classmethod
    def dataset_error(cls, dataset: str) -> ConfigError:
        return ConfigError(
            f"data.name: bad value {dataset!r}; class conditioning (model.*.conditioning) needs class labels "
            "and a paired dataset has none: use a built-in one (mnist5k, …), a folder with class sub-folders, "
            "or set the conditioning to null"
        )

    @classmethod
    def checkpoint_classes(cls, state: dict, *, path) -> Optional[int]:
        try:
            return int(state["classes"])
        except (KeyError, TypeError, ValueError):
            raise UserError(
                f"checkpoint '{path}' of a class-conditional run has no valid 'classes' entry; "
                "it was not written by 'normgan train'"
            ) from None

    @classmethod
    def conditioning_error(cls) -> ConfigError:
        return ConfigError(
            "task: bad value 'conditional'; set model.generator.conditioning (cbn, concat) and/or "
            "model.discriminator.conditioning (projection, ac)"
        )
