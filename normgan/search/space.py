"""The search space: ``--param KEY=SPEC`` parsed into :class:`Param`, sampled through an Optuna
trial, and applied to a config.

SPEC forms::

    [0,1,10,100]        a grid list (categorical for random/TPE sampling)
    log:1e-3:1e3        log-uniform float in [lo, hi] (lo > 0)
    uniform:0:1         uniform float in [lo, hi]
    int:1:8             uniform integer in [lo, hi]
    choice:a,b,c        categorical; each choice is a YAML value, a term preset (r1, l1, l2_g, …)
                        or ``none`` (on a term or constraint key: the term is absent)

KEY is any dotted config key: ``regularizers.l1.weight``, ``optim.d.lr``, or a whole term
``regularizers.r1`` (with ``choice:`` over term specs or presets: a term's presence).
"""

from __future__ import annotations

import copy
import itertools
import math
import random
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import yaml

from normgan.errors import UserError

KINDS = ("grid", "log", "uniform", "int", "choice")

#: named term and constraint specs for ``choice:`` on ``regularizers.NAME`` / ``constraints.NAME``
TERM_PRESETS: Dict[str, Dict[str, Any]] = {
    "r1": {"term": "grad", "net": "D", "at": "real", "weight": 10.0},
    "lazy_r1": {"term": "grad", "net": "D", "at": "real", "weight": 10.0, "every": 16},
    "wgan_gp": {"term": "grad", "net": "D", "at": "interpolates", "center": 1, "weight": 10.0},
    "l1": {"term": "recon", "net": "G", "norm": "l1", "weight": 100.0},
    "l2": {"term": "recon", "net": "G", "norm": "l2", "weight": 100.0},
    "l2_g": {"term": "weights", "net": "G", "norm": "l2", "weight": 1.0e-5},
    "l2_d": {"term": "weights", "net": "D", "norm": "l2", "weight": 1.0e-5},
    "spectral": {"kind": "spectral", "net": "D"},
}
#: a choice that removes a term or constraint (elsewhere: the value null)
ABSENT = "none"
#: config sections whose entries are free names (a whole entry may be added or removed)
FREE_SECTIONS = ("regularizers", "constraints")


def _split_top(text: str) -> List[str]:
    """``text`` split at commas outside brackets, braces and quotes (``a,{x: 1, y: 2}`` → 2 parts)."""
    parts, depth, quote, cur = [], 0, None, []
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur).strip())
    return parts


def scalar(token: str) -> Any:
    """A grid token as a number when it reads as one (``1e5`` included, which YAML 1.1 keeps as a
    string), else its YAML value (``true``, ``null``, a string)."""
    t = token.strip()
    for cast in (int, float):
        try:
            return cast(t)
        except ValueError:
            pass
    return yaml.safe_load(t) if t else t


def _number(text: str, *, what: str, spec: str, key: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise UserError(f"--param {key}: {what} {text!r} of {spec!r} is not a number; e.g. log:1e-3:1e3") from None
    if not math.isfinite(v):
        raise UserError(f"--param {key}: {what} of {spec!r} must be finite")
    return v


@dataclass(frozen=True)
class Param:
    """One searched config key: ``kind`` in :data:`KINDS`; ``values`` for grid/choice (choice
    values are the tokens as written, decoded by :meth:`decode`), ``lo``/``hi`` otherwise."""

    key: str
    spec: str
    kind: str
    values: tuple = ()
    lo: float = 0.0
    hi: float = 0.0

    @property
    def log(self) -> bool:
        return self.kind == "log"

    @property
    def discrete(self) -> bool:
        """Grid-able: a list or a choice."""
        return self.kind in ("grid", "choice")

    def suggest(self, trial) -> Any:
        """The trial's value (from its sampler, or fixed by an enqueued ticket), decoded."""
        if self.discrete:
            return self.decode(trial.suggest_categorical(self.key, list(self.values)))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.lo), int(self.hi))
        return trial.suggest_float(self.key, self.lo, self.hi, log=self.log)

    def decode(self, value: Any) -> Any:
        """A choice token as its config value: a preset's spec, :data:`ABSENT`, or its YAML value."""
        if self.kind != "choice":
            return value
        token = str(value).strip()
        entry = len(self.key.split(".")) == 2 and self.key.split(".")[0] in FREE_SECTIONS
        if token == ABSENT and entry:
            return ABSENT
        if token in TERM_PRESETS and entry:
            return copy.deepcopy(TERM_PRESETS[token])
        return scalar(token)

    def describe(self) -> dict:
        return {"key": self.key, "spec": self.spec, "kind": self.kind, "log": self.log}


