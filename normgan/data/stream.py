"""Streaming a folder of images: decoded per batch by DataLoader workers instead of all at start.

    from normgan.data.stream import StreamBatches, list_split, should_stream
    if should_stream("auto", name="folder", root="~/photos", resolution=64):
        train = list_split("~/photos", resolution=64, channels=3, split="train", holdout=0.1)
        batches = StreamBatches(train, batch_size=64, seed=0, device=device, workers=2)
        x = batches.next()            # float32 (64, 3, 64, 64) in [-1, 1] on device
        state = batches.state_dict()  # the same format as EpochBatches'; resume is exact

:class:`ShuffledEpochs` is the index stream both ways of training share: shuffled epochs drawn
from a seeded ``torch.Generator``, the last incomplete batch dropped; ``EpochBatches``
(:mod:`normgan.data.batches`, in memory) and :class:`StreamBatches` (from disk) are both
``ShuffledEpochs``, so the same seed gives the same index sequence and the same checkpoint state.

:func:`list_split` lists a split without decoding it: the files of :func:`~normgan.data.folder.find_images`,
their class labels and the split's indices by the same :func:`~normgan.data.dataset.split_indices` as
:func:`~normgan.data.dataset.load_dataset`, so the streamed split holds the files of the in-memory split in
the same order and each file decodes to the same pixels (:func:`~normgan.data.folder._load_one`).  Two
differences, both because nothing is decoded ahead:

* **Unreadable files.**  The in-memory path skips unreadable files before splitting (``data.strict: false``),
  which shifts the split; streaming cannot know which files are unreadable, so every listed file is part of the
  dataset, and one that cannot be decoded when its batch comes raises a one-line :class:`DataError` naming
  it, whatever ``data.strict`` says.  The in-memory and streamed splits are equal for folders of readable files.
* **Channels.**  With ``channels`` set both paths convert every image to it.  With ``channels=None`` the
  in-memory path is 1-channel only when *every* image is grey; streaming reads the headers (modes) of the first
  :data:`PROBE_FILES` files in sorted order: all grey → 1 channel (a colour file met later is converted to grey,
  with a warning at the start), otherwise 3 (grey files repeated).  Set ``data.channels`` to make it explicit.

:func:`should_stream` is the ``data.stream`` rule: ``true`` / ``false``, or ``auto``: stream when the decoded
uint8 folder (files × 3 × R × R bytes) would exceed a quarter of the available memory.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import torch
from PIL import Image

from normgan.data.dataset import _check_options, check_split_allowed, fingerprint, split_indices
from normgan.data.folder import DECODE_ERRORS, _class_labels, _load_one, find_images, is_grey_mode, list_folder
from normgan.data.folds import checked_fold_part
from normgan.data.transforms import batch_to_float, convert_channels
from normgan.errors import ConfigError, DataError
from normgan.runtime.resources import available_memory

__all__ = [
    "PROBE_FILES",
    "STREAM_CHOICES",
    "FileImageArray",
    "FileImages",
    "FileSplit",
    "ShuffledEpochs",
    "StreamBatches",
    "available_memory",
    "list_split",
    "normalize_stream",
    "should_stream",
]

#: ``data.stream`` values
STREAM_CHOICES = ("auto", "true", "false")
#: files whose header decides the channels of a stream with ``channels=None``
PROBE_FILES = 16
_STREAM_VERSION = 1  # bump when the listing or the pixel pipeline changes, to invalidate caches


# --------------------------------------------------------------------------- the shared index stream


class ShuffledEpochs:
    """Batches of ``batch_size`` indices among ``n`` from shuffled epochs; the last incomplete batch is dropped.

    A new epoch draws ``torch.randperm(n)`` from :attr:`generator` (seeded with ``seed``); the
    permutation, the position in it and the generator state are the :meth:`state_dict`.
    """

    def __init__(self, n: int, *, batch_size: int, seed: int) -> None:
        if batch_size > n:
            raise ConfigError(
                f"data.batch_size: bad value {batch_size}; the training split has only {n} images, use a batch size <= {n}"
            )
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(n, generator=self.generator)
        self.pos = 0

    def draw(self) -> torch.Tensor:
        """The indices (CPU int64) of the next batch; a new epoch reshuffles first."""
        if self.pos + self.batch_size > self.perm.numel():
            self.perm = torch.randperm(self.perm.numel(), generator=self.generator)
            self.pos = 0
        idx = self.perm[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx

    def fork(self) -> "ShuffledEpochs":
        """An independent copy at the same point (its own generator; ``perm`` is never modified in place)."""
        other = ShuffledEpochs.__new__(ShuffledEpochs)
        other.batch_size, other.perm, other.pos = self.batch_size, self.perm, self.pos
        other.generator = torch.Generator()
        other.generator.set_state(self.generator.get_state())
        return other

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "perm": self.perm.clone(), "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.perm = state["perm"].clone()
        self.pos = int(state["pos"])


# --------------------------------------------------------------------------- listing a split


@dataclass(frozen=True, eq=False)
class FileSplit:
    """A split of a folder, listed but not decoded.

    ``paths`` is a numpy array of file paths as bytes (``os.fsencode``; one block of memory that
    forked DataLoader workers share without copying); ``labels`` is int64 ``(N,)`` or None;
    ``channels`` (1 or 3) and ``resolution`` are those every image is decoded to.  ``fingerprint``
    pins the listing and options down (not the file contents; it differs from the in-memory one).
    """

    paths: np.ndarray
    labels: Optional[torch.Tensor]
    name: str
    resolution: int
    channels: int
    fingerprint: str

    def __len__(self) -> int:
        return int(self.paths.shape[0])

    def path(self, i: int) -> str:
        return os.fsdecode(self.paths[i])

    @property
    def files(self) -> list[str]:
        return [os.fsdecode(p) for p in self.paths]

    @property
    def images(self) -> "FileImageArray":
        """The images as an array decoded on access: ``split.images[idx]`` is uint8 ``(len(idx), C, R, R)``,
        equal to ``load_dataset(...).images[idx]`` for a folder of readable files (see :class:`FileImageArray`)."""
        return FileImageArray(self)

    def fold(self, *, folds: int, fold: int, part: str) -> "FileSplit":
        """The files of ``part`` ("fit" / "heldout") of fold ``fold`` of ``folds``: the rows that
        :func:`normgan.data.apply_fold` keeps of the same split in memory, in the same order."""
        idx = checked_fold_part(len(self), folds=folds, fold=fold, part=part, name=self.name)
        return FileSplit(
            paths=self.paths[idx.numpy()],
            labels=self.labels[idx] if self.labels is not None else None,
            name=self.name,
            resolution=self.resolution,
            channels=self.channels,
            fingerprint=fingerprint(
                {"v": _STREAM_VERSION, "data": self.fingerprint, "folds": folds, "fold": fold, "part": part}
            ),
        )


def _probe_channels(files: list[Path]) -> int:
    """1 when the first :data:`PROBE_FILES` files all decode to grey (header only), else 3."""
    for path in files[:PROBE_FILES]:
        try:
            with Image.open(path) as im:
                mode = im.mode
        except DECODE_ERRORS as exc:
            raise _unreadable(path, f"{type(exc).__name__}: {exc}") from None
        if not is_grey_mode(mode):
            return 3
    return 1


def list_split(
    root, *, resolution: int, channels: Optional[int] = None, split: str = "train", holdout: float = 0.1
) -> FileSplit:
    """The files of ``split`` of the image folder ``root``, without decoding them.

    The same files, labels and order as ``load_dataset(name="folder", ...)`` for a folder of readable
    images; ``channels=None`` probes the first :data:`PROBE_FILES` headers (see the module docstring).
    A split forbidden by :func:`~normgan.data.forbid_splits` raises ``LeakError``.
    """
    check_split_allowed(split, name="folder")
    _check_options(resolution=resolution, channels=channels, split=split, holdout=holdout)
    folder, files = list_folder(root)
    labels = _class_labels(folder, files)
    idx = split_indices(len(files), split=split, holdout=holdout)
    if idx.numel() == 0:
        raise DataError(
            f"data.split: the {split!r} split of {os.fspath(root)!r} is empty ({len(files)} images, holdout {holdout}); "
            + ("set data.holdout above 0" if split == "test" else "lower data.holdout or add images")
        )
    if channels is None:
        channels = _probe_channels(files)
        if channels == 1:
            warnings.warn(
                f"data.channels is null and the images are streamed: the first {min(PROBE_FILES, len(files))} "
                "files are grey, so every image is decoded to 1 channel (colour ones converted to grey); "
                "set data.channels: 3 to keep colour",
                UserWarning,
                stacklevel=2,
            )
    rel = [f.relative_to(folder).as_posix() for f in files]
    order = idx.tolist()
    paths = np.array([os.fsencode(files[i]) for i in order])
    fp = fingerprint(
        {
            "v": _STREAM_VERSION,
            "root": os.path.abspath(folder),
            "files": rel,
            "resolution": resolution,
            "channels": channels,
            "split": split,
            "holdout": float(holdout),
        }
    )
    return FileSplit(
        paths=paths,
        labels=torch.tensor(labels, dtype=torch.int64)[idx] if labels is not None else None,
        name=os.fspath(root),
        resolution=resolution,
        channels=channels,
        fingerprint=fp,
    )


# --------------------------------------------------------------------------- the data.stream rule


def normalize_stream(value) -> str:
    """``data.stream`` as one of :data:`STREAM_CHOICES` (YAML booleans arrive as True/False or 'True'/'False');
    anything else is returned lower-cased, for the caller's error."""
    return str(value).strip().lower()


