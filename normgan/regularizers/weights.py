"""Weights of regularization terms: modules with ``apply(raw, ctx)``, state checkpointed.

A number in the config is a constant weight. Schedules and adaptive weights register in ``WEIGHTS``
and in their family's registry (``SCHEDULE_RULES`` or ``ADAPTIVE``), and are written as a mapping,
e.g. ``weight: {schedule: warmup, base: 10, steps: 500}``, built by ``Registry.build``.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor, nn

from normgan.errors import ConfigError, UserError
from normgan.functional.weighting import (
    SCHEDULES,
    grad_ratio_weight,
    gradnorm_grad_norms,
    gradnorm_loss,
    gradnorm_targets,
    overfit_rt,
    rt_controller_update,
    uncertainty_weighting,
)
from normgan.registry import Registry

#: every weight rule written as a mapping: the schedules and the adaptive rules
WEIGHTS = Registry("weight rule")
#: ``weight: {schedule: NAME, ...}``: one per function of ``normgan.functional.SCHEDULES``
SCHEDULE_RULES = Registry("schedule")
#: ``weight: {adaptive: NAME, ...}``: rules with state that follow the training
ADAPTIVE = Registry("adaptive")


def _rule(family: Registry, name: str):
    """Register a weight rule under ``name`` in WEIGHTS and in its family (schedule or adaptive)."""

    def decorator(obj):
        WEIGHTS.register(name)(obj)
        return family.register(name)(obj)

    return decorator


@dataclass
class WeightContext:
    """What a weight rule may read when the loop applies it.

    ``step``: the loop's step (schedules are functions of it; the loop owns counting).
    ``module``: the network the term regularizes (G or D). ``adv_loss``: that network's adversarial
    loss this step, with its graph (for gradient-ratio rules; None in lazy phases).
    ``d_real``: D's logits on the real batch (for the overfitting controller; D phase only).
    """

    step: int
    module: Optional[nn.Module] = None
    adv_loss: Optional[Tensor] = None
    d_real: Optional[Tensor] = None


class Weight(nn.Module):
    """Base of weight rules. ``apply(raw, ctx)`` returns (weighted loss, λ as a float for logging).

    Rules are modules so their state (buffers) and learned parameters (uncertainty weighting) are
    checkpointed with ``state_dict``; the loop adds their parameters to the regularized network's
    optimizer. ``nets``: the networks a rule can weight (build_regularizers checks it).
    """

    nets: tuple[str, ...] = ("G", "D")

    def value(self, ctx: WeightContext) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def apply(self, raw: Tensor, ctx: WeightContext) -> tuple[Tensor, float]:
        w = self.value(ctx)
        return raw * w, float(w)


class ConstantWeight(Weight):
    """λ_t = value."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.constant = float(value)

    def value(self, ctx: WeightContext) -> float:
        return self.constant


