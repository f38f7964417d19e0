"""Real faults for the tests: a small or read-only filesystem (a tmpfs mounted on a folder).

The tests run as root here and in CI (.ci/run), where ``mount -t tmpfs`` works, so a full disk is
a real ENOSPC from the kernel and a read-only folder a real EROFS (root ignores ``chmod``).  As root
a refused mount fails the test; only a non-root developer's run skips these tests, saying why.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest


@contextlib.contextmanager
def tmpfs(path: Path, options: str = "size=64k") -> Iterator[Path]:
    """A tmpfs mounted on ``path`` (made if missing) with mount ``options`` (``size=64k``,
    ``ro``, ``ro,size=1m``…); unmounted (lazily, so an open file cannot keep it) at the end."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI and the test machines run as root)")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"could not mount a tmpfs on {path} as root: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount(path: Path, options: str) -> None:
    """Change the options of the tmpfs on ``path`` (e.g. ``ro``, ``size=4m``)."""
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True, capture_output=True)
