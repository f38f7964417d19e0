"""Hard-concrete L0 gates (Louizos, Welling & Kingma 2018).

A gate z_j ∈ [0, 1] per unit/channel with a learned ``log α_j``:

    u ~ U(ε, 1 − ε);  s = σ((log u − log(1 − u) + log α)/β);  s̄ = s(ζ − γ) + γ;  z = clamp(s̄, 0, 1)

with β = 2/3, γ = −0.1, ζ = 1.1.  The stretch to (γ, ζ) ⊃ [0, 1] followed by the clamp puts
probability mass on exact 0 and exact 1.

* Expected L0 (the penalty): ``Σ_j P(z_j ≠ 0) = Σ_j σ(log α_j − β·log(−γ/ζ))``.
* Test-time gate: ``clamp(σ(log α)(ζ − γ) + γ, 0, 1)``; channels whose test gate is 0 are pruned.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

BETA = 2.0 / 3.0
GAMMA = -0.1
ZETA = 1.1


def _check(beta: float, gamma: float, zeta: float) -> None:
    if not (beta > 0 and gamma < 0 and zeta > 1):
        raise ValueError(
            f"hard-concrete needs beta > 0, gamma < 0, zeta > 1; got beta={beta}, gamma={gamma}, zeta={zeta}"
        )


def hard_concrete_sample(
    log_alpha: Tensor,
    *,
    beta: float = BETA,
    gamma: float = GAMMA,
    zeta: float = ZETA,
    eps: float = 1e-6,
    sample_shape: tuple = (),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Stochastic gates ``z = clamp(σ((log u − log(1−u) + log α)/β)(ζ − γ) + γ, 0, 1)``.

    ``u ~ U(eps, 1 − eps)`` drawn as ``torch.rand(sample_shape + log_alpha.shape)``; the output has
    that shape and is differentiable w.r.t. ``log_alpha`` (reparameterization).
    """
    _check(beta, gamma, zeta)
    shape = tuple(sample_shape) + tuple(log_alpha.shape)
    u = torch.rand(shape, generator=generator, dtype=log_alpha.dtype, device=log_alpha.device)
    u = u * (1.0 - 2.0 * eps) + eps
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / beta)
    return torch.clamp(s * (zeta - gamma) + gamma, 0.0, 1.0)


def hard_concrete_eval(log_alpha: Tensor, *, gamma: float = GAMMA, zeta: float = ZETA) -> Tensor:
    """Deterministic test-time gate ``clamp(σ(log α)(ζ − γ) + γ, 0, 1)`` (elementwise)."""
    _check(BETA, gamma, zeta)
    return torch.clamp(torch.sigmoid(log_alpha) * (zeta - gamma) + gamma, 0.0, 1.0)


def hard_concrete_open_prob(
    log_alpha: Tensor, *, beta: float = BETA, gamma: float = GAMMA, zeta: float = ZETA
) -> Tensor:
    """Per-gate ``P(z_j ≠ 0) = P(z_j > 0) = σ(log α_j − β·log(−γ/ζ))`` (elementwise)."""
    _check(beta, gamma, zeta)
    return torch.sigmoid(log_alpha - beta * math.log(-gamma / zeta))


def expected_l0(log_alpha: Tensor, *, beta: float = BETA, gamma: float = GAMMA, zeta: float = ZETA) -> Tensor:
    """Expected L0 norm ``Σ_j σ(log α_j − β·log(−γ/ζ))`` — SUM over all gates (not a mean).

    Differentiable w.r.t. ``log_alpha``.  Divide by the gate count outside for a fraction.
    """
    return hard_concrete_open_prob(log_alpha, beta=beta, gamma=gamma, zeta=zeta).sum()


#: Alias used in DESIGN.md (``hard_concrete_l0(log_alpha)``).
hard_concrete_l0 = expected_l0


class HardConcreteGate(nn.Module):
    """Per-channel hard-concrete gates for activations (B, C, ...).

    ``log_alpha`` (C,) is initialized ~ N(log(1 − p) − log p, 0.01²) (std 0.01) with p = init_drop.
    Training mode: ONE gate vector is sampled per forward and shared by all samples of the batch
    (not per sample).  Eval mode: the deterministic test-time gate.  The L0 penalty is
    :meth:`expected_l0` (weight applied outside).
    """

    def __init__(
        self,
        num_channels: int,
        *,
        init_drop: float = 0.5,
        init_std: float = 0.01,
        beta: float = BETA,
        gamma: float = GAMMA,
        zeta: float = ZETA,
    ) -> None:
        super().__init__()
        if num_channels < 1:
            raise ValueError(f"HardConcreteGate num_channels must be >= 1, got {num_channels}")
        if not 0.0 < init_drop < 1.0:
            raise ValueError(f"HardConcreteGate init_drop must be in (0, 1), got {init_drop}")
        _check(beta, gamma, zeta)
        self.num_channels = num_channels
        self.beta, self.gamma, self.zeta = beta, gamma, zeta
        mean = math.log(1.0 - init_drop) - math.log(init_drop)
        self.log_alpha = nn.Parameter(torch.randn(num_channels) * init_std + mean)

    def sample_gates(self, generator: torch.Generator | None = None) -> Tensor:
        """One stochastic gate vector (C,)."""
        return hard_concrete_sample(
            self.log_alpha, beta=self.beta, gamma=self.gamma, zeta=self.zeta, generator=generator
        )

    def eval_gates(self) -> Tensor:
        """Deterministic test-time gates (C,)."""
        return hard_concrete_eval(self.log_alpha, gamma=self.gamma, zeta=self.zeta)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"HardConcreteGate expects (B, {self.num_channels}, ...), got {tuple(x.shape)}")
        z = self.sample_gates() if self.training else self.eval_gates()
        return x * z.to(x.dtype).reshape((1, -1) + (1,) * (x.dim() - 2))

    def open_prob(self) -> Tensor:
        """Per-channel probability that the gate is non-zero (C,)."""
        return hard_concrete_open_prob(self.log_alpha, beta=self.beta, gamma=self.gamma, zeta=self.zeta)

    def expected_l0(self) -> Tensor:
        """Expected number of open gates (scalar, differentiable)."""
        return self.open_prob().sum()

    def num_open(self) -> int:
        """Number of channels whose TEST-TIME gate is non-zero (kept after pruning)."""
        return int((self.eval_gates() > 0).sum().item())

    def extra_repr(self) -> str:
        return f"{self.num_channels}, beta={self.beta:.4g}, gamma={self.gamma}, zeta={self.zeta}"


__all__ = [
    "BETA",
    "GAMMA",
    "ZETA",
    "hard_concrete_sample",
    "hard_concrete_eval",
    "hard_concrete_open_prob",
    "expected_l0",
    "hard_concrete_l0",
    "HardConcreteGate",
]
