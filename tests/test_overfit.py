"""Overfitting scores: the nearest-neighbour functions against scipy brute force, and
``overfitting_scores`` end to end on a tiny run trained with data.holdout=0.9, every number
recomputed independently with numpy/scipy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from conftest import TINY
from scipy.spatial.distance import cdist

from normgan.config import load_config
from normgan.data import batch_to_float, load_dataset
from normgan.errors import UserError
from normgan.inference.sample import load_generator
from normgan.metrics import domain
from normgan.metrics.overfit import memorization_score, nearest_distance
from normgan.study.overfit import overfitting_scores
from normgan.train import Trainer

N = 600  # generated samples in the end-to-end test (> 500 training images, two generator batches)


# ------------------------------------------------------------------------------ pure functions
def _brute_memorization(samples, train, heldout) -> float:
    d_tr = cdist(samples, train).min(axis=1)
    d_ho = cdist(samples, heldout).min(axis=1)
    return float(np.mean((d_tr < d_ho) + 0.5 * (d_tr == d_ho)))


def test_nearest_distance_matches_scipy():
    rng = np.random.default_rng(0)
    x, ref = rng.normal(size=(300, 7)), rng.normal(size=(200, 7))
    expected = cdist(x, ref).min(axis=1)
    got = nearest_distance(torch.from_numpy(x), torch.from_numpy(ref), batch=64)  # 5 chunks, the last partial
    assert got.dtype == torch.float64 and got.shape == (300,)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)
    # float32 input: computed in float64 from the float32 values
    got32 = nearest_distance(torch.from_numpy(x).float(), torch.from_numpy(ref).float())
    exp32 = cdist(x.astype(np.float32).astype(np.float64), ref.astype(np.float32).astype(np.float64)).min(axis=1)
    np.testing.assert_allclose(got32.numpy(), exp32, rtol=1e-12, atol=1e-12)
    # an exact copy is at distance exactly 0
    copies = nearest_distance(torch.from_numpy(ref[:10]), torch.from_numpy(ref))
    assert torch.equal(copies, torch.zeros(10, dtype=torch.float64))


def test_memorization_matches_brute_force():
    rng = np.random.default_rng(1)
    s, tr, ho = rng.normal(size=(400, 6)), rng.normal(size=(250, 6)), rng.normal(size=(250, 6)) + 0.3
    got = memorization_score(torch.from_numpy(s), train=torch.from_numpy(tr), heldout=torch.from_numpy(ho))
    assert got == pytest.approx(_brute_memorization(s, tr, ho), abs=1e-12)
    assert 0.0 < got < 1.0


def test_memorization_of_copies_is_one_and_of_fresh_samples_one_half():
    g = torch.Generator().manual_seed(2)
    train, heldout = torch.randn(2000, 8, generator=g), torch.randn(2000, 8, generator=g)
    copies = train[torch.randint(0, 2000, (1000,), generator=g)]
    assert memorization_score(copies, train=train, heldout=heldout) == 1.0
    fresh = torch.randn(2000, 8, generator=g)
    m = memorization_score(fresh, train=train, heldout=heldout)
    assert 0.4 <= m <= 0.6, m
    assert m == pytest.approx(_brute_memorization(fresh.numpy(), train.numpy(), heldout.numpy()), abs=1e-12)


def test_memorization_ties_count_half():
    train, heldout = torch.tensor([[0.0], [10.0]]), torch.tensor([[2.0], [20.0]])
    # distances (train, held-out): 1|1 tie, 0|2 train, 2|0 held-out, 5|5 tie, 1|7 train -> (0.5+1+0+0.5+1)/5
    samples = torch.tensor([[1.0], [0.0], [2.0], [15.0], [9.0]])
    assert memorization_score(samples, train=train, heldout=heldout) == pytest.approx(0.6, abs=1e-15)
    same = torch.randn(50, 3)
    assert memorization_score(torch.randn(30, 3), train=same, heldout=same.clone()) == 0.5  # every sample a tie


def test_memorization_needs_equal_sizes():
    with pytest.raises(ValueError, match="same size"):
        memorization_score(torch.randn(5, 2), train=torch.randn(4, 2), heldout=torch.randn(3, 2))


# ------------------------------------------------------------------------------ end to end
def _np_fid(real: np.ndarray, fake: np.ndarray) -> float:
    mu_r, mu_g = real.mean(0), fake.mean(0)
    cov_r, cov_g = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    root = scipy.linalg.sqrtm(cov_r @ cov_g)
    return float(((mu_r - mu_g) ** 2).sum() + np.trace(cov_r) + np.trace(cov_g) - 2 * np.trace(root).real)


def _np_features(extractor, images: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate(
            [extractor(batch_to_float(images[i : i + 500])).double().numpy() for i in range(0, len(images), 500)]
        )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("overfit")
    cfg = load_config("configs/mnist.yaml", overrides=[*TINY, "data.holdout=0.9"])
    run = Trainer(cfg, runs_dir=base / "runs", name="r", progress=False).fit()
    cache = base / "cache"
    return run, cache, overfitting_scores(run, n=N, cache_dir=cache)


# the 6-step generator's features are nearly constant: its covariance is singular and scipy says so
@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")
def test_overfitting_scores_end_to_end(tiny_run):
    run, cache, s = tiny_run
    assert set(s) == {
        "fid_train",
        "fid_heldout",
        "fid_gap",
        "memorization",
        "memorization_real",
        "fid_gap_real",
        "n_train",
        "n_heldout",
        "n",
        "features",
    }
    assert s["n_train"] == 500 and s["n_heldout"] == 500 and s["n"] == N and s["features"] == "domain"
    assert s["fid_gap"] == s["fid_heldout"] - s["fid_train"]
    assert 0.0 <= s["memorization"] <= 1.0
    assert 0.35 <= s["memorization_real"] <= 0.65, s["memorization_real"]  # real vs real: the control

    # every number again, independently: the splits loaded directly, the cached domain classifier,
    # numpy means/covariances and scipy's sqrtm and cdist
    train = load_dataset(name="mnist5k", split="train", holdout=0.9)
    test = load_dataset(name="mnist5k", split="test", holdout=0.9)
    assert (len(train), len(test)) == (500, 4500)
    ext = domain.load_or_train(train, cache_dir=cache)
    assert ext.from_cache  # the classifier overfitting_scores trained and cached
    perm = torch.randperm(4500, generator=torch.Generator().manual_seed(0))
    f_train = _np_features(ext, train.images)
    f_a, f_b = _np_features(ext, test.images[perm[:500]]), _np_features(ext, test.images[perm[500:1000]])
    G, _ = load_generator(run)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the evaluation's noise: the global RNG seeded with `seed`, batches of 500
        fake = np.concatenate([ext(G(torch.randn(b, G.z_dim)).float()).double().numpy() for b in (500, N - 500)])
    assert s["fid_train"] == pytest.approx(_np_fid(f_train, fake), rel=1e-4)
    assert s["fid_heldout"] == pytest.approx(_np_fid(f_a, fake), rel=1e-4)
    assert s["memorization"] == pytest.approx(_brute_memorization(fake, f_train, f_a), abs=2 / N)
    assert s["memorization_real"] == pytest.approx(_brute_memorization(f_b, f_train, f_a), abs=2 / 500)
    assert s["fid_gap_real"] == pytest.approx(_np_fid(f_a, f_b) - _np_fid(f_train, f_b), rel=1e-3, abs=1e-6)


def test_fid_train_is_the_evaluations_fid_against_the_training_split(tiny_run):
    """Same generation and features as ``normgan eval --reference train``: with n >= the training
    split, the evaluation's reference is the whole training split, so the FIDs agree."""
    from normgan.eval.evaluation import evaluate_generator

    run, cache, s = tiny_run
    G, cfg = load_generator(run)
    res = evaluate_generator(G, cfg, n=N, metrics=["fid"], reference="train", cache_dir=cache)
    assert res["n_real"] == 500
    assert s["fid_train"] == pytest.approx(res["fid"], rel=1e-9)


def test_a_heldout_split_smaller_than_train_or_missing_is_a_user_error(tmp_path):
    run = Trainer(load_config(overrides=TINY), runs_dir=tmp_path, name="r", progress=False).fit()  # holdout 0.1
    with pytest.raises(
        UserError,
        match=r"held-out split has 500 images, fewer than the 4500 training images; "
        r"raise data\.holdout",
    ) as info:
        overfitting_scores(run, n=10, cache_dir=tmp_path / "cache")
    assert "\n" not in str(info.value)
    run0 = Trainer(load_config(overrides=[*TINY, "data.holdout=0"]), runs_dir=tmp_path, name="r0", progress=False).fit()
    with pytest.raises(UserError, match=r"data\.holdout=0, so it has no held-out split; train with data\.holdout=0\.9"):
        overfitting_scores(run0, n=10, cache_dir=tmp_path / "cache")
