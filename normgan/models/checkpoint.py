"""Checkpoints: written atomically, loaded safely (``weights_only=True``).

A checkpoint is a plain dict of tensors, numbers, strings and containers, so it loads without
unpickling arbitrary objects. Writing goes to a temporary file in the same folder, flushed and
fsynced, then ``os.replace``: a crash never leaves a half-written ``last.pt``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List

import torch

from normgan.errors import UserError
from normgan.runtime.paths import write_error


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def nonfinite_entries(state: Any, prefix: str = "") -> List[str]:
    """Keys (dotted paths) of the floating-point tensors in ``state`` that hold NaN or inf."""
    bad: List[str] = []
    if isinstance(state, torch.Tensor):
        if state.is_floating_point() or state.is_complex():
            if not bool(torch.isfinite(state).all()):
                bad.append(prefix or "<tensor>")
    elif isinstance(state, dict):
        for k, v in state.items():
            bad += nonfinite_entries(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(state, (list, tuple)):
        for i, v in enumerate(state):
            bad += nonfinite_entries(v, f"{prefix}.{i}" if prefix else str(i))
    return bad


def save_checkpoint(state: Dict[str, Any], path: str | Path) -> Path:
    """Atomically write ``state`` to ``path`` (torch.save to a temp file, fsync, os.replace).

    The file gets the permissions of any file the process creates (0666 minus the umask). A full
    disk (or any other OS error) raises a one-line UserError naming the folder and its free space;
    the previous file at ``path`` is untouched, as it is after a crash at any point.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except (OSError, RuntimeError) as e:
        # torch.save reports a failed write (a full disk) as a RuntimeError from its zip writer
        raise write_error(
            e,
            path,
            what="checkpoint",
            fix="the previous checkpoint is intact",
            full_fix="free some space and resume, the previous checkpoint is intact",
        ) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path


def remove_stale_temporaries(folder: str | Path) -> List[Path]:
    """Delete ``.NAME.pt.*.tmp`` files left in ``folder`` by processes killed while writing a checkpoint.

    Call it only while holding the run's lock (a live writer's temporary file must not vanish).
    """
    removed = []
    for p in Path(folder).glob(".*.pt.*.tmp"):
        try:
            p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> Dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; unreadable files raise a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint '{path}' does not exist; give a run folder that holds checkpoints/last.pt")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt, truncated, or not a torch file
        raise UserError(
            f"checkpoint '{path}' cannot be read ({type(e).__name__}); it is corrupt or not a normgan checkpoint"
        ) from None
    if not isinstance(state, dict) or "generator" not in state:
        raise UserError(f"checkpoint '{path}' is not a normgan checkpoint (no generator state)")
    return state


def state_mismatch(module: torch.nn.Module, state: Dict[str, Any]) -> str | None:
    """The first difference between ``module``'s state dict and ``state``, in words, or None.

    Names the first missing or unexpected key, or the first key whose shapes differ (both shapes).
    """
    if not isinstance(state, dict):
        return f"a {type(state).__name__} instead of a state dict"
    own = module.state_dict()
    for key, value in own.items():
        if key not in state:
            return f"key '{key}' is missing from the checkpoint"
        saved = state[key]
        if isinstance(value, torch.Tensor):
            if not isinstance(saved, torch.Tensor):
                return f"key '{key}' holds a {type(saved).__name__}, not a tensor"
            if tuple(saved.shape) != tuple(value.shape):
                return f"key '{key}' has shape {tuple(saved.shape)} in the checkpoint and {tuple(value.shape)} in the model"
    for key in state:
        if key not in own:
            return f"key '{key}' in the checkpoint is not in the model"
    return None


def load_module_state(module: torch.nn.Module, state: Any, *, what: str, path: str | Path, fix: str) -> None:
    """``module.load_state_dict(state)``, or a one-line UserError naming ``what`` (e.g. "generator"),
    the checkpoint ``path``, the first mismatching key with both shapes, and ``fix``."""
    problem = state_mismatch(module, state)
    if problem is None:
        try:
            module.load_state_dict(state)
            return
        except (RuntimeError, KeyError, ValueError, TypeError) as e:
            problem = (str(e).strip().splitlines() or [type(e).__name__])[-1].strip()
    raise UserError(f"checkpoint '{path}' does not match the config's {what}: {problem}; {fix}")


def require_keys(state: Dict[str, Any], keys, *, path: str | Path) -> None:
    """A one-line UserError naming the first of ``keys`` missing from the checkpoint ``state``."""
    for key in keys:
        if key not in state:
            raise UserError(
                f"checkpoint '{path}' has no '{key}' entry; it is damaged or not a normgan training checkpoint"
            )


def find_checkpoint(run: str | Path, name: str = "last.pt") -> Path:
    """The checkpoint file of a run folder (or the file itself when a .pt path is given)."""
    run = Path(run)
    if run.is_file():
        return run
    if not run.is_dir():
        raise UserError(f"run folder '{run}' does not exist; give a folder made by 'normgan train' (see --runs-dir)")
    path = run / "checkpoints" / name
    if not path.is_file():
        raise UserError(f"run folder '{run}' has no checkpoints/{name}; it was stopped before its first checkpoint")
    return path
