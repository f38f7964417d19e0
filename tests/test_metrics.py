"""Metric functions vs independent numpy/scipy code; feature-extractor specs and offline errors."""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.spatial.distance import cdist
from torch import nn

from normgan.errors import ConfigError, UserError
from normgan.metrics import (
    build_feature_extractor,
    fid_from_features,
    inception_score,
    kid_from_features,
    precision_recall,
)
from normgan.metrics.features import INCEPTION_WEIGHTS_FILE


def _feats(n, d, seed, shift=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / math.sqrt(d)
    return (rng.normal(size=(n, d)) @ mix) * scale + shift


# ---------------------------------------------------------------------------------------- FID


def _fid_scipy(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)  # unbiased (N - 1)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("n,d,shift,scale", [(300, 16, 0.5, 1.3), (200, 64, 0.0, 1.0), (500, 8, 2.0, 0.5)])
def test_fid_matches_scipy_sqrtm(n, d, shift, scale):
    a, b = _feats(n, d, 1), _feats(n + 17, d, 2, shift, scale)
    expected = _fid_scipy(a, b)
    got = fid_from_features(torch.from_numpy(a), torch.from_numpy(b))
    assert got == pytest.approx(expected, rel=1e-3)
    assert expected > 0


def test_fid_of_a_set_with_itself_is_zero_and_symmetric():
    a, b = torch.from_numpy(_feats(200, 12, 3)), torch.from_numpy(_feats(250, 12, 4, 1.0))
    assert fid_from_features(a, a) == pytest.approx(0.0, abs=1e-8)
    assert fid_from_features(a, b) == pytest.approx(fid_from_features(b, a), rel=1e-6)


def test_fid_of_two_gaussians_closed_form():
    # Isotropic Gaussians N(0, I) and N(m, s^2 I): FID -> |m|^2 + d (1 - s)^2 as N grows.
    rng = np.random.default_rng(0)
    d, n, s = 4, 200_000, 2.0
    a = rng.normal(size=(n, d))
    b = rng.normal(size=(n, d)) * s + 1.0
    got = fid_from_features(torch.from_numpy(a), torch.from_numpy(b))
    assert got == pytest.approx(d * 1.0 + d * (1 - s) ** 2, rel=2e-2)


# ---------------------------------------------------------------------------------------- KID


def _mmd2_unbiased_numpy(x, y):
    d = x.shape[1]
    m = x.shape[0]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return sxx + syy - 2 * kxy.mean()


def test_kid_single_full_subset_matches_numpy():
    x, y = _feats(120, 10, 5), _feats(120, 10, 6, 0.3)
    mean, std = kid_from_features(torch.from_numpy(x), torch.from_numpy(y), subsets=1, subset_size=10_000)
    assert mean == pytest.approx(_mmd2_unbiased_numpy(x, y), rel=1e-9)
    assert std is None  # one subset covering both sets: no spread to report


def test_kid_subsets_use_the_documented_indices():
    x, y = _feats(90, 6, 7), _feats(70, 6, 8, 0.5)
    mean, std = kid_from_features(
        torch.from_numpy(x), torch.from_numpy(y), subsets=5, subset_size=40, generator=torch.Generator().manual_seed(3)
    )
    g = torch.Generator().manual_seed(3)
    vals = []
    for _ in range(5):
        ir = torch.randperm(90, generator=g)[:40].numpy()
        ig = torch.randperm(70, generator=g)[:40].numpy()
        vals.append(_mmd2_unbiased_numpy(x[ir], y[ig]))
    assert mean == pytest.approx(np.mean(vals), rel=1e-9)
    assert std == pytest.approx(np.std(vals), rel=1e-9)


def test_kid_near_zero_for_same_distribution_and_positive_for_shift():
    x, y = torch.from_numpy(_feats(400, 8, 9)), torch.from_numpy(_feats(400, 8, 10))
    same, _ = kid_from_features(x, y, subsets=20, subset_size=200, generator=torch.Generator().manual_seed(0))
    diff, _ = kid_from_features(x, y + 1.0, subsets=20, subset_size=200, generator=torch.Generator().manual_seed(0))
    assert abs(same) < 0.1 * diff
    assert diff > 0


# ------------------------------------------------------------------------- precision / recall


def _pr_bruteforce(real, fake, k):
    drr, dff, dfr = cdist(real, real), cdist(fake, fake), cdist(fake, real)
    r_real = np.sort(drr, axis=1)[:, k]  # column 0 is the point itself
    r_fake = np.sort(dff, axis=1)[:, k]
    precision = np.mean([(dfr[j] <= r_real).any() for j in range(len(fake))])
    recall = np.mean([(dfr[:, i] <= r_fake).any() for i in range(len(real))])
    return precision, recall


@pytest.mark.parametrize("k", [1, 3, 5])
def test_precision_recall_matches_bruteforce(k):
    real = _feats(150, 5, 11)
    fake = _feats(130, 5, 12, shift=0.7, scale=0.6)  # partial overlap: neither 0 nor 1
    p, r = precision_recall(torch.from_numpy(real), torch.from_numpy(fake), k=k)
    ep, er = _pr_bruteforce(real, fake, k)
    assert p == pytest.approx(ep, abs=1e-12)
    assert r == pytest.approx(er, abs=1e-12)
    assert 0 < p < 1 and 0 < r < 1


def test_precision_recall_chunking(monkeypatch):
    from normgan.metrics import functional

    real, fake = _feats(97, 4, 13), _feats(83, 4, 14, shift=0.5)
    full = precision_recall(torch.from_numpy(real), torch.from_numpy(fake), k=3)
    monkeypatch.setattr(functional, "_chunk_rows", lambda n_cols, budget=0: 7)
    assert precision_recall(torch.from_numpy(real), torch.from_numpy(fake), k=3) == full


def test_precision_recall_mode_collapse():
    real = torch.from_numpy(_feats(200, 6, 15))
    fake = real[:1].repeat(200, 1) + 1e-3 * torch.from_numpy(_feats(200, 6, 16))
    p, r = precision_recall(real, fake, k=3)
    assert p == 1.0  # every collapsed sample lies on the real manifold
    assert r < 0.05  # but they cover almost none of it


# ---------------------------------------------------------------------------- Inception Score


def _is_numpy(probs, splits):
    scores = []
    for part in np.array_split(probs, splits):
        py = part.mean(0, keepdims=True)
        kl = (part * (np.log(part) - np.log(py))).sum(1).mean()
        scores.append(np.exp(kl))
    return np.mean(scores), np.std(scores)


def test_inception_score_matches_numpy_for_logits_and_probs():
    rng = np.random.default_rng(17)
    logits = rng.normal(size=(103, 10)) * 3
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    em, es = _is_numpy(probs, 4)
    for x in (logits, probs):
        m, s = inception_score(torch.from_numpy(x), splits=4)
        assert m == pytest.approx(em, rel=1e-9)
        assert s == pytest.approx(es, rel=1e-7)


def test_inception_score_extremes():
    conf = torch.eye(10).repeat(20, 1) * 50.0  # confident, uniform over classes
    assert inception_score(conf, splits=2)[0] == pytest.approx(10.0, rel=1e-6)
    same = torch.zeros(200, 10)
    same[:, 3] = 50.0  # one class only
    assert inception_score(same, splits=2)[0] == pytest.approx(1.0, rel=1e-6)


# ------------------------------------------------------------------------- feature extractors


@pytest.fixture
def no_network(monkeypatch):
    import socket
    import urllib.request

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_inception_missing_weights_is_one_line_user_error(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / INCEPTION_WEIGHTS_FILE
    with pytest.raises(UserError) as info:
        build_feature_extractor("inception", data=None, cache_dir=tmp_path, device="cpu")
    msg = str(info.value)
    assert "\n" not in msg
    assert str(expected) in msg
    assert "--features domain" in msg
    assert not expected.exists()


def test_inception_without_torch_fidelity_says_how_to_install(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = tmp_path / "hub" / "checkpoints" / INCEPTION_WEIGHTS_FILE
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"placeholder")
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # import raises ImportError
    with pytest.raises(UserError) as info:
        build_feature_extractor("inception", data=None, cache_dir=tmp_path, device="cpu")
    msg = str(info.value)
    assert "\n" not in msg and "pip install torch-fidelity" in msg
    assert "missing" not in msg  # the weights are there


class _TinyExtractor(nn.Module):
    def __init__(self):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(2)

    def forward(self, x):
        return self.pool(x).flatten(1)


def _tiny_factory():
    return _TinyExtractor()


def _bad_factory():
    return 42


def test_import_path_extractors(monkeypatch):
    mod = types.ModuleType("normgan_test_extractors")
    mod.Tiny, mod.tiny, mod.bad = _TinyExtractor, _tiny_factory, _bad_factory
    monkeypatch.setitem(sys.modules, "normgan_test_extractors", mod)
    for spec in ("normgan_test_extractors:Tiny", "normgan_test_extractors:tiny"):
        net = build_feature_extractor(spec, data=None, cache_dir=None, device="cpu")
        assert isinstance(net, _TinyExtractor) and not net.training
        assert net.name == spec
        assert net(torch.zeros(3, 1, 8, 8)).shape == (3, 4)
    for spec, needle in [
        ("normgan_test_extractors:bad", "not a torch.nn.Module"),
        ("normgan_test_extractors:Missing", "no attribute"),
        ("no_such_package_xyz.mod:Net", "cannot import"),
        ("no_colon_here.module", "unknown feature extractor"),
    ]:
        with pytest.raises(UserError) as info:
            build_feature_extractor(spec, data=None, cache_dir=None, device="cpu")
        assert needle in str(info.value) and "\n" not in str(info.value)


def test_unknown_name_lists_choices():
    with pytest.raises(ConfigError, match="domain, domain-full, inception.*package.module:ClassName"):
        build_feature_extractor("vgg", data=None)


# ---------------------------------------------------------------------------------------- minimum N
def test_min_samples_agree_with_the_metric_functions():
    """metric_info.MIN_SAMPLES is the smallest N each metric function accepts (one below fails)."""
    from normgan.eval.metric_info import MIN_SAMPLES, PR_K, min_samples

    x = torch.from_numpy(_feats(10, 4, 0))
    calls = {
        "fid": lambda m: fid_from_features(x[:m], x[:m] + 1),
        "kid": lambda m: kid_from_features(x[:m], x[:m] + 1, subsets=2),
        "pr": lambda m: precision_recall(x[:m], x[:m] + 1, k=PR_K),
    }
    for name, call in calls.items():
        m = MIN_SAMPLES[name]
        out = call(m)  # KID at N = 2: its std is None (one subset is the whole sample)
        assert all(math.isfinite(v) for v in out if v is not None) if isinstance(out, tuple) else math.isfinite(out)
        with pytest.raises(ValueError):
            call(m - 1)
    assert MIN_SAMPLES["pr"] == PR_K + 1 == 4
    assert min_samples(("fid", "kid")) == 2 and min_samples(("fid", "pr")) == 4 and min_samples("fid,is") == 2


def test_evaluate_rejects_n_below_the_metrics_minimum():
    from normgan.metrics import evaluate

    class Flat(nn.Module):
        name, num_features = "flat", 4

        def forward(self, x):
            return x.flatten(1)[:, :4]

    images = torch.randint(0, 255, (20, 1, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ref = type("Ref", (), {"images": images, "__len__": lambda self: 20})()  # the ImageData interface used
    sample = lambda b: torch.rand(b, 1, 4, 4) * 2 - 1  # noqa: E731
    with pytest.raises(ConfigError, match="use at least 4") as info:
        evaluate(sample_fn=sample, reference=ref, extractor=Flat(), n=3, metrics=("fid", "pr"))
    assert "\n" not in str(info.value)
    res = evaluate(sample_fn=sample, reference=ref, extractor=Flat(), n=4, metrics=("fid", "pr"))
    assert res["n"] == 4 and 0.0 <= res["precision"] <= 1.0
    assert evaluate(sample_fn=sample, reference=ref, extractor=Flat(), n=3, metrics=("fid", "kid"))["n"] == 3


def test_class_coverage_and_pairwise_distance_against_scipy():
    from scipy.spatial.distance import pdist

    from normgan.metrics.functional import class_coverage, mean_pairwise_distance

    x = _feats(37, 5, 9)
    assert mean_pairwise_distance(torch.from_numpy(x)) == pytest.approx(pdist(x).mean(), rel=1e-8)
    assert mean_pairwise_distance(torch.from_numpy(x), max_samples=10) == pytest.approx(pdist(x[:10]).mean(), rel=1e-8)
    imgs = torch.from_numpy(x[:, :4].reshape(37, 1, 2, 2))  # images are flattened
    assert mean_pairwise_distance(imgs) == pytest.approx(pdist(x[:, :4]).mean(), rel=1e-8)
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, size=200)
    labels[:3] = 3  # class 3: 3 of 200 < 200/(4*4) = 12.5
    logits = torch.from_numpy(np.eye(5)[labels])  # class 4 never predicted
    share = np.bincount(labels, minlength=5) / 200
    assert class_coverage(logits) == pytest.approx(np.mean(share >= 1 / 20))
    assert class_coverage(logits) == pytest.approx(3 / 5)
