"""Progress of the slow evaluation steps, on stderr.

Every evaluation step that can take more than a few seconds (training the domain classifier,
extracting reference features, translating and scoring a large paired split) reports through
:func:`bar` and :func:`note`.  ``progress`` is a tri-state everywhere: ``True`` shows it,
``False`` hides it (``--no-progress``), ``None`` (the default of the library functions) shows it
only when stderr is a terminal — so scripts, logs and tests stay quiet unless asked.

Bars appear only after :data:`DELAY_S` seconds, so a fast step prints nothing even when enabled;
stdout is never written (``--json`` output stays clean).
"""

from __future__ import annotations

import sys
from typing import Optional

__all__ = ["enabled", "bar", "note", "DELAY_S"]

#: A bar shows up only once its step has run this long.
DELAY_S = 2.0


def enabled(progress: Optional[bool]) -> bool:
    """``progress`` itself, or (``None``) whether stderr is a terminal."""
    if progress is None:
        isatty = getattr(sys.stderr, "isatty", None)
        return bool(isatty and isatty())
    return bool(progress)


def bar(*, total: int, desc: str, unit: str, progress: Optional[bool], delay: Optional[float] = None):
    """A tqdm bar on stderr (disabled unless :func:`enabled`), shown after ``delay`` seconds (default
    :data:`DELAY_S`) and removed when it closes."""
    from tqdm.auto import tqdm

    return tqdm(
        total=int(total),
        desc=desc,
        unit=unit,
        disable=not enabled(progress),
        file=sys.stderr,
        delay=DELAY_S if delay is None else delay,
        leave=False,
        dynamic_ncols=True,
    )


def note(message: str, *, progress: Optional[bool]) -> None:
    """One line on stderr when :func:`enabled`."""
    if enabled(progress):
        print(message, file=sys.stderr, flush=True)
