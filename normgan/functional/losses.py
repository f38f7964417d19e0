"""Adversarial losses as pure functions of D's logits.

Each returns a scalar batch mean. ``real`` and ``fake`` are D's raw outputs (logits / critic values)
of shape (B,) on real and generated images. The table (REFERENCE.md):

=============  ===========================================  ===========================
name           D loss                                       G loss
=============  ===========================================  ===========================
minimax        softplus(-D(x)) + softplus(D(G(z)))          -softplus(D(G(z)))  (= log(1 - σ(D(G(z)))))
bce            softplus(-D(x)) + softplus(D(G(z)))          softplus(-D(G(z)))  (non-saturating)
lsgan          ½(D(x) - 1)² + ½ D(G(z))²                    ½(D(G(z)) - 1)²
hinge          relu(1 - D(x)) + relu(1 + D(G(z)))           -D(G(z))
wasserstein    D(G(z)) - D(x)                               -D(G(z))
rpgan          softplus(-(D(x) - D(G(z))))                  softplus(-(D(G(z)) - D(x)))
ragan          softplus(-(D(x) - m_f)) + softplus(D(G(z))   softplus(-(D(G(z)) - m_r)) + softplus(D(x)
               - m_r)                                       - m_f)
=============  ===========================================  ===========================

The relativistic losses compare real and fake logits: ``rpgan`` (relativistic pairing, R3GAN's
non-saturating RpGAN, Huang et al. 2024) pairs the i-th real with the i-th fake sample of the batch;
``ragan`` (relativistic average, Jolicoeur-Martineau 2018, ESRGAN's RaGAN) compares each logit
with the batch mean of the other side, m_r = mean D(x), m_f = mean D(G(z)). Their G losses need D
on a real batch too (``g_real``): the objective gives G's loss D on the step's real batch.

softplus(-t) = -log σ(t) and softplus(t) = -log(1 - σ(t)), computed stably.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch.nn.functional as F
from torch import Tensor

from normgan.registry import Registry


def bce_d_loss(real: Tensor, fake: Tensor) -> Tensor:
    """Cross-entropy D loss: mean softplus(-D(x)) + mean softplus(D(G(z)))."""
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def minimax_g_loss(fake: Tensor) -> Tensor:
    """Original (saturating) G loss: mean log(1 - σ(D(G(z)))) = -mean softplus(D(G(z)))."""
    return -F.softplus(fake).mean()


def nonsaturating_g_loss(fake: Tensor) -> Tensor:
    """Non-saturating G loss: mean -log σ(D(G(z))) = mean softplus(-D(G(z)))."""
    return F.softplus(-fake).mean()


def lsgan_d_loss(real: Tensor, fake: Tensor) -> Tensor:
    """Least-squares D loss: mean ½(D(x) - 1)² + mean ½ D(G(z))²."""
    return 0.5 * (real - 1).pow(2).mean() + 0.5 * fake.pow(2).mean()


def lsgan_g_loss(fake: Tensor) -> Tensor:
    """Least-squares G loss: mean ½(D(G(z)) - 1)²."""
    return 0.5 * (fake - 1).pow(2).mean()


def hinge_d_loss(real: Tensor, fake: Tensor) -> Tensor:
    """Hinge D loss: mean relu(1 - D(x)) + mean relu(1 + D(G(z)))."""
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def wasserstein_d_loss(real: Tensor, fake: Tensor) -> Tensor:
    """Wasserstein critic loss: mean D(G(z)) - mean D(x)."""
    return fake.mean() - real.mean()


def negative_mean_g_loss(fake: Tensor) -> Tensor:
    """G loss of hinge and Wasserstein GANs: -mean D(G(z))."""
    return -fake.mean()


def rpgan_d_loss(real: Tensor, fake: Tensor) -> Tensor:
    """Relativistic pairing D loss (R3GAN): mean_i softplus(-(D(x_i) - D(G(z_i)))), pairs by batch index."""
    _check_pairs(real, fake)
    return F.softplus(fake - real).mean()


def rpgan_g_loss(fake: Tensor, real: Tensor) -> Tensor:
    """Relativistic pairing G loss (R3GAN): mean_i softplus(-(D(G(z_i)) - D(x_i))), pairs by batch index."""
    _check_pairs(real, fake)
    return F.softplus(real - fake).mean()


def ragan_d_loss(real: Tensor, fake: Tensor) -> Tensor:
    """Relativistic average D loss: mean softplus(-(D(x) - m_f)) + mean softplus(D(G(z)) - m_r),
    with m_r, m_f the batch means of the real and fake logits."""
    return F.softplus(fake.mean() - real).mean() + F.softplus(fake - real.mean()).mean()


def ragan_g_loss(fake: Tensor, real: Tensor) -> Tensor:
    """Relativistic average G loss: mean softplus(-(D(G(z)) - m_r)) + mean softplus(D(x) - m_f)
    (D's loss with the roles of real and fake swapped)."""
    return ragan_d_loss(fake, real)


def _check_pairs(real: Tensor, fake: Tensor) -> None:
    """RpGAN pairs real and fake samples index by index: both batches must have the same shape."""
    if real.shape != fake.shape:
        raise ValueError(
            f"rpgan pairs real and fake logits by index; got shapes {tuple(real.shape)} and {tuple(fake.shape)}"
        )


def zero_d_loss(real: Tensor, fake: Tensor) -> Tensor:
    """No adversarial loss for D: ``0·(mean D(x) + mean D(G(z)))`` (zero, with a graph, so D's step is a no-op)."""
    return 0.0 * (real.mean() + fake.mean())


def zero_g_loss(fake: Tensor) -> Tensor:
    """No adversarial loss for G: ``0·mean D(G(z))``; G then learns from its regularization terms
    alone (e.g. ``recon``: pix2pix's "L1 alone" baseline)."""
    return 0.0 * fake.mean()


class AdversarialLoss(NamedTuple):
    """A pair of pure functions: ``d(real_logits, fake_logits)`` and ``g(fake_logits)``; with
    ``g_real`` G's loss is ``g(fake_logits, real_logits)``: the objective then also gives it D on the
    step's real batch in the G phase (relativistic losses compare the two)."""

    d: Callable[[Tensor, Tensor], Tensor]
    g: Callable[..., Tensor]
    g_real: bool = False


LOSSES = Registry("loss")
LOSSES.register("bce")(AdversarialLoss(bce_d_loss, nonsaturating_g_loss))
LOSSES.register("minimax")(AdversarialLoss(bce_d_loss, minimax_g_loss))
LOSSES.register("lsgan")(AdversarialLoss(lsgan_d_loss, lsgan_g_loss))
LOSSES.register("mse")(LOSSES.get("lsgan"))  # the same least-squares loss, by its other name
LOSSES.register("hinge")(AdversarialLoss(hinge_d_loss, negative_mean_g_loss))
LOSSES.register("wasserstein")(AdversarialLoss(wasserstein_d_loss, negative_mean_g_loss))
LOSSES.register("rpgan")(AdversarialLoss(rpgan_d_loss, rpgan_g_loss, g_real=True))
LOSSES.register("ragan")(AdversarialLoss(ragan_d_loss, ragan_g_loss, g_real=True))
LOSSES.register("none")(AdversarialLoss(zero_d_loss, zero_g_loss))  # terms only (paired "L1 alone")


def d_accuracy(real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
    """Fractions of real logits > 0 and fake logits < 0 (D's accuracy with threshold 0)."""
    return (real > 0).float().mean(), (fake < 0).float().mean()


__all__ = [
    "LOSSES",
    "AdversarialLoss",
    "bce_d_loss",
    "minimax_g_loss",
    "nonsaturating_g_loss",
    "lsgan_d_loss",
    "lsgan_g_loss",
    "hinge_d_loss",
    "wasserstein_d_loss",
    "negative_mean_g_loss",
    "rpgan_d_loss",
    "rpgan_g_loss",
    "ragan_d_loss",
    "ragan_g_loss",
    "zero_d_loss",
    "zero_g_loss",
    "d_accuracy",
]
