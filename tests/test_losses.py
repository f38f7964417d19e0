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
# relativistic losses: pairs (r_i, f_i) by index (rpgan), or each logit against the other side's mean (ragan)
m_r, m_f = mean(real.tolist()), mean(fake.tolist())
EXPECTED["rpgan"] = (
    mean([-log_sigmoid(r - f) for r, f in zip(real.tolist(), fake.tolist())]),
    mean([-log_sigmoid(f - r) for r, f in zip(real.tolist(), fake.tolist())]),
)
EXPECTED["ragan"] = (
    mean([-log_sigmoid(r - m_f) for r in real.tolist()])
    + mean([-log_one_minus_sigmoid(f - m_r) for f in fake.tolist()]),
    mean([-log_sigmoid(f - m_r) for f in fake.tolist()])
    + mean([-log_one_minus_sigmoid(r - m_f) for r in real.tolist()]),
)
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
    g = loss.g(fake, real) if loss.g_real else loss.g(fake)
    assert_close(g.item(), g_exp, rtol=1e-6, atol=1e-6)


def test_rpgan_pairs_by_index_and_refuses_unpaired_batches():
    """Shuffling the fakes changes RpGAN (it pairs index by index) but not RaGAN (batch means)."""
    perm = torch.tensor([2, 0, 1])
    rp, ra = LOSSES.get("rpgan"), LOSSES.get("ragan")
    assert abs(rp.d(real, fake).item() - rp.d(real, fake[perm]).item()) > 1e-3
    assert_close(ra.d(real, fake[perm]), ra.d(real, fake), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="pairs real and fake"):
        rp.d(real, fake[:2])


def test_rpgan_gradients_match_the_closed_form():
    """d/dr_i of mean softplus(f - r) is -σ(f_i - r_i)/B, d/df_i is +σ(f_i - r_i)/B."""
    r, f = real.double().requires_grad_(True), fake.double().requires_grad_(True)
    LOSSES.get("rpgan").d(r, f).backward()
    s = torch.sigmoid(fake.double() - real.double()) / len(real)
    assert_close(r.grad, -s, rtol=1e-12, atol=1e-12)
    assert_close(f.grad, s, rtol=1e-12, atol=1e-12)


def test_bce_numbers_by_hand():
    assert_close(LOSSES.get("bce").d(real, fake).item(), BCE_D_BY_HAND, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", LOSSES.names())
def test_loss_is_stable_for_large_logits(name):
    loss = LOSSES.get(name)
    big = torch.tensor([80.0, -80.0])
    g = loss.g(big, -big) if loss.g_real else loss.g(big)
    assert torch.isfinite(loss.d(big, -big)) and torch.isfinite(g)


def test_none_loss_gives_zero_gradients_to_the_networks():
    r, f = real.clone().requires_grad_(True), fake.clone().requires_grad_(True)
    loss = LOSSES.get("none")
    (loss.d(r, f) + loss.g(f)).backward()
    assert torch.equal(r.grad, torch.zeros_like(r)) and torch.equal(f.grad, torch.zeros_like(f))
