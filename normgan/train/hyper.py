"""The optimizer hyperparameters of a step: learning rates, Adam β₂ and the EMA decay, each a pure
function of the step (so a resumed run sets the same values as an uninterrupted one).

``optim.g.lr``, ``optim.d.lr``, ``optim.{g,d}.betas[1]`` and ``optim.ema_halflife`` are numbers or
term-weight schedule mappings ``{schedule: NAME, base: b, ...}`` (:func:`normgan.regularizers.weights.build_schedule`):

* value_t = b × m(t), m a multiplier of :data:`normgan.functional.SCHEDULES` (a number: constant);
* Adam of network N with lazy interval k (c = k/(k+1), :func:`normgan.train.phases.lazy_adam_correction`;
  k = 1: c = 1): main group lr = lr_t·c, betas = (β₁^c, β₂,t^c); gate group lr = ``optim.gate_lr``·c,
  the same betas;
* EMA: with ``optim.ema_halflife`` h_t (images) β_t = 0.5^(B / h_t), B = ``data.batch_size`` (the
  global batch: the images G sees per step), β_t = 0 at h_t = 0
  (:func:`normgan.train.ema.ema_halflife_decay`); without it β_t = min(``optim.ema``, (1 + t)/(10 + t))
  with ``optim.ema_rampup``, else ``optim.ema`` (:func:`normgan.train.ema.ema_decay`).

The loop sets the values before each step's first optimizer step and logs those given as a
schedule under ``optim/lr_g``, ``optim/lr_d``, ``optim/beta2_g``, ``optim/beta2_d`` (the
configured values, before the lazy correction) and ``optim/ema_beta``.
"""

from __future__ import annotations

from typing import Dict, Tuple

from normgan.regularizers.weights import WeightContext, build_schedule
from normgan.train.ema import ema_decay, ema_halflife_decay
from normgan.train.phases import lazy_adam_correction


class OptimSchedule:
    """The hyperparameters of ``optim`` (an :class:`~normgan.config.OptimConfig`) at any step.

    ``batch_size``: the global batch (the EMA half-life counts images); ``lazy_every``: each
    network's lazy interval k (``{"G": k_G, "D": k_D}``) for the Adam correction. ``scheduled``:
    the names (``lr_g``, ``beta2_d``, ``ema_beta``, ...) whose config value is a schedule mapping.
    """

    def __init__(self, optim, *, batch_size: int, lazy_every: Dict[str, int]) -> None:
        self.batch_size, self.lazy_every, self.gate_lr = batch_size, dict(lazy_every), float(optim.gate_lr)
        self.ema, self.ema_rampup = optim.ema, optim.ema_rampup
        specs = {}
        self.beta1 = {}
        for net, adam in (("g", optim.g), ("d", optim.d)):
            specs[f"lr_{net}"] = (adam.lr, f"optim.{net}.lr")
            specs[f"beta2_{net}"] = (adam.betas[1], f"optim.{net}.betas[1]")
            self.beta1[net] = float(adam.betas[0])
        halflife = optim.ema_halflife
        if halflife is not None and halflife != 0:
            specs["ema_halflife"] = (halflife, "optim.ema_halflife")
        self.rules = {name: build_schedule(spec, key=key) for name, (spec, key) in specs.items()}
        self.scheduled = tuple(
            ("ema_beta" if name == "ema_halflife" else name)
            for name, (spec, _) in specs.items()
            if isinstance(spec, dict)
        )
        #: whether an lr or β2 follows a schedule (the loop then sets the optimizers before each step)
        self.adam_scheduled = any(name != "ema_beta" for name in self.scheduled)

    def _at(self, name: str, step: int) -> float:
        return float(self.rules[name].value(WeightContext(step=step)))

    def ema_beta(self, step: int) -> float:
        """The EMA decay β_t of step ``step``."""
        if "ema_halflife" in self.rules:
            return ema_halflife_decay(self._at("ema_halflife", step), batch_size=self.batch_size)
        return ema_decay(step, decay=self.ema, rampup=self.ema_rampup)

    def values(self, step: int) -> Dict[str, float]:
        """The configured values at ``step`` (before the lazy correction): lr_g, lr_d, beta2_g, beta2_d, ema_beta."""
        out = {name: self._at(name, step) for name in ("lr_g", "lr_d", "beta2_g", "beta2_d")}
        out["ema_beta"] = self.ema_beta(step)
        return out

    def adam(self, net: str, step: int) -> Tuple[float, Tuple[float, float], float]:
        """Network ``net`` ("G" or "D")'s Adam settings at ``step``, lazily corrected: (lr of the
        main group, betas of every group, lr of the gate group)."""
        n = net.lower()
        every = self.lazy_every[net]
        lr, betas = lazy_adam_correction(
            self._at(f"lr_{n}", step), (self.beta1[n], self._at(f"beta2_{n}", step)), every
        )
        gate_lr, _ = lazy_adam_correction(self.gate_lr, betas, every)
        return lr, betas, gate_lr

    def log(self, step: int) -> Dict[str, float]:
        """``optim/<name>`` for the scheduled values at ``step`` (nothing when all are constants)."""
        if not self.scheduled:
            return {}
        values = self.values(step)
        return {f"optim/{name}": values[name] for name in self.scheduled}
