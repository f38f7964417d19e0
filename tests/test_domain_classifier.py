"""The offline domain classifier on mnist5k: accuracy, cache, and that domain FID ranks obvious cases."""

from __future__ import annotations

import math
import time

import pytest
import torch

from normgan.data import ImageData, batch_to_float, load_dataset
from normgan.errors import UserError
from normgan.metrics import build_feature_extractor, domain, evaluate, fid_from_features, real_features

TEST_EPOCHS = 4  # fewer than the default to keep the suite fast; still well above 90% on mnist5k


@pytest.fixture(scope="session")
def splits():
    return load_dataset(name="mnist5k", split="train"), load_dataset(name="mnist5k", split="test")


@pytest.fixture(scope="session")
def trained(splits, tmp_path_factory):
    train, test = splits
    cache = tmp_path_factory.mktemp("domain-cache")
    t0 = time.perf_counter()
    model = domain.load_or_train(train, heldout=test, cache_dir=cache, epochs=TEST_EPOCHS, seed=0)
    print(f"domain classifier: {time.perf_counter() - t0:.1f}s, held-out accuracy {model.heldout_accuracy:.4f}")
    return model, cache


def test_heldout_accuracy(trained):
    model, cache = trained
    assert not model.from_cache
    assert 0.9 <= model.heldout_accuracy <= 1.0
    assert model.num_features == 128 and model.name == "domain"
    x = torch.zeros(3, 1, 32, 32)
    assert model(x).shape == (3, 128) and model.logits(x).shape == (3, 10)


def test_cache_hit_does_not_retrain(trained, splits, monkeypatch):
    model, cache = trained
    train, _ = splits
    path = domain.cache_path(cache, train.fingerprint)
    assert path.exists() and [p.name for p in cache.iterdir()] == [path.name]  # no temporary files left
    mtime = path.stat().st_mtime_ns

    def fail(*a, **k):
        raise AssertionError("retrained despite a valid cache")

    monkeypatch.setattr(domain, "train_domain_classifier", fail)
    rng = torch.get_rng_state()
    again = build_feature_extractor("domain", data=train, cache_dir=cache, device="cpu")
    assert torch.equal(torch.get_rng_state(), rng)  # a cache hit leaves the caller's (training) RNG alone
    assert again.from_cache and path.stat().st_mtime_ns == mtime
    assert again.heldout_accuracy == pytest.approx(model.heldout_accuracy)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[k], v, rtol=0, atol=0)


def test_corrupted_cache_retrains_with_warning(trained, splits, tmp_path, monkeypatch):
    model, _ = trained
    train, test = splits
    path = domain.cache_path(tmp_path, train.fingerprint)
    path.write_bytes(b"not a torch file")
    calls = []

    def fake_train(data, **kw):  # stands in for the real (slow) training
        calls.append(data.fingerprint)
        return model

    monkeypatch.setattr(domain, "train_domain_classifier", fake_train)
    with pytest.warns(RuntimeWarning, match="unusable.*retraining"):
        got = domain.load_or_train(train, heldout=test, cache_dir=tmp_path, epochs=TEST_EPOCHS)
    assert calls == [train.fingerprint] and got is model
    reloaded = domain.load_or_train(train, cache_dir=tmp_path)  # the rewritten file is valid
    assert reloaded.from_cache and calls == [train.fingerprint]


def test_training_is_deterministic(splits):
    train, _ = splits
    small = ImageData(images=train.images[:256], labels=train.labels[:256], name="mnist5k", fingerprint="0" * 12)
    a = domain.train_domain_classifier(small, epochs=1, seed=3)
    state = torch.get_rng_state()
    b = domain.train_domain_classifier(small, epochs=1, seed=3)
    torch.testing.assert_close(torch.get_rng_state(), state)  # caller's RNG untouched
    for k, v in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[k], v, rtol=0, atol=0)


