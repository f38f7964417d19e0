"""What a report reads from a folder: its kind (run, search, study, compare), metrics.jsonl, config.yaml, sample grids.

Standard library (and PyYAML) only: ``normgan report`` checks its PATH before matplotlib loads,
and nothing here imports torch (``normgan.train.logger`` does, so its reader is not used).
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from normgan.errors import UserError

#: a folder holding either of these is a run folder (``normgan train``)
RUN_FILES = ("config.yaml", "metrics.jsonl")
#: a folder holding this is a search folder (``normgan search``)
SEARCH_FILE = "trials.csv"
#: a folder holding this is a study folder (``normgan study``)
STUDY_FILE = "study.json"
#: a folder holding this is a comparison folder (``normgan compare ... --out DIR``)
COMPARE_FILE = "compare.json"
#: sample grids written by the training loop
SAMPLE = re.compile(r"step-(\d+)\.png")
#: the header comment of config.yaml: ``# normgan 0.1.0, torch 2.4.0, python 3.11.7``
VERSIONS = re.compile(r"#\s*normgan\s+(?P<normgan>[^,\s]+),\s*torch\s+(?P<torch>[^,\s]+),\s*python\s+(?P<python>\S+)")

_HINT = (
    "give a run folder made by 'normgan train' (e.g. runs/00000-mnist5k-bce), a search folder made by "
    "'normgan search' (e.g. searches/NAME), a study folder made by 'normgan study' (with study.json) or a "
    "comparison folder made by 'normgan compare --out DIR' (with compare.json)"
)


def _is_run(path: Path) -> bool:
    return any((path / f).is_file() for f in RUN_FILES)


def classify(path: str | os.PathLike) -> Tuple[str, Path]:
    """``(kind, path)`` with kind ``"search"`` (trials.csv), ``"study"`` (study.json), ``"compare"``
    (compare.json) or ``"run"`` (config.yaml or metrics.jsonl), checked in this order; anything else
    raises a one-line :class:`UserError` naming the problem and the fix (missing, a file, a folder of
    runs, an unrelated folder)."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"'{p}' does not exist; {_HINT}")
    if not p.is_dir():
        for up in (p.parent, p.parent.parent):  # runs/x/metrics.jsonl, runs/x/checkpoints/last.pt
            if _is_run(up):
                raise UserError(f"'{p}' is a file, not a folder; give its run folder '{up}'")
        raise UserError(f"'{p}' is a file, not a folder; {_HINT}")
    if (p / SEARCH_FILE).is_file():
        return "search", p
    if (p / STUDY_FILE).is_file():
        return "study", p
    if (p / COMPARE_FILE).is_file():
        return "compare", p
    if _is_run(p):
        return "run", p
    try:
        runs = sorted(c for c in p.iterdir() if c.is_dir() and _is_run(c))
    except OSError as e:
        raise UserError(f"cannot read folder '{p}': {e.strerror}; fix its permissions or {_HINT}") from None
    if runs:
        raise UserError(
            f"'{p}' holds run folders but is not one (no config.yaml or metrics.jsonl); "
            f"give one of its {len(runs)} run folder{'s' if len(runs) != 1 else ''}, e.g. '{runs[-1]}'"
        )
    raise UserError(f"'{p}' is not a run folder (no config.yaml or metrics.jsonl); {_HINT}")


# ----------------------------------------------------------------------------- metrics.jsonl


@dataclass
class MetricsLog:
    """The readable rows of a metrics.jsonl and what was skipped.

    ``rows``: dicts with an int ``step`` and scalar values (numbers, or the strings ``"nan"``/
    ``"inf"`` the logger writes for non-finite values); ``bad_lines``: 1-based numbers of lines that
    are not a JSON object with an integer step (a half-written last line, damage); ``dropped``:
    values of readable rows that were neither a number nor such a string; ``exists``: the file is there.
    """

    rows: List[Dict[str, Any]] = field(default_factory=list)
    bad_lines: List[int] = field(default_factory=list)
    lines: int = 0
    dropped: int = 0
    exists: bool = False
    error: Optional[str] = None

    def note(self) -> Optional[str]:
        """A sentence about what could not be read, or None when everything was read."""
        if self.error:
            return f"metrics.jsonl could not be read ({self.error}); the report has no curves"
        if not self.exists:
            return "the run has no metrics.jsonl (it stopped before its first logged step)"
        parts = []
        if self.bad_lines:
            shown = ", ".join(map(str, self.bad_lines[:10])) + (" …" if len(self.bad_lines) > 10 else "")
            parts.append(
                f"{len(self.bad_lines)} of {self.lines} lines of metrics.jsonl could not be read and were "
                f"skipped (line{'s' if len(self.bad_lines) > 1 else ''} {shown})"
            )
        if self.dropped:
            parts.append(f"{self.dropped} non-numeric value{'s' if self.dropped > 1 else ''} skipped")
        if not self.rows:
            parts.append("metrics.jsonl has no readable rows")
        return "; ".join(parts) or None


