"""normgan's functional core: pure tensor-in, tensor-out functions.

Adversarial losses, norms, penalties, spectral normalization, hard-concrete gates and weighting
rules live here; the configurable objects in :mod:`normgan.regularizers` and the training loop call
them.
"""

from normgan.functional import gates, losses, norms, penalties, spectral, weighting
from normgan.functional.gates import *  # noqa: F401,F403
from normgan.functional.losses import *  # noqa: F401,F403
from normgan.functional.norms import *  # noqa: F401,F403
from normgan.functional.penalties import *  # noqa: F401,F403
from normgan.functional.spectral import *  # noqa: F401,F403
from normgan.functional.weighting import *  # noqa: F401,F403

__all__ = [*losses.__all__, *norms.__all__, *penalties.__all__, *gates.__all__, *spectral.__all__, *weighting.__all__]