def should_stream(stream, *, name: str, root, resolution: int, available: Optional[int] = None) -> bool:
    """Whether to stream: ``data.stream`` true / false, or for ``auto`` whether the decoded folder
    (``files × 3 × resolution²`` uint8 bytes) exceeds a quarter of ``available`` bytes (default
    :func:`available_memory`; unknown: never).  Only ``data.name=folder`` streams: true for another
    dataset is a ConfigError, auto is off.  Auto deciding to stream warns once, with the numbers."""
    stream = normalize_stream(stream)
    if stream not in STREAM_CHOICES:
        raise ConfigError(f"data.stream: bad value {stream!r}; use auto, true or false")
    if stream == "false":
        return False
    if name != "folder":
        if stream == "true":
            raise ConfigError(
                f"data.stream: streaming is for data.name=folder (data.name is {name}); "
                "set data.stream to auto or false"
            )
        return False
    if stream == "true":
        return True
    if root is None or not Path(root).is_dir():
        return False  # the in-memory loader says what is wrong with data.root
    n = len(find_images(Path(root)))
    need = n * 3 * resolution * resolution
    free = available_memory() if available is None else available
    if free is None or need <= free / 4:
        return False
    warnings.warn(
        f"data.stream=auto: {n} images at {resolution} px need {need / 2**30:.1f} GiB decoded, more than a quarter "
        f"of the {free / 2**30:.1f} GiB of free memory; decoding them on the fly instead "
        "(set data.stream: false to load them into memory)",
        UserWarning,
        stacklevel=2,
    )
    return True


