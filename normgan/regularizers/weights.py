"""Weights of regularization terms: objects with ``value(step)``, state checkpointed.

A number in the config is a constant weight. Schedules and adaptive weights register in ``WEIGHTS``
and are written as a mapping, e.g. ``weight: {schedule: warmup, base: 10, steps: 500}``.
"""

from __future__ import annotations

import math
from typing import Any

from normgan.errors import ConfigError
from normgan.registry import Registry

WEIGHTS = Registry("weight rule")


class ConstantWeight:
    """λ_t = value."""

    def __init__(self, value: float) -> None:
        self.value_ = float(value)

    def value(self, step: int) -> float:
        return self.value_

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def build_weight(spec: Any, *, key: str):
    """A weight object from a number or a mapping; raises ConfigError naming ``key``."""
    if isinstance(spec, bool) or not isinstance(spec, (int, float, dict)):
        raise ConfigError(f"{key}: bad value {spec!r}; give a non-negative number or a mapping (schedule/adaptive)")
    if isinstance(spec, dict):
        kind = spec.get("schedule") or spec.get("adaptive")
        if kind is None:
            raise ConfigError(f"{key}: a weight mapping needs 'schedule' or 'adaptive'; choose one of: {', '.join(WEIGHTS.names())}")
        cls = WEIGHTS.get(kind, key=key)
        params = {k: v for k, v in spec.items() if k not in ("schedule", "adaptive")}
        try:
            return cls(**params)
        except ConfigError as e:
            raise ConfigError(f"{key}: {e}") from None
        except TypeError as e:
            raise ConfigError(f"{key}: {e}") from None
    if not math.isfinite(spec) or spec < 0:
        raise ConfigError(f"{key}: bad value {spec!r}; weights must be finite and >= 0")
    return ConstantWeight(spec)