def _nonneg_number(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise ConfigError(f"{name}: bad value {v!r}; must be a finite number >= 0")
    return float(v)


# ----------------------------------------------------------------------------- schedules


class ScheduleWeight(Weight):
    """λ_t = base × multiplier(step), the multiplier from ``normgan.functional.SCHEDULES``.

    Config: ``weight: {schedule: warmup, base: 10, steps: 500}``; the other keys are the schedule
    function's keyword arguments (``linear``/``cosine``: start, end, final; ``step``: every, factor;
    ``start_at``: start; ``warmup``: steps, start_value; ``cosine_warmup``: end, final, warmup,
    start_value, hold). Stateless: λ is a function of the step.
    The schedule is evaluated once at build time so that bad windows (end before start) fail early.
    """

    def __init__(self, schedule: str, *, base: float = 1.0, **params: Any) -> None:
        super().__init__()
        self.fn = SCHEDULES.get(schedule, key="schedule")
        self.schedule, self.base, self.params = schedule, _nonneg_number("base", base), dict(params)
        try:
            inspect.signature(self.fn).bind(0, **params)
        except TypeError:
            allowed = [p for p in inspect.signature(self.fn).parameters if p != "step"]
            raise ConfigError(
                f"schedule '{schedule}' takes {', '.join(['base'] + allowed)}; got {', '.join(sorted(params)) or 'nothing'}"
            ) from None
        start, end = params.get("start"), params.get("end")
        if isinstance(start, (int, float)) and isinstance(end, (int, float)) and end < start:
            raise ConfigError(f"end: bad value {end!r}; the schedule ends before it starts (start: {start!r})")
        self.fn(0, **params)  # raises ConfigError for end < start, negative values, ...

    def value(self, ctx: WeightContext) -> float:
        return self.base * self.fn(ctx.step, **self.params)

    def extra_repr(self) -> str:
        return f"{self.schedule}, base={self.base}, {self.params}"


def _schedule_factory(name: str):
    def make(**params: Any) -> ScheduleWeight:
        return ScheduleWeight(name, **params)

    make.__doc__ = f"``weight: {{schedule: {name}, base: ..., ...}}`` (see :class:`ScheduleWeight`)."
    return make


for _name in SCHEDULES.names():
    _rule(SCHEDULE_RULES, _name)(_schedule_factory(_name))


# ----------------------------------------------------------------------------- adaptive


def _last_layer(module: Optional[nn.Module], rule: str) -> Tensor:
    layer = getattr(module, "last_layer", None)
    if not isinstance(layer, Tensor):
        raise UserError(
            f"weight rule '{rule}' needs a network with a 'last_layer' weight (the generator's output layer); {type(module).__name__} has none"
        )
    return layer


@_rule(ADAPTIVE, "grad_ratio")
class GradRatioWeight(Weight):
    """VQGAN's adaptive weight: λ = base · clamp(‖∇_W L_term‖ / (‖∇_W L_adv‖ + δ), 0, max_weight).

    W = ``module.last_layer`` (G's output layer). Computed by
    :func:`normgan.functional.grad_ratio_weight` (detached) each time the term runs with the
    network's adversarial loss; in a lazy phase (no adversarial loss) the last ratio is reused. The
    ratio is kept in the buffer ``ratio`` (initially 1) so a resumed run continues from it. G only.
    Config: ``weight: {adaptive: grad_ratio, base: 0.8}``.
    """

    nets = ("G",)

    def __init__(self, *, base: float = 0.8, delta: float = 1e-4, max_weight: float = 1e4) -> None:
        super().__init__()
        self.base = _nonneg_number("base", base)
        if not delta > 0:
            raise ConfigError(f"delta: bad value {delta!r}; must be > 0")
        self.delta, self.max_weight = float(delta), _nonneg_number("max_weight", max_weight)
        self.register_buffer("ratio", torch.tensor(1.0))

    def apply(self, raw: Tensor, ctx: WeightContext) -> tuple[Tensor, float]:
        if ctx.adv_loss is not None and raw.requires_grad:
            layer = _last_layer(ctx.module, "grad_ratio")
            r = grad_ratio_weight(raw, ctx.adv_loss, layer, delta=self.delta, max_weight=self.max_weight)
            self.ratio.copy_(r)
        lam = self.base * self.ratio.detach()
        return raw * lam, float(lam)


@_rule(ADAPTIVE, "uncertainty")
class UncertaintyWeight(Weight):
    """Kendall et al. (2018): the weighted term is ½·e^{−s}·raw + ½·s with a learned s = log σ².

    ``s`` is an ``nn.Parameter`` (initial value ``init``, default 0 → λ = ½) trained by the
    regularized network's optimizer on this same objective. Logged λ = ½·e^{−s}.
    Config: ``weight: {adaptive: uncertainty, init: 0.0}``.
    """

    def __init__(self, *, init: float = 0.0) -> None:
        super().__init__()
        self.log_var = nn.Parameter(torch.tensor(float(init)))

    def apply(self, raw: Tensor, ctx: WeightContext) -> tuple[Tensor, float]:
        weighted = uncertainty_weighting([raw], self.log_var.reshape(1).to(raw.dtype))
        return weighted, float(0.5 * torch.exp(-self.log_var.detach()))


@_rule(ADAPTIVE, "gradnorm")
class GradNormWeight(Weight):
    """GradNorm (Chen et al. 2018) for ONE term against the adversarial loss: λ = w, learned.

    Two tasks share the layer W = ``module.last_layer``: the adversarial loss (its weight fixed at
    1, since the loop owns it) and this term (weight w, an ``nn.Parameter`` initialised to
    ``init``). Each time the term runs with the adversarial loss, G_i = ‖∇_W(w_i L_i)‖, the loss
    ratios L_i(t)/L_i(0) (initial losses in the buffer ``initial``) give r_i, and the GradNorm loss
    Σ|G_i − mean(G)·r_i^α| is added with a gradient that reaches **w only** (its value is added and
    subtracted, so the reported loss is exactly w·raw and the network sees the gradient of w·raw).

    Limitations (honest): w is updated by the network's own optimizer and learning rate (GradNorm
    usually gives the weights their own); with the adversarial weight fixed there is no Σw_i = T
    renormalisation, so w is only clamped at ≥ 0 where it is used; in lazy phases w is used but not
    updated. Config: ``weight: {adaptive: gradnorm, init: 1.0, alpha: 1.5}``. G only.
    """

    nets = ("G",)

    def __init__(self, *, init: float = 1.0, alpha: float = 1.5) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(_nonneg_number("init", init)))
        self.alpha = _nonneg_number("alpha", alpha)
        self.register_buffer("initial", torch.full((2,), float("nan")))

    def apply(self, raw: Tensor, ctx: WeightContext) -> tuple[Tensor, float]:
        w = self.w.clamp(min=0.0)
        weighted = raw * w.detach()
        if ctx.adv_loss is not None and raw.requires_grad:
            layer = _last_layer(ctx.module, "gradnorm")
            losses = [ctx.adv_loss, raw]
            current = torch.stack([l.detach().reshape(()) for l in losses]).to(self.initial.dtype)
            if torch.isnan(self.initial).any():
                self.initial.copy_(current.abs().clamp(min=1e-12))
            weights = torch.stack([torch.ones_like(w), w])
            norms = gradnorm_grad_norms(losses, weights, layer)
            targets = gradnorm_targets(norms, current.abs() / self.initial, alpha=self.alpha)
            gn = gradnorm_loss(norms, targets)
            weighted = weighted + (gn - gn.detach()).to(weighted.dtype)
        return weighted, float(w.detach())


