"""Paired (image-to-image) datasets: each sample is an input ``x`` (the condition) and its real target ``y``.

    from normgan.data.paired import load_paired, paired_crop_flip
    data = load_paired(name="edges2photo", resolution=64, split="train")
    data.inputs, data.targets     # uint8 (N, 1, 64, 64), uint8 (N, 3, 64, 64)

``PAIRED_DATASETS`` maps ``data.name`` to a loader called as
``loader(root=..., resolution=..., load_size=..., seed=..., strict=...)`` that returns a
:class:`PairedSource`: every pair of every split at ``load_size`` px.  :func:`load_paired` selects
the split and the direction and computes the fingerprint.  Jitter (pix2pix: store at 286, random
crop 256) is the training loop's job, with :func:`paired_crop_flip`.

Built-in tasks (offline, deterministic: constant seeds, independent of ``seed``; ``S = load_size``):

==============  ======================================  ==========================  ===================
name            input (A)                               target (B)                  source, splits
==============  ======================================  ==========================  ===================
gray2color      BT.601 luma, 1 ch                       RGB crop                    photos (below)
edges2photo     Canny(luma, sigma=2) as 0/255, 1 ch     RGB crop                    photos
noisy2clean     crop + N(0, 25 levels), clipped         RGB crop                    photos
blur2sharp      Gaussian blur, sigma = S/32 px          RGB crop                    photos
lowres2highres  area /4 then bicubic x4                 RGB crop                    photos
edges2digit     inner outline of the digit, 0/255       mnist5k digit               mnist5k 80/10/10
lowres2digit    28 -> 7 px (area) -> 28 (bicubic)       mnist5k digit               mnist5k 80/10/10
==============  ======================================  ==========================  ===================

Photo tasks split by source photo (:data:`PHOTO_SPLITS`): each scikit-image photo is resized
(antialiased) so its shorter side is ``4 S`` and cut into seeded ``S x S`` crops
(:data:`PHOTO_CROPS` per photo).  Digit tasks fit the 28 px digits to ``S`` exactly as the
unconditional ``mnist5k`` does and carry the digit labels.

User data: ``aligned`` (pix2pix's A|B side-by-side files in ``root/{train,val,test}/``) and
``paired_folders`` (``root/A`` + ``root/B``, or ``root/{train,val,test}/{A,B}``).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from normgan.data.builtin import PAD_UP_TO, _mnist5k
from normgan.data.dataset import ImageData, check_split_allowed, fingerprint
from normgan.data.folder import DECODE_ERRORS, EXTENSIONS, decode_image, find_images, read_all, stack_images
from normgan.data.transforms import center_crop_resize, convert_channels, fit_to_resolution
from normgan.errors import ConfigError, DataError
from normgan.registry import Registry

#: Maps ``data.name`` to ``loader(*, root, resolution, load_size, seed, strict) -> PairedSource``.
PAIRED_DATASETS = Registry("paired dataset")
PAIRED_SPLITS = ("train", "val", "test")
DIRECTIONS = ("AtoB", "BtoA")
_FINGERPRINT_VERSION = 1  # bump when a pixel pipeline below changes

#: Source photos of each split of the photo tasks; a photo belongs to exactly one split.
PHOTO_SPLITS = {
    "train": ("chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "stereo_motorcycle"),
    "val": ("coffee",),
    "test": ("astronaut",),
}
#: Crops cut from each photo of a split.
PHOTO_CROPS = {"train": 400, "val": 300, "test": 300}
#: Constant crop seed of each photo.
_PHOTO_SEEDS = {name: 1000 + i for i, name in enumerate(sum(PHOTO_SPLITS.values(), ()))}
_NOISE_SEED = 25  # + split index
_NOISE_STD = 25.0  # grey levels
_DIGIT_SPLIT_SEED = 0
_CARVE_SEED = 0
_HOLDOUT = 0.1  # fraction of pairs carved for val and for test


@dataclass(frozen=True, eq=False)
class PairedData:
    """One split of a paired dataset in memory.

    ``inputs`` uint8 ``(N, Ci, S, S)`` is the generator's condition x, ``targets`` uint8
    ``(N, Co, S, S)`` the real image y for x (Ci, Co in {1, 3}); ``labels`` int64 ``(N,)`` is the
    class of each target or None; ``fingerprint`` is 12 hex digits of the source identity and options.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    labels: torch.Tensor | None
    name: str
    fingerprint: str

    def __post_init__(self) -> None:
        for what, x in (("inputs", self.inputs), ("targets", self.targets)):
            if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] not in (1, 3) or x.shape[2] != x.shape[3]:
                raise ValueError(f"{what} must be uint8 (N, C, S, S) with C in 1, 3; got {x.dtype} {tuple(x.shape)}")
        a, b = self.inputs.shape, self.targets.shape
        if a[0] != b[0] or a[2:] != b[2:]:
            raise ValueError(f"inputs {tuple(a)} and targets {tuple(b)} differ in N or size")
        if self.labels is not None and (self.labels.dtype != torch.int64 or self.labels.shape != (a[0],)):
            raise ValueError(f"labels must be int64 ({a[0]},); got {self.labels.dtype} {tuple(self.labels.shape)}")

    @property
    def in_channels(self) -> int:
        return int(self.inputs.shape[1])

    @property
    def channels(self) -> int:
        return int(self.targets.shape[1])

    @property
    def resolution(self) -> int:
        return int(self.targets.shape[-1])

    def __len__(self) -> int:
        return int(self.targets.shape[0])


