"""normgan.data.folds: k-fold cross-validation inside the training split, its use by the tasks and the
evaluations (``data.folds`` / ``data.fold``), and the ``forbid_splits`` guard that keeps a search off the
test split.

Expected folds are recomputed here from their definition (a seed-0 numpy permutation cut into chunks
whose sizes differ by at most one, the larger first) and rows are compared by content, never through
the functions under test.
"""

from __future__ import annotations

import threading
from collections import Counter

import numpy as np
import pytest
import torch
from conftest import TINY
from hypothesis import given, settings
from hypothesis import strategies as st

from normgan.config import load_config
from normgan.data import (
    ImageData,
    LeakError,
    PairedData,
    apply_fold,
    batch_to_float,
    check_folds,
    fold_part,
    forbid_splits,
    kfold_indices,
    load_dataset,
    load_paired,
    targets_as_imagedata,
)
from normgan.data import folds as folds_mod
from normgan.errors import ConfigError
from normgan.eval.evaluation import PeriodicEvaluator, build_extractor, reference_dataset
from normgan.eval.paired import PairedEvaluator, paired_split
from normgan.metrics import domain
from normgan.models.build import build_generator_for
from normgan.tasks.builtin import PairedTask, UnconditionalTask

CPU = torch.device("cpu")
SEARCH_FORBIDS = ("test", "all")
PAIRED = [
    "data.name=edges2digit",
    "data.resolution=32",
    "data.batch_size=4",
    "model.generator.name=unet",
    "model.generator.width=4",
    "model.discriminator.name=patchgan",
    "model.discriminator.width=4",
    "model.discriminator.norm=instance",
    "+model.discriminator.options.layers=2",
    "train.num_samples=4",
    "train.tensorboard=false",
    "regularizers={}",
]
FOLDS = ["data.folds=3", "data.fold=1"]


def expected_fold(n: int, folds: int, fold: int) -> np.ndarray:
    """Sorted indices of fold ``fold``: the seed-0 permutation cut by hand (the first ``n % folds``
    chunks hold one more item)."""
    perm = np.random.default_rng(0).permutation(n)
    sizes = [n // folds + (1 if i < n % folds else 0) for i in range(folds)]
    start = sum(sizes[:fold])
    return np.sort(perm[start : start + sizes[fold]])


def rows(*tensors: torch.Tensor) -> Counter:
    """Multiset of the rows of ``tensors`` (zipped along dim 0), each row as bytes."""
    return Counter(b"|".join(t[i].numpy().tobytes() for t in tensors) for i in range(tensors[0].shape[0]))


def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert msg and "\n" not in msg
    return msg


@pytest.fixture
def quick_domain(monkeypatch):
    """Domain classifiers trained for 1 epoch on 256 images; records what each training got."""
    real, seen = domain.train_domain_classifier, []

    def spy(train, *, heldout=None, epochs=None, **kw):
        seen.append({"train": train, "heldout": heldout})
        small = ImageData(
            images=train.images[:256], labels=train.labels[:256], name=train.name, fingerprint=train.fingerprint
        )
        return real(small, heldout=heldout, epochs=1, **kw)

    monkeypatch.setattr(domain, "train_domain_classifier", spy)
    return seen


@pytest.fixture(scope="module")
def mnist_train():
    return load_dataset(name="mnist5k", split="train")


@pytest.fixture(scope="module")
def digits_train():
    return load_paired(name="edges2digit", resolution=32, split="train")


# ------------------------------------------------------------------------------------------ indices
@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 400), folds=st.integers(1, 25))
def test_kfold_indices_partition_range_n_into_balanced_chunks(n, folds):
    chunks = kfold_indices(n, folds=folds)
    assert len(chunks) == folds
    assert all(c.dtype == torch.int64 for c in chunks)
    together = np.concatenate([c.numpy() for c in chunks])
    assert sorted(together.tolist()) == list(range(n))  # disjoint and covering
    sizes = [len(c) for c in chunks]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == n
    for k in range(folds):
        assert np.array_equal(np.sort(chunks[k].numpy()), expected_fold(n, folds, k))


