"""Tests for normgan.data.paired: user A|B and A/B folders, paired jitter, built-in image-to-image tasks.

Expected pixels come from independent computations (a numpy antialiased resampler, numpy luma,
scipy's Gaussian filter), never from the functions under test.
"""

from __future__ import annotations

import hashlib
import time
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from normgan.data import (
    BASELINES,
    PAIRED_DATASETS,
    PAIRED_SPLITS,
    ImageData,
    PairedData,
    is_paired,
    load_dataset,
    load_paired,
    paired_crop_flip,
    targets_as_imagedata,
)
from normgan.data import paired as paired_mod
from normgan.errors import ConfigError, DataError

PHOTO_TASKS = ("gray2color", "edges2photo", "noisy2clean", "blur2sharp", "lowres2highres")
DIGIT_TASKS = ("edges2digit", "lowres2digit")
SIZES = {"train": 2400, "val": 300, "test": 300}  # photo tasks: 6 / 1 / 1 photos x 400 / 300 / 300 crops
DIGIT_SIZES = {"train": 4000, "val": 500, "test": 500}


def save(path, array, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.asarray(array)
    Image.fromarray(array if array.dtype == np.uint16 else array.astype(np.uint8)).save(path, **kwargs)


def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg and msg
    return msg


def _weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) antialiased-bilinear (triangle filter, PIL's algorithm) resampling matrix."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        centre = (i + 0.5) * scale
        lo, hi = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), n_in)
        j = np.arange(lo, hi)
        w = np.clip(1.0 - np.abs((j + 0.5 - centre) / support), 0.0, None)
        m[i, lo:hi] = w / w.sum()
    return m


def ref_fit(img: np.ndarray, size: int) -> np.ndarray:
    """Independent centre square crop + antialiased bilinear resize of (H, W[, C]) uint8 to (C, size, size)."""
    img = img[..., None] if img.ndim == 2 else img
    h, w = img.shape[:2]
    s = min(h, w)
    crop = img[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s].astype(np.float64)
    if s != size:
        m = _weights(s, size)
        crop = np.stack([m @ crop[..., c] @ m.T for c in range(crop.shape[-1])], axis=-1)
    return np.clip(np.rint(crop), 0, 255).astype(np.uint8).transpose(2, 0, 1)


def close(got: torch.Tensor, expected: np.ndarray, tol: int = 1) -> bool:
    return (
        int(np.abs(got.numpy().astype(np.int32) - np.broadcast_to(expected, got.shape).astype(np.int32)).max()) <= tol
    )


def aligned_file(path, left: np.ndarray, *, white: int = 255, **kwargs) -> np.ndarray:
    """Save left | (white - left) side by side; returns the right half."""
    right = white - left
    save(path, np.concatenate([left, right], axis=1), **kwargs)
    return right


# ------------------------------------------------------------------------------------- aligned


def test_aligned_halves_land_on_the_right_side(tmp_path):
    rng = np.random.default_rng(1)
    lefts = {
        "a.png": rng.integers(0, 256, (24, 30, 3)),  # colour, wide half: centre crop + downscale
        "b.png": rng.integers(0, 256, (20, 20)),  # grey: repeated to 3 channels
        "c.png": rng.integers(0, 256, (16, 16, 3)),  # already 16 px: exact
    }
    for name, left in lefts.items():
        aligned_file(tmp_path / "test" / name, left)
    for split in ("train", "val"):
        for i in range(3):
            aligned_file(tmp_path / split / f"{i}.png", rng.integers(0, 256, (18, 18, 3)))
    ab = load_paired(name="aligned", root=tmp_path, resolution=16, split="test")
    assert isinstance(ab, PairedData) and len(ab) == 3 and ab.labels is None
    assert ab.inputs.shape == (3, 3, 16, 16) and ab.targets.shape == (3, 3, 16, 16)
    assert ab.in_channels == 3 and ab.channels == 3 and ab.resolution == 16
    for i, (name, left) in enumerate(sorted(lefts.items())):
        tol = 0 if name == "c.png" else 1
        assert close(ab.inputs[i], ref_fit(left, 16), tol), name
        assert close(ab.targets[i], ref_fit(255 - left, 16), tol), name
    ba = load_paired(name="aligned", root=tmp_path, resolution=16, split="test", direction="BtoA")
    assert torch.equal(ba.inputs, ab.targets) and torch.equal(ba.targets, ab.inputs)
    assert ba.fingerprint != ab.fingerprint
    assert [len(load_paired(name="aligned", root=tmp_path, resolution=16, split=s)) for s in ("train", "val")] == [3, 3]