@dataclass(frozen=True, eq=False)
class PairedSource:
    """What a paired loader returns: all pairs at ``load_size`` px, in native channels.

    ``a`` / ``b`` are uint8 ``(N, C, S, S)`` (A is the input for "AtoB"); ``splits`` maps each of
    :data:`PAIRED_SPLITS` to int64 indices into them; ``labels`` (int64 ``(N,)`` or None) classify the
    ``labels_side`` ("A" or "B") images; ``identity`` holds JSON-serialisable facts for the fingerprint.
    """

    a: torch.Tensor
    b: torch.Tensor
    labels: torch.Tensor | None
    splits: dict[str, torch.Tensor]
    name: str
    identity: dict[str, Any] = field(default_factory=dict)
    labels_side: str = "B"


def is_paired(name: str) -> bool:
    """Whether ``name`` is a registered paired dataset."""
    return name in PAIRED_DATASETS


# ----------------------------------------------------------------------------------------- loading


def _check_options(*, resolution: Any, load_size: Any, split: Any, direction: Any) -> None:
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 8:
        raise ConfigError(f"data.resolution: {resolution!r} is not an integer >= 8; set data.resolution to e.g. 64")
    if isinstance(load_size, bool) or not isinstance(load_size, int) or load_size < resolution:
        raise ConfigError(
            f"data.load_size: {load_size!r} is not an integer >= data.resolution ({resolution}); "
            "set data.load_size to null (= resolution) or a larger size such as 286 for resolution 256"
        )
    if split not in PAIRED_SPLITS:
        raise ConfigError(f"data.split: unknown split {split!r}; choose one of: {', '.join(PAIRED_SPLITS)}")
    if direction not in DIRECTIONS:
        raise ConfigError(f"data.direction: unknown direction {direction!r}; choose one of: {', '.join(DIRECTIONS)}")


def load_paired(
    *,
    name: str,
    root: str | os.PathLike | None = None,
    resolution: int = 64,
    split: str = "train",
    direction: str = "AtoB",
    load_size: int | None = None,
    strict: bool = False,
    seed: int = 0,
) -> PairedData:
    """Load split ``split`` of paired dataset ``name``, pairs stored at ``load_size`` px (default ``resolution``).

    "AtoB" gives inputs A and targets B; "BtoA" swaps them, and labels are kept only when they
    classify the target side.  ``strict`` makes unreadable user files an error instead of skipped.
    A split forbidden by :func:`normgan.data.forbid_splits` raises :class:`normgan.data.LeakError`.
    """
    check_split_allowed(split, name=name)
    load_size = resolution if load_size is None else load_size
    _check_options(resolution=resolution, load_size=load_size, split=split, direction=direction)
    loader = PAIRED_DATASETS.get(name, key="data.name")
    src: PairedSource = loader(root=root, resolution=resolution, load_size=load_size, seed=seed, strict=strict)
    idx = src.splits[split]
    if idx.numel() == 0:
        raise DataError(f"data.split: the {split!r} split of {src.name!r} is empty; add pairs to it")
    inputs, targets = (src.a, src.b) if direction == "AtoB" else (src.b, src.a)
    target_side = "B" if direction == "AtoB" else "A"
    labels = src.labels[idx] if src.labels is not None and src.labels_side == target_side else None
    parts = {
        "v": _FINGERPRINT_VERSION,
        "paired": name,
        "source": src.identity,
        "split": split,
        "direction": direction,
        "load_size": load_size,
    }
    fp = fingerprint(parts)
    return PairedData(inputs=inputs[idx], targets=targets[idx], labels=labels, name=src.name, fingerprint=fp)


