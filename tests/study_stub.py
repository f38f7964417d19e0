"""A stub trainer for study tests: writes a run folder whose FID curve is a closed form, no training.

    fid(step) = base + 0.1·seed + 40·exp(−5·step/steps)      base = 1 with an r1 term, else 3

evaluated every ``eval.every`` steps (and at the end). A config with ``optim.g.lr > 0.1`` diverges
half-way (the loop's :class:`normgan.errors.Diverged`, after writing the rows so far). Environment
knobs, read at each call: ``STUB_LOG`` (one JSON line per call: pid, run_dir, seed), ``STUB_SLEEP``
(seconds per call), ``STUB_INTERRUPT_SEED`` (KeyboardInterrupt in the first call with that seed
and an r1 term, once; a marker file beside STUB_LOG remembers it).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from normgan.config import to_yaml


def base(cfg) -> float:
    return 1.0 if "r1" in (cfg.regularizers or {}) else 3.0


def fid(cfg, step: int) -> float:
    return base(cfg) + 0.1 * cfg.train.seed + 40.0 * math.exp(-5.0 * step / cfg.train.steps)


def train(cfg, *, run_dir, progress=False) -> None:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = os.environ.get("STUB_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(json.dumps({"pid": os.getpid(), "run_dir": str(run_dir), "seed": cfg.train.seed}) + "\n")
    stop = os.environ.get("STUB_INTERRUPT_SEED")
    if stop is not None and int(stop) == cfg.train.seed and "r1" in (cfg.regularizers or {}) and log:
        marker = Path(log + ".interrupted")
        if not marker.exists():
            marker.write_text("1")
            raise KeyboardInterrupt
    time.sleep(float(os.environ.get("STUB_SLEEP", "0")))
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    steps, every = cfg.train.steps, cfg.eval.every
    diverge_at = steps // 2 if cfg.optim.g.lr > 0.1 else None
    with open(run_dir / "metrics.jsonl", "w") as fh:
        for step in range(every, steps + 1, every):
            if diverge_at is not None and step > diverge_at:
                from normgan.errors import Diverged

                raise Diverged(f"G loss became NaN/inf at step {diverge_at} (stub)", step=diverge_at)
            fh.write(json.dumps({"step": step, "loss/D": 1.0, "loss/G": 1.0}) + "\n")
            fh.write(
                json.dumps({"step": step, "eval/fid": fid(cfg, step), "eval/precision": 0.5 + 0.01 * cfg.train.seed})
                + "\n"
            )
