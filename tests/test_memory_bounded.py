"""Evaluation in bounded batches (issue 19, item 1), against independent computations.

* :func:`normgan.metrics.paired.ssim` (separable, a few copies of the batch) equals torchmetrics'
  ``structural_similarity_index_measure`` (the reference implementation it replaced) to 1e-12 and a
  numpy/scipy SSIM map over the whole image to 1e-10.
* :class:`PairedScores` fed a whole split in one ``update`` equals per-image metrics computed
  independently (scikit-image PSNR, scipy SSIM map, numpy L1 and gradients); its chunking hands no
  metric more than ``CHUNK_VALUES`` pixel values.
* :class:`PairedEvaluator` scores a split batch by batch (no tensor above ``batch_size`` images
  reaches the metrics), its baseline equals the per-image metrics of the trivial prediction computed
  with numpy, and is computed once per process; ``n`` scores a seeded subset of that many pairs.
* Progress goes to stderr only when asked for.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from torch import nn

import normgan.metrics.paired as paired
from normgan.metrics.paired import PairedScores, classifier_score, ssim

ROOT = Path(__file__).resolve().parents[1]


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _np01(x):
    return (x.double().numpy() + 1) / 2


def _ssim_map(a, b):
    """SSIM map of two [0, 1] 2-D images: Gaussian σ 1.5 truncated at 3.5 σ (11 taps), population
    moments, mirror padding (torch "reflect": the edge pixel is not repeated)."""
    f = lambda z: gaussian_filter(z, 1.5, truncate=3.5, mode="mirror")  # noqa: E731
    mx, my = f(a), f(b)
    vx, vy, cxy = f(a * a) - mx * mx, f(b * b) - my * my, f(a * b) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def _reference_metrics(o, t):
    """Per-image PSNR (scikit-image), SSIM (scipy map), L1 and sharpness (numpy) of [-1, 1] tensors."""
    u, v = _np01(o), _np01(t)
    n, c = u.shape[:2]
    ps = np.array([sk_psnr(v[i], u[i], data_range=1) if not np.array_equal(u[i], v[i]) else np.inf for i in range(n)])
    ss = np.array([np.mean([_ssim_map(u[i, k], v[i, k]).mean() for k in range(c)]) for i in range(n)])
    l1 = np.abs(o.double().numpy() - t.double().numpy()).reshape(n, -1).mean(1)

    def sharp(x):
        dx = x[:, :, :-1, 1:] - x[:, :, :-1, :-1]
        dy = x[:, :, 1:, :-1] - x[:, :, :-1, :-1]
        return np.sqrt(dx**2 + dy**2).reshape(n, -1).mean(1)

    return ps, ss, l1, sharp(u).sum() / sharp(v).sum()


# ---------------------------------------------------------------------------------------------- SSIM
@pytest.mark.parametrize("shape", [(2, 3, 40, 40), (4, 1, 32, 32), (3, 1, 7, 9), (2, 3, 6, 6), (2, 3, 11, 40)])
def test_separable_ssim_equals_torchmetrics_grouped_convolution(shape):
    from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

    g = _gen(sum(shape))
    t = torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1
    o = (t + 0.4 * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(-1, 1)
    want = tm_ssim(
        (o + 1) / 2,
        (t + 1) / 2,
        gaussian_kernel=True,
        sigma=1.5,
        kernel_size=11,
        data_range=1.0,
        k1=0.01,
        k2=0.03,
        reduction="none",
    )
    got = ssim(o, t)
    assert got.dtype == torch.float64 and got.shape == (shape[0],)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(ssim(t, t), torch.ones(shape[0], dtype=torch.float64), rtol=0, atol=1e-12)


def test_separable_ssim_equals_a_scipy_ssim_map_over_the_whole_image():
    g = _gen(3)
    t = torch.rand(3, 3, 20, 24, generator=g) * 2 - 1
    o = (t + 0.3 * torch.randn(t.shape, generator=g)).clamp(-1, 1)
    _, want, _, _ = _reference_metrics(o, t)
    np.testing.assert_allclose(ssim(o, t).numpy(), want, rtol=0, atol=1e-10)


def test_ssim_refuses_images_too_small_for_its_padding():
    x = torch.zeros(1, 1, 5, 8)
    with pytest.raises(ValueError, match="at least 6 x 6"):
        ssim(x, x)


# ------------------------------------------------------------------------------------ PairedScores
def test_one_update_of_a_whole_split_equals_independent_per_image_metrics(monkeypatch):
    monkeypatch.setattr(paired, "CHUNK_VALUES", 5 * 3 * 16 * 16)  # 5 images per chunk: 23 images in 5 chunks
    g = _gen(7)
    t = torch.rand(23, 3, 16, 16, generator=g) * 2 - 1
    o = (t + 0.25 * torch.randn(t.shape, generator=g)).clamp(-1, 1)
    o[4] = t[4]  # identical: PSNR +inf, left out of the PSNR mean
    scores = PairedScores()
    scores.update(o, t)
    got = scores.compute()
    ps, ss, l1, sharp_ratio = _reference_metrics(o, t)
    assert got["n"] == 23
    assert got["psnr"] == pytest.approx(ps[np.isfinite(ps)].mean(), abs=1e-9)
    assert got["ssim"] == pytest.approx(ss.mean(), abs=1e-10)
    assert got["l1"] == pytest.approx(l1.mean(), abs=1e-12)
    assert got["sharpness_ratio"] == pytest.approx(sharp_ratio, abs=1e-12)


def test_chunking_bounds_what_each_metric_sees(monkeypatch):
    seen = {"ssim": [], "psnr": [], "classifier": []}
    real_ssim, real_psnr = paired.ssim, paired.psnr

    def spy_ssim(o, t):
        seen["ssim"].append(o.numel())
        return real_ssim(o, t)

    def spy_psnr(o, t):
        seen["psnr"].append(o.numel())
        return real_psnr(o, t)

    class Counting(nn.Module):
        def forward(self, x):
            seen["classifier"].append(x.shape[0])
            return torch.stack([x.mean((1, 2, 3)), -x.mean((1, 2, 3))], 1)

    monkeypatch.setattr(paired, "ssim", spy_ssim)
    monkeypatch.setattr(paired, "psnr", spy_psnr)
    n, shape = 700, (3, 24, 24)
    per_chunk = paired.chunk_size(shape)
    assert per_chunk == min(paired.CHUNK_MAX_IMAGES, paired.CHUNK_VALUES // math.prod(shape)) == 256
    g = _gen(1)
    t = torch.rand(n, *shape, generator=g) * 2 - 1
    o = (t + 0.1 * torch.randn(t.shape, generator=g)).clamp(-1, 1)
    labels = (t.mean((1, 2, 3)) < 0).long()
    scores = PairedScores(classifier=Counting())
    scores.update(o, t, labels)
    got = scores.compute()
    assert len(seen["ssim"]) == len(seen["psnr"]) == math.ceil(n / per_chunk) == 3
    assert max(seen["ssim"]) <= paired.CHUNK_VALUES and max(seen["psnr"]) <= paired.CHUNK_VALUES
    assert sum(seen["ssim"]) == o.numel()
    assert max(seen["classifier"]) <= per_chunk and sum(seen["classifier"]) == n
    want = float(((o.double().mean((1, 2, 3)) < 0).long() == labels).double().mean())  # argmax of [m, -m]
    assert got["classifier_score"] == pytest.approx(want, abs=1e-15)
    # one 256-px RGB image is above the budget: it is scored alone, never batched with another
    assert paired.chunk_size((3, 1024, 1024)) == 1


def test_classifier_score_takes_uint8_splits_batch_by_batch():
    g = _gen(5)
    images = torch.randint(0, 256, (50, 1, 8, 8), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 2, (50,), generator=g)
    batches = []

    class Sign(nn.Module):  # logits [m, -m] of the mean pixel on the [-1, 1] scale
        def forward(self, x):
            batches.append((x.dtype, x.shape[0]))
            m = x.mean((1, 2, 3))
            return torch.stack([m, -m], 1)

    got = classifier_score(Sign(), images, labels, batch_size=16)
    m = images.numpy().astype(np.float64).reshape(50, -1).mean(1) / 127.5 - 1
    want = np.mean(np.where(m >= -m, 0, 1) == labels.numpy())  # torch.argmax: ties go to class 0
    assert got == pytest.approx(want, abs=1e-15)
    assert batches == [(torch.float32, 16)] * 3 + [(torch.float32, 2)]


# --------------------------------------------------------------------------------- PairedEvaluator
class Halve(nn.Module):
    """A deterministic 'generator': G(x) = x / 2 (same channels)."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x / 2


