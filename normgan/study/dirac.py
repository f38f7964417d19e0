"""The Dirac-GAN (Mescheder, Geiger & Nowozin 2018, "Which training methods for GANs do actually
converge?", Fig. 1 and Sec. 2-3), trained with normgan's own losses and penalties.

The data distribution is a point mass at 0, the generator a point mass at θ, the discriminator
linear, D_ψ(x) = ψ·x. The unique equilibrium is (θ, ψ) = (0, 0). With the non-saturating loss the
Jacobian of the gradient field there has purely imaginary eigenvalues ±i·f'(0): unregularized
gradient descent does not converge (simultaneous updates spiral out, alternating ones orbit);
R1, γ/2·‖∇ₓD(x)‖² on real data, adds −γ to ψ's diagonal and makes (0, 0) locally convergent for
any γ > 0. WGAN-GP's (‖∇ₓD(x̂)‖ − 1)² = (|ψ| − 1)² pushes |ψ| towards 1, not 0, so θ does not
return to 0 either (with gradient descent it stops where θ balances the penalty's pull at ψ → 0).

RpGAN (R3GAN's relativistic pairing) is the same game here: D's loss softplus(D(θ) − D(0)) =
softplus(ψθ) differs from bce's log 2 + softplus(ψθ) by a constant, G's softplus(D(0) − D(θ)) =
softplus(−ψθ) is the non-saturating loss, so its trajectories are bce's, bit for bit. With a linear
D, ∇ₓD = ψ everywhere: R1 and R2 are the same penalty γψ²/2 and R1 + R2 is R1 at 2γ. Linearized
at (0, 0) with damping c (γ times the number of penalties), one alternating step is
M = [[1 − h²/4, (h/2)(1 − hc)], [−h/2, 1 − hc]] on (θ, ψ): det M = 1 − hc, tr M = 2 − hc − h²/4;
:func:`alternating_spectral_radius` is its spectral radius.

    traj = dirac_trajectory(loss="bce", penalty="r1", gamma=1.0, steps=3000, lr=0.1)   # (steps+1, 2)
"""

from __future__ import annotations

import cmath

import torch
from torch import Tensor

from normgan.functional.losses import LOSSES, AdversarialLoss
from normgan.functional.penalties import r1_penalty, r2_penalty, wgan_gp_penalty

PENALTIES = ("none", "r1", "r2", "r1_r2", "wgan_gp")
#: c / γ for the gradient penalties with the linear D (∇ₓD = ψ at every point): R1 = R2 = γψ²/2.
DAMPING = {"none": 0.0, "r1": 1.0, "r2": 1.0, "r1_r2": 2.0}


def alternating_spectral_radius(lr: float, damping: float) -> float:
    """Spectral radius of one alternating step of bce / rpgan, linearized at (0, 0), ψ's gradient
    damped by ``damping`` = c: the larger |root| of λ² − (2 − hc − h²/4)λ + (1 − hc) = 0. It is
    sqrt(1 − hc) while the roots are complex, 1 at c = 0 (an orbit), and tends back to 1 as c grows
    past the real-root threshold (overdamped: θ barely moves once ψ is pinned near 0)."""
    h, c = lr, damping
    tr, det = 2.0 - h * c - h * h / 4, 1.0 - h * c
    disc = cmath.sqrt(tr * tr - 4 * det)
    return max(abs((tr + disc) / 2), abs((tr - disc) / 2))


def _d_objective(fns: AdversarialLoss, D, real: Tensor, fake: Tensor, penalty: str, gamma: float, gen) -> Tensor:
    """D's loss at the real point 0 and the detached fake point θ, plus ``gamma`` × the penalty:
    R1 at the real point, R2 at the fake point, R1 + R2 both with the one γ (R3GAN), WGAN-GP at
    interpolates drawn from ``gen``."""
    fake = fake.detach()
    loss = fns.d(D(real), D(fake))
    if penalty in ("r1", "r1_r2"):
        loss = loss + gamma * r1_penalty(D, real.clone())
    if penalty in ("r2", "r1_r2"):
        loss = loss + gamma * r2_penalty(D, fake)
    if penalty == "wgan_gp":
        loss = loss + gamma * wgan_gp_penalty(D, real, fake, generator=gen)
    return loss


def _g_objective(fns: AdversarialLoss, D, real: Tensor, fake: Tensor) -> Tensor:
    """G's loss; a relativistic loss (``g_real``) also gets D at the real point, as in normgan's objective."""
    return fns.g(D(fake), D(real)) if fns.g_real else fns.g(D(fake))


def dirac_trajectory(
    *,
    loss: str = "bce",
    penalty: str = "none",
    gamma: float = 1.0,
    steps: int = 3000,
    lr: float = 0.1,
    theta0: float = 1.0,
    psi0: float = 1.0,
    simultaneous: bool = False,
    seed: int = 0,
) -> Tensor:
    """(θ_t, ψ_t) for t = 0 … ``steps`` of gradient descent with step size ``lr``.

    Each step: D's loss ``LOSSES[loss].d(D(0), D(θ))`` plus ``gamma`` × the penalty (R1 at the real
    point, R2 at the fake point, ``r1_r2`` both with the one γ; WGAN-GP at interpolates drawn from a
    generator seeded by ``seed``), a gradient step on ψ; then G's loss ``LOSSES[loss].g(D(θ))`` — or
    ``g(D(θ), D(0))`` for a loss with ``g_real`` (rpgan, ragan) — and a step on θ, with the new ψ
    (alternating, as in normgan's loop) or the old one (``simultaneous``). Returns a float64 tensor
    of shape (steps+1, 2).
    """
    if penalty not in PENALTIES:
        raise ValueError(f"penalty must be one of {PENALTIES}, got {penalty!r}")
    fns = LOSSES.get(loss, key="loss")
    theta = torch.tensor([theta0], dtype=torch.float64, requires_grad=True)
    psi = torch.tensor([psi0], dtype=torch.float64, requires_grad=True)
    real = torch.zeros(1, 1, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)

    def D(x: Tensor) -> Tensor:
        return (psi * x).sum(dim=1)

    out = torch.empty(steps + 1, 2, dtype=torch.float64)
    out[0] = torch.tensor([theta0, psi0])
    for t in range(steps):
        (g_psi,) = torch.autograd.grad(_d_objective(fns, D, real, theta.view(1, 1), penalty, gamma, gen), psi)
        if simultaneous:
            (g_theta,) = torch.autograd.grad(_g_objective(fns, D, real, theta.view(1, 1)), theta)
            with torch.no_grad():
                psi -= lr * g_psi
                theta -= lr * g_theta
        else:
            with torch.no_grad():
                psi -= lr * g_psi
            (g_theta,) = torch.autograd.grad(_g_objective(fns, D, real, theta.view(1, 1)), theta)
            with torch.no_grad():
                theta -= lr * g_theta
        out[t + 1, 0], out[t + 1, 1] = theta.detach()[0], psi.detach()[0]
    return out