def test_unlabelled_data_is_a_user_error():
    data = ImageData(
        images=torch.zeros(8, 1, 32, 32, dtype=torch.uint8), labels=None, name="folder", fingerprint="a" * 12
    )
    with pytest.raises(UserError, match="needs class labels.*--features inception") as info:
        build_feature_extractor("domain", data=data, cache_dir=None)
    assert "\n" not in str(info.value)


def test_domain_fid_ranks_real_collapsed_and_noise(trained, splits):
    model, _ = trained
    train, test = splits
    n = len(test)
    real_test = real_features(model, test, batch_size=250)
    real_train = real_features(model, train, n=n, batch_size=250)
    floor = fid_from_features(real_test, real_train)
    collapsed = real_features(model, test, n=1).repeat(n, 1)  # one real image, n times
    fid_collapsed = fid_from_features(real_test, collapsed)
    noise = torch.rand(n, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        fid_noise = fid_from_features(real_test, model(noise).double())
    assert floor > 0 and math.isfinite(floor)
    assert fid_collapsed > 10 * floor
    assert fid_noise > 10 * floor


def test_evaluate_real_sampler(trained, splits):
    model, _ = trained
    train, test = splits
    gen = torch.Generator().manual_seed(1)

    def sample_fn(b):  # a "perfect generator": real training images
        return batch_to_float(train.images[torch.randint(len(train), (b,), generator=gen)])

    state = torch.get_rng_state()
    res = evaluate(sample_fn=sample_fn, reference=test, extractor=model, n=400, batch_size=128, seed=0)
    torch.testing.assert_close(torch.get_rng_state(), state)
    assert res["n"] == 400 and res["n_real"] == 400 and res["features"] == "domain"
    assert res["fid_floor_n"] == len(test) // 2  # fewer than 2n reference images: disjoint halves
    for key in ("fid", "fid_floor", "kid_mean", "kid_std", "precision", "recall", "is_mean", "is_std"):
        assert math.isfinite(res[key]), key
    assert 0.5 < res["precision"] <= 1.0 and 0.5 < res["recall"] <= 1.0
    assert 5.0 < res["is_mean"] <= 10.0  # 10 well-separated classes
    assert res["fid"] < 3 * res["fid_floor"]

    def collapsed_fn(b):
        return batch_to_float(test.images[:1].expand(b, -1, -1, -1))

    bad = evaluate(sample_fn=collapsed_fn, reference=test, extractor=model, n=200, metrics=("fid", "pr", "is"), seed=0)
    assert bad["fid"] > 10 * bad["fid_floor"]
    assert bad["recall"] < 0.1 and bad["is_mean"] < 1.5
    assert "kid_mean" not in bad and bad["fid_floor_n"] == 200


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_training_works_inside_no_grad_and_inference_mode(splits, context):
    """Issue 7: an evaluation (run under no_grad) that finds no cached classifier trains one; the
    training must switch autograd back on itself and give the same weights as outside."""
    train, _ = splits
    small = ImageData(
        images=train.images[:96], labels=train.labels[:96], name=train.name, fingerprint=train.fingerprint
    )
    outside = domain.train_domain_classifier(small, epochs=1, batch_size=32, seed=3)
    with context():
        inside = domain.train_domain_classifier(small, epochs=1, batch_size=32, seed=3)
    for (k, a), b in zip(outside.state_dict().items(), inside.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=k)
    init = domain.DomainClassifier(channels=1, num_classes=10, resolution=32)
    assert not torch.equal(init.head.weight, inside.head.weight)  # it did train


def test_load_or_train_under_no_grad_from_an_empty_cache(splits, tmp_path):
    train, test = splits
    small = ImageData(
        images=train.images[:64], labels=train.labels[:64], name=train.name, fingerprint=train.fingerprint
    )
    with torch.no_grad():
        model = domain.load_or_train(small, heldout=test, cache_dir=tmp_path / "empty", epochs=1, seed=0)
    assert not model.from_cache and domain.cache_path(tmp_path / "empty", train.fingerprint).is_file()
    assert 0.0 <= model.heldout_accuracy <= 1.0