def _digits_cfg(*extra):
    from normgan.config import load_config

    return load_config("configs/edges2digit.yaml", overrides=["eval.metrics=[psnr,ssim,l1]", *extra])


def test_paired_evaluator_scores_in_batches_and_equals_independent_metrics(monkeypatch):
    from normgan.data import batch_to_float
    from normgan.eval import paired as ep

    ep.clear_baseline_cache()
    sizes = []
    real_update = PairedScores.update

    def spy(self, outputs, targets, labels=None):
        sizes.append(outputs.shape[0])
        return real_update(self, outputs, targets, labels)

    monkeypatch.setattr(PairedScores, "update", spy)
    cfg = _digits_cfg()
    ev = ep.PairedEvaluator(cfg, split="val", metrics=("psnr", "ssim", "l1"), batch_size=64, progress=False)
    n = len(ev.data)
    assert max(sizes) <= 64 and sum(sizes) == n  # the baseline: batch by batch
    sizes.clear()
    res = ev(Halve())
    assert max(sizes) <= 64 and sum(sizes) == n
    x, y = batch_to_float(ev.data.inputs), batch_to_float(ev.data.targets)
    ps, ss, l1, sharp_ratio = _reference_metrics(x / 2, y)
    assert res["n"] == res["n_split"] == n == 500
    assert res["psnr"] == pytest.approx(ps[np.isfinite(ps)].mean(), abs=1e-9)
    assert res["ssim"] == pytest.approx(ss.mean(), abs=1e-10)
    assert res["l1"] == pytest.approx(l1.mean(), abs=1e-9)
    assert res["sharpness_ratio"] == pytest.approx(sharp_ratio, rel=1e-9)
    assert res["dropout_diversity"] == 0.0  # deterministic G
    # the baseline of edges2digit is the outline itself: the metrics of x against y
    bps, bss, bl1, _ = _reference_metrics(x, y)
    assert res["baseline_psnr"] == pytest.approx(bps[np.isfinite(bps)].mean(), abs=1e-9)
    assert res["baseline_ssim"] == pytest.approx(bss.mean(), abs=1e-10)
    assert res["baseline_l1"] == pytest.approx(bl1.mean(), abs=1e-9)


