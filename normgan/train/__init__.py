"""Training: the loop, EMA, run folders and logging.

Nothing below training (evaluation, sampling, translation, metrics, reports) imports this
package: checkpoint I/O and network building live in :mod:`normgan.models.checkpoint` and
:mod:`normgan.models.build`. ``Trainer`` is imported on first use, so that ``import
normgan.train.logger`` (and the other leaves) does not import the loop.
"""

__all__ = ["Trainer", "Interrupted"]


def __getattr__(name: str):
    if name == "Trainer":
        from normgan.train.loop import Trainer

        return Trainer
    if name == "Interrupted":
        from normgan.errors import Interrupted

        return Interrupted
    raise AttributeError(f"module 'normgan.train' has no attribute {name!r}")
