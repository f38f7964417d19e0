"""Regularization terms: quantity × norm × weight, on G or D, with an interval.

A config's ``regularizers:`` section is a named set of terms::

    regularizers:
      wd_g: {term: weights, net: G, norm: l2, weight: 1.0e-5}
      r1:   {term: grad, at: real, weight: 5.0, every: 16}

:func:`build_regularizers` turns it into :class:`Regularizer` objects; the training loop decides when
each runs (``every``), applies the gain and logs ``reg/<name>/raw|weight|loss``. Terms are pure: they
compute a raw value from a :class:`TermContext` and never count steps.
"""

from normgan.regularizers import terms  # noqa: F401  (registers the terms)
from normgan.regularizers.base import TERMS, Regularizer, Term, TermContext, build_regularizers, validate_regularizers
from normgan.regularizers.constraints import CONSTRAINTS, build_constraints
from normgan.regularizers.weights import WEIGHTS, ConstantWeight, Weight, WeightContext, build_weight

__all__ = [
    "Regularizer",
    "Term",
    "TermContext",
    "TERMS",
    "WEIGHTS",
    "Weight",
    "WeightContext",
    "ConstantWeight",
    "build_regularizers",
    "build_weight",
    "validate_regularizers",
    "CONSTRAINTS",
    "build_constraints",
]