class Noisy(nn.Module):
    """A stochastic 'generator': G(x) = x / 2 + a·ε, ε ~ N(0, 1) per pixel and call (the RNG the
    evaluator forks and seeds per draw)."""

    def __init__(self, a):
        super().__init__()
        self.a, self.dummy = a, nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x / 2 + self.a * torch.randn_like(x)


def test_dropout_diversity_of_the_evaluator_equals_the_closed_form_of_gaussian_draws():
    """K = 4 draws of N(0, a²) per pixel on the [-1, 1] scale are N(0, (a/2)²) on [0, 1]; their
    population std has mean (a/2)·E[√(χ²₃/4)] = (a/2)·√2·Γ(2)/Γ(3/2)/2 (64 images × 1,024 px make
    the mean's relative error ≈ 0.2 %)."""
    from normgan.eval import paired as ep

    a = 0.2
    ev = ep.PairedEvaluator(_digits_cfg(), split="val", metrics=("psnr", "l1"), batch_size=64, progress=False)
    res = ev(Noisy(a))
    k = ep.DIVERSITY_DRAWS
    want = (a / 2) * math.sqrt(2) * math.gamma(k / 2) / math.gamma((k - 1) / 2) / math.sqrt(k)
    assert res["dropout_diversity"] == pytest.approx(want, rel=0.02)


