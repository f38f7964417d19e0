"""Constraints: projections, not penalties (spectral normalization, max-norm, weight clipping).

A config's ``constraints:`` mapping, e.g. ``sn: {kind: spectral, net: D}``, is built into objects
with ``net`` and ``project(module)``; the loop calls ``project`` after each optimizer step of that
network. Spectral normalization is a parametrization applied once at build time.
"""

from __future__ import annotations

import math
from typing import Any, Dict

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _SpectralNorm

from normgan.errors import ConfigError
from normgan.functional.spectral import power_iteration_, spectral_divide, spectral_sigma
from normgan.registry import Registry

CONSTRAINTS = Registry("constraint")


_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _positive(option: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ConfigError(f"{option}: bad value {v!r}; must be a number > 0")
    return float(v)


def _layers(module: nn.Module):
    return [m for m in module.modules() if isinstance(m, _LAYERS)]


def raw_weight(m: nn.Module) -> torch.Tensor:
    """The stored (trainable) weight: the original under a parametrization such as spectral norm."""
    return m.parametrizations.weight.original if parametrize.is_parametrized(m, "weight") else m.weight


class Constraint:
    """Base: ``setup(module)`` once at build time (parametrizations); ``project(module)`` after each
    optimizer step of ``net`` (projections). Both default to doing nothing."""

    def __init__(self, *, net: str) -> None:
        self.net = net

    def setup(self, module: nn.Module) -> None:
        pass

    @torch.no_grad()
    def project(self, module: nn.Module) -> None:
        pass


class SpectralNorm(_SpectralNorm):
    """The parametrization W ↦ W/σ(W) (:mod:`normgan.functional.spectral`).

    It is torch's ``spectral_norm`` parametrization — the same buffers ``_u``/``_v``, their random
    start and 15 initial iterations, the same state dict keys — with two changes:

    * the power iteration runs when the weight is being trained (training mode, gradients enabled
      and the weight requiring them): once per D update, not again when D is only a function of
      the G step (its weights frozen) or of an evaluation under ``no_grad``; those use σ = uᵀ W v
      with the current u, v;
    * the gradient of W/σ is computed in closed form (:func:`~normgan.functional.spectral.spectral_divide`).

    In a D step the output, the new u, v and the gradient equal torch's (tested).
    """

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if weight.ndim == 1:
            return super().forward(weight)
        w_mat = self._reshape_weight_to_matrix(weight)
        trained = torch.is_grad_enabled() and weight.requires_grad  # a D step, not D as G's critic
        with torch.autocast(device_type=weight.device.type, enabled=False):  # σ in the weight's precision
            if self.training and trained:
                sigma = power_iteration_(w_mat, self._u, self._v, iterations=self.n_power_iterations, eps=self.eps)
            else:
                sigma = spectral_sigma(w_mat, self._u, self._v)
            if not trained:
                return weight / sigma
            # u vᵀ is W's matrix (dim first, the rest flattened): laid out as W again
            shape = [weight.shape[self.dim], *(n for d, n in enumerate(weight.shape) if d != self.dim)]
            uv = torch.outer(self._u, self._v).view(shape).movedim(0, self.dim)
        return spectral_divide(weight, sigma, uv)


@torch.no_grad()
def _redraw_if_zero(weight: torch.Tensor, dim: int) -> None:
    """W/σ(W) is undefined at W = 0 (and power iteration collapses u, v to 0 there, so σ would stay 0):
    an all-zero weight — e.g. the zero-initialised last conv of r3gan's residual blocks — is redrawn
    from N(0, 1/fan_in) before spectral normalization. Only W's direction matters under SN, so no
    other choice of scale would differ; such a residual block is then not the identity at init."""
    if weight.is_meta or weight.any():
        return
    fan_in = weight.numel() // weight.shape[dim]
    weight.normal_(0.0, fan_in**-0.5)


@CONSTRAINTS.register("spectral")
class SpectralConstraint(Constraint):
    """Spectral normalization (Miyato 2018): W/σ(W) on every Conv/ConvTranspose/Linear layer.

    :class:`SpectralNorm` (torch's parametrization, dim 1 for ConvTranspose): ``n_power_iterations``
    power iterations per update of the weights (u, v kept across steps; none in eval mode or when
    the weights are frozen). An all-zero weight is first redrawn at random (W/σ(W) is undefined at 0).
    State dict keys become ``...parametrizations.weight.original`` (+
    ``_u``/``_v``). Config: ``sn: {kind: spectral, net: D}``.
    """

    def __init__(self, *, net: str, n_power_iterations: int = 1, eps: float = 1e-12) -> None:
        super().__init__(net=net)
        if isinstance(n_power_iterations, bool) or not isinstance(n_power_iterations, int) or n_power_iterations < 1:
            raise ConfigError(f"n_power_iterations: bad value {n_power_iterations!r}; must be a positive integer")
        self.n_power_iterations, self.eps = n_power_iterations, _positive("eps", eps)

    def setup(self, module: nn.Module) -> None:
        for m in _layers(module):
            if not parametrize.is_parametrized(m, "weight"):
                dim = 1 if isinstance(m, _TRANSPOSED) else 0
                _redraw_if_zero(m.weight, dim)
                parametrize.register_parametrization(
                    m, "weight", SpectralNorm(m.weight, self.n_power_iterations, dim, self.eps)
                )


@CONSTRAINTS.register("max_norm")
class MaxNormConstraint(Constraint):
    """Max-norm: after each step, each output unit's incoming weights are rescaled to ‖w‖₂ ≤ c (c = 3).

    Applied to every Conv/ConvTranspose/Linear weight (ConvTranspose output units are dim 1).
    Config: ``mn: {kind: max_norm, net: G, c: 3.0}``.
    """

    def __init__(self, *, net: str, c: float = 3.0) -> None:
        super().__init__(net=net)
        self.c = _positive("c", c)

    @torch.no_grad()
    def project(self, module: nn.Module) -> None:
        for m in _layers(module):
            w = raw_weight(m)
            dim = 1 if isinstance(m, _TRANSPOSED) else 0
            w.copy_(torch.renorm(w, p=2, dim=dim, maxnorm=self.c))


@CONSTRAINTS.register("clip")
class ClipConstraint(Constraint):
    """Weight clipping (WGAN): after each step every parameter of the net is clamped to [−c, c] (c = 0.01).

    Config: ``clip: {kind: clip, net: D, c: 0.01}``.
    """

    def __init__(self, *, net: str, c: float = 0.01) -> None:
        super().__init__(net=net)
        self.c = _positive("c", c)

    @torch.no_grad()
    def project(self, module: nn.Module) -> None:
        for p in module.parameters():
            p.clamp_(-self.c, self.c)


def _make(name: str, spec: Any) -> Constraint:
    """A constraint object from one config entry (no network needed); ConfigError naming the key."""
    key = f"constraints.{name}"
    kind, _ = CONSTRAINTS.lookup(spec, key=key, name_key="kind")
    net = spec.get("net", "D")
    if net not in ("G", "D"):
        raise ConfigError(f"{key}.net: bad value {net!r}; use G or D")
    return CONSTRAINTS.build(spec, key=key, name_key="kind", common=("net",), fixed={"net": net})


def validate_constraints(specs: Dict[str, Any] | None) -> None:
    """Check the ``constraints`` section (kinds, nets, options) without networks."""
    if specs is not None and not isinstance(specs, dict):
        raise ConfigError(f"constraints: expected a mapping of named constraints, got {specs!r}")
    for name, spec in (specs or {}).items():
        _make(name, spec)


def build_constraints(specs: Dict[str, Any], *, G: nn.Module, D: nn.Module) -> list:
    """Constraint objects from the config; applies build-time parametrizations to G/D."""
    out = []
    for name, spec in (specs or {}).items():
        c = _make(name, spec)
        c.setup(G if c.net == "G" else D)
        out.append(c)
    return out
