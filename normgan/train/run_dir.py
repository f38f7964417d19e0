"""Run folders: ``runs/NNNNN-<label>/`` with config.yaml, metrics.jsonl, samples/, checkpoints/, tb/.

A run folder is claimed atomically (``mkdir`` fails when another process got there first) and is
locked for the life of a training process (:class:`RunLock`, an advisory ``flock`` on ``.lock``), so
two processes never train into one folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

from normgan.errors import UserError

NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


def check_run_name(name: str) -> str:
    """A run name is one folder name: letters, digits, '.', '_', '-', not starting with '.'."""
    if not NAME.fullmatch(name or ""):
        raise UserError(
            f"--name: bad run name {name!r}; use one folder name of letters, digits, '.', '_' and '-' "
            "(no '/', not starting with '.')"
        )
    return name


def has_checkpoint(path: Path) -> bool:
    return (path / "checkpoints" / "last.pt").is_file()


def new_run_dir(runs_dir: str | Path, *, label: str, name: str | None = None) -> Path:
    """A fresh run folder: ``runs_dir/name`` when given, else the next free number ``NNNNN-label``.

    A named folder that holds a checkpoint is refused (continue it with ``--resume``); one without
    a checkpoint (a run stopped before its first checkpoint) is reused and started again.
    """
    runs_dir = Path(runs_dir)
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create runs folder '{runs_dir}': {e.strerror}; choose another --runs-dir") from None
    if name is not None:
        path = runs_dir / check_run_name(name)
        if has_checkpoint(path):
            raise UserError(
                f"run folder '{path}' already holds a run; continue it with --resume {path} or choose another --name"
            )
        _make(path, exist_ok=True)
        return path
    for _ in range(1000):
        numbers = [int(m.group(1)) for p in runs_dir.iterdir() if (m := re.match(r"(\d{5})-", p.name))]
        path = runs_dir / f"{max(numbers, default=-1) + 1:05d}-{label}"
        try:
            _make(path, exist_ok=False)  # atomic claim: exactly one process creates the folder
            return path
        except FileExistsError:
            continue
    raise UserError(f"could not claim a numbered run folder in '{runs_dir}'; give a --name")


def _make(path: Path, *, exist_ok: bool) -> None:
    try:
        path.mkdir(exist_ok=exist_ok)
        (path / "checkpoints").mkdir(exist_ok=True)
        (path / "samples").mkdir(exist_ok=True)
    except FileExistsError:
        raise
    except OSError as e:
        raise UserError(f"cannot create run folder '{path}': {e.strerror}; choose another --runs-dir") from None


class RunLock:
    """An exclusive advisory lock on ``run_dir/.lock`` for as long as the object is held.

    A second process (or a second Trainer) on the same folder gets a one-line UserError. The lock
    is released when the process dies, however it dies (kill -9 included).
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / ".lock"
        self._fd: Optional[int] = None

    def acquire(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:  # not POSIX: no locking
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                pid = os.pread(fd, 32, 0).decode().strip() or "?"
            except OSError:
                pid = "?"
            os.close(fd)
            raise UserError(
                f"run folder '{self.path.parent}' is in use by another normgan process (pid {pid}); "
                "wait for it to finish or stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
