"""Stacked MNIST and its mode count: the dataset's construction against mnist5k's digits, the mode
statistics against closed forms, and normgan's count against an independent count (a k-NN digit
classifier of the test's own, scikit-learn on raw pixels) on the same samples."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import entropy
from torch import nn

from normgan.data import load_dataset
from normgan.data.builtin import STACKED_COUNT, _mnist5k
from normgan.data.dataset import split_indices
from normgan.metrics.modes import NUM_MODES, ModeCounter, classify_channels, expected_modes, mode_ids, mode_stats


def _digit_index(split: str):
    """mnist5k digits of one split as {bytes of the 28x28 image: label}."""
    x, y = _mnist5k()
    idx = split_indices(len(x), split=split, holdout=0.1).numpy()
    return {x[i].tobytes(): int(y[i]) for i in idx}


def test_stacked_mnist_stacks_three_digits_of_one_split_with_their_label():
    train, test = load_dataset(name="stacked_mnist", split="train"), load_dataset(name="stacked_mnist", split="test")
    assert train.images.shape == (STACKED_COUNT["train"], 3, 32, 32) and test.images.shape[0] == STACKED_COUNT["test"]
    for data, split, other in ((train, "train", "test"), (test, "test", "train")):
        own, foreign = _digit_index(split), _digit_index(other)
        for i in range(0, len(data), len(data) // 200):  # 200 samples of each split
            digits = []
            for c in range(3):
                crop = data.images[i, c, 2:30, 2:30].numpy()  # 28 px digits, zero-padded to 32
                assert data.images[i, c].sum() == int(crop.astype(np.int64).sum())  # the padding is black
                assert crop.tobytes() in own and crop.tobytes() not in foreign
                digits.append(own[crop.tobytes()])
            assert int(data.labels[i]) == 100 * digits[0] + 10 * digits[1] + digits[2]


def test_stacked_mnist_covers_the_modes_uniformly_and_follows_the_seed():
    a, b = (
        load_dataset(name="stacked_mnist", split="train", seed=1),
        load_dataset(name="stacked_mnist", split="train", seed=2),
    )
    assert a.fingerprint != b.fingerprint and not torch.equal(a.labels[:100], b.labels[:100])
    test_1, test_2 = (
        load_dataset(name="stacked_mnist", split="test", seed=1),
        load_dataset(name="stacked_mnist", split="test", seed=2),
    )
    assert torch.equal(test_1.labels, test_2.labels)  # one reference for every run
    counts = torch.bincount(a.labels, minlength=NUM_MODES).numpy()
    assert (counts > 0).all()
    # the digits of a channel are ~uniform (mnist5k's classes are near balanced): KL < 0.03 at N = 60,000
    assert entropy(counts / counts.sum(), np.full(NUM_MODES, 1 / NUM_MODES)) < 0.03


def test_stacked_mnist_refuses_large_resolutions():
    from normgan.errors import ConfigError

    with pytest.raises(ConfigError, match="data.resolution: stacked_mnist"):
        load_dataset(name="stacked_mnist", resolution=128)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mode_stats_match_scipy(seed):
    rng = np.random.default_rng(seed)
    counts = rng.poisson(rng.uniform(0, 5, size=NUM_MODES))
    modes, kl = mode_stats(torch.from_numpy(counts))
    assert modes == int((counts > 0).sum())
    assert kl == pytest.approx(entropy(counts / counts.sum(), np.full(NUM_MODES, 1 / NUM_MODES)), rel=1e-9, abs=1e-12)


def test_mode_stats_closed_forms():
    assert mode_stats(torch.full((NUM_MODES,), 7)) == (1000, pytest.approx(0.0, abs=1e-12))
    half = torch.zeros(NUM_MODES, dtype=torch.long)
    half[::2] = 3
    assert mode_stats(half) == (500, pytest.approx(math.log(2), rel=1e-12))
    one = torch.zeros(NUM_MODES, dtype=torch.long)
    one[5] = 9
    assert mode_stats(one) == (1, pytest.approx(math.log(1000), rel=1e-12))
    assert expected_modes(1) == pytest.approx(1.0) and expected_modes(10**6) == pytest.approx(1000.0)


class _Brightness(nn.Module):
    """A stub classifier: digit = round(mean pixel in [0, 1] × 9) — lets a test place known digits."""

    def logits(self, x):
        d = ((x.mean(dim=(1, 2, 3)) + 1) / 2 * 9).round().long()
        return nn.functional.one_hot(d, 10).float()


def test_channels_are_read_in_rgb_order():
    digits = torch.tensor([[1, 2, 3], [9, 0, 4]])
    images = (digits.float() / 9 * 2 - 1)[:, :, None, None].expand(2, 3, 4, 4)
    assert torch.equal(classify_channels(_Brightness(), images), digits)
    assert mode_ids(digits).tolist() == [123, 904]
    counter = ModeCounter(_Brightness(), n=10, batch_size=4)
    res = counter(lambda b: images[:1].expand(b, 3, 4, 4))
    assert res == {"modes": 1, "mode_kl": pytest.approx(math.log(1000)), "modes_n": 10}


def _knn_digits():
    """The test's own digit classifier: 3-nearest neighbours on raw 28x28 pixels of mnist5k's train digits."""
    from sklearn.neighbors import KNeighborsClassifier

    x, y = _mnist5k()
    idx = split_indices(len(x), split="train", holdout=0.1).numpy()
    return KNeighborsClassifier(n_neighbors=3).fit(x[idx].reshape(len(idx), -1) / 255.0, y[idx])


def test_mode_count_agrees_with_an_independent_classifier(tmp_path):
    """Held-out stacked digits with a skewed red channel (p(d) ∝ d + 1): normgan's count and a k-NN count
    on the same 5,000 samples agree within 3% (modes) and 0.05 (KL)."""
    from normgan.metrics.modes import digit_classifier

    ref = load_dataset(name="stacked_mnist", split="test")
    red = ref.labels // 100
    weights = (red + 1).double()
    gen = torch.Generator().manual_seed(0)
    pick = torch.multinomial(weights, 5000, replacement=True, generator=gen)
    samples = ref.images[pick]
    it = iter(torch.split(samples, 500))
    ours = ModeCounter(digit_classifier(resolution=32, holdout=0.1, cache_dir=tmp_path), n=5000, batch_size=500)
    res = ours(lambda b: next(it).float() / 127.5 - 1)
    knn = _knn_digits()
    chans = samples[:, :, 2:30, 2:30].reshape(-1, 28 * 28).numpy() / 255.0
    theirs = knn.predict(chans).reshape(-1, 3)
    counts = np.bincount(theirs @ np.array([100, 10, 1]), minlength=NUM_MODES)
    modes, kl = int((counts > 0).sum()), entropy(counts / counts.sum(), np.full(NUM_MODES, 1 / NUM_MODES))
    assert abs(res["modes"] - modes) <= 0.03 * modes, (res["modes"], modes)
    assert abs(res["mode_kl"] - kl) <= 0.05, (res["mode_kl"], kl)
    assert 900 < modes <= 1000 and kl > 0.1  # the skew shows (uniform would be ~0.1 at N = 5,000)


def test_eval_of_a_stacked_run_prints_modes_and_kl_from_a_fresh_machine(tmp_path):
    """train → eval on Stacked MNIST from an empty HOME and cache: the modes line, its floor and the
    classifier's accuracy; the JSON agrees with the printed line and with a count on the run's own
    generator by the library (same seed, same samples)."""
    import json
    import os
    import re

    from conftest import run_cli

    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("NORMGAN_CACHE", "HOME", "XDG_CACHE_HOME", "TORCH_HOME")}
    env.update(
        HOME=str(home), XDG_CACHE_HOME=str(tmp_path / "xdg"), TORCH_HOME=str(tmp_path / "th"), NORMGAN_OFFLINE="1"
    )
    tiny = [
        "data.name=stacked_mnist",
        "data.batch_size=8",
        "model.generator.width=4",
        "model.discriminator.width=4",
        "model.discriminator.norm=none",
        "train.steps=4",
        "train.log_every=2",
        "train.sample_every=4",
        "train.checkpoint_every=4",
        "train.num_samples=4",
        "train.tensorboard=false",
        "regularizers={}",
        "loss=rpgan",
    ]
    p = run_cli(
        "train", *tiny, "--runs-dir", str(tmp_path / "runs"), "--name", "s", "--no-progress", env=env, cwd=tmp_path
    )
    assert p.returncode == 0, p.stderr
    run = tmp_path / "runs" / "s"
    p = run_cli("eval", str(run), "--n", "600", env=env, cwd=tmp_path, timeout=900)
    assert p.returncode == 0, p.stderr
    line = next(x for x in p.stdout.splitlines() if x.startswith("modes "))
    m = re.match(
        r"modes (\d+) of 1000, KL ([0-9.]+) \(N = 600; real held-out digits: (\d+) modes, KL ([0-9.]+) at N = 600; "
        r"digit classifier held-out accuracy ([0-9.]+)\)",
        line,
    )
    assert m, line
    p = run_cli("eval", str(run), "--n", "600", "--json", env=env, cwd=tmp_path, timeout=900)
    res = json.loads(p.stdout)
    assert res["modes"] == int(m.group(1)) and abs(res["mode_kl"] - float(m.group(2))) < 1e-4
    assert res["modes_floor"] == int(m.group(3)) and 0.9 < res["mode_classifier_accuracy"] <= 1.0
    assert 400 < res["modes_floor"] <= 600  # 600 real samples: ~1000·(1 − e^−0.6) = 451 distinct modes expected
    # the library's count on the run's EMA generator (same seed) gives the same numbers
    from normgan.eval.evaluation import noise_sampler
    from normgan.inference.sample import load_generator
    from normgan.metrics.modes import ModeCounter, digit_classifier

    G, cfg = load_generator(run, ema=True, device="cpu")
    clf = digit_classifier(resolution=32, holdout=cfg.data.holdout, cache_dir=home / ".cache" / "normgan")
    again = ModeCounter(clf, n=600, seed=0)(noise_sampler(G.eval(), "cpu"))
    assert again["modes"] == res["modes"] and abs(again["mode_kl"] - res["mode_kl"]) < 1e-9
