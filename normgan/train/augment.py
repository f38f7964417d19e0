"""The run's augmentation of D's inputs (the ``augment:`` section): what D sees, in every phase, is
T(x) for real and generated images alike (DiffAugment or ADA, :mod:`normgan.functional.augment`).

* Where: on the objective seam (:meth:`normgan.train.objective.Objective.critics` wraps D as a
  function of the image), so the D step's real and fake forwards, the G step's forward (and a
  relativistic loss's real one) and the terms that call D through the critic all see T(·), each
  call with new random parameters. G, the EMA generator, sample grids, evaluation and paired
  targets never do. A paired run's D sees cat(T(x), T(y)): one draw applied to both halves of the pair.
* Randomness: the parameters of the GLOBAL batch are drawn from torch's default generator (on the
  images' device) and each rank keeps its rows, so every rank draws the same and 2 processes equal
  1; the generator's state is in every checkpoint, so resume is exact.
* Gradient penalties (``penalty``): ``input`` (default; R3GAN and StyleGAN2-ADA) differentiates
  D(T(x)) w.r.t. the un-augmented x, through T, reusing the D step's forward; ``augmented`` takes
  the augmented image T(x) as the penalty's input, ∇_{T(x)} D(T(x)) (unconditional runs).
* p: a number, a schedule mapping (the loop sets p_t before each step), or ``adaptive``: ADA's
  controller. The loop hands each D step's real logits to :meth:`Augment.observe`; every
  ``interval`` steps :meth:`Augment.adapt` takes r_t = E[sign D(T(x_real))] over the interval (summed
  over ranks: every rank gets the same p) and moves p by sign(r_t − target)·B·interval/speed,
  clamped to [0, 1]. p, r_t and the running sums are checkpointed; ``aug/p`` and ``aug/rt`` are logged.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from normgan.functional.augment import (
    ADA_OPS,
    ada_apply,
    ada_p_update,
    ada_params,
    diffaugment_apply,
    diffaugment_params,
)
from normgan.regularizers.weights import WeightContext, build_schedule
from normgan.runtime.distributed import Dist

#: each kind's ops when ``augment.ops`` is not given (DiffAugment's policy for few images; ADA's bgc subset)
DEFAULT_OPS = {"diffaugment": ("color", "translation", "cutout"), "ada": ADA_OPS}


class AugmentedCritic:
    """D as a function of the image, with its input augmented: ``y ↦ critic(T(y))``; for a paired
    (conditional) critic ``y ↦ D(cat(T(x), T(y)))`` with one draw for both halves."""

    def __init__(self, critic: Callable[[Tensor], Tensor], augment: "Augment") -> None:
        self.critic, self.augment = critic, augment

    def __call__(self, y: Tensor) -> Tensor:
        cond = getattr(self.critic, "cond", None)
        if cond is None:
            return self.critic(self.augment.images(y))
        params = self.augment.params(y)
        if params is None:
            return self.critic(y)
        return self.critic.D(torch.cat([self.augment.apply(cond, params), self.augment.apply(y, params)], dim=1))


class Augment:
    """The ``augment`` section at work (see the module docstring); build with :func:`build_augment`."""

    def __init__(self, a, *, batch_size: int, dist: Optional[Dist] = None) -> None:
        self.kind, self.penalty = a.kind, a.penalty
        self.ops = tuple(a.ops) if a.ops else DEFAULT_OPS[a.kind]
        self.batch_size, self.dist = batch_size, dist or Dist()
        p = a.p if a.p is not None else ("adaptive" if a.kind == "ada" else 1.0)
        self.adaptive = p == "adaptive"
        self.rule = build_schedule(p, key="augment.p") if isinstance(p, dict) else None
        self.p = 0.0 if self.adaptive else (float(p) if self.rule is None else self._scheduled(0))
        self.target, self.speed, self.interval = float(a.target), float(a.speed), int(a.interval)
        self.rt: Optional[float] = None
        self._signs: Optional[Tensor] = None  # Σ sign(D(T(x_real))) and the logit count since the last adjustment
        self._count: Optional[Tensor] = None

    def _scheduled(self, step: int) -> float:
        return min(max(float(self.rule.value(WeightContext(step=step))), 0.0), 1.0)

    # ---------------------------------------------------------------- images
    def params(self, x: Tensor):
        """Parameters for this rank's images ``x``: drawn for the global batch (``x``'s rows × the
        number of ranks), this rank's rows kept; None when p = 0 (nothing is drawn)."""
        if self.p <= 0.0:
            return None
        n, size = x.shape[0] * self.dist.world, x.shape[2]
        if self.kind == "ada":
            params = ada_params(n, self.ops, p=self.p, size=size, channels=x.shape[1], device=x.device)
        else:
            params = diffaugment_params(n, self.ops, size=size, p=self.p, device=x.device)
        return {k: self.dist.shard(v) for k, v in params.items()}

    def apply(self, x: Tensor, params) -> Tensor:
        if params is None:
            return x
        return ada_apply(x, params) if self.kind == "ada" else diffaugment_apply(x, params)

    def images(self, x: Tensor) -> Tensor:
        """T(x) with new parameters."""
        return self.apply(x, self.params(x))

    def critic(self, critic: Callable[[Tensor], Tensor]) -> AugmentedCritic:
        return AugmentedCritic(critic, self)

    @property
    def before_d(self) -> bool:
        """``penalty: augmented``: the D step augments its images itself and hands T(x) to D and the terms."""
        return self.penalty == "augmented"

    def penalty_input(self, x: Tensor) -> Tensor:
        """T(x), detached: the leaf a penalty differentiates w.r.t. with ``penalty: augmented``."""
        return self.images(x).detach()

    # ---------------------------------------------------------------- p
    def set_step(self, step: int) -> None:
        """p_t of a scheduled p, before step ``step`` (a constant or adaptive p: nothing)."""
        if self.rule is not None:
            self.p = self._scheduled(step)

    def observe(self, d_real: Tensor) -> None:
        """Add a D step's real logits to r_t's sums (adaptive p only; no host sync)."""
        if not self.adaptive:
            return
        s = torch.sign(d_real.detach().float()).sum()
        n = torch.tensor(float(d_real.numel()), device=s.device)
        self._signs = s if self._signs is None else self._signs + s
        self._count = n if self._count is None else self._count + n

    def adapt(self, step: int) -> None:
        """After step ``step``: every ``interval``-th step, r_t over the interval (all ranks) and
        ADA's update of p; the sums start again."""
        if not self.adaptive or (step + 1) % self.interval or self._count is None:
            return
        total = self.dist.sum(torch.stack([self._signs, self._count]))
        self.rt = float(total[0] / total[1])
        self.p = ada_p_update(
            self.p, self.rt, target=self.target, batch_size=self.batch_size, interval=self.interval, speed=self.speed
        )
        self._signs = self._count = None

    def log(self) -> dict:
        """``aug/p`` (and ``aug/rt`` once an adaptive p has been adjusted)."""
        row = {"aug/p": self.p}
        if self.rt is not None:
            row["aug/rt"] = self.rt
        return row

    # ---------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict:
        pending = None if self._count is None else [float(self._signs), float(self._count)]
        return {"p": self.p, "rt": self.rt, "pending": pending}

    def load_state_dict(self, state: dict) -> None:
        self.p, self.rt = float(state["p"]), state.get("rt")
        pending = state.get("pending")
        if pending is None:
            self._signs = self._count = None
        else:
            self._signs, self._count = torch.tensor(pending[0]), torch.tensor(pending[1])


def build_augment(a, *, batch_size: int, dist: Optional[Dist] = None) -> Optional[Augment]:
    """The run's :class:`Augment`, or None for ``augment.kind: none``."""
    return None if a.kind == "none" else Augment(a, batch_size=batch_size, dist=dist)
