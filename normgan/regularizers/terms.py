"""The registered regularization terms (thin wrappers over normgan.functional)."""

from __future__ import annotations

import fnmatch

from torch import Tensor

from normgan.errors import ConfigError
from normgan.regularizers.base import TERMS, Term, TermContext


@TERMS.register("weights")
class WeightsTerm(Term):
    """A norm of a network's parameters: ``l2`` Σθ², ``l1`` Σ|θ|.

    Parameters are selected by ``pattern`` (fnmatch on names from ``named_parameters``); by default
    every parameter with more than one dimension (conv and linear weights; not biases or norm scales).
    Reduction: a sum over all selected elements (it grows with the network's size, not the batch).
    """

    NORMS = ("l1", "l2")

    def __init__(self, *, net: str, norm: str = "l2", pattern: str | None = None) -> None:
        super().__init__(net=net)
        if norm not in self.NORMS:
            raise ConfigError(f"norm: unknown norm {norm!r} for term 'weights'; choose one of: {', '.join(self.NORMS)}")
        self.norm, self.pattern = norm, pattern

    def select(self, module):
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            if (self.pattern is None and p.ndim > 1) or (self.pattern is not None and fnmatch.fnmatch(name, self.pattern)):
                yield p

    def forward(self, ctx: TermContext) -> Tensor:
        params = list(self.select(ctx.G if self.net == "G" else ctx.D))
        if self.norm == "l1":
            return sum(p.abs().sum() for p in params)
        return sum(p.pow(2).sum() for p in params)
