"""Training: the loop, EMA, checkpoints, run folders and logging.

``Trainer`` is imported on first use, so that the leaf modules of this package (checkpoint,
run_dir, build, ...) can be imported by sampling and evaluation without importing the loop.
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
