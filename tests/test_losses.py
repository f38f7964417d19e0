"""Adversarial losses against the formulas of REFERENCE.md on hand-computed values."""

import math

import pytest
import torch
from torch.testing import assert_close

from normgan.functional.losses import LOSSES

real = torch.tensor([2.0, -1.0, 0.5])
fake = torch.tensor([-0.5, 1.5, 0.0])


def log_sigmoid(t):
    return -math.log1p(math.exp(-t))


def log_one_minus_sigmoid(t):
    return -math.log1p(math.exp(t))


def mean(xs):
    return sum(xs) / len(xs)


# hand computations straight from the table, with Python floats (not the code under test)
EXPECTED = {
    "bce": (
        mean([-log_sigmoid(r) for r in real.tolist()]) + mean([-log_one_minus_sigmoid(f) for f in fake.tolist()]),
        mean([-log_sigmoid(f) for f in fake.tolist()]),
    ),
    "minimax": (
        mean([-log_sigmoid(r) for r in real.tolist()]) + mean([-log_one_minus_sigmoid(f) for f in fake.tolist()]),
        mean([log_one_minus_sigmoid(f) for f in fake.tolist()]),
    ),
    "lsgan": (
        mean([0.5 * (r - 1) ** 2 for r in real.tolist()]) + mean([0.5 * f**2 for f in fake.tolist()]),
        mean([0.5 * (f - 1) ** 2 for f in fake.tolist()]),
    ),
    "hinge": (
        mean([max(0.0, 1 - r) for r in real.tolist()]) + mean([max(0.0, 1 + f) for f in fake.tolist()]),
        -mean(fake.tolist()),
    ),
    "wasserstein": (mean(fake.tolist()) - mean(real.tolist()), -mean(fake.tolist())),
}
EXPECTED["mse"] = EXPECTED["lsgan"]
EXPECTED["none"] = (0.0, 0.0)  # terms only: both losses are zero

# the numbers for bce, worked by hand: softplus(-2)=0.126928, softplus(1)=1.313262, softplus(-0.5)=0.474077
BCE_D_BY_HAND = (0.126928 + 1.313262 + 0.474077) / 3 + (0.474077 + 1.701413 + 0.693147) / 3


def test_every_registered_loss_has_an_expected_value():
    assert set(LOSSES.names()) == set(EXPECTED)


@pytest.mark.parametrize("name", LOSSES.names())
def test_loss_matches_formula(name):
    loss = LOSSES.get(name)
    d_exp, g_exp = EXPECTED[name]
    assert_close(loss.d(real, fake).item(), d_exp, rtol=1e-6, atol=1e-6)
    assert_close(loss.g(fake).item(), g_exp, rtol=1e-6, atol=1e-6)


def test_bce_numbers_by_hand():
    assert_close(LOSSES.get("bce").d(real, fake).item(), BCE_D_BY_HAND, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", LOSSES.names())
def test_loss_is_stable_for_large_logits(name):
    loss = LOSSES.get(name)
    big = torch.tensor([80.0, -80.0])
    assert torch.isfinite(loss.d(big, -big)) and torch.isfinite(loss.g(big))


def test_none_loss_gives_zero_gradients_to_the_networks():
    r, f = real.clone().requires_grad_(True), fake.clone().requires_grad_(True)
    loss = LOSSES.get("none")
    (loss.d(r, f) + loss.g(f)).backward()
    assert torch.equal(r.grad, torch.zeros_like(r)) and torch.equal(f.grad, torch.zeros_like(f))
