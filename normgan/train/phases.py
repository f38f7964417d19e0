"""The training step as data: its phases, built once from the config, and what each phase shares.

A step runs the due phases in order (StyleGAN2-ADA's ``phases`` list, ``training/training_loop.py``):

=======  =======  ============  ======================================================
phase    trains   when          loss
=======  =======  ============  ======================================================
D        D        every step,   adversarial D loss + D's terms with ``every: 1``
                  d_steps times
Dreg     D        every k_D     k_D · Σ λ·raw of D's lazy terms (``every: k_D > 1``)
G        G        every step    adversarial G loss + G's terms with ``every: 1``
Greg     G        every k_G     k_G · Σ λ·raw of G's lazy terms
=======  =======  ============  ======================================================

A lazy phase exists only when its network has lazy terms. Its gain k multiplies the terms' weights
(the objective applies it) and its network's Adam uses the correction c = k/(k+1): lr·c and β^c
(:func:`lazy_adam_correction`, set once when the optimizers are built or restored). The step's
single host sync (the losses finite?) closes the G phase and the Greg phase (``checks``): it covers
every loss since the previous check.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Dict, List, Optional

from torch import nn


@dataclass(frozen=True)
class Phase:
    """One part of the step: the network it trains (``net``), how often (every ``every``-th step),
    how many times in a row (``repeat``: ``optim.d_steps`` for D), whether it runs the lazy terms
    (``lazy``), which network is frozen during its forwards (``freeze``: G's phases need gradients
    through D, not for D's weights) and whether the step's finite check closes it (``checks``)."""

    name: str
    net: str
    every: int = 1
    repeat: int = 1
    lazy: bool = False
    freeze: Optional[str] = None
    checks: bool = False

    def due(self, step: int) -> bool:
        return step % self.every == 0


def build_phases(*, d_steps: int, lazy_every: Dict[str, int]) -> List[Phase]:
    """The step's phases in order: D (× ``d_steps``), Dreg, G, Greg; a lazy phase only where its
    network's lazy interval ``lazy_every[net]`` is above 1."""
    phases = [Phase("D", "D", repeat=d_steps)]
    if lazy_every["D"] > 1:
        phases.append(Phase("Dreg", "D", every=lazy_every["D"], lazy=True))
    phases.append(Phase("G", "G", freeze="D", checks=True))
    if lazy_every["G"] > 1:
        phases.append(Phase("Greg", "G", every=lazy_every["G"], lazy=True, freeze="D", checks=True))
    return phases


def lazy_adam_correction(lr: float, betas, every: int) -> tuple[float, tuple[float, float]]:
    """StyleGAN2's correction for a lazy phase every k steps: c = k/(k+1), lr·c, β^c (k = 1: none)."""
    if every <= 1:
        return lr, tuple(betas)
    c = every / (every + 1)
    return lr * c, (betas[0] ** c, betas[1] ** c)


@contextlib.contextmanager
def frozen(module: Optional[nn.Module]):
    """``module``'s parameters need no gradient inside the block (None: nothing is frozen); they
    need one again afterwards, also when the block raises."""
    if module is None:
        yield
        return
    module.requires_grad_(False)
    try:
        yield
    finally:
        module.requires_grad_(True)
