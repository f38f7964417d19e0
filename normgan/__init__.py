"""normgan: GAN training for image synthesis with norm regularization as a first-class concept.

    from normgan import load_config, Trainer
    cfg = load_config("configs/mnist.yaml", overrides=["train.steps=500"])
    run_dir = Trainer(cfg).fit()
"""

from normgan._version import __version__  # noqa: E402

from normgan.config import Config, load_config  # noqa: E402
from normgan.train import Trainer  # noqa: E402

__all__ = ["Config", "load_config", "Trainer", "__version__"]