def parse_param(text: str) -> Param:
    """``KEY=SPEC`` → :class:`Param`; a one-line :class:`UserError` for a malformed one."""
    if "=" not in text:
        raise UserError(f"--param {text!r} must look like KEY=SPEC (e.g. regularizers.l1.weight=log:1e-2:1e3)")
    key, spec = (s.strip() for s in text.split("=", 1))
    if not key or any(not part for part in key.split(".")):
        raise UserError(
            f"--param {text!r} has no valid KEY; write a dotted config key, e.g. regularizers.l1.weight=[1,10]"
        )
    if not spec:
        raise UserError(f"--param {key}: empty SPEC; give [a,b,c], log:lo:hi, uniform:lo:hi, int:lo:hi or choice:a,b")
    if spec.startswith("[") or spec.startswith("grid:"):
        body = spec[5:] if spec.startswith("grid:") else spec
        if body.startswith("["):
            if not body.endswith("]"):
                raise UserError(f"--param {key}: grid {spec!r} has no closing ']'; e.g. [0,1,10,100]")
            body = body[1:-1]
        tokens = [t for t in _split_top(body)]
        if not body.strip() or any(not t for t in tokens):
            raise UserError(f"--param {key}: grid {spec!r} has an empty value; e.g. [0,1,10,100]")
        values = tuple(scalar(t) for t in tokens)
        bad = [v for v in values if isinstance(v, (dict, list))]
        if bad:
            raise UserError(f"--param {key}: grid values must be numbers or words; use choice: for term specs")
        if len(set(map(repr, values))) != len(values):
            raise UserError(f"--param {key}: grid {spec!r} repeats a value")
        return Param(key=key, spec=spec, kind="grid", values=values)
    kind, _, rest = spec.partition(":")
    if kind == "choice":
        tokens = _split_top(rest)
        if not rest.strip() or any(not t for t in tokens):
            raise UserError(f"--param {key}: choice {spec!r} has an empty option; e.g. choice:none,r1")
        if len(set(tokens)) != len(tokens):
            raise UserError(f"--param {key}: choice {spec!r} repeats an option")
        for t in tokens:
            try:
                yaml.safe_load(t)
            except yaml.YAMLError:
                raise UserError(
                    f"--param {key}: choice option {t!r} is not valid YAML; quote it or fix the braces"
                ) from None
        return Param(key=key, spec=spec, kind="choice", values=tuple(tokens))
    if kind in ("log", "uniform", "int"):
        bounds = rest.split(":")
        if len(bounds) != 2:
            raise UserError(f"--param {key}: {spec!r} must be {kind}:lo:hi (e.g. {kind}:1:100)")
        lo, hi = (_number(b, what=w, spec=spec, key=key) for b, w in zip(bounds, ("lo", "hi")))
        if not lo < hi:
            raise UserError(f"--param {key}: {spec!r} needs lo < hi")
        if kind == "log" and lo <= 0:
            raise UserError(f"--param {key}: {spec!r} needs lo > 0 on a log scale; use a grid [0,...] to include 0")
        if kind == "int" and (lo != int(lo) or hi != int(hi)):
            raise UserError(f"--param {key}: {spec!r} needs integer bounds")
        return Param(key=key, spec=spec, kind=kind, lo=lo, hi=hi)
    raise UserError(
        f"--param {key}: unknown SPEC {spec!r}; use [a,b,c], log:lo:hi, uniform:lo:hi, int:lo:hi or choice:a,b"
    )


def parse_params(texts: Sequence[str]) -> List[Param]:
    """Every ``--param``, with repeated keys refused."""
    if not texts:
        raise UserError("give at least one --param KEY=SPEC (e.g. --param regularizers.l1.weight=[0,1,10,100])")
    params = [parse_param(t) for t in texts]
    keys = [p.key for p in params]
    for k in keys:
        if keys.count(k) > 1:
            raise UserError(f"--param {k} is given twice; give each key once")
    return params


def grid_points(params: Sequence[Param], *, limit: Optional[int] = None, seed: int = 0) -> List[Dict[str, Any]]:
    """The Cartesian product of the params' values (raw, as Optuna stores them); with ``limit``
    below its size, that many points in a seeded random order."""
    not_grid = [p.key for p in params if not p.discrete]
    if not_grid:
        raise UserError(
            f"--sampler grid needs a list or choice: SPEC for every --param; {not_grid[0]} is a range "
            "(use [a,b,c], or --sampler random|tpe)"
        )
    points = [dict(zip([p.key for p in params], combo)) for combo in itertools.product(*[p.values for p in params])]
    if limit is not None and limit < len(points):
        random.Random(seed).shuffle(points)
        points = points[:limit]
    return points


def set_key(tree: Dict[str, Any], key: str, value: Any) -> None:
    """Set dotted ``key`` in a nested dict (creating mappings on the way); :data:`ABSENT` on a
    free section's entry (``regularizers.r1``) removes it; elsewhere ``none`` is the word itself
    (``model.discriminator.norm: none``)."""
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = node[part] = {}
        node = nxt
    if isinstance(value, str) and value == ABSENT and len(parts) == 2 and parts[0] in FREE_SECTIONS:
        node.pop(parts[-1], None)
        return
    node[parts[-1]] = value


def apply_values(base: Dict[str, Any], values: Dict[str, Any]) -> Dict[str, Any]:
    """A deep copy of config dict ``base`` with each decoded ``values[key]`` set (keys in order)."""
    out = copy.deepcopy(base)
    for key, value in values.items():
        set_key(out, key, value)
    return out


def check_key(base: Dict[str, Any], param: Param) -> None:
    """A one-line error when ``param.key`` names no config key: every part must exist in ``base``
    (a resolved config), except the entry of a free section (a new term) and keys below it."""
    parts = param.key.split(".")
    node: Any = base
    for i, part in enumerate(parts):
        free = i >= 1 and parts[0] in FREE_SECTIONS or (i >= 3 and parts[2] == "options")
        if isinstance(node, dict) and part in node:
            node = node[part]
            continue
        if free:
            return
        where = ".".join(parts[:i]) or "the config"
        choices = ", ".join(sorted(node)) if isinstance(node, dict) else "none (it is a value)"
        raise UserError(
            f"--param {param.key}: unknown config key ({where} has {choices}); normgan train --dry-run prints every key"
        )
