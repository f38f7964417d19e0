"""The pieces every HTML page of normgan uses (run, study, comparison and search reports): the
stylesheet, escaping, number formatting, a key/value table, and the atomic file write all their
files go through. Imports nothing of normgan and no matplotlib (the plot helpers are in
:mod:`normgan.report.plots`).
"""

from __future__ import annotations

import html
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Optional, Tuple

#: significant digits of the numbers shown in report.html and on plot labels
REPORT_DIGITS = 5

CSS = """
body { font-family: sans-serif; margin: 1.5em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.best td { background: #fff4d6; }
tr.fail td { color: #a00; }
tr.pruned td { color: #777; }
td.err { white-space: pre-wrap; font-family: monospace; max-width: 40em; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; }
figure { display: inline-block; margin: 0.5em; } figure img { max-width: 100%; }
.final { border: 2px solid #4a7; padding: 0.5em 1em; background: #f3fbf5; }
.note { color: #555; }
"""


def plain(v: Any) -> Any:
    """numpy scalars as Python scalars (``v.item()``); anything else unchanged."""
    if hasattr(v, "dtype") and hasattr(v, "item") and getattr(v, "shape", None) == ():
        return v.item()
    return v


def is_number(v: Any) -> bool:
    """A real number (int or float, numpy scalars included), not a bool."""
    v = plain(v)
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def format_value(v: Any, *, digits: Optional[int] = None) -> str:
    """A table cell for ``v``.

    ``None`` -> ``""``; a bool, dict, list or tuple -> compact JSON (``true``, ``{"a":1}``);
    an int -> ``str``; a float -> ``repr`` (exact: ``float(cell) == v``), or with ``digits``
    the ``.{digits}g`` form (``0.12346``, ``1e+05``) for display; anything else -> ``str``.
    """
    v = plain(v)
    if v is None:
        return ""
    if isinstance(v, (bool, dict, list, tuple)):
        return json.dumps(v, separators=(",", ":"), sort_keys=True, default=str)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if digits is None or not math.isfinite(v):
            return repr(v)
        return f"{v:.{digits}g}"
    return str(v)


def direction_text(direction: str) -> str:
    return "higher is better" if direction == "maximize" else "lower is better"


def escape(v: Any) -> str:
    """``str(v)`` escaped for HTML text and attribute values."""
    return html.escape(str(v), quote=True)


def kv_table(items: Iterable[Tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in items)
    return f"<table>{body}</table>"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temp file in the same folder and ``os.replace``;
    the file gets the usual permissions (0666 minus the umask). On any error the temp file is
    removed and the previous ``path`` (if any) is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path
