"""Path options as a shell would read them: a leaf module (standard library only)."""

from __future__ import annotations

import os
from typing import Optional


def expand_path(path: Optional[str | os.PathLike]) -> Optional[str]:
    """``~`` and ``$VAR``/``${VAR}`` expanded (None stays None)."""
    return None if path is None else os.path.expanduser(os.path.expandvars(str(path)))