# --------------------------------------------------------------------------- decoding per batch


def _unreadable(path, why: str) -> DataError:
    why = " ".join(why.split())
    return DataError(
        f"data.root: cannot read image file '{os.fspath(path)}' ({why}) while streaming; fix or delete it "
        "(a streamed folder must be readable throughout; data.stream: false with data.strict: false skips such files)"
    )


class FileImages(torch.utils.data.Dataset):
    """Item ``i`` of a :class:`FileSplit`: ``(i, uint8 (C, R, R))``, decoded and resized like the in-memory
    folder loader and converted to the split's channels; an unreadable file gives ``(i, (path, why))``."""

    def __init__(self, split: FileSplit) -> None:
        self.paths, self.resolution, self.channels = split.paths, split.resolution, split.channels

    def __len__(self) -> int:
        return int(self.paths.shape[0])

    def __getitem__(self, i: int):
        path = os.fsdecode(self.paths[i])
        x = _load_one(Path(path), self.resolution)
        if isinstance(x, tuple):
            return i, (path, x[1])
        if x.shape[0] != self.channels:
            x = convert_channels(x.unsqueeze(0), self.channels)[0]
        return i, x


class FileImageArray:
    """A :class:`FileSplit`'s images as a read-only uint8 array ``(N, C, R, R)`` that decodes only what is indexed.

    ``images[i]`` (an int), ``images[a:b]`` (a slice), ``images[idx]`` (a list or int64 tensor of indices)
    decode those files in this process and return ``(C, R, R)`` / ``(k, C, R, R)`` uint8 tensors: what the
    evaluation (reference features, the domain classifier, memorization) reads of a streamed folder, so
    that only the sampled images are ever decoded.  An unreadable file raises the streaming ``DataError``.
    """

    dtype = torch.uint8

    def __init__(self, split: FileSplit) -> None:
        self._items = FileImages(split)
        self.shape = torch.Size((len(split), split.channels, split.resolution, split.resolution))

    def __len__(self) -> int:
        return self.shape[0]

    def _one(self, i: int) -> torch.Tensor:
        _, x = self._items[i]
        if isinstance(x, tuple):
            path, exc = x
            raise _unreadable(path, f"{type(exc).__name__}: {exc}")
        return x

    def __getitem__(self, key) -> torch.Tensor:
        rows = range(len(self))  # indexing it gives negative indices and IndexError as a tensor does
        if isinstance(key, (int, np.integer)) or (torch.is_tensor(key) and key.dim() == 0):
            return self._one(rows[int(key)])
        idx = rows[key] if isinstance(key, slice) else [rows[int(i)] for i in torch.as_tensor(key).reshape(-1)]
        if len(idx) == 0:
            return torch.empty((0, *self.shape[1:]), dtype=torch.uint8)
        return torch.stack([self._one(i) for i in idx])


