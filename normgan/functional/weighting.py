"""Adaptive-weight math and weight schedules, as pure functions.

State (EMAs, learned log-variances, GradNorm weights, the controlled γ) lives in the weight
objects of ``normgan.regularizers``; the functions here only compute.

* :func:`grad_ratio_weight` — VQGAN's ‖∇_W L_rec‖ / (‖∇_W L_adv‖ + δ).
* :func:`uncertainty_weighting` — Kendall et al. 2018.
* :func:`gradnorm_grad_norms`, :func:`gradnorm_targets`, :func:`gradnorm_loss` — GradNorm
  (Chen et al. 2018).
* :func:`overfit_rt`, :func:`rt_controller_update` — the r_t overfitting controller.
* Schedules ``fn(step, **params) -> float`` multiplier in [0, ∞) applied to a base weight:
  :func:`constant`, :func:`warmup`, :func:`linear_decay`, :func:`cosine_decay`, :func:`step_decay`,
  :func:`start_at`, :func:`cosine_warmup`; registered in ``SCHEDULES``.  Bad parameters raise ValueError.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from normgan.registry import Registry

# ----------------------------------------------------------------------------- VQGAN ratio


def _grad_or_zero(loss: Tensor, param: Tensor) -> Tensor:
    (g,) = torch.autograd.grad(loss, param, retain_graph=True, allow_unused=True)
    return torch.zeros_like(param) if g is None else g


def grad_ratio_weight(
    rec_loss: Tensor,
    adv_loss: Tensor,
    layer_weight: Tensor,
    *,
    delta: float = 1e-4,
    max_weight: float = 1e4,
) -> Tensor:
    """VQGAN adaptive weight ``λ = clamp(‖∇_W L_rec‖₂ / (‖∇_W L_adv‖₂ + δ), 0, max_weight)``, DETACHED.

    W = ``layer_weight`` (the generator's last layer weight); norms are Frobenius over the whole
    tensor.  The graphs of both losses are retained (the caller backpropagates them afterwards).
    The base factor (0.8 in VQGAN) and any start step are applied by the caller.
    """
    if delta <= 0:
        raise ValueError(f"grad_ratio delta must be > 0, got {delta!r}")
    if max_weight < 0:
        raise ValueError(f"grad_ratio max_weight must be >= 0, got {max_weight!r}")
    g_rec = _grad_or_zero(rec_loss, layer_weight)
    g_adv = _grad_or_zero(adv_loss, layer_weight)
    w = torch.linalg.vector_norm(g_rec) / (torch.linalg.vector_norm(g_adv) + delta)
    return torch.clamp(w, 0.0, max_weight).detach()


# ----------------------------------------------------------------------------- uncertainty


def _stack(losses) -> Tensor:
    if isinstance(losses, Tensor):
        return losses.reshape(-1)
    return torch.stack([torch.as_tensor(l).reshape(()) for l in losses])


def uncertainty_weighting(losses: Sequence[Tensor] | Tensor, log_vars: Tensor) -> Tensor:
    """Kendall et al. 2018: ``Σ_i ½ exp(−s_i) L_i + ½ s_i`` with learned ``s_i = log σ_i²``.

    ``losses``: T scalar losses (sequence or (T,) tensor); ``log_vars``: (T,) tensor.
    Differentiable w.r.t. both (the s_i are trained by this same objective).
    """
    l = _stack(losses)
    s = log_vars.reshape(-1)
    if l.shape != s.shape:
        raise ValueError(f"uncertainty_weighting got {l.numel()} losses and {s.numel()} log-variances")
    return (0.5 * torch.exp(-s) * l + 0.5 * s).sum()


# ----------------------------------------------------------------------------- GradNorm


def gradnorm_grad_norms(losses: Sequence[Tensor], weights: Tensor, layer_weight: Tensor) -> Tensor:
    """``G_i = ‖∇_W (w_i L_i)‖₂ = w_i·‖∇_W L_i‖₂`` for each task i → (T,) tensor.

    ``‖∇_W L_i‖`` is detached, so the result is differentiable w.r.t. the task weights only
    (the GradNorm loss updates the w_i, not the network).  Graphs are retained.
    """
    w = weights.reshape(-1)
    if len(losses) != w.numel():
        raise ValueError(f"gradnorm got {len(losses)} losses and {w.numel()} weights")
    norms = torch.stack([torch.linalg.vector_norm(_grad_or_zero(l, layer_weight)).detach() for l in losses])
    return w * norms.to(w.dtype)


def gradnorm_targets(grad_norms: Tensor, loss_ratios: Tensor, *, alpha: float = 1.5) -> Tensor:
    """GradNorm targets ``mean_j G_j · r_i^α`` (detached constants).

    ``loss_ratios`` L̃_i = L_i(t)/L_i(0); r_i = L̃_i / mean_j L̃_j (relative inverse training rate).
    α ≈ 0.12–1.5.
    """
    if alpha < 0:
        raise ValueError(f"gradnorm alpha must be >= 0, got {alpha!r}")
    g = grad_norms.detach().reshape(-1)
    lr = loss_ratios.detach().reshape(-1).to(g.dtype)
    r = lr / lr.mean()
    return (g.mean() * r.pow(alpha)).detach()


def gradnorm_loss(grad_norms: Tensor, targets: Tensor) -> Tensor:
    """GradNorm loss ``Σ_i |G_i − target_i|`` (L1, as in the paper; targets are constants)."""
    return (grad_norms.reshape(-1) - targets.detach().reshape(-1)).abs().sum()


# ----------------------------------------------------------------------------- r_t controller


def overfit_rt(d_real_logits: Tensor) -> Tensor:
    """Overfitting statistic ``r_t = E[sign(D(x_real))]`` ∈ [−1, 1] over all logits (detached).

    Accumulate over several batches outside (mean of batch values weighted by size).
    """
    s = torch.sign(d_real_logits.detach())
    if not s.is_floating_point():
        s = s.to(torch.get_default_dtype())
    return s.mean()


def rt_controller_update(
    value: float,
    rt: float | Tensor,
    *,
    target: float = 0.6,
    step_size: float = 0.01,
    mode: str = "multiplicative",
    min_value: float = 0.0,
    max_value: float = math.inf,
) -> float:
    """One controller step for a penalty weight γ from the overfitting statistic r_t.

    ``d = sign(r_t − target)`` (+1: D overfits → raise γ; −1: lower it; 0: keep).
    ``multiplicative``: ``γ ← γ·exp(step_size·d)``; ``additive``: ``γ ← γ + step_size·d``
    (StyleGAN2-ADA's p update has step_size = batch·interval/(ada_kimg·1000)).
    The result is clamped to [min_value, max_value] and returned as a float.
    """
    if step_size < 0:
        raise ValueError(f"controller step_size must be >= 0, got {step_size!r}")
    if min_value > max_value:
        raise ValueError(f"controller min_value {min_value} exceeds max_value {max_value}")
    rt = float(rt)
    d = (rt > target) - (rt < target)
    if mode == "multiplicative":
        new = value * math.exp(step_size * d)
    elif mode == "additive":
        new = value + step_size * d
    else:
        raise ValueError(f"controller mode must be 'multiplicative' or 'additive', got {mode!r}")
    return float(min(max(new, min_value), max_value))


# ----------------------------------------------------------------------------- schedules

SCHEDULES = Registry("schedule")


def _check_step(step: int) -> None:
    if step < 0:
        raise ValueError(f"schedule step must be >= 0, got {step}")


def _nonneg(name: str, v: float, what: str) -> None:
    if v < 0:
        raise ValueError(f"{what} {name} must be >= 0, got {v!r}")


@SCHEDULES.register("constant")
def constant(step: int) -> float:
    """Always 1."""
    _check_step(step)
    return 1.0


@SCHEDULES.register("warmup")
def warmup(step: int, *, steps: int, start_value: float = 0.0) -> float:
    """Linear warm-up from ``start_value`` at step 0 to 1 at ``steps``, then 1.

    ``start_value + (1 − start_value)·min(step/steps, 1)``; ``steps = 0`` means no warm-up.
    """
    _check_step(step)
    _nonneg("steps", steps, "warmup")
    _nonneg("start_value", start_value, "warmup")
    if steps == 0 or step >= steps:
        return 1.0
    return float(start_value + (1.0 - start_value) * step / steps)


def _check_window(start: int, end: int, final: float, what: str) -> None:
    _nonneg("start", start, what)
    if end < start:
        raise ValueError(f"{what} end ({end}) must be >= start ({start})")
    _nonneg("final", final, what)


@SCHEDULES.register("linear")
def linear_decay(step: int, *, start: int, end: int, final: float = 0.0) -> float:
    """1 before ``start``; linear from 1 at ``start`` to ``final`` at ``end``; ``final`` after.

    ``1 + (final − 1)·(step − start)/(end − start)`` inside the window; with end = start it jumps
    to ``final`` at ``start``.  ``final`` > 1 gives a linear increase.
    """
    _check_step(step)
    _check_window(start, end, final, "linear_decay")
    if step < start:
        return 1.0
    if step >= end:
        return float(final)
    return float(1.0 + (final - 1.0) * (step - start) / (end - start))


@SCHEDULES.register("cosine")
def cosine_decay(step: int, *, start: int, end: int, final: float = 0.0) -> float:
    """1 before ``start``; ``final + (1 − final)·½(1 + cos(π t))`` with t = (step − start)/(end − start);
    ``final`` after ``end``."""
    _check_step(step)
    _check_window(start, end, final, "cosine_decay")
    if step < start:
        return 1.0
    if step >= end:
        return float(final)
    t = (step - start) / (end - start)
    return float(final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * t)))


@SCHEDULES.register("step")
def step_decay(step: int, *, every: int, factor: float) -> float:
    """Piecewise constant ``factor ** floor(step / every)`` (every > 0, factor ≥ 0)."""
    _check_step(step)
    if every <= 0:
        raise ValueError(f"step_decay every must be > 0, got {every!r}")
    _nonneg("factor", factor, "step_decay")
    return float(factor ** (step // every))


@SCHEDULES.register("start_at")
def start_at(step: int, *, start: int) -> float:
    """0 before ``start``, 1 from ``start`` on (a term that switches on at a step)."""
    _check_step(step)
    _nonneg("start", start, "start_at")
    return 1.0 if step >= start else 0.0


@SCHEDULES.register("cosine_warmup")
def cosine_warmup(
    step: int, *, end: int, final: float = 0.0, warmup: int = 0, start_value: float = 0.0, hold: int = 0
) -> float:
    """R3GAN's ``cosine_decay_with_warmup`` (brownvc/R3GAN, ``training/training_loop.py``) in steps,
    as a multiplier of the base value.

    * ``[0, warmup)``: linear warm-up ``start_value + (1 − start_value)·step/warmup``;
    * ``[warmup, warmup + hold)``: 1;
    * ``[warmup + hold, end]``: ``final + (1 − final)·½(1 + cos(π t))``, t = (step − warmup − hold)/(end − warmup − hold);
    * after ``end``: ``final``.

    With warmup = hold = 0 it is R3GAN's burn-in decay ``final + ½(1 − final)(1 + cos(π·min(step, end)/end))``.
    ``final`` > 1 gives a cosine increase (β₂ from 0.9 to 0.99: base 0.9, final 1.1).
    """
    _check_step(step)
    for name, v in (("end", end), ("final", final), ("warmup", warmup), ("start_value", start_value), ("hold", hold)):
        _nonneg(name, v, "cosine_warmup")
    if end < warmup + hold:
        raise ValueError(f"cosine_warmup end ({end}) must be >= warmup + hold ({warmup + hold})")
    if step < warmup:
        return float(start_value + (1.0 - start_value) * step / warmup)
    if step < warmup + hold:
        return 1.0
    if step >= end:
        return float(final)
    t = (step - warmup - hold) / (end - warmup - hold)
    return float(final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * t)))


__all__ = [
    "grad_ratio_weight",
    "uncertainty_weighting",
    "gradnorm_grad_norms",
    "gradnorm_targets",
    "gradnorm_loss",
    "overfit_rt",
    "rt_controller_update",
    "SCHEDULES",
    "constant",
    "warmup",
    "linear_decay",
    "cosine_decay",
    "step_decay",
    "start_at",
    "cosine_warmup",
]