def targets_as_imagedata(data: PairedData) -> ImageData:
    """The targets and labels of ``data`` as an :class:`ImageData` named ``f"{name}-targets"`` (copies nothing).

    Its fingerprint is derived from ``data.fingerprint``, so it changes with the split, direction and size.
    """
    fp = fingerprint({"v": _FINGERPRINT_VERSION, "paired": data.fingerprint, "part": "targets"})
    return ImageData(images=data.targets, labels=data.labels, name=f"{data.name}-targets", fingerprint=fp)


# ------------------------------------------------------------------------------------------ jitter


def _crop_index(offsets: torch.Tensor, size: int, reverse: torch.Tensor | None) -> torch.Tensor:
    """``(B, size)`` pixel indices ``offset + k``, with ``k`` counting down where ``reverse`` is set."""
    k = torch.arange(size)
    idx = offsets[:, None] + k
    if reverse is not None:
        idx = torch.where(reverse[:, None], offsets[:, None] + (size - 1 - k), idx)
    return idx


def paired_crop_flip(
    inputs: torch.Tensor, targets: torch.Tensor, *, size: int, flip: bool, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop the same random ``size`` window, and flip the same way, on both sides of each pair.

    Per sample, draws from ``generator`` in this order: the top offsets ``(B,)`` then the left
    offsets ``(B,)``, each uniform in ``0..S - size``, then (``flip`` only) ``(B,)`` uniforms, a sample
    being mirrored left-right when its uniform is < 0.5.  Works on any dtype and device (the
    generator is CPU); returns new ``(B, C, size, size)`` tensors, or the inputs themselves when
    ``S == size`` and not ``flip``.
    """
    b, s = inputs.shape[0], inputs.shape[-1]
    if targets.shape[0] != b or targets.shape[-2:] != inputs.shape[-2:] or inputs.shape[-2] != s:
        raise ValueError(f"need square pairs of equal size; got {tuple(inputs.shape)} and {tuple(targets.shape)}")
    if not 1 <= size <= s:
        raise ValueError(f"crop size {size} is not in 1..{s}")
    if size == s and not flip:
        return inputs, targets
    top = torch.randint(0, s - size + 1, (b,), generator=generator)
    left = torch.randint(0, s - size + 1, (b,), generator=generator)
    mirror = torch.rand(b, generator=generator) < 0.5 if flip else None
    rows = _crop_index(top, size, None)[:, :, None]
    cols = _crop_index(left, size, mirror)[:, None, :]
    batch = torch.arange(b)[:, None, None]

    def take(x: torch.Tensor) -> torch.Tensor:
        i, r, c = (t.to(x.device) for t in (batch, rows, cols))
        return x[i, :, r, c].permute(0, 3, 1, 2).contiguous()  # advanced dims first: (B, size, size, C)

    return take(inputs), take(targets)


# ------------------------------------------------------------------------------- pixel operations


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float values rounded to nearest and clamped to 0..255, as uint8."""
    return x.round().clamp_(0, 255).to(torch.uint8)


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """``interpolate`` uint8 ``(N, C, H, W)`` to ``size`` (antialiased for bilinear / bicubic), back to uint8."""
    extra = {"antialias": True, "align_corners": False} if mode in ("bilinear", "bicubic") else {}
    return _to_uint8(F.interpolate(x.to(torch.float32), size=size, mode=mode, **extra))


def _blur_matrix(n: int, sigma: float) -> torch.Tensor:
    """``(n, n)`` matrix whose row j is the 1-D Gaussian blur of the unit vector e_j.

    The kernel has radius ``ceil(4 sigma)`` (at most ``n - 1``) and borders are reflected.
    """
    r = min(max(1, math.ceil(4.0 * sigma)), n - 1)
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / sigma) ** 2)
    eye = torch.eye(n, dtype=torch.float32).view(n, 1, n)
    return F.conv1d(F.pad(eye, (r, r), mode="reflect"), (k / k.sum()).view(1, 1, -1)).view(n, n)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of uint8 ``(N, C, H, W)`` (see :func:`_blur_matrix`), rounded to uint8."""
    h, w = x.shape[-2:]
    y = x.to(torch.float32) @ _blur_matrix(w, sigma)
    return _to_uint8(_blur_matrix(h, sigma).T @ y)


def _lowres(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Area-downsample uint8 ``(N, C, S, S)`` by ``factor`` (to ``max(1, S // factor)``), then bicubic back to S."""
    s = x.shape[-1]
    small = _resize(x, (max(1, s // factor),) * 2, "area")
    return _resize(small, (s, s), "bicubic")


def _canny(luma: torch.Tensor, sigma: float) -> torch.Tensor:
    """``skimage.feature.canny(luma / 255, sigma)`` of each uint8 ``(N, 1, S, S)`` image, as 0/255 uint8."""
    from skimage.feature import canny

    grey = luma[:, 0].numpy().astype(np.float64) / 255.0
    edges = np.stack([canny(g, sigma=sigma) for g in grey]) if len(grey) else np.zeros(grey.shape, bool)
    return torch.from_numpy(edges.astype(np.uint8) * 255).unsqueeze(1)


def _noisy(x: torch.Tensor, seed: int) -> torch.Tensor:
    """``x`` + Gaussian noise, std :data:`_NOISE_STD` grey levels, from ``default_rng(seed)``; rounded, clipped."""
    noise = np.random.default_rng(seed).normal(0.0, _NOISE_STD, size=tuple(x.shape))
    return _to_uint8(x.to(torch.float64) + torch.from_numpy(noise))


def _outline(x: torch.Tensor) -> torch.Tensor:
    """Inner outline of the digit: pixels >= 128 with a 3x3 neighbour below 128 (borders count as 0), as 0/255."""
    mask = (x >= 128).to(torch.float32)
    eroded = -F.max_pool2d(-F.pad(mask, (1, 1, 1, 1)), kernel_size=3, stride=1)
    return ((mask - eroded) * 255).to(torch.uint8)


# -------------------------------------------------------------------------------- photo built-ins


def _photo(name: str) -> np.ndarray:
    """scikit-image colour photo ``name`` as uint8 ``(H, W, 3)`` (stereo_motorcycle: its left view only)."""
    import skimage.data

    img = getattr(skimage.data, name)()
    if name == "stereo_motorcycle":
        img = img[0]
    return np.asarray(img, dtype=np.uint8)[..., :3]


def _photo_crops_of(name: str, size: int, count: int) -> torch.Tensor:
    """``count`` crops ``(count, 3, size, size)`` of photo ``name`` resized so its shorter side is ``4 size``.

    The resize is antialiased bilinear; crop corners are uniform, from ``default_rng(_PHOTO_SEEDS[name])``
    (all tops drawn first, then all lefts).
    """
    img = torch.from_numpy(_photo(name)).permute(2, 0, 1).unsqueeze(0)
    h, w = img.shape[-2:]
    scale = 4 * size / min(h, w)
    shape = (4 * size, round(w * scale)) if h <= w else (round(h * scale), 4 * size)
    img = _resize(img, shape, "bilinear")[0]
    rng = np.random.default_rng(_PHOTO_SEEDS[name])
    tops = rng.integers(0, shape[0] - size + 1, size=count)
    lefts = rng.integers(0, shape[1] - size + 1, size=count)
    return torch.stack([img[:, t : t + size, l : l + size] for t, l in zip(tops.tolist(), lefts.tolist())])


@lru_cache(maxsize=1)
def _photo_crops(size: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """All photo crops at ``size`` px, split after split (train, val, test), and each split's indices."""
    parts, splits, start = [], {}, 0
    for split in PAIRED_SPLITS:
        crops = [_photo_crops_of(p, size, PHOTO_CROPS[split]) for p in PHOTO_SPLITS[split]]
        n = sum(len(c) for c in crops)
        parts.extend(crops)
        splits[split] = torch.arange(start, start + n)
        start += n
    return torch.cat(parts), splits


def _photo_input(task: str, crops: torch.Tensor, split: str) -> torch.Tensor:
    """Input A of photo ``task`` computed from the uint8 RGB ``crops`` of ``split`` at their own size S."""
    s = crops.shape[-1]
    if task == "gray2color":
        return convert_channels(crops, 1)
    if task == "edges2photo":
        return _canny(convert_channels(crops, 1), sigma=2.0)
    if task == "noisy2clean":
        return _noisy(crops, _NOISE_SEED + PAIRED_SPLITS.index(split))
    if task == "blur2sharp":
        return _gaussian_blur(crops, s / 32)
    if task == "lowres2highres":
        return _lowres(crops, 4)
    raise ValueError(f"unknown photo task {task!r}")


@lru_cache(maxsize=2)
def _photo_task(task: str, size: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """``(a, b, splits)`` of photo ``task`` at ``size`` px: inputs, RGB crops, split indices."""
    crops, splits = _photo_crops(size)
    a = torch.cat([_photo_input(task, crops[splits[s]], s) for s in PAIRED_SPLITS])
    return a, crops, splits


def _register_photo_task(task: str) -> None:
    def load(*, load_size: int, **_) -> PairedSource:
        a, b, splits = _photo_task(task, load_size)
        identity = {"builtin": task, "photos": PHOTO_SPLITS, "crops": PHOTO_CROPS, "seeds": _PHOTO_SEEDS}
        return PairedSource(a=a, b=b, labels=None, splits=splits, name=task, identity=identity)

    load.__doc__ = f"Built-in photo task {task!r} (see the module docstring)."
    PAIRED_DATASETS.register(task)(load)


# -------------------------------------------------------------------------------- digit built-ins


@lru_cache(maxsize=1)
def _digit_splits() -> dict[str, torch.Tensor]:
    """80/10/10 train/val/test indices of the 5000 mnist5k digits from a constant-seed permutation."""
    n = len(_mnist5k()[0])
    perm = torch.from_numpy(np.random.default_rng(_DIGIT_SPLIT_SEED).permutation(n))
    n_val = n_test = n // 10
    return {"train": perm[n_val + n_test :], "val": perm[:n_val], "test": perm[n_val : n_val + n_test]}


def _fit_digits(x: torch.Tensor, size: int) -> torch.Tensor:
    """28 px digits fitted to ``size`` exactly as the unconditional mnist5k (zero-pad up to 32, else resize)."""
    return fit_to_resolution(x, size, pad_up_to=PAD_UP_TO["mnist5k"])[0]


@lru_cache(maxsize=2)
def _digit_task(task: str, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(a, b, labels)`` of digit ``task`` for all 5000 digits at ``size`` px."""
    raw, labels = _mnist5k()
    x = torch.from_numpy(raw).unsqueeze(1)
    b = _fit_digits(x, size)
    if task == "edges2digit":
        a = _outline(b)
    elif task == "lowres2digit":
        a = _fit_digits(_resize(_resize(x, (7, 7), "area"), (28, 28), "bicubic"), size)
    else:
        raise ValueError(f"unknown digit task {task!r}")
    return a, b, torch.from_numpy(labels)


def _register_digit_task(task: str) -> None:
    def load(*, load_size: int, **_) -> PairedSource:
        a, b, labels = _digit_task(task, load_size)
        identity = {"builtin": task, "source": "mnist5k", "split_seed": _DIGIT_SPLIT_SEED}
        return PairedSource(a=a, b=b, labels=labels, splits=_digit_splits(), name=task, identity=identity)

    load.__doc__ = f"Built-in digit task {task!r} (see the module docstring)."
    PAIRED_DATASETS.register(task)(load)


PHOTO_TASKS = ("gray2color", "edges2photo", "noisy2clean", "blur2sharp", "lowres2highres")
DIGIT_TASKS = ("edges2digit", "lowres2digit")
for _task in PHOTO_TASKS:
    _register_photo_task(_task)
for _task in DIGIT_TASKS:
    _register_digit_task(_task)


def _as_rgb(x: torch.Tensor) -> torch.Tensor:
    return convert_channels(x, 3).contiguous()


def _same(x: torch.Tensor) -> torch.Tensor:
    return x.clone()


#: Trivial prediction of each built-in task's targets from its ("AtoB") inputs, uint8 -> uint8.
BASELINES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gray2color": _as_rgb,  # luma repeated to 3 channels
    "edges2photo": _as_rgb,  # the edge map repeated to 3 channels
    "noisy2clean": _same,  # the noisy input
    "blur2sharp": _same,  # the blurred input
    "lowres2highres": _same,  # bicubic upsampling
    "edges2digit": _same,  # the outline itself
    "lowres2digit": _same,  # bicubic upsampling
}


# -------------------------------------------------------------------------------------- user data


def _root_folder(root) -> Path:
    """``root`` as an existing folder, or a one-line ConfigError / DataError with the fix."""
    if root is None:
        raise ConfigError("data.root: not set; set data.root to the folder of the paired dataset")
    folder = Path(root)
    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is not a folder"
        raise DataError(f"data.root: '{root}' {what}; set data.root to the folder of the paired dataset")
    return folder


def _images_in(folder: Path, fix: str) -> list[Path]:
    """Image files below ``folder``; DataError (with ``fix``) when there are none."""
    files = find_images(folder)
    if not files:
        raise DataError(f"data.root: folder '{folder}' contains no image files ({', '.join(EXTENSIONS)}); {fix}")
    return files


def _to_chw(arr: np.ndarray) -> torch.Tensor:
    """uint8 ``(H, W)`` or ``(H, W, 3)`` array as ``(C, H, W)``."""
    x = torch.from_numpy(np.ascontiguousarray(arr))
    return x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)


def _fit(arr: np.ndarray, size: int) -> torch.Tensor:
    """One decoded image centre-cropped to a square and resized to ``size`` (up or down), ``(C, size, size)``."""
    return center_crop_resize(_to_chw(arr).unsqueeze(0), size)[0]


def _carve(n: int, missing: list[str], where: str) -> dict[str, torch.Tensor]:
    """Split ``n`` train pairs: each ``missing`` split takes ``floor(0.1 n + 0.5)`` from a constant-seed permutation."""

    def fits(m: int) -> bool:  # every split gets at least one of m pairs
        k = int(_HOLDOUT * m + 0.5)
        return (k >= 1 or not missing) and m - k * len(missing) >= 1

    if not fits(n):
        need = next(m for m in range(1, 1000) if fits(m))
        raise DataError(
            f"data.root: {where} has {n} readable pairs; at least {need} are needed to give every split "
            f"({', '.join(PAIRED_SPLITS)}) a pair; add pairs or add the split folders"
        )
    k = int(_HOLDOUT * n + 0.5)
    perm = torch.from_numpy(np.random.default_rng(_CARVE_SEED).permutation(n))
    out = {s: perm[i * k : (i + 1) * k] for i, s in enumerate(missing)}
    out["train"] = perm[k * len(missing) :] if missing else torch.arange(n)
    return out


def _warn_carved(missing: list[str], where: str) -> None:
    if missing:
        warnings.warn(
            f"data.root: no {' or '.join(missing)} folder in '{where}'; carved "
            f"{' and '.join(missing)} from train ({int(_HOLDOUT * 100)} % each, constant seed)",
            UserWarning,
            stacklevel=4,
        )


def _file_facts(files: list[Path], root: Path) -> list:
    return [[f.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns] for f in files for st in [f.stat()]]


def _assemble(groups: dict[str, tuple], root: Path, name: str, layout: str, files: list[Path]) -> PairedSource:
    """PairedSource from per-split ``(a_list, b_list, local_splits | None)`` groups (split folders first)."""
    a_all, b_all, splits, start = [], [], {}, 0
    for split, (a, b, local) in groups.items():
        for s, idx in (local or {split: torch.arange(len(a))}).items():
            splits[s] = idx + start
        a_all.extend(a)
        b_all.extend(b)
        start += len(a)
    identity = {"layout": layout, "root": os.path.abspath(root), "files": _file_facts(files, root)}
    a, b = stack_images(a_all), stack_images(b_all)
    return PairedSource(a=a, b=b, labels=None, splits=splits, name=name, identity=identity)


def _read_aligned(path: Path, size: int):
    """Decode an A|B file and fit each half to ``size``; ``(path, exc)`` when unreadable."""
    try:
        arr = decode_image(path)
    except DECODE_ERRORS as exc:
        return path, exc
    w = arr.shape[1]
    if w % 2:
        raise DataError(
            f"data.root: image file '{path}' has an odd width ({w} px), but an aligned A|B image has an even "
            "width (two equal halves); crop it to an even width"
        )
    return _fit(arr[:, : w // 2], size), _fit(arr[:, w // 2 :], size)


@PAIRED_DATASETS.register("aligned")
def load_aligned(*, root, load_size: int, strict: bool = False, **_) -> PairedSource:
    """pix2pix's layout: ``root/{train,val,test}/`` files holding A (left half) | B (right half).

    ``train/`` is required; a missing ``val/`` or ``test/`` is carved from train (10 % each, constant seed).
    """
    folder = _root_folder(root)
    if not (folder / "train").is_dir():
        raise DataError(
            f"data.root: no train folder '{folder / 'train'}'; put the A|B training images in it "
            "(and optionally val/ and test/)"
        )
    present = [s for s in PAIRED_SPLITS if (folder / s).is_dir()]
    missing = [s for s in PAIRED_SPLITS if s not in present]
    groups, all_files = {}, []
    for split in present:
        files = _images_in(folder / split, "add A|B images or remove the folder")
        pairs, _ = read_all(files, lambda p: _read_aligned(p, load_size), strict=strict, what="files")
        local = _carve(len(pairs), missing, str(folder / "train")) if split == "train" else None
        groups[split] = ([p[0] for p in pairs], [p[1] for p in pairs], local)
        all_files.extend(files)
    _warn_carved(missing, str(folder))
    return _assemble(groups, folder, os.fspath(root), "aligned", all_files)


def _keyed(folder: Path) -> dict[str, Path]:
    """Image files below ``folder`` keyed by relative POSIX path without extension; DataError on duplicates."""
    out: dict[str, Path] = {}
    for f in _images_in(folder, "add images or set data.root to the right folder"):
        key = f.relative_to(folder).with_suffix("").as_posix()
        if key in out:
            raise DataError(
                f"data.root: '{out[key]}' and '{f}' have the same name without extension, so they cannot be "
                "paired; rename or remove one"
            )
        out[key] = f
    return out


def _match(a_dir: Path, b_dir: Path) -> list[tuple[Path, Path]]:
    """Pairs of files of ``a_dir`` and ``b_dir`` with the same relative path without extension, sorted."""
    a, b = _keyed(a_dir), _keyed(b_dir)
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if only_a or only_b:
        first_a = a[only_a[0]].relative_to(a_dir).as_posix() if only_a else "none"
        first_b = b[only_b[0]].relative_to(b_dir).as_posix() if only_b else "none"
        raise DataError(
            f"data.root: {len(only_a)} file(s) in '{a_dir}' and {len(only_b)} in '{b_dir}' have no partner "
            f"(first unmatched: A '{first_a}', B '{first_b}'); pairs match by relative path without extension, "
            "so rename or remove the unmatched files"
        )
    return [(a[k], b[k]) for k in sorted(a)]


def _read_pair(pair: tuple[Path, Path], size: int):
    """Decode and fit both files of a pair to ``size``; ``(path, exc)`` for the first unreadable one."""
    out = []
    for path in pair:
        try:
            out.append(_fit(decode_image(path), size))
        except DECODE_ERRORS as exc:
            return path, exc
    return tuple(out)


def _ab_dirs(folder: Path) -> tuple[Path, Path]:
    a, b = folder / "A", folder / "B"
    for d in (a, b):
        if not d.is_dir():
            raise DataError(
                f"data.root: no folder '{d}'; paired_folders needs '{a}' and '{b}' holding files with matching names"
            )
    return a, b


@PAIRED_DATASETS.register("paired_folders")
def load_paired_folders(*, root, load_size: int, strict: bool = False, **_) -> PairedSource:
    """``root/A`` + ``root/B`` (split 80/10/10 with a constant seed) or ``root/{train,val,test}/{A,B}``.

    Files pair up by relative path without extension (``a.png`` with ``a.jpg``).
    """
    folder = _root_folder(root)
    split_layout = (folder / "train").is_dir()
    present = [s for s in PAIRED_SPLITS if (folder / s).is_dir()] if split_layout else ["train"]
    missing = [s for s in PAIRED_SPLITS if s not in present]
    groups, all_files = {}, []
    for split in present:
        pairs = _match(*_ab_dirs(folder / split if split_layout else folder))
        fitted, _ = read_all(pairs, lambda p: _read_pair(p, load_size), strict=strict, what="pairs")
        local = _carve(len(fitted), missing, str(folder)) if split == "train" else None
        groups[split] = ([p[0] for p in fitted], [p[1] for p in fitted], local)
        all_files.extend(f for pair in pairs for f in pair)
    if split_layout:
        _warn_carved(missing, str(folder))
    return _assemble(groups, folder, os.fspath(root), "paired_folders", all_files)
