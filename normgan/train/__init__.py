"""Training: the loop, EMA, checkpoints, run folders and logging."""

from normgan.train.loop import Interrupted, Trainer

__all__ = ["Trainer", "Interrupted"]
