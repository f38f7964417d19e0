"""Spectral normalization's arithmetic (Miyato et al. 2018): W / σ(W) with σ from power iteration.

With W as a matrix (h × w) and the unit vectors u (h) and v (w) kept from the last update, one
power iteration is

    u ← W v / ‖W v‖,    v ← Wᵀ u / ‖Wᵀ u‖,    σ = uᵀ W v = ‖Wᵀ u‖

(the last equality because v is Wᵀu normalized, so σ is the norm the iteration computed anyway).
The gradient treats u and v as constants (as Miyato's code and ``torch.nn.utils.parametrizations``
do): with σ = uᵀ W v, ∂σ/∂W = u vᵀ and

    ∂L/∂W = (G − ⟨G, W/σ⟩ · u vᵀ) / σ,      G = ∂L/∂(W/σ).

:func:`spectral_divide` computes W / σ with exactly this backward in three kernels (an inner
product, a fused multiply-subtract, a division), where autograd through σ = vdot(u, mv(W, v))
takes about ten per layer: small models on a GPU are bound by kernel launches.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["power_iteration_", "spectral_sigma", "spectral_divide"]


@torch.no_grad()
def power_iteration_(w_mat: Tensor, u: Tensor, v: Tensor, *, iterations: int = 1, eps: float = 1e-12) -> Tensor:
    """``iterations`` power iterations on the (h × w) matrix ``w_mat``, updating the unit vectors
    ``u`` (h) and ``v`` (w) IN PLACE; returns σ = ‖Wᵀu‖ = uᵀ W v after the last one (a 0-d tensor,
    no graph). Norms are clamped below at ``eps``, as ``torch.nn.functional.normalize`` does."""
    sigma = None
    for _ in range(iterations):
        wv = torch.mv(w_mat, v)
        torch.div(wv, torch.linalg.vector_norm(wv).clamp_min_(eps), out=u)
        wtu = torch.mv(w_mat.t(), u)
        sigma = torch.linalg.vector_norm(wtu).clamp_min_(eps)
        torch.div(wtu, sigma, out=v)
    return sigma


@torch.no_grad()
def spectral_sigma(w_mat: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """σ = uᵀ W v for the current u, v, without an iteration (a 0-d tensor, no graph)."""
    return torch.vdot(u, torch.mv(w_mat, v))


class _SpectralDivide(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight: Tensor, sigma: Tensor, uv: Tensor) -> Tensor:
        out = weight / sigma
        ctx.save_for_backward(out, sigma, uv)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        out, sigma, uv = ctx.saved_tensors
        inner = torch.vdot(grad.reshape(-1), out.reshape(-1))  # ⟨G, W/σ⟩
        return torch.addcmul(grad, uv, inner, value=-1).div_(sigma), None, None


def spectral_divide(weight: Tensor, sigma: Tensor, uv: Tensor) -> Tensor:
    """``weight / sigma`` whose gradient is that of W / (uᵀ W v) for constant u, v:
    (G − ⟨G, W/σ⟩ · uv) / σ. ``sigma``: uᵀ W v (0-d, no graph); ``uv``: the outer product u vᵀ laid
    out as ``weight`` (not modified later: the backward reads it)."""
    return _SpectralDivide.apply(weight, sigma, uv)
