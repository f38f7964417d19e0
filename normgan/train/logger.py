"""metrics.jsonl and TensorBoard under the same names."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict

import torch


class MetricsLogger:
    """Appends one JSON object per logged step to ``metrics.jsonl`` and mirrors scalars to TensorBoard."""

    def __init__(self, run_dir: Path, *, tensorboard: bool = True) -> None:
        self.path = run_dir / "metrics.jsonl"
        self._file = open(self.path, "a", buffering=1)
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(run_dir / "tb"))
            except Exception:  # tensorboard missing: jsonl still has everything
                self._tb = None

    def log(self, step: int, values: Dict[str, float]) -> None:
        row = {"step": step}
        for k, v in values.items():
            v = float(v)
            row[k] = v if math.isfinite(v) else str(v)
        self._file.write(json.dumps(row) + "\n")
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(k, float(v), step)

    def image(self, tag: str, grid: torch.Tensor, step: int) -> None:
        if self._tb is not None:
            self._tb.add_image(tag, grid, step)

    def flush(self) -> None:
        self._file.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: Path) -> list[dict]:
    """Rows of a metrics.jsonl file; a half-written last line (a killed run) is ignored."""
    rows = []
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def truncate_metrics(path: Path, *, after_step: int) -> None:
    """Drop rows past ``after_step`` (on resume, steps after the last checkpoint are redone)."""
    if not path.exists():
        return
    keep = [r for r in read_metrics(path) if r.get("step", 0) <= after_step]
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
    tmp.replace(path)