def test_aligned_grey_side_stays_one_channel_16bit_and_tiff(tmp_path):
    rng = np.random.default_rng(2)
    grey = rng.integers(0, 256, (16, 16))
    aligned_file(tmp_path / "train" / "a16.png", (grey * 257).astype(np.uint16), white=65535)  # PIL mode I;16
    assert Image.open(tmp_path / "train" / "a16.png").mode.startswith("I;16")
    aligned_file(tmp_path / "train" / "b.tif", grey[::-1])
    for split in ("val", "test"):
        aligned_file(tmp_path / split / "c.png", grey)
    data = load_paired(name="aligned", root=tmp_path, resolution=16, split="train")
    assert data.in_channels == 1 and data.channels == 1
    assert torch.equal(data.inputs[0, 0], torch.from_numpy(grey.astype(np.uint8)))
    assert torch.equal(data.inputs[1, 0], torch.from_numpy(grey[::-1].astype(np.uint8).copy()))
    # the right half of the 16-bit file is 65535 - 257 g = 257 (255 - g)
    assert torch.equal(data.targets[0, 0], torch.from_numpy((255 - grey).astype(np.uint8)))


def test_aligned_small_images_are_upsampled_and_load_size(tmp_path):
    for split in PAIRED_SPLITS:
        aligned_file(tmp_path / split / "tiny.png", np.full((6, 6, 3), 77))
    data = load_paired(name="aligned", root=tmp_path, resolution=16, split="val")
    assert data.inputs.shape == (1, 3, 16, 16) and bool((data.inputs == 77).all()) and bool((data.targets == 178).all())
    big = load_paired(name="aligned", root=tmp_path, resolution=16, load_size=20, split="val")
    assert big.resolution == 20 and big.fingerprint != data.fingerprint


def test_aligned_carves_missing_val_and_test(tmp_path):
    for i in range(20):
        aligned_file(tmp_path / "train" / f"{i:02d}.png", np.full((8, 8), 10 * i))
    with pytest.warns(UserWarning, match="carved"):
        splits = {s: load_paired(name="aligned", root=tmp_path, resolution=8, split=s) for s in PAIRED_SPLITS}
    assert {s: len(d) for s, d in splits.items()} == {"train": 16, "val": 2, "test": 2}
    values = [int(v) for d in splits.values() for v in d.inputs[:, 0, 0, 0]]
    assert sorted(values) == [10 * i for i in range(20)]  # disjoint and complete
    for d in splits.values():
        assert torch.equal(d.targets, 255 - d.inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = load_paired(name="aligned", root=tmp_path, resolution=8, split="val")
    assert torch.equal(again.inputs, splits["val"].inputs) and again.fingerprint == splits["val"].fingerprint


def test_aligned_errors(tmp_path):
    with pytest.raises(DataError) as e:
        load_paired(name="aligned", root=tmp_path, resolution=8)
    assert "train" in one_line(e)
    with pytest.raises(DataError) as e:
        load_paired(name="aligned", root=tmp_path / "nope", resolution=8)
    assert "does not exist" in one_line(e)
    with pytest.raises(ConfigError) as e:
        load_paired(name="aligned", resolution=8)
    assert "data.root" in one_line(e)
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError) as e:
        load_paired(name="aligned", root=tmp_path, resolution=8)
    assert "no image files" in one_line(e)
    save(tmp_path / "train" / "odd.png", np.zeros((8, 17, 3)))
    with pytest.raises(DataError) as e:
        load_paired(name="aligned", root=tmp_path, resolution=8)
    msg = one_line(e)
    assert "odd.png" in msg and "an aligned A|B image has an even width (two equal halves)" in msg


