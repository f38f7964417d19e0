"""Stub trainers for the search/study robustness tests: the closed-form scores of search_stub.py and
study_stub.py, plus files written the way the real loop writes them, so a small tmpfs fills up.

* search ``train``: writes ``run_dir/blob.pt`` of ``STUB_BYTES`` bytes (default 1000; kept by
  ``--keep best``) and a small ``run_dir/checkpoints/last.pt`` through normgan's own
  :func:`normgan.models.checkpoint.save_checkpoint` (a full disk: its one-line "no space left"
  UserError), and ``run_dir/metrics.jsonl``; then search_stub's score. ``STUB_RAW_OSERROR=1``:
  the blob is written with plain ``open`` instead, so a full disk raises the bare OSError.
* study ``train_study``: the same files, then study_stub's run folder.
* ``train_real``: normgan's real trainer, then the EMA generator's weights copied to
  ``run_dir/generator.pt`` (which ``--keep best`` leaves, so every trial's weights can be compared).

Environment knobs are read at each call (``STUB_LOG``: one JSON line per call).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import search_stub
import study_stub
import torch


def _blob(run_dir: Path) -> None:
    from normgan.models.checkpoint import save_checkpoint

    n = int(os.environ.get("STUB_BYTES", "1000"))
    path = Path(run_dir) / "blob.pt"
    if os.environ.get("STUB_RAW_OSERROR"):
        with open(path, "wb") as fh:
            fh.write(os.urandom(n))
            fh.flush()
            os.fsync(fh.fileno())
    else:
        save_checkpoint({"blob": torch.randint(0, 255, (n,), dtype=torch.uint8)}, path)
    save_checkpoint({"step": 1}, Path(run_dir) / "checkpoints" / "last.pt")


def _log(run_dir, cfg) -> None:
    log = os.environ.get("STUB_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(json.dumps({"run_dir": str(run_dir), "seed": cfg.train.seed}) + "\n")


def train(cfg, *, run_dir, report, progress=False, stage=None) -> dict:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _log(run_dir, cfg)
    _blob(run_dir)
    res = search_stub.train(cfg, run_dir=run_dir, report=report, progress=progress)
    with open(run_dir / "metrics.jsonl", "w") as fh:
        fh.write(json.dumps({"step": cfg.train.steps, **{f"eval/{k}": v for k, v in res.items()}}) + "\n")
    return res


train.test = search_stub.test


def train_real(cfg, *, run_dir, report, progress=False, stage=None) -> dict:
    from normgan.search.trainers import train_normgan

    res = train_normgan(cfg, run_dir=run_dir, report=report, progress=progress, **({"stage": stage} if stage else {}))
    ck = torch.load(Path(run_dir) / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    torch.save(ck["generator_ema"], Path(run_dir) / "generator.pt")
    return res


def train_study(cfg, *, run_dir, progress=False) -> None:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _log(run_dir, cfg)
    _blob(run_dir)
    study_stub.train(cfg, run_dir=run_dir, progress=progress)
