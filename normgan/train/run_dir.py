"""Run folders: ``runs/NNNNN-<label>/`` with config.yaml, metrics.jsonl, samples/, checkpoints/, tb/."""

from __future__ import annotations

import re
from pathlib import Path

from normgan.errors import UserError


def new_run_dir(runs_dir: str | Path, *, label: str, name: str | None = None) -> Path:
    """A fresh run folder: ``runs_dir/name`` when given (must not hold a run), else the next number."""
    runs_dir = Path(runs_dir)
    if name is not None:
        if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
            raise UserError(f"--name: bad run name {name!r}; use letters, digits, '.', '_' and '-'")
        path = runs_dir / name
        if (path / "checkpoints").exists() or (path / "config.yaml").exists():
            raise UserError(f"run folder '{path}' already holds a run; continue it with --resume {path} or choose another --name")
    else:
        numbers = [int(m.group(1)) for p in runs_dir.glob("*") if (m := re.match(r"(\d{5})-", p.name))] if runs_dir.exists() else []
        path = runs_dir / f"{max(numbers, default=-1) + 1:05d}-{label}"
    try:
        (path / "checkpoints").mkdir(parents=True, exist_ok=True)
        (path / "samples").mkdir(exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create run folder '{path}': {e.strerror}; choose another --runs-dir") from None
    return path
