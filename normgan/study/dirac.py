"""The Dirac-GAN (Mescheder, Geiger & Nowozin 2018, "Which training methods for GANs do actually
converge?", Fig. 1 and Sec. 2-3), trained with normgan's own losses and penalties.

The data distribution is a point mass at 0, the generator a point mass at θ, the discriminator
linear, D_ψ(x) = ψ·x. The unique equilibrium is (θ, ψ) = (0, 0). With the non-saturating loss the
Jacobian of the gradient field there has purely imaginary eigenvalues ±i·f'(0): unregularized
gradient descent does not converge (simultaneous updates spiral out, alternating ones orbit);
R1, γ/2·‖∇ₓD(x)‖² on real data, adds −γ to ψ's diagonal and makes (0, 0) locally convergent for
any γ > 0. WGAN-GP's (‖∇ₓD(x̂)‖ − 1)² = (|ψ| − 1)² pushes |ψ| towards 1, not 0, so θ does not
return to 0 either (with gradient descent it stops where θ balances the penalty's pull at ψ → 0).

    traj = dirac_trajectory(loss="bce", penalty="r1", gamma=1.0, steps=3000, lr=0.1)   # (steps+1, 2)
"""

from __future__ import annotations

import torch
from torch import Tensor

from normgan.functional.losses import LOSSES
from normgan.functional.penalties import r1_penalty, wgan_gp_penalty

PENALTIES = ("none", "r1", "wgan_gp")


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
    point; WGAN-GP at interpolates drawn from a generator seeded by ``seed``), a gradient step on ψ;
    then G's loss ``LOSSES[loss].g(D(θ))`` and a step on θ, with the new ψ (alternating, as in
    normgan's loop) or the old one (``simultaneous``). Returns a float64 tensor of shape (steps+1, 2).
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
        fake = theta.view(1, 1)
        loss_d = fns.d(D(real), D(fake.detach()))
        if penalty == "r1":
            loss_d = loss_d + gamma * r1_penalty(D, real.clone())
        elif penalty == "wgan_gp":
            loss_d = loss_d + gamma * wgan_gp_penalty(D, real, fake.detach(), generator=gen)
        (g_psi,) = torch.autograd.grad(loss_d, psi)
        if simultaneous:
            (g_theta,) = torch.autograd.grad(fns.g(D(fake)), theta)
            with torch.no_grad():
                psi -= lr * g_psi
                theta -= lr * g_theta
        else:
            with torch.no_grad():
                psi -= lr * g_psi
            (g_theta,) = torch.autograd.grad(fns.g(D(theta.view(1, 1))), theta)
            with torch.no_grad():
                theta -= lr * g_theta
        out[t + 1, 0], out[t + 1, 1] = theta.detach()[0], psi.detach()[0]
    return out