@_rule(ADAPTIVE, "target")
class TargetWeight(Weight):
    """Overfitting controller on D (StyleGAN2-ADA style): λ moves toward keeping r_t at ``target``.

    r_t = E[sign D(real)] from the step's real logits (:func:`normgan.functional.overfit_rt`); each
    call with ``d_real`` does one :func:`normgan.functional.rt_controller_update`
    (multiplicative by default: λ ← λ·e^{±step_size}), clamped to [min_value, max_value]. λ lives
    in the buffer ``lam`` (initially ``base``), so it is checkpointed. When the context has no
    ``d_real`` (lazy phases) λ is used unchanged. D only.
    Config: ``weight: {adaptive: target, base: 1.0, target: 0.6, step_size: 0.01}``.
    """

    nets = ("D",)

    def __init__(
        self,
        *,
        base: float = 1.0,
        target: float = 0.6,
        step_size: float = 0.01,
        mode: str = "multiplicative",
        min_value: float = 0.0,
        max_value: float = 1e6,
    ) -> None:
        super().__init__()
        if not -1.0 <= target <= 1.0:
            raise ConfigError(f"target: bad value {target!r}; r_t lies in [-1, 1]")
        if mode not in ("multiplicative", "additive"):
            raise ConfigError(f"mode: bad value {mode!r}; use multiplicative or additive")
        self.target, self.step_size, self.mode = float(target), _nonneg_number("step_size", step_size), mode
        self.min_value, self.max_value = _nonneg_number("min_value", min_value), _nonneg_number("max_value", max_value)
        if self.min_value > self.max_value:
            raise ConfigError(f"min_value: {min_value} exceeds max_value {max_value}")
        self.register_buffer("lam", torch.tensor(_nonneg_number("base", base), dtype=torch.float64))

    def apply(self, raw: Tensor, ctx: WeightContext) -> tuple[Tensor, float]:
        if ctx.d_real is not None:
            new = rt_controller_update(
                float(self.lam),
                overfit_rt(ctx.d_real),
                target=self.target,
                step_size=self.step_size,
                mode=self.mode,
                min_value=self.min_value,
                max_value=self.max_value,
            )
            self.lam.fill_(new)
        lam = float(self.lam)
        return raw * lam, lam


