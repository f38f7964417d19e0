"""Exponential moving average of the generator's weights."""

from __future__ import annotations

import copy

import torch
from torch import nn


def make_ema(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` in eval mode, to be updated with :func:`update_ema`."""
    ema = copy.deepcopy(model).eval()
    ema.requires_grad_(False)
    return ema


def ema_decay(step: int, *, decay: float, rampup: bool) -> float:
    """β_t = min(decay, (1 + t) / (10 + t)) with ramp-up, else ``decay``."""
    return min(decay, (1.0 + step) / (10.0 + step)) if rampup else decay


def ema_halflife_decay(halflife: float, *, batch_size: int) -> float:
    """β = 0.5^(batch_size / halflife) for a half-life in images (StyleGAN's ``ema_kimg``, R3GAN's
    ``ema_nimg``): after ``halflife`` images the weight of the current parameters has halved.
    β = 0 at halflife = 0 (the EMA copies G)."""
    if not halflife >= 0:
        raise ValueError(f"EMA half-life must be >= 0 images, got {halflife!r}")
    return 0.0 if halflife == 0 else 0.5 ** (batch_size / halflife)


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, *, beta: float) -> None:
    """θ_ema ← β θ_ema + (1 − β) θ for parameters; buffers (BN statistics) are copied."""
    e_params = [p for p in ema.parameters()]
    m_params = [p.detach() for p in model.parameters()]
    if beta == 0.0:
        torch._foreach_copy_(e_params, m_params)
    else:
        torch._foreach_lerp_(e_params, m_params, 1.0 - beta)
    for eb, mb in zip(ema.buffers(), model.buffers()):
        eb.copy_(mb)