# ------------------------------------------------------------------------------ paired folders


def test_paired_folders_match_by_name_and_split(tmp_path):
    for i in range(20):
        value = np.full((10, 12, 3), 5 * i)
        save(tmp_path / "A" / f"x{i:02d}.png", value)
        save(tmp_path / "B" / f"x{i:02d}.bmp", 255 - value)  # same name, another extension
    save(tmp_path / "A" / "sub" / "y.png", np.full((10, 10), 200))
    save(tmp_path / "B" / "sub" / "y.tif", np.full((10, 10), 55))
    splits = {s: load_paired(name="paired_folders", root=tmp_path, resolution=8, split=s) for s in PAIRED_SPLITS}
    assert {s: len(d) for s, d in splits.items()} == {"train": 17, "val": 2, "test": 2}  # 80/10/10 of 21
    firsts = sorted(int(v) for d in splits.values() for v in d.inputs[:, 0, 0, 0])
    assert firsts == sorted([5 * i for i in range(20)] + [200])
    for d in splits.values():
        assert d.inputs.shape[1:] == (3, 8, 8) and torch.equal(d.targets, 255 - d.inputs)


def test_paired_folders_split_layout(tmp_path):
    for split, n in (("train", 4), ("val", 2), ("test", 1)):
        for i in range(n):
            save(tmp_path / split / "A" / f"{i}.png", np.full((8, 8), i))
            save(tmp_path / split / "B" / f"{i}.png", np.full((8, 8), 100 + i))
    sizes = {s: len(load_paired(name="paired_folders", root=tmp_path, resolution=8, split=s)) for s in PAIRED_SPLITS}
    assert sizes == {"train": 4, "val": 2, "test": 1}
    val = load_paired(name="paired_folders", root=tmp_path, resolution=8, split="val", direction="BtoA")
    assert (
        val.in_channels == 1
        and val.inputs[:, 0, 0, 0].tolist() == [100, 101]
        and val.targets[:, 0, 0, 0].tolist() == [0, 1]
    )


def test_paired_folders_errors(tmp_path):
    for i in range(3):
        save(tmp_path / "A" / f"{i}.png", np.zeros((8, 8)))
        save(tmp_path / "B" / f"{i}.png", np.zeros((8, 8)))
    with pytest.raises(DataError) as e:
        load_paired(name="paired_folders", root=tmp_path, resolution=8)
    assert "at least 5" in one_line(e)
    save(tmp_path / "A" / "extra.png", np.zeros((8, 8)))
    save(tmp_path / "B" / "other.png", np.zeros((8, 8)))
    with pytest.raises(DataError) as e:
        load_paired(name="paired_folders", root=tmp_path, resolution=8)
    msg = one_line(e)
    assert "1 file(s)" in msg and "extra.png" in msg and "other.png" in msg and "rename or remove" in msg
    with pytest.raises(DataError) as e:
        load_paired(name="paired_folders", root=tmp_path / "A", resolution=8)
    assert "'A'" not in one_line(e) and "/A/A" in str(e.value).replace("\\", "/")


def test_unreadable_pair_skipped_or_strict(tmp_path):
    for i in range(10):
        save(tmp_path / "A" / f"{i}.png", np.full((8, 8), i))
        save(tmp_path / "B" / f"{i}.png", np.full((8, 8), i))
    (tmp_path / "B" / "3.png").write_bytes(b"not an image")
    with pytest.warns(UserWarning, match="skipped 1 unreadable pairs"):
        data = {s: load_paired(name="paired_folders", root=tmp_path, resolution=8, split=s) for s in PAIRED_SPLITS}
    assert sum(len(d) for d in data.values()) == 9
    assert 3 not in [int(v) for d in data.values() for v in d.inputs[:, 0, 0, 0]]
    with pytest.raises(DataError) as e:
        load_paired(name="paired_folders", root=tmp_path, resolution=8, strict=True)
    assert "3.png" in one_line(e) and "data.strict" in str(e.value)


