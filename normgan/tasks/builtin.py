"""Tasks: what differs between unconditional (z → image) and paired (image x → image y) training.

The training loop, the evaluation, the search, the study and the report are written once, against
the :class:`Task` protocol; everything a task does differently is a method or a declaration of its
class (see :class:`Task` for the contract and for what a new task implements).

    task = TASKS.get(cfg.task)(cfg, device=device, dist=dist)   # dist: optional, one process by default
    b = task.next_batch(); fake = G(b.g_in); d_real = task.critic(D, b)(b.real)
    TASKS.get(cfg.task).scores                                   # declarations: no data is built
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional

import torch
from torch import Tensor, nn
from torchvision.utils import make_grid

from normgan.data import (
    StreamBatches,
    apply_fold,
    batch_to_float,
    list_split,
    load_dataset,
    load_paired,
    paired_crop_flip,
    should_stream,
)
from normgan.data.batches import EpochBatches
from normgan.errors import ConfigError
from normgan.registry import Registry
from normgan.runtime.distributed import Dist
from normgan.tasks.info import ConditionalInfo, PairedInfo, TaskInfo, UnconditionalInfo

TASKS = Registry("task")

#: pairs shown in a paired run's sample grid (one column each: input, output, target)
GRID_PAIRS = 8
#: classes shown in a conditional run's sample grid (one row each; evenly spaced when there are more)
GRID_CLASSES = 10


@dataclass
class Batch:
    """One training batch: ``real`` (what D sees as real), ``g_in`` (G's input), ``cond`` (D's
    condition, paired only), ``target`` (G's reconstruction target y = ``real``, paired only),
    ``labels`` (the classes of ``real``) and ``g_labels`` (the classes G is asked for; conditional only)."""

    real: Tensor
    g_in: Tensor
    cond: Optional[Tensor] = None
    target: Optional[Tensor] = None
    labels: Optional[Tensor] = None
    g_labels: Optional[Tensor] = None

    @property
    def g_args(self) -> tuple:
        """G's arguments: ``(g_in,)``, or ``(g_in, g_labels)`` for a class-conditional G."""
        return (self.g_in,) if self.g_labels is None else (self.g_in, self.g_labels)


class ConditionalCritic:
    """A conditional D as a function of the image: ``y ↦ D(cat(x, y))`` along the channels.

    ``join(y)`` is what D's layers see; ``features(y)`` is ``D.features(cat(x, y))``.
    """

    def __init__(self, D: nn.Module, cond: Tensor) -> None:
        self.D, self.cond = D, cond

    def join(self, y: Tensor) -> Tensor:
        return torch.cat([self.cond, y], dim=1)

    def __call__(self, y: Tensor) -> Tensor:
        return self.D(self.join(y))

    def features(self, y: Tensor) -> Tensor:
        return self.D.features(self.join(y))


class Critics(NamedTuple):
    """D as a function of the image for one batch: for its real images and for G's (``fake``; they
    differ for a class-conditional D), each eager (for terms) and maybe compiled (``_fwd``, forwards)."""

    real: Callable[[Tensor], Tensor]
    real_fwd: Callable[[Tensor], Tensor]
    fake: Callable[[Tensor], Tensor]
    fake_fwd: Callable[[Tensor], Tensor]


class LabelledCritic:
    """A class-conditional D as a function of the image: ``x ↦ D(x, y)`` with the classes ``labels``
    (y, int64 (B,)) fixed, so input-gradient penalties are taken w.r.t. the image only.
    ``features(x)`` is ``D.features(x)`` (φ(x), which does not depend on y)."""

    def __init__(self, D: nn.Module, labels: Tensor) -> None:
        self.D, self.labels = D, labels

    def __call__(self, x: Tensor) -> Tensor:
        return self.D(x, self.labels)

    def features(self, x: Tensor) -> Tensor:
        return self.D.features(x)


def fold_of(data, d, part: str):
    """``data`` (a training split) itself when ``d.folds`` is 0, else its ``part`` ("fit" / "heldout")
    of fold ``d.fold`` of ``d.folds`` (:func:`normgan.data.apply_fold`)."""
    return apply_fold(data, folds=d.folds, fold=d.fold, part=part) if d.folds else data


def to_channels(x: Tensor, channels: int) -> Tensor:
    """Grey ``x`` repeated to 3 channels when ``channels == 3`` (display only); else ``x``."""
    return x.expand(-1, channels, -1, -1) if x.shape[1] == 1 and channels == 3 else x


def grid01(images: Tensor, *, nrow: int) -> Tensor:
    """A [0, 1] grid of [-1, 1] images, ``nrow`` per row, 2 px padding."""
    return make_grid(images.float().cpu(), nrow=max(1, nrow), normalize=True, value_range=(-1, 1), padding=2)


class Task(TaskInfo):
    """The protocol of a task. The training loop builds one per run; everything else asks the class.

    Built (``Task(cfg, device=..., dist=...)``, which loads the training data), a task owns

    * the batches: :meth:`next_batch` returns ``Batch(real, g_in, cond, target)`` — the images D
      sees as real, G's input (noise z, or the input image x), D's condition (x for a conditional D)
      and G's target (y); under torchrun (``dist``, a :class:`normgan.runtime.distributed.Dist`) this
      rank's contiguous part of the global batch: every rank draws the same global noise, indices
      and jitter, and keeps its rows;
    * G's input: :meth:`fresh_input` — G's input for a lazy G phase (new noise, or the same x);
      ``resolution``, ``channels`` and ``in_channels`` (G's input image channels, None for noise)
      size the networks;
    * D's condition: :meth:`critic` — D as a function of the image: ``D`` itself, or
      ``y ↦ D(cat(x, y))`` (pix2pix's conditional D; gradient penalties are then w.r.t. y only), or
      ``x ↦ D(x, labels)`` (class-conditional; ``fake=True``: with the classes G was given);
      ``classes`` (None unless class-conditional) sizes the class embeddings;
    * the sample grids: ``fixed`` (G's fixed input) and :meth:`sample_grid` (one [0, 1] image);
    * the checkpoint: :meth:`checkpoint_entries` (shapes that rebuild G without the data),
      :meth:`state_dict` / :meth:`load_state_dict` (the data position; resume is exact);
    * :meth:`close` — release what the batches hold (worker processes); a no-op by default.

    Not built (class attributes and classmethods, inherited from :class:`normgan.tasks.info.TaskInfo`,
    whose docstring lists them; declared there because config validation sits a layer below this
    module and the report loads no torch, so ``TASK_INFO.get(name)`` answers for them): the
    datasets it fits and G's kind (config validation), the scores ``normgan eval`` prints and their
    checks (metric info), the eval defaults (default metrics and best metric), the search's
    validation split, the report's labels; plus :meth:`train_size` (a search's fold sizes).
    The evaluator — the training loop's periodic one, scoring a run folder for ``normgan eval`` and
    a search's final test score — is the task's :class:`normgan.eval.evaluation.TaskEvaluation`,
    registered under the same name in ``normgan.eval.evaluation.EVALUATIONS`` (the evaluation modules
    sit a layer above this one, so a task cannot import its evaluator).

    A new task (e.g. class-conditional) implements: a :class:`~normgan.tasks.info.TaskInfo`
    subclass registered in :mod:`normgan.tasks.info` (its declarations, torch-free); a subclass of
    it and of :class:`Task` registered in :data:`TASKS` (the methods above); and a
    :class:`~normgan.eval.evaluation.TaskEvaluation` registered in ``EVALUATIONS``. The loop, the
    evaluation entry points, search, study, report and ``normgan export`` (which calls
    ``G(*inputs)`` for the inputs :meth:`~normgan.tasks.info.TaskInfo.generator_inputs` declares)
    need no new branch.
    """

    #: G's input image channels (None: G maps noise)
    in_channels: Optional[int] = None
    #: the number of classes of a class-conditional run (None otherwise)
    classes: Optional[int] = None

    def __init__(self, cfg, *, device: torch.device, dist: Optional[Dist] = None) -> None:
        raise NotImplementedError

    def next_batch(self) -> Batch:
        raise NotImplementedError

    def fresh_input(self, batch: Optional[Batch]) -> Tensor:
        raise NotImplementedError

    def critic(self, D: nn.Module, batch: Batch, *, fake: bool = False) -> Callable[[Tensor], Tensor]:
        """D as a function of the image for ``batch``'s real images, or (``fake``) for G's."""
        raise NotImplementedError

    def sample_grid(self, G: nn.Module) -> Tensor:
        raise NotImplementedError

    def checkpoint_entries(self) -> dict:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return self.batches.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.batches.load_state_dict(state)

    def close(self) -> None:
        """Release what the batches hold; nothing by default."""

    @classmethod
    def train_size(cls, cfg) -> int:
        """The number of items in ``cfg``'s training split (loads it; a streamed folder is only listed)."""
        raise NotImplementedError


@TASKS.register("unconditional")
class UnconditionalTask(UnconditionalInfo, Task):
    """G(z), z ~ N(0, I); D sees images alone. The data is the dataset's training split (with
    ``data.folds``: its fit part, every fold but ``data.fold``).

    With ``data.stream`` (:func:`normgan.data.should_stream`: true, or auto for a folder too large for
    memory) ``data`` is the split's file list (:class:`normgan.data.FileSplit`) and ``batches`` a
    :class:`normgan.data.StreamBatches` that decodes each batch in ``data.workers`` processes: the same
    batches as in memory for a folder of readable files, each rank decoding only its own part;
    :meth:`close` stops its workers."""

    def __init__(self, cfg, *, device: torch.device, dist: Optional[Dist] = None) -> None:
        d, t = cfg.data, cfg.train
        self.device, self.batch_size, self.z_dim = device, d.batch_size, cfg.model.generator.z_dim
        self.dist = dist or Dist()
        self.streaming = should_stream(d.stream, name=d.name, root=d.root, resolution=d.resolution)
        train = training_split(cfg, streaming=self.streaming)
        if self.streaming:
            self.data = train.fold(folds=d.folds, fold=d.fold, part="fit") if d.folds else train
            self.batches = StreamBatches(
                self.data,
                batch_size=d.batch_size,
                seed=t.seed,
                device=device,
                workers=d.workers,
                rank=self.dist.rank,
                world=self.dist.world,
            )
        else:
            self.data = fold_of(train, d, "fit")
            self.batches = EpochBatches(self.data.images, batch_size=d.batch_size, seed=t.seed, device=device)
        self.resolution, self.channels, self.in_channels = self.data.resolution, self.data.channels, None
        # its own generator: the global RNG stream (model init, noise) is the same with or without it
        self.fixed = torch.randn(t.num_samples, self.z_dim, generator=torch.Generator().manual_seed(t.seed + 12345)).to(
            device
        )

    def next_batch(self) -> Batch:
        """This rank's part of the next global batch (a streamed batch is decoded only for this rank)."""
        real = self.batches.next()
        if not self.streaming:
            real = self.dist.shard(real)
        return Batch(real=real, g_in=self.fresh_input(None))

    def fresh_input(self, batch: Optional[Batch]) -> Tensor:
        """This rank's part of new global noise (every rank draws the same ``data.batch_size`` rows)."""
        return self.dist.shard(torch.randn(self.batch_size, self.z_dim, device=self.device))

    def critic(self, D: nn.Module, batch: Batch, *, fake: bool = False) -> Callable[[Tensor], Tensor]:
        return D

    @torch.no_grad()
    def sample_grid(self, G: nn.Module) -> Tensor:
        """G's images for the fixed noise, as one square grid in [0, 1]."""
        imgs = G(self.fixed)
        return grid01(imgs, nrow=int(imgs.shape[0] ** 0.5))

    def checkpoint_entries(self) -> dict:
        return {"image_shape": [self.channels, self.resolution, self.resolution]}

    def close(self) -> None:
        """Stop the streaming workers, if any (a later batch starts them again)."""
        if self.streaming:
            self.batches.close()

    @classmethod
    def train_size(cls, cfg) -> int:
        d = cfg.data
        return len(
            training_split(cfg, streaming=should_stream(d.stream, name=d.name, root=d.root, resolution=d.resolution))
        )


def training_split(cfg, *, streaming: bool):
    """The dataset's whole training split (before folds): its file list when ``streaming``, else
    the decoded images (:func:`normgan.data.load_dataset`)."""
    d = cfg.data
    if streaming:
        return list_split(d.root, resolution=d.resolution, channels=d.channels, split="train", holdout=d.holdout)
    return load_dataset(
        name=d.name,
        root=d.root,
        resolution=d.resolution,
        channels=d.channels,
        split="train",
        holdout=d.holdout,
        strict=d.strict,
        seed=cfg.train.seed,
    )


@TASKS.register("paired")
class PairedTask(PairedInfo, Task):
    """G(x) for the input image x of each pair (x, y); D is conditional: D(cat(x, y)) vs D(cat(x, G(x))).

    Training pairs are stored at ``data.load_size`` (default ``data.resolution``); with a larger
    load size or ``data.flip`` each batch gets pix2pix's jitter: a random crop to the resolution and
    a horizontal flip, identical on both sides of a pair, drawn from the batch generator (so resume
    is exact). The sample grid shows :data:`GRID_PAIRS` validation pairs as input | output | target rows.
    With ``data.folds`` the training pairs are the fit part of the training split and the grid's pairs
    come from its held-out fold (neither the val nor the test split is read).
    """

    def __init__(self, cfg, *, device: torch.device, dist: Optional[Dist] = None) -> None:
        d, t = cfg.data, cfg.train
        self.device, self.resolution, self.flip = device, d.resolution, bool(d.flip)
        self.dist = dist or Dist()
        train = load_paired(
            name=d.name,
            root=d.root,
            resolution=d.resolution,
            split="train",
            direction=d.direction,
            load_size=d.load_size,
            strict=d.strict,
            seed=t.seed,
        )
        self.data = fold_of(train, d, "fit")
        self.batches = EpochBatches(self.data.targets, batch_size=d.batch_size, seed=t.seed, device=device)
        self.inputs = self.data.inputs.to(device)
        self.channels, self.in_channels = self.data.channels, self.data.in_channels
        self.jitter = self.flip or self.data.resolution > d.resolution
        # the grid's pairs at data.resolution (no load_size): the val split, or the held-out fold
        val = load_paired(
            name=d.name,
            root=d.root,
            resolution=d.resolution,
            split="train" if d.folds else "val",
            direction=d.direction,
            strict=d.strict,
            seed=t.seed,
        )
        val = fold_of(val, d, "heldout")
        k = min(GRID_PAIRS, len(val), t.num_samples)
        self.fixed_x = batch_to_float(val.inputs[:k]).to(device)
        self.fixed_y = batch_to_float(val.targets[:k]).to(device)
        self.fixed = self.fixed_x

    def next_batch(self) -> Batch:
        """This rank's part of the next global batch (the jitter is drawn for the global batch)."""
        idx = self.batches.next_indices()
        x, y = self.inputs.index_select(0, idx), self.batches.images.index_select(0, idx)
        if self.jitter:
            x, y = paired_crop_flip(x, y, size=self.resolution, flip=self.flip, generator=self.batches.generator)
        x, y = batch_to_float(self.dist.shard(x)), batch_to_float(self.dist.shard(y))
        return Batch(real=y, g_in=x, cond=x, target=y)

    def fresh_input(self, batch: Batch) -> Tensor:
        return batch.g_in

    def critic(self, D: nn.Module, batch: Batch, *, fake: bool = False) -> ConditionalCritic:
        return ConditionalCritic(D, batch.cond)  # the same x conditions y and G(x)

    @torch.no_grad()
    def sample_grid(self, G: nn.Module) -> Tensor:
        """Rows: the validation inputs, G's outputs, the targets (grey shown as 3 channels when mixed)."""
        out = G(self.fixed_x)
        c = max(self.channels, self.in_channels)
        rows = [to_channels(v, c) for v in (self.fixed_x, out, self.fixed_y)]
        return grid01(torch.cat(rows), nrow=self.fixed_x.shape[0])

    def checkpoint_entries(self) -> dict:
        r = self.resolution
        return {"image_shape": [self.channels, r, r], "input_shape": [self.in_channels, r, r]}

    @classmethod
    def train_size(cls, cfg) -> int:
        d = cfg.data
        return len(
            load_paired(
                name=d.name,
                root=d.root,
                resolution=d.resolution,
                split="train",
                direction=d.direction,
                load_size=d.load_size,
                strict=d.strict,
                seed=cfg.train.seed,
            )
        )


@TASKS.register("conditional")
class ConditionalTask(ConditionalInfo, UnconditionalTask):
    """G(z, y_g) and D(x, y): class-conditional synthesis on a labelled dataset (in memory).

    A batch is the real images with their classes y and G's input: noise z ~ N(0, I) and classes y_g,
    drawn after z from the run's torch RNG for the GLOBAL batch (every rank the same draw, each keeping
    its rows; the RNG is in the checkpoint, so resume is exact): uniform over the ``classes`` classes
    (``data.label_sampling: uniform``) or from the training split's class frequencies (``histogram``).
    D sees real images with y and G's images with y_g (:meth:`critic`). ``classes`` = max label + 1 of
    the training split. The sample grid has one row per class (at most :data:`GRID_CLASSES`, evenly
    spaced), the same fixed noise in each column.
    """

    def __init__(self, cfg, *, device: torch.device, dist: Optional[Dist] = None) -> None:
        d, t = cfg.data, cfg.train
        if should_stream(d.stream, name=d.name, root=d.root, resolution=d.resolution):
            raise ConfigError("data.stream: a class-conditional run keeps images and labels in memory; set false")
        self.device, self.batch_size, self.z_dim = device, d.batch_size, cfg.model.generator.z_dim
        self.dist, self.streaming = dist or Dist(), False
        self.data = fold_of(training_split(cfg, streaming=False), d, "fit")
        if self.data.labels is None:
            raise ConfigError(
                f"data.name: {d.name} ({d.root}) has no class labels (a folder needs one sub-folder per class, an "
                "IDX file its labels file); class conditioning (model.*.conditioning) needs them, or set it to null"
            )
        self.batches = EpochBatches(self.data.images, batch_size=d.batch_size, seed=t.seed, device=device)
        self.labels = self.data.labels.to(device)
        self.classes = int(self.data.labels.max()) + 1
        counts = torch.bincount(self.data.labels, minlength=self.classes).double()
        self.label_probs = (counts / counts.sum()).float().to(device) if d.label_sampling == "histogram" else None
        self.resolution, self.channels, self.in_channels = self.data.resolution, self.data.channels, None
        rows = torch.linspace(0, self.classes - 1, min(self.classes, GRID_CLASSES)).round().long()
        self.grid_k = max(1, t.num_samples // rows.numel())
        z = torch.randn(self.grid_k, self.z_dim, generator=torch.Generator().manual_seed(t.seed + 12345))
        self.fixed = z.repeat(rows.numel(), 1).to(device)
        self.fixed_labels = rows.repeat_interleave(self.grid_k).to(device)

    def draw_labels(self) -> Tensor:
        """This rank's part of G's classes for a new global batch (torch's default generator)."""
        n = self.batch_size
        if self.label_probs is None:
            y = torch.randint(self.classes, (n,), device=self.device)
        else:
            y = torch.multinomial(self.label_probs, n, replacement=True)
        return self.dist.shard(y)

    def next_batch(self) -> Batch:
        """This rank's part of the next global batch: images, their classes, z, then G's classes."""
        idx = self.batches.next_indices()
        real = batch_to_float(self.dist.shard(self.batches.images.index_select(0, idx)))
        labels = self.dist.shard(self.labels.index_select(0, idx))
        z = self.fresh_input(None)
        return Batch(real=real, g_in=z, labels=labels, g_labels=self.draw_labels())

    def critic(self, D: nn.Module, batch: Batch, *, fake: bool = False) -> LabelledCritic:
        """``x ↦ D(x, y)``: y the real images' classes, or (``fake``) the classes G was given."""
        return LabelledCritic(D, batch.g_labels if fake else batch.labels)

    @torch.no_grad()
    def sample_grid(self, G: nn.Module) -> Tensor:
        """G's images for the fixed noise, one row per shown class, as one grid in [0, 1]."""
        return grid01(G(self.fixed, self.fixed_labels), nrow=self.grid_k)

    def checkpoint_entries(self) -> dict:
        return {"image_shape": [self.channels, self.resolution, self.resolution], "classes": self.classes}

    def close(self) -> None:
        """Nothing to release (in memory)."""