def _scalar(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, float)):
        return True
    return isinstance(v, str) and v.strip().lower().lstrip("+-") in ("nan", "inf", "infinity")


def read_metrics_file(path: str | os.PathLike) -> MetricsLog:
    """Every readable row of ``path`` (see :class:`MetricsLog`); never raises for a bad file."""
    log = MetricsLog()
    path = Path(path)
    if not path.is_file():
        return log
    log.exists = True
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                log.lines += 1
                try:
                    obj = json.loads(line)
                except ValueError:
                    log.bad_lines.append(i)
                    continue
                step = obj.get("step") if isinstance(obj, dict) else None
                if isinstance(step, float) and math.isfinite(step) and step == int(step):
                    step = int(step)
                if not isinstance(step, int) or isinstance(step, bool):
                    log.bad_lines.append(i)
                    continue
                row = {"step": step}
                for k, v in obj.items():
                    if k == "step":
                        continue
                    if _scalar(v):
                        row[str(k)] = v
                    else:
                        log.dropped += 1
                log.rows.append(row)
    except OSError as e:
        log.error = e.strerror or str(e)
    return log


# ----------------------------------------------------------------------------- config.yaml


@dataclass
class RunConfig:
    """config.yaml as text, as a dict (empty when missing or unreadable) and its version header."""

    text: Optional[str] = None
    data: Dict[str, Any] = field(default_factory=dict)
    versions: Optional[Dict[str, str]] = None
    error: Optional[str] = None

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node


def read_config(run: Path) -> RunConfig:
    """The run's config.yaml (never raises: a missing or damaged file is reported in ``error``)."""
    path = Path(run) / "config.yaml"
    out = RunConfig()
    if not path.is_file():
        out.error = "config.yaml is missing"
        return out
    try:
        out.text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        out.error = f"config.yaml could not be read ({e.strerror})"
        return out
    for line in out.text.splitlines()[:3]:
        m = VERSIONS.match(line.strip())
        if m:
            out.versions = m.groupdict()
            break
    try:
        import yaml

        data = yaml.safe_load(out.text)
    except Exception as e:  # a damaged file: shown as text, described here
        out.error = f"config.yaml could not be parsed ({type(e).__name__})"
        return out
    if isinstance(data, dict):
        out.data = data
    else:
        out.error = "config.yaml is not a mapping"
    return out


# ----------------------------------------------------------------------------- samples/, the lock


def sample_files(run: Path) -> List[Tuple[int, Path]]:
    """``(step, path)`` of ``samples/step-NNNNNN.png``, by step."""
    folder = Path(run) / "samples"
    if not folder.is_dir():
        return []
    out = []
    try:
        for p in folder.iterdir():
            m = SAMPLE.fullmatch(p.name)
            if m and p.is_file():
                out.append((int(m.group(1)), p))
    except OSError:
        return []
    return sorted(out)


def spread(n: int, k: int) -> List[int]:
    """At most ``k`` indices of ``range(n)``, evenly spaced, always the first and the last."""
    if n <= k:
        return list(range(n))
    if k <= 1:
        return [n - 1]
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def training_pid(run: Path) -> Optional[str]:
    """The pid of a process training in ``run`` now (its ``.lock`` is held), else None.

    Only looks: the lock file is opened read-only and never created or changed."""
    try:
        import fcntl
    except ImportError:
        return None
    path = Path(run) / ".lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                try:
                    return os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                except OSError:
                    return "?"
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def read_json_file(path: Path, *, fix: str) -> Any:
    """The JSON value in ``path``; an unreadable file or invalid JSON raises a one-line
    :class:`UserError` ending with ``fix`` (a missing file is the caller's message)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise UserError(f"cannot read '{path}': {e.strerror}; fix its permissions") from None
    except ValueError as e:
        raise UserError(f"'{path}' is not valid JSON ({str(e).splitlines()[0]}); {fix}") from None