# ---------------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"split": "all"}, "data.split"),
        ({"direction": "AB"}, "data.direction"),
        ({"load_size": 31}, "data.load_size"),
        ({"name": "nope"}, "data.name"),
    ],
)
def test_bad_options_are_config_errors(kwargs, key):
    with pytest.raises(ConfigError) as e:
        load_paired(**{"name": "edges2digit", "resolution": 32, **kwargs})
    assert one_line(e).startswith(key)


def test_registry_and_validation():
    assert set(PAIRED_DATASETS.names()) == set(PHOTO_TASKS + DIGIT_TASKS + ("aligned", "paired_folders"))
    assert is_paired("aligned") and is_paired("gray2color") and not is_paired("mnist5k")
    x = torch.zeros(2, 1, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError):
        PairedData(inputs=x, targets=x[:1], labels=None, name="n", fingerprint="0" * 12)
    with pytest.raises(ValueError):
        PairedData(inputs=x.float(), targets=x, labels=None, name="n", fingerprint="0" * 12)
    with pytest.raises(ValueError):
        PairedData(inputs=x, targets=x, labels=torch.zeros(2, dtype=torch.int32), name="n", fingerprint="0" * 12)


# ------------------------------------------------------------------------------------- jitter


def position_batch(b: int, s: int) -> torch.Tensor:
    """Channel 0 = row, channel 1 = column, channel 2 = sample index."""
    rows = torch.arange(s).view(s, 1).expand(s, s)
    cols = torch.arange(s).view(1, s).expand(s, s)
    return torch.stack([torch.stack([rows, cols, torch.full((s, s), i)]) for i in range(b)]).to(torch.uint8)


def test_paired_crop_flip_same_window_on_both_sides():
    b, s, size = 200, 24, 16
    x = position_batch(b, s)
    y = 255 - x
    g = torch.Generator().manual_seed(7)
    expected_g = torch.Generator().manual_seed(7)
    xi, yi = paired_crop_flip(x, y, size=size, flip=True, generator=g)
    assert xi.shape == (b, 3, size, size) and yi.shape == (b, 3, size, size)
    assert torch.equal(yi, 255 - xi)  # the relation holds pixel for pixel
    top = torch.randint(0, s - size + 1, (b,), generator=expected_g)
    left = torch.randint(0, s - size + 1, (b,), generator=expected_g)
    mirror = torch.rand(b, generator=expected_g) < 0.5
    k = torch.arange(size)
    for i in range(b):
        assert torch.equal(xi[i, 2], torch.full((size, size), i, dtype=torch.uint8))
        assert torch.equal(xi[i, 0, :, 0].long(), top[i] + k)
        cols = left[i] + (size - 1 - k if mirror[i] else k)
        assert torch.equal(xi[i, 1, 0].long(), cols)
    assert len({(int(a), int(c)) for a, c in zip(top, left)}) > 50  # crops differ between samples
    assert 0.35 < mirror.float().mean() < 0.65
    assert int(top.min()) == 0 and int(top.max()) == s - size
    again = paired_crop_flip(x, y, size=size, flip=True, generator=torch.Generator().manual_seed(7))
    assert torch.equal(again[0], xi) and torch.equal(again[1], yi)