def test_the_baseline_is_computed_once_per_split_and_process(monkeypatch):
    from normgan.data import BASELINES
    from normgan.eval import paired as ep

    ep.clear_baseline_cache()
    calls = []
    real = BASELINES["edges2digit"]
    monkeypatch.setitem(BASELINES, "edges2digit", lambda x: calls.append(x.shape[0]) or real(x))
    cfg = _digits_cfg()
    first = ep.PairedEvaluator(cfg, split="val", metrics=("psnr", "l1"), progress=False).baseline
    assert sum(calls) == 500
    again = ep.PairedEvaluator(cfg, split="val", metrics=("psnr", "l1"), progress=False).baseline
    assert sum(calls) == 500 and again == first  # a second trial: from the cache
    ep.PairedEvaluator(cfg, split="val", metrics=("psnr", "ssim", "l1"), progress=False)  # SSIM too: computed
    assert sum(calls) == 1000
    ep.PairedEvaluator(cfg, split="test", metrics=("psnr", "l1"), progress=False)  # another split: computed
    assert sum(calls) == 1500
    ep.PairedEvaluator(_digits_cfg("data.folds=2", "data.fold=1"), split="val", metrics=("psnr", "l1"), progress=False)
    assert sum(calls) == 1500 + 2000  # a fold of the training split: its own baseline


def test_n_scores_a_seeded_subset_of_the_split():
    from normgan.data import batch_to_float
    from normgan.eval import paired as ep

    cfg = _digits_cfg()
    full = ep.paired_split(cfg, "val")
    ev = ep.PairedEvaluator(cfg, split="val", metrics=("psnr", "l1"), n=50, seed=3, progress=False)
    res = ev(Halve())
    assert res["n"] == 50 and res["n_split"] == 500 and res["subset_seed"] == 3
    # the subset: 50 distinct pairs of the split, in split order
    rows = full.targets.reshape(500, -1)
    idx = [int(torch.nonzero((rows == r).all(1)).flatten()[0]) for r in ev.data.targets.reshape(50, -1)]
    assert len(set(idx)) == 50 and idx == sorted(idx)
    assert torch.equal(ev.data.inputs, full.inputs[idx])
    _, _, l1, _ = _reference_metrics(batch_to_float(full.inputs[idx]) / 2, batch_to_float(full.targets[idx]))
    assert res["l1"] == pytest.approx(l1.mean(), abs=1e-9)
    same = ep.PairedEvaluator(cfg, split="val", metrics=("psnr",), n=50, seed=3, progress=False)
    other = ep.PairedEvaluator(cfg, split="val", metrics=("psnr",), n=50, seed=4, progress=False)
    assert torch.equal(same.data.targets, ev.data.targets) and not torch.equal(other.data.targets, ev.data.targets)
    everything = ep.PairedEvaluator(cfg, split="val", metrics=("psnr",), n=10_000, progress=False)(Halve())
    assert everything["n"] == everything["n_split"] == 500 and "subset_seed" not in everything


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "50"])
def test_n_must_be_a_positive_integer(bad):
    from normgan.errors import UserError
    from normgan.eval.paired import check_n

    with pytest.raises(UserError, match=r"^--n: .* positive integer") as info:
        check_n(bad)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------------------ progress
def _fake_classifier(train, **kw):
    from normgan.metrics.domain import DomainClassifier

    model = DomainClassifier(channels=train.channels, num_classes=10, resolution=train.resolution)
    model.fingerprint = train.fingerprint
    return model


@pytest.mark.parametrize("progress", [True, False, None])
def test_classifier_training_says_so_on_stderr_only_when_asked(progress, monkeypatch, tmp_path, capsys):
    from normgan.data import ImageData
    from normgan.metrics import domain

    monkeypatch.setattr(domain, "train_domain_classifier", _fake_classifier)
    data = ImageData(
        images=torch.zeros(8, 1, 28, 28, dtype=torch.uint8),
        labels=torch.arange(8) % 2,
        name="tiny",
        fingerprint="0123456789ab",
    )
    domain.load_or_train(data, cache_dir=tmp_path, progress=progress)
    out, err = capsys.readouterr()
    assert out == ""
    if progress:  # pytest's captured stderr is not a terminal: None stays quiet
        assert err.strip() == (
            f"training the domain classifier of tiny (8 images, {domain.DEFAULT_EPOCHS} epochs; "
            f"first use, cached in {tmp_path})…"
        )
    else:
        assert err == ""
    domain.load_or_train(data, cache_dir=tmp_path, progress=True)  # cached now: nothing to say
    assert capsys.readouterr().err == ""