@pytest.mark.parametrize("n, folds", [(16, 2), (17, 2), (100, 3), (101, 7), (4500, 10), (4000, 3)])
def test_fold_part_is_the_sorted_fold_and_its_complement(n, folds):
    for fold in range(folds):
        held = fold_part(n, folds=folds, fold=fold, part="heldout").numpy()
        fit = fold_part(n, folds=folds, fold=fold, part="fit").numpy()
        assert np.array_equal(held, expected_fold(n, folds, fold))
        assert np.array_equal(fit, np.setdiff1d(np.arange(n), held))  # sorted complement
        assert np.all(np.diff(fit) > 0) and np.all(np.diff(held) > 0)
    # the folds do not depend on anything but n and K (constant seed)
    assert torch.equal(kfold_indices(n, folds=folds)[0], kfold_indices(n, folds=folds)[0])
    assert folds_mod.FOLD_SEED == 0 and folds_mod.MIN_FOLD_SIZE == 8


def test_check_folds_messages():
    with pytest.raises(ConfigError) as e:
        check_folds(300, folds=40)
    assert one_line(e) == (
        "data.folds: 40 folds of the training split (300 items) leave fewer than 8 per fold; use at most 37 folds"
    )
    check_folds(300, folds=37)  # 300 // 37 = 8
    with pytest.raises(ConfigError, match=r"^data\.folds: .*set data\.folds to 0"):
        check_folds(300, folds=1)
    with pytest.raises(ConfigError) as e:
        check_folds(10, folds=2, what="the pairs")
    assert "2 folds of the pairs (10 items)" in one_line(e) and "data.folds=0" in str(e.value)


# ------------------------------------------------------------------------------------------ apply_fold
def test_apply_fold_on_an_image_dataset(mnist_train):
    train, n = mnist_train, len(mnist_train)
    fps = set()
    for fold in range(3):
        fit = apply_fold(train, folds=3, fold=fold, part="fit")
        held = apply_fold(train, folds=3, fold=fold, part="heldout")
        assert isinstance(fit, ImageData) and isinstance(held, ImageData)
        assert fit.name == held.name == train.name
        idx = torch.from_numpy(expected_fold(n, 3, fold))
        assert torch.equal(held.images, train.images[idx]) and torch.equal(held.labels, train.labels[idx])
        assert len(fit) + len(held) == n
        assert rows(fit.images, fit.labels) + rows(held.images, held.labels) == rows(train.images, train.labels)
        fps |= {fit.fingerprint, held.fingerprint}
    assert len(fps) == 6 and train.fingerprint not in fps
    again = apply_fold(train, folds=3, fold=1, part="fit")
    assert again.fingerprint == apply_fold(train, folds=3, fold=1, part="fit").fingerprint
    assert apply_fold(train, folds=4, fold=1, part="fit").fingerprint != again.fingerprint


def test_apply_fold_on_a_paired_dataset(digits_train):
    train, n = digits_train, len(digits_train)
    fps = set()
    for fold in range(3):
        fit = apply_fold(train, folds=3, fold=fold, part="fit")
        held = apply_fold(train, folds=3, fold=fold, part="heldout")
        assert isinstance(fit, PairedData) and isinstance(held, PairedData) and fit.name == train.name
        idx = torch.from_numpy(expected_fold(n, 3, fold))
        for got, full in ((held.inputs, train.inputs), (held.targets, train.targets), (held.labels, train.labels)):
            assert torch.equal(got, full[idx])
        assert rows(fit.inputs, fit.targets, fit.labels) + rows(held.inputs, held.targets, held.labels) == rows(
            train.inputs, train.targets, train.labels
        )
        fps |= {fit.fingerprint, held.fingerprint}
    assert len(fps) == 6 and train.fingerprint not in fps
    # caches keyed by the targets' fingerprint (the digit classifier) differ per fold too
    assert (
        len({targets_as_imagedata(apply_fold(train, folds=3, fold=k, part="fit")).fingerprint for k in range(3)}) == 3
    )


def test_apply_fold_refuses_bad_folds(mnist_train):
    with pytest.raises(ConfigError) as e:
        apply_fold(mnist_train, folds=600, fold=0, part="fit")  # 4500 // 600 = 7 < 8
    assert "use at most 562 folds" in one_line(e)
    with pytest.raises(ConfigError, match=r"^data\.fold: "):
        apply_fold(mnist_train, folds=3, fold=3, part="fit")
    with pytest.raises(ValueError):
        apply_fold(mnist_train, folds=3, fold=0, part="test")