def test_paired_crop_flip_float_no_flip_and_identity():
    x = torch.randn(8, 1, 12, 12)
    y = torch.randn(8, 3, 12, 12)
    g = torch.Generator().manual_seed(0)
    xi, yi = paired_crop_flip(x, y, size=8, flip=False, generator=g)
    assert xi.dtype == torch.float32 and xi.shape == (8, 1, 8, 8) and yi.shape == (8, 3, 8, 8)
    for i in range(8):  # find the window in the source: the same one on both sides
        hits = [(t, l) for t in range(5) for l in range(5) if torch.equal(x[i, :, t : t + 8, l : l + 8], xi[i])]
        assert len(hits) == 1 and torch.equal(y[i, :, hits[0][0] : hits[0][0] + 8, hits[0][1] : hits[0][1] + 8], yi[i])
    state = g.get_state()
    same = paired_crop_flip(x, y, size=12, flip=False, generator=g)
    assert same[0] is x and same[1] is y and torch.equal(g.get_state(), state)
    fx, fy = paired_crop_flip(x, y, size=12, flip=True, generator=g)
    side_x = [torch.equal(fx[i], x[i].flip(-1)) - torch.equal(fx[i], x[i]) for i in range(8)]  # +1 flipped, -1 not
    side_y = [torch.equal(fy[i], y[i].flip(-1)) - torch.equal(fy[i], y[i]) for i in range(8)]
    assert fx is not x and side_x == side_y and 0 not in side_x


# ----------------------------------------------------------------------------------- built-ins


def crop_hashes(t: torch.Tensor) -> set[str]:
    return {hashlib.sha1(img.numpy().tobytes()).hexdigest() for img in t}


@pytest.mark.parametrize("task", PHOTO_TASKS + DIGIT_TASKS)
def test_builtin_tasks_shapes(task):
    digit = task in DIGIT_TASKS
    size = 32 if digit else 64
    in_channels = 1 if task in ("gray2color", "edges2photo") or digit else 3
    data = {s: load_paired(name=task, resolution=size, split=s) for s in PAIRED_SPLITS}
    for split, d in data.items():
        assert len(d) == (DIGIT_SIZES if digit else SIZES)[split] and d.name == task
        assert d.inputs.shape[1:] == (in_channels, size, size) and d.inputs.dtype == torch.uint8
        assert d.targets.shape[1:] == ((1 if digit else 3), size, size)
        pred = BASELINES[task](d.inputs[:16])
        assert pred.dtype == torch.uint8 and pred.shape == d.targets[:16].shape
        if digit:
            assert d.labels.dtype == torch.int64 and sorted(d.labels.unique().tolist()) == list(range(10))
        else:
            assert d.labels is None
    assert len({d.fingerprint for d in data.values()}) == 3
    assert load_paired(name=task, resolution=size, split="val").fingerprint == data["val"].fingerprint
    assert load_paired(name=task, resolution=size, split="val", seed=5).fingerprint == data["val"].fingerprint
    if digit:
        assert load_paired(name=task, resolution=size, split="val", direction="BtoA").labels is None


def test_photo_splits_share_no_photo():
    split_photos = [set(paired_mod.PHOTO_SPLITS[s]) for s in PAIRED_SPLITS]
    assert not (
        split_photos[0] & split_photos[1] or split_photos[0] & split_photos[2] or split_photos[1] & split_photos[2]
    )
    assert "cat" not in set().union(*split_photos)
    data = {s: load_paired(name="gray2color", resolution=64, split=s).targets for s in PAIRED_SPLITS}
    train = crop_hashes(data["train"])
    assert not train & crop_hashes(data["test"]) and not train & crop_hashes(data["val"])
    # the test crops are astronaut crops: each one occurs in the antialiased 256 px astronaut
    from skimage.data import astronaut

    big = ref_fit(astronaut(), 256)  # 512 -> 256 (shorter side 4 x 64)
    for crop in data["test"][:3].numpy().astype(int):
        corners = np.lib.stride_tricks.sliding_window_view(big[0].astype(int), (8, 8))  # (249, 249, 8, 8)
        near = np.argwhere(np.abs(corners - crop[0, :8, :8]).max(axis=(2, 3)) <= 1)
        hits = [
            (t, l)
            for t, l in near
            if t <= 192 and l <= 192 and np.abs(big[:, t : t + 64, l : l + 64] - crop).max() <= 1
        ]
        assert len(hits) == 1


