"""What trains one (config, fold, seed) of a search trial.

A trainer is called as ``trainer(cfg, run_dir=..., report=..., progress=...)`` and returns the
results of the run's last evaluation (a dict of scores). ``report(step, results)`` must be called
after every periodic evaluation: the search hands the value to Optuna's pruner and raises
``optuna.TrialPruned`` from it when the trial should stop. ``trainer.test(cfg, run_dir=...)``
(an attribute of the function) scores the retrained best config on the test split. Trainers are named in
:data:`TRAINERS` or given as an import path ``package.module:function`` (``--trainer``).
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Callable, Optional

from normgan.errors import UserError
from normgan.registry import Registry

TRAINERS = Registry("trainer")


@TRAINERS.register("normgan")
def train_normgan(
    cfg,
    *,
    run_dir: Path,
    report: Callable[[int, dict], None],
    progress: bool = False,
    stage: Optional[Callable[[str], None]] = None,
) -> dict:
    """normgan's own training loop; the final evaluation's results (the loop evaluates at the end).
    ``stage(text)``, when given, hears when each evaluation starts and how long it took (the
    search's per-fold progress)."""
    from normgan.train import Trainer

    last: dict = {}

    def on_eval(step: int, results: dict) -> None:
        last.clear()
        last.update(results)
        report(step, results)

    Path(run_dir).mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg, run_dir=run_dir, progress=progress, on_eval=on_eval)
    if stage is not None:
        evaluate = trainer.evaluate

        def timed_evaluate(*args, **kwargs):
            stage(f"evaluating at step {trainer.step}")
            t0 = time.perf_counter()
            out = evaluate(*args, **kwargs)
            stage(f"evaluated at step {trainer.step} in {time.perf_counter() - t0:.1f} s")
            return out

        trainer.evaluate = timed_evaluate
    trainer.fit()
    return dict(last)


def test_normgan(cfg, *, run_dir: Path) -> dict:
    """The run's scores on the test split: the paired metrics, or FID/KID/PR against the held-out split."""
    from normgan.eval.paired import task_evaluation
    from normgan.runtime.device import resolve_device

    device = str(resolve_device(cfg.train.device))
    return task_evaluation(cfg.task).test(cfg, run_dir, device=device)


train_normgan.test = test_normgan  # the search's final, once-only evaluation


def resolve_trainer(name: str) -> Callable:
    """A registered trainer, or ``package.module:function`` imported."""
    if ":" not in name:
        return TRAINERS.get(name, key="--trainer")
    module, _, attr = name.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise UserError(
            f"--trainer {name}: cannot import it ({e}); give a registered name "
            f"({', '.join(TRAINERS.names())}) or package.module:function"
        ) from None
    if not callable(fn):
        raise UserError(f"--trainer {name}: not a function")
    return fn