def build_weight(spec: Any, *, key: str):
    """A weight object from a number or a mapping; raises ConfigError naming ``key``."""
    if isinstance(spec, bool) or not isinstance(spec, (int, float, dict)):
        raise ConfigError(f"{key}: bad value {spec!r}; give a non-negative number or a mapping (schedule/adaptive)")
    if isinstance(spec, dict):
        if ("schedule" in spec) == ("adaptive" in spec):
            raise ConfigError(
                f"{key}: a weight mapping needs exactly one of 'schedule' ({', '.join(SCHEDULE_RULES)}) or 'adaptive' ({', '.join(ADAPTIVE)})"
            )
        family, rules = ("schedule", SCHEDULE_RULES) if "schedule" in spec else ("adaptive", ADAPTIVE)
        return rules.build(spec, key=key, name_key=family)
    if not math.isfinite(spec) or spec < 0:
        raise ConfigError(f"{key}: bad value {spec!r}; weights must be finite and >= 0")
    return ConstantWeight(spec)


# ----------------------------------------------------------------------------- optimizer hyperparameters


def build_schedule(spec: Any, *, key: str) -> Weight:
    """An optimizer hyperparameter (lr, Adam β₂, EMA half-life) as a rule of the step: a number
    (:class:`ConstantWeight`) or a term weight's schedule mapping ``{schedule: NAME, base: ..., ...}``
    (:class:`ScheduleWeight`, value = base × multiplier(step)). Adaptive rules follow the training,
    which the loop's hyperparameters do not, and are refused. Raises ConfigError naming ``key``."""
    if isinstance(spec, dict) and "schedule" not in spec:
        raise ConfigError(
            f"{key}: a mapping here is a schedule and needs 'schedule: NAME' ({', '.join(SCHEDULE_RULES)}), "
            "e.g. {schedule: cosine_warmup, base: 2.0e-4, end: 10000}"
        )
    return build_weight(spec, key=key)


def schedule_breakpoints(spec: dict, steps: int) -> list[int]:
    """The steps in [0, steps] where a schedule's pieces meet: 0, ``steps``, every numeric option
    and every sum of two (cosine_warmup's ``warmup + hold``), each ±1. Every registered multiplier is
    monotone between them, so its extremes on [0, steps] are among these."""
    opts = [int(v) for k, v in spec.items() if k not in ("schedule", "base") and isinstance(v, (int, float))]
    opts = [v for v in opts if v >= 0]
    points = {0, steps, *opts, *(a + b for i, a in enumerate(opts) for b in opts[i + 1 :])}
    return sorted({min(max(p + d, 0), steps) for p in points for d in (-1, 0, 1)})


def check_schedule(
    spec: dict, *, key: str, steps: int, positive_base: bool = False, below: Optional[float] = None
) -> Weight:
    """Build a schedule mapping (:func:`build_schedule`) and check it before the first step:
    ``positive_base``: its base must be > 0 (a learning rate); ``below``: its value must stay under
    this bound at every step up to ``steps`` (β₂ < 1). One-line ConfigErrors naming ``key``."""
    rule = build_schedule(spec, key=key)
    if positive_base and not rule.base > 0:
        raise ConfigError(f"{key}.base: bad value {spec.get('base', 1.0)!r}; must be > 0")
    if below is not None:
        for step in schedule_breakpoints(spec, steps):
            value = rule.value(WeightContext(step=step))
            if not value < below:
                raise ConfigError(
                    f"{key}: the schedule reaches {value:.6g} at step {step}; it must stay below {below:g} "
                    "(lower its base or final)"
                )
    return rule
