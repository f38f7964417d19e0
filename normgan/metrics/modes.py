"""Mode coverage on Stacked MNIST (VEEGAN / PacGAN protocol): how many of the 1000 digit triples a
generator produces, and how far its distribution over them is from uniform.

Each sample holds three digits in its R, G, B channels. A per-channel digit classifier labels
each channel; the sample's mode is m = 100·d_R + 10·d_G + d_B. Over N samples with counts c_m:

* ``modes`` = #{m : c_m > 0}, the distinct modes (of 1000);
* ``mode_kl`` = KL(p ‖ U) = Σ_m p_m log(1000 · p_m), p_m = c_m / N (natural log; 0 log 0 = 0).

Both are biased by N: a perfect generator covers 1000·(1 − (1 − 1/1000)^N) modes in expectation and
has KL ≈ 999 / (2N) from sampling alone (0.019 at N = 26,000), plus the classifier's errors; the
real-data floor (:meth:`ModeCounter.floor`: the same count on N held-out stacked digits) measures
both, and is printed beside the generator's numbers.

The classifier is the domain classifier (:mod:`normgan.metrics.domain`) of the mnist5k digits:
trained on the TRAIN split of the digits at the run's resolution, its accuracy measured on the
held-out digits, cached like any domain classifier. Generation and classification run in batches
(memory follows the batch, not N), under a forked RNG seeded with ``seed``.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import Tensor, nn

from normgan.metrics.domain import _to_float  # uint8 [0, 255] -> float [-1, 1], as the classifier was trained

__all__ = ["NUM_MODES", "DEFAULT_N", "mode_ids", "mode_stats", "classify_channels", "ModeCounter", "digit_classifier"]

#: distinct digit triples of Stacked MNIST
NUM_MODES = 1000
#: samples of the standard protocol (VEEGAN, PacGAN, R3GAN)
DEFAULT_N = 26_000


def mode_ids(digits: Tensor) -> Tensor:
    """(N, 3) digits (R, G, B) → (N,) mode ids 100·d_R + 10·d_G + d_B."""
    if digits.ndim != 2 or digits.shape[1] != 3:
        raise ValueError(f"digits must have shape (N, 3), got {tuple(digits.shape)}")
    return digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2]


def mode_stats(counts: Tensor) -> tuple[int, float]:
    """``(modes, KL(p ‖ uniform))`` of a histogram ``counts`` over the :data:`NUM_MODES` modes
    (p = counts / Σ counts; KL in nats, Σ_{p>0} p log(K p))."""
    counts = counts.double()
    total = float(counts.sum())
    if total <= 0:
        raise ValueError("no samples were counted")
    p = counts[counts > 0] / total
    return int((counts > 0).sum()), float((p * torch.log(p * counts.numel())).sum())


@torch.no_grad()
def classify_channels(classifier: nn.Module, images: Tensor) -> Tensor:
    """(B, 3, H, W) float images in [-1, 1] → (B, 3) digits: each channel classified as a grey image."""
    b, c, h, w = images.shape
    if c != 3:
        raise ValueError(f"Stacked MNIST samples have 3 channels (one digit each), got {c}")
    logits = classifier.logits(images.reshape(b * 3, 1, h, w))
    return logits.argmax(dim=1).reshape(b, 3)


class ModeCounter:
    """Counts modes of ``n`` generated or real samples with a per-channel digit ``classifier``.

    ``counter(sample_fn)`` draws ``n`` samples ``sample_fn(b)`` in batches of ``batch_size`` under a
    forked RNG seeded with ``seed`` and returns ``{"modes", "mode_kl", "modes_n"}``;
    :meth:`floor` does the same on the first ``n`` of a seeded permutation of a reference
    ``ImageData`` (all of it when smaller).
    """

    def __init__(
        self, classifier: nn.Module, *, n: int = DEFAULT_N, batch_size: int = 500, seed: int = 0, device="cpu"
    ):
        if int(n) < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.classifier, self.n, self.batch_size, self.seed = classifier.eval(), int(n), int(batch_size), int(seed)
        self.device = torch.device(device)
        self.accuracy: Optional[float] = getattr(classifier, "heldout_accuracy", None)

    def _histogram(self, batches) -> Tensor:
        counts = torch.zeros(NUM_MODES, dtype=torch.long)
        for x in batches:
            ids = mode_ids(classify_channels(self.classifier, _to_float(x).to(self.device))).cpu()
            counts += torch.bincount(ids, minlength=NUM_MODES)
        return counts

    def _result(self, counts: Tensor, prefix: str = "") -> dict:
        modes, kl = mode_stats(counts)
        return {f"modes{prefix}": modes, f"mode_kl{prefix}": kl, f"modes{prefix}_n": int(counts.sum())}

    def __call__(self, sample_fn: Callable[[int], Tensor]) -> dict:
        dev = self.device
        cuda_ids = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
        sizes = [min(self.batch_size, self.n - i) for i in range(0, self.n, self.batch_size)]
        with torch.random.fork_rng(devices=cuda_ids), torch.no_grad():
            torch.manual_seed(self.seed)
            counts = self._histogram(sample_fn(b) for b in sizes)
        return self._result(counts)

    def floor(self, reference) -> dict:
        """``modes_floor``, ``mode_kl_floor``, ``modes_floor_n``: the count on real held-out samples."""
        gen = torch.Generator().manual_seed(self.seed)
        idx = torch.randperm(len(reference), generator=gen)[: self.n]
        batches = (reference.images[idx[i : i + self.batch_size]] for i in range(0, len(idx), self.batch_size))
        with torch.no_grad():
            return self._result(self._histogram(batches), "_floor")


def digit_classifier(*, resolution: int, holdout: float, cache_dir=None, device="cpu", progress=None) -> nn.Module:
    """The per-channel digit classifier: the domain classifier of mnist5k's TRAIN split at ``resolution``
    (its ``heldout_accuracy`` on the held-out digits of the same ``holdout``), cached in ``cache_dir``."""
    from normgan.data import load_dataset
    from normgan.metrics.domain import load_or_train

    kw = dict(name="mnist5k", resolution=resolution, holdout=holdout)
    train = load_dataset(split="train", **kw)
    heldout = (lambda: load_dataset(split="test", **kw)) if holdout > 0 else None
    model = load_or_train(train, heldout=heldout, cache_dir=cache_dir, device=device, progress=progress)
    return model.to(device).eval()


def expected_modes(n: int, k: int = NUM_MODES) -> float:
    """Modes a uniform generator covers in expectation with ``n`` samples: k·(1 − (1 − 1/k)^n)."""
    return k * (1.0 - math.exp(n * math.log1p(-1.0 / k)))