def test_gray2color_input_is_luma_of_target():
    d = load_paired(name="gray2color", resolution=64, split="val")
    rgb = d.targets.numpy().astype(np.float64)
    luma = 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]
    assert close(d.inputs[:, 0], luma)
    assert torch.equal(BASELINES["gray2color"](d.inputs), d.inputs.repeat(1, 3, 1, 1))


def test_photo_degradations():
    from scipy.ndimage import gaussian_filter

    noisy = load_paired(name="noisy2clean", resolution=64, split="val")
    diff = noisy.inputs.double() - noisy.targets.double()
    mid = (noisy.targets >= 80) & (noisy.targets <= 175)  # no clipping within 3 sigma
    assert 24.0 < float(diff[mid].std()) < 26.0 and abs(float(diff[mid].mean())) < 0.5
    blur = load_paired(name="blur2sharp", resolution=64, split="val")
    sharp = blur.targets[:4].numpy().astype(np.float64)
    ref = gaussian_filter(sharp, sigma=(0, 0, 2.0, 2.0), mode="mirror", truncate=4.0)
    assert close(blur.inputs[:4], ref)
    edges = load_paired(name="edges2photo", resolution=64, split="val")
    assert set(edges.inputs.unique().tolist()) == {0, 255}
    assert 0.02 < float((edges.inputs == 255).float().mean()) < 0.3
    sr = load_paired(name="lowres2highres", resolution=64, split="test")
    pred = BASELINES["lowres2highres"](sr.inputs).double()
    mse = float(((pred - sr.targets.double()) ** 2).mean())
    psnr = 10 * np.log10(255.0**2 / mse)
    assert mse > 0 and np.isfinite(psnr) and 15 < psnr < 45


def test_digit_tasks_use_mnist5k_pixels():
    mnist = load_dataset(name="mnist5k", resolution=32, split="all")
    want = sorted(
        hashlib.sha1(img.numpy().tobytes() + bytes([int(lab)])).digest() for img, lab in zip(mnist.images, mnist.labels)
    )
    for task in DIGIT_TASKS:
        parts = [load_paired(name=task, resolution=32, split=s) for s in PAIRED_SPLITS]
        got = sorted(
            hashlib.sha1(img.numpy().tobytes() + bytes([int(lab)])).digest()
            for d in parts
            for img, lab in zip(d.targets, d.labels)
        )
        assert got == want, task  # together the whole of mnist5k, each digit exactly once, labels kept
    edges = load_paired(name="edges2digit", resolution=32, split="test")
    assert set(edges.inputs.unique().tolist()) == {0, 255}
    ink = edges.targets >= 128
    assert bool((edges.inputs == 255).le(ink).all())  # the outline lies on the digit
    low = load_paired(name="lowres2digit", resolution=32, split="test")
    assert bool((low.inputs[..., :2, :] == 0).all())  # fitted like the target: 2 px zero padding at 32
    assert 0 < float((low.inputs.double() - low.targets.double()).abs().mean()) < 40


def test_targets_as_imagedata_and_cold_load_time():
    d = load_paired(name="edges2digit", resolution=32, split="val")
    img = targets_as_imagedata(d)
    assert isinstance(img, ImageData) and img.name == "edges2digit-targets" and torch.equal(img.images, d.targets)
    assert torch.equal(img.labels, d.labels) and len(img.fingerprint) == 12 and img.fingerprint != d.fingerprint
    assert (
        targets_as_imagedata(load_paired(name="edges2digit", resolution=32, split="test")).fingerprint
        != img.fingerprint
    )
    paired_mod._photo_crops.cache_clear()
    paired_mod._photo_task.cache_clear()
    start = time.perf_counter()
    load_paired(name="blur2sharp", resolution=64, split="train")
    assert time.perf_counter() - start < 10  # < 5 s on an idle 2-core machine