# ------------------------------------------------------------------------------------------ config
@pytest.mark.parametrize(
    "overrides, key",
    [
        (["data.folds=1"], "data.folds"),
        (["data.folds=-2"], "data.folds"),
        (["data.folds=3", "data.fold=3"], "data.fold"),
        (["data.folds=3", "data.fold=-1"], "data.fold"),
        (["data.fold=2"], "data.fold"),  # a fold without folds
    ],
)
def test_bad_fold_configs_name_the_key(overrides, key):
    with pytest.raises(ConfigError) as e:
        load_config(overrides=overrides)
    assert one_line(e).startswith(f"{key}: ")


def test_fold_config_defaults_and_a_valid_choice():
    cfg = load_config()
    assert (cfg.data.folds, cfg.data.fold) == (0, 0)
    cfg = load_config(overrides=["data.folds=5", "data.fold=4"])
    assert (cfg.data.folds, cfg.data.fold) == (5, 4)


def test_too_many_folds_for_the_dataset_fail_where_it_is_loaded():
    cfg = load_config(overrides=TINY + ["data.folds=600"])
    with pytest.raises(ConfigError) as e:
        UnconditionalTask(cfg, device=CPU)
    assert one_line(e).startswith("data.folds: 600 folds of the training split of 'mnist5k' (4500 items)")


# ------------------------------------------------------------------------------------------ the guard
def test_forbid_splits_guards_both_loaders_and_is_released():
    with forbid_splits(SEARCH_FORBIDS):
        for split in SEARCH_FORBIDS:
            with pytest.raises(LeakError) as e:
                load_dataset(name="mnist5k", split=split)
            assert one_line(e).startswith(f"the {split} split was read during a search") and "this is a bug" in str(
                e.value
            )
        with pytest.raises(LeakError, match="the test split"):
            load_paired(name="edges2digit", resolution=32, split="test")
        load_paired(name="edges2digit", resolution=32, split="val")  # not forbidden here
        with forbid_splits(("test", "val")):  # nested: both active
            with pytest.raises(LeakError, match="the val split"):
                load_paired(name="edges2digit", resolution=32, split="val")
        load_paired(name="edges2digit", resolution=32, split="val")  # inner block released only its own
        with pytest.raises(LeakError):
            load_dataset(name="mnist5k", split="test")  # outer block still active
    assert len(load_dataset(name="mnist5k", split="test")) == 500
    assert issubclass(LeakError, RuntimeError)


def test_forbid_splits_is_process_wide_and_released_on_error():
    caught = []
    with forbid_splits(("test",)):
        t = threading.Thread(
            target=lambda: caught.append(_raises_leak(lambda: load_dataset(name="mnist5k", split="test")))
        )
        t.start()
        t.join()
    assert caught == [True]
    with pytest.raises(KeyError):
        with forbid_splits(("test",)):
            raise KeyError("boom")
    load_dataset(name="mnist5k", split="test")  # released despite the exception


def _raises_leak(fn) -> bool:
    try:
        fn()
    except LeakError:
        return True
    return False


def test_without_folds_the_evaluation_reads_test_and_the_guard_catches_it(quick_domain, tmp_path):
    cfg = load_config(overrides=TINY)
    with forbid_splits(SEARCH_FORBIDS):
        with pytest.raises(LeakError):
            reference_dataset(cfg, "test")
        with pytest.raises(LeakError):
            PeriodicEvaluator(cfg, n=16, metrics=("fid",), cache_dir=tmp_path)
    pcfg = load_config(overrides=PAIRED)
    with forbid_splits(SEARCH_FORBIDS):
        with pytest.raises(LeakError):
            paired_split(pcfg, "test")
    with forbid_splits(("val", "test")):
        with pytest.raises(LeakError):
            PairedTask(pcfg, device=CPU)  # the grid's val pairs