def test_the_domain_classifier_training_bar_counts_its_steps(capsys):
    from normgan.data import ImageData
    from normgan.metrics import domain

    g = _gen(0)
    data = ImageData(
        images=torch.randint(0, 256, (40, 1, 28, 28), generator=g, dtype=torch.uint8),
        labels=torch.arange(40) % 2,
        name="tiny",
        fingerprint="ba9876543210",
    )
    domain.train_domain_classifier(data, epochs=2, batch_size=16, progress=True)
    err = capsys.readouterr().err
    assert "domain classifier" in err and "0/6 [" in err  # 2 epochs x ceil(40 / 16) steps
    domain.train_domain_classifier(data, epochs=1, batch_size=16, progress=False)
    assert capsys.readouterr().err == ""


def test_paired_evaluation_progress_is_on_stderr_and_off_when_disabled(capsys):
    from normgan.eval import paired as ep
    from normgan.metrics import progress as prog

    cfg = _digits_cfg()
    ev = ep.PairedEvaluator(cfg, split="val", metrics=("psnr",), progress=False)
    ev(Halve())
    assert capsys.readouterr() == ("", "")
    ev.progress = True
    old = prog.DELAY_S
    try:
        prog.DELAY_S = 0.0  # the bar shows at once (a real one waits DELAY_S seconds)
        ev(Halve())
    finally:
        prog.DELAY_S = old
    out, err = capsys.readouterr()
    assert out == "" and "evaluate val" in err and "0/500 [" in err


# ------------------------------------------------------------------------------------------ benchmark
def test_bench_memory_quick_prints_the_peaks_as_json(capsys):
    """``--quick`` in this process (its 2-step run is trained here; the two evaluations are measured
    in their own processes, as in the full benchmark)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_memory", ROOT / "benchmarks" / "bench_memory.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--quick"])
    report = json.loads(capsys.readouterr().out)
    al = report["results"]["aligned"]
    assert set(al) == {"train", "eval_16", "eval_64"} and al["train"]["in_process"] is True
    for key in ("eval_16", "eval_64"):
        res = al[key]
        assert res["rc"] == 0 and 50 < res["peak_rss_mb"] < 100_000 and res["seconds"] > 0
        assert res["command"].startswith("normgan eval ")
    assert al["eval_64"]["decoded_mb"] == pytest.approx(64 * 2 * 3 * 32 * 32 / 2**20, abs=0.05)
    (check,) = report["checks"].values()
    assert isinstance(check, bool)


# ------------------------------------------------------------------------------------------ overfit
def test_nearest_distance_in_small_blocks_equals_numpy_brute_force(monkeypatch):
    from normgan.metrics import overfit

    rng = np.random.default_rng(0)
    x, ref = rng.normal(size=(37, 5)), rng.normal(size=(53, 5))
    want = np.sqrt(((x[:, None, :] - ref[None, :, :]) ** 2).sum(-1)).min(1)
    blocks = []
    real_cdist = torch.cdist

    def spy(a, b, **kw):
        blocks.append(a.shape[0] * b.shape[0])
        return real_cdist(a, b, **kw)

    monkeypatch.setattr(torch, "cdist", spy)
    monkeypatch.setattr(overfit, "DISTANCE_BLOCK", 20)  # fewer than one row of 53 distances: ref sliced too
    got = overfit.nearest_distance(torch.from_numpy(x), torch.from_numpy(ref))
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-12)
    assert max(blocks) <= 20 and sum(blocks) == 37 * 53
    blocks.clear()
    monkeypatch.setattr(overfit, "DISTANCE_BLOCK", 53 * 4)  # 4 rows per block, ref whole
    got = overfit.nearest_distance(torch.from_numpy(x), torch.from_numpy(ref))
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-12)
    assert max(blocks) == 53 * 4 and len(blocks) == math.ceil(37 / 4)