def _collate(items):
    """``(indices, uint8 images, None)``, or ``(indices, None, (path, error))`` when a file was unreadable."""
    idx = torch.tensor([i for i, _ in items], dtype=torch.int64)
    for _, x in items:
        if isinstance(x, tuple):
            path, exc = x
            return idx, None, (path, f"{type(exc).__name__}: {exc}")
    return idx, torch.stack([x for _, x in items]), None


class _Lookahead:
    """The DataLoader's batch sampler: this rank's part of the index batches that come after ``cursor``'s
    position, forever (``part`` maps a global batch of indices to this rank's rows)."""

    def __init__(self, cursor: ShuffledEpochs, part: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.cursor, self.part = cursor, part

    def __iter__(self) -> Iterator[list[int]]:
        while True:
            yield self.part(self.cursor.draw()).tolist()


class StreamBatches(ShuffledEpochs):
    """``EpochBatches`` over a :class:`FileSplit`: the same index sequence, state and interface, but each
    batch is decoded when needed, by ``workers`` DataLoader processes (0: in this process) that stay
    ``prefetch`` batches each ahead.

    The state (:meth:`state_dict`) is that of the *consumed* batches: the loader draws its batches from
    a fork of the index stream, so prefetched batches do not move the saved position; every batch it
    delivers is checked against the consumed stream, and on a mismatch (the state was loaded, or
    :attr:`generator` was drawn from) the loader restarts from the consumed position.  The loader is
    started at the first :meth:`next` and stopped by :meth:`close` / :meth:`load_state_dict` (and when
    garbage-collected); its workers are not persistent.

    Several processes (``rank`` of ``world``, torchrun): every rank follows the same global index stream
    of ``batch_size`` (the global batch; the same state on every rank) and decodes only its contiguous
    part, rows ``rank·B/world … (rank+1)·B/world − 1``: :meth:`next` returns ``B / world`` images, the
    rows of the global batch that :meth:`normgan.runtime.distributed.Dist.shard` would give this rank.
    """

    def __init__(
        self,
        split: FileSplit,
        *,
        batch_size: int,
        seed: int,
        device: torch.device,
        workers: int = 2,
        prefetch: int = 2,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        super().__init__(len(split), batch_size=batch_size, seed=seed)
        if workers < 0:
            raise ConfigError(f"data.workers: bad value {workers}; must be >= 0 (0 decodes in the main process)")
        if world < 1 or not 0 <= rank < world or batch_size % world:
            raise ConfigError(
                f"data.batch_size: {batch_size} does not split over {world} processes (rank {rank}); "
                f"use a multiple of {world} (it is the global batch)"
            )
        self.rank, self.world = rank, world
        self.split, self.device, self.workers, self.prefetch = split, torch.device(device), workers, prefetch
        self.dataset = FileImages(split)
        self._it = None

    # ------------------------------------------------------------------ the loader
    def part(self, idx: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous rows of a global batch of indices (all of them in one process)."""
        n = idx.numel() // self.world
        return idx[self.rank * n : (self.rank + 1) * n]

    def _start(self, cursor: ShuffledEpochs) -> None:
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=_Lookahead(cursor, self.part),
            num_workers=self.workers,
            collate_fn=_collate,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=self.prefetch if self.workers else None,
            persistent_workers=False,
            # its base seed is drawn from this generator, not from the global RNG that training draws noise from
            generator=torch.Generator().manual_seed(0),
        )
        self._it = iter(loader)

    def close(self) -> None:
        """Stop the loader and its worker processes (a later :meth:`next` starts a new one)."""
        it, self._it = self._it, None
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    def __enter__(self) -> "StreamBatches":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ the EpochBatches interface
    def next_indices(self) -> torch.Tensor:
        """The indices of the next global batch (on ``device``), consumed without decoding it."""
        self.close()
        return self.draw().to(self.device, non_blocking=True)

    def next_uint8(self) -> torch.Tensor:
        """This rank's part of the next batch as uint8 ``(B / world, C, R, R)`` on the CPU (pinned when
        ``device`` is CUDA)."""
        before = self.fork()
        idx = self.part(self.draw())
        for _ in range(2):
            if self._it is None:
                self._start(before)
            got, images, bad = next(self._it)
            if torch.equal(got, idx):
                break
            self.close()  # out of step with the consumed stream: restart from where it was
        else:
            raise RuntimeError("StreamBatches: the loader's batches do not follow the index stream (a bug)")
        if bad is not None:
            self.close()
            raise _unreadable(*bad)
        return images

    def next(self) -> torch.Tensor:
        """This rank's part of the next batch of images as float32 in [-1, 1] on ``device``."""
        return batch_to_float(self.next_uint8().to(self.device, non_blocking=True))

    def load_state_dict(self, state: dict) -> None:
        self.close()
        super().load_state_dict(state)