# ------------------------------------------------------------------------------------------ folds in use
def test_unconditional_run_with_folds_trains_on_fit_and_scores_on_the_heldout_fold(mnist_train, quick_domain, tmp_path):
    cfg = load_config(overrides=TINY + FOLDS)
    n = len(mnist_train)
    held_idx = torch.from_numpy(expected_fold(n, 3, 1))
    fit_idx = torch.from_numpy(np.setdiff1d(np.arange(n), held_idx.numpy()))
    with forbid_splits(SEARCH_FORBIDS):
        task = UnconditionalTask(cfg, device=CPU)
        assert len(task.data) == n - len(held_idx) == 3000
        assert torch.equal(task.data.images, mnist_train.images[fit_idx])
        ref = reference_dataset(cfg, "test")
        assert torch.equal(ref.images, mnist_train.images[held_idx]) and torch.equal(
            ref.labels, mnist_train.labels[held_idx]
        )
        assert reference_dataset(cfg, "train").fingerprint == task.data.fingerprint
        ev = PeriodicEvaluator(cfg, n=32, metrics=("fid", "kid"), cache_dir=tmp_path)
        G = build_generator_for(cfg, resolution=32, channels=1)
        res = ev(G)
    assert res["reference"] == "test" and res["fid"] >= 0
    assert ev.reference_fingerprint == ref.fingerprint and ev.n_reference == len(held_idx)
    # the domain classifier trained on the fit part, held-out accuracy on the held-out fold
    (call,) = quick_domain
    assert call["train"].fingerprint == task.data.fingerprint
    assert call["heldout"].fingerprint == ref.fingerprint


def test_domain_extractor_with_folds_never_falls_back_to_the_test_split(quick_domain, tmp_path):
    """Even with data.holdout=0 (no test split) and reference=train the classifier's held-out set is the fold."""
    cfg = load_config(overrides=TINY + FOLDS + ["data.holdout=0"])
    with forbid_splits(SEARCH_FORBIDS):
        ext = build_extractor("domain", cfg, device="cpu", cache_dir=tmp_path)
        ref = reference_dataset(cfg, "test")
        PeriodicEvaluator(cfg, n=16, metrics=("fid",), reference="train", cache_dir=tmp_path / "other")
    (first, second) = quick_domain
    for call in (first, second):
        assert call["heldout"] is not None and call["heldout"].fingerprint == ref.fingerprint
    assert ext.heldout_accuracy is not None
    assert len(ref) == len(expected_fold(5000, 3, 1)) == 1667  # holdout=0: the train split is all 5000 digits


def test_paired_run_with_folds_reads_neither_val_nor_test(digits_train, quick_domain, tmp_path):
    cfg = load_config(overrides=PAIRED + ["data.folds=10", "data.fold=3"])  # 400 held-out pairs: a quick evaluation
    n = len(digits_train)
    held_idx = torch.from_numpy(expected_fold(n, 10, 3))
    fit_idx = torch.from_numpy(np.setdiff1d(np.arange(n), held_idx.numpy()))
    with forbid_splits(("val", "test", "all")):
        task = PairedTask(cfg, device=CPU)
        assert len(task.data) == len(fit_idx) == 3600
        assert torch.equal(task.data.targets, digits_train.targets[fit_idx])
        assert torch.equal(task.data.inputs, digits_train.inputs[fit_idx])
        k = task.fixed_x.shape[0]
        assert torch.equal(task.fixed_x, batch_to_float(digits_train.inputs[held_idx[:k]]))
        assert torch.equal(task.fixed_y, batch_to_float(digits_train.targets[held_idx[:k]]))
        ev = PairedEvaluator(cfg, split="val", metrics=("psnr", "l1", "classifier_score"), cache_dir=tmp_path)
        assert torch.equal(ev.data.targets, digits_train.targets[held_idx])
        assert torch.equal(ev.data.labels, digits_train.labels[held_idx])
        G = build_generator_for(cfg, resolution=32, channels=1, in_channels=1)
        res = ev(G)
    assert res["split"] == "val" and res["n"] == len(held_idx) and "classifier_score" in res
    (call,) = quick_domain  # the digit classifier: fit targets, scored on the held-out fold's targets
    assert call["train"].fingerprint == targets_as_imagedata(task.data).fingerprint
    assert call["heldout"].fingerprint == targets_as_imagedata(ev.data).fingerprint
    # after the search, the test split is still the real one
    test = paired_split(cfg, "test")
    assert torch.equal(test.targets, load_paired(name="edges2digit", resolution=32, split="test").targets)


def test_paired_grid_with_folds_and_jitter_is_at_the_resolution(digits_train):
    cfg = load_config(overrides=PAIRED + FOLDS + ["data.load_size=36"])
    with forbid_splits(("val", "test", "all")):
        task = PairedTask(cfg, device=CPU)
    assert task.data.resolution == 36 and tuple(task.fixed_x.shape[-2:]) == (32, 32)
    held_idx = torch.from_numpy(expected_fold(len(digits_train), 3, 1))
    assert torch.equal(task.fixed_y, batch_to_float(digits_train.targets[held_idx[: task.fixed_y.shape[0]]]))
