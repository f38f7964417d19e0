"""A stub trainer for search tests: a closed-form score of the trial's config, no training.

Used in-process (``--trainer search_stub:train`` with tests/ on ``sys.path``) and by worker
subprocesses (``PYTHONPATH=tests``). Environment knobs, read at each call:

* ``STUB_LOG``: a file that gets one JSON line per call (pid, run_dir, λ, fold, seed);
* ``STUB_SLEEP``: seconds to sleep per call (workers that overlap);
* ``STUB_INTERRUPT_AT``: raise KeyboardInterrupt in the call whose λ equals this value, once
  (a marker file next to STUB_LOG remembers it happened);
* ``STUB_DIVERGE_AT``: raise the loop's NaN error (a UserError) for this λ.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

KEY = ("regularizers", "l1", "weight")


def weight(cfg) -> float:
    spec = (cfg.regularizers or {}).get("l1") or {}
    return float(spec.get("weight", 0.0))


def score(lam: float, *, fold: int, seed: int, step: int, steps: int) -> float:
    """PSNR-like, highest at λ = 100: 30 − (log10(1 + λ) − 2)², plus 0.5·fold + 0.01·seed, rising
    over training as −2·(1 − step/steps)."""
    return 30.0 - (math.log10(1.0 + lam) - 2.0) ** 2 + 0.5 * fold + 0.01 * seed - 2.0 * (1.0 - step / steps)


def train(cfg, *, run_dir, report, progress=False, stage=None) -> dict:
    lam, fold, seed, steps = weight(cfg), cfg.data.fold, cfg.train.seed, cfg.train.steps
    log = os.environ.get("STUB_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(
                json.dumps(
                    {
                        "pid": os.getpid(),
                        "run_dir": str(run_dir),
                        "lam": lam,
                        "fold": fold,
                        "folds": cfg.data.folds,
                        "seed": seed,
                    }
                )
                + "\n"
            )
    stop = os.environ.get("STUB_INTERRUPT_AT")
    if stop is not None and float(stop) == lam and log:
        marker = Path(log + ".interrupted")
        if not marker.exists():
            marker.write_text("1")
            raise KeyboardInterrupt
    if os.environ.get("STUB_DIVERGE_AT") is not None and float(os.environ["STUB_DIVERGE_AT"]) == lam:
        from normgan.errors import UserError

        raise UserError(f"G loss became NaN/inf at step 3 (stub, lambda {lam})")
    pause = float(os.environ.get("STUB_SLEEP", "0"))
    every = cfg.eval.every or steps  # the final retrain runs without periodic evaluation
    res = {}
    for step in range(every, steps + 1, every):
        if pause:
            time.sleep(pause / max(1, steps // every))
        res = {"psnr": score(lam, fold=fold, seed=seed, step=step, steps=steps), "l1": 0.1 + lam * 1e-4}
        report(step, res)
    return res


def test(cfg, *, run_dir) -> dict:
    """The final figure: the score at the end of training, fold term 0, and a marker of the split."""
    return {"psnr": score(weight(cfg), fold=0, seed=cfg.train.seed, step=1, steps=1) + 100.0, "l1": 0.0}


train.test = test
