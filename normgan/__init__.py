"""normgan: GAN training for image synthesis with norm regularization as a first-class concept.

    from normgan import load_config, Trainer
    cfg = load_config("configs/mnist.yaml", overrides=["train.steps=500"])
    run_dir = Trainer(cfg).fit()

``Config``, ``load_config`` and ``Trainer`` are imported on first use (PEP 562), so that
``import normgan.cli`` stays light: the command line handles Ctrl-C while torch loads.
"""

from normgan.runtime.version import __version__

__all__ = ["Config", "load_config", "Trainer", "__version__"]


def __getattr__(name: str):
    if name in ("Config", "load_config"):
        from normgan import config

        return getattr(config, name)
    if name == "Trainer":
        from normgan.train.loop import Trainer

        return Trainer
    raise AttributeError(f"module 'normgan' has no attribute {name!r}")
