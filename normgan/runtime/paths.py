"""Path options as a shell would read them: a leaf module (standard library only)."""

from __future__ import annotations

import os
from typing import Optional


def expand_path(path: Optional[str | os.PathLike]) -> Optional[str]:
    """``~`` and ``$VAR``/``${VAR}`` expanded (None stays None)."""
    return None if path is None else os.path.expanduser(os.path.expandvars(str(path)))


def check_writable_dir(folder: str | os.PathLike, *, what: str, fix: str) -> None:
    """Create ``folder`` and write a probe file in it, or raise a one-line UserError naming
    ``what`` (e.g. "--cache-dir"), the path the system refused and ``fix``; for a check before an
    expensive step whose result is written there (root ignores permissions, not a read-only mount)."""
    from normgan.errors import UserError

    folder = str(folder)
    try:
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise UserError(f"{what} '{folder}' is a file, not a folder; {fix}")
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f".normgan-write-test-{os.getpid()}")
        with open(probe, "wb"):
            pass
        os.unlink(probe)
    except OSError as e:
        where = e.filename if e.filename is not None else folder
        raise UserError(f"{what} '{folder}' cannot be written ('{where}': {e.strerror or e}); {fix}") from None


def write_error(e: BaseException, path: str | os.PathLike, *, what: str = "", fix: str, full_fix: Optional[str] = None):
    """The one-line UserError for a failed write of ``path`` (an OSError, or torch.save's
    RuntimeError on a full disk): no space left (with the free space; ``full_fix``, default
    ``fix``) or the system's reason (``fix``). ``what`` names the file ("checkpoint", …)."""
    import errno

    from normgan.errors import UserError
    from normgan.runtime.resources import free_space

    folder = os.path.dirname(str(path)) or "."
    head = f"cannot write {what} '{path}'" if what else f"cannot write '{path}'"
    if isinstance(e, RuntimeError) or getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return UserError(f"{head}: no space left ({free_space(folder)} free in '{folder}'); {full_fix or fix}")
    return UserError(f"{head}: {getattr(e, 'strerror', None) or e}; {fix}")
