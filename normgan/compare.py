"""Compare runs at the same N: ``normgan compare RUN [RUN ...] --n 5000 --out DIR``.

    from normgan.compare import compare_runs, format_table
    table = compare_runs(["runs/a-s0", "runs/a-s1", "runs/b-s0"], n=5000, out="compare/")
    print(format_table(table["groups"]))

Every run is evaluated with :func:`normgan.evaluation.evaluate_run` at the same ``n``, features,
reference split and seed (an existing ``run/eval/*.json`` for the same checkpoint step and
options is reused).  Runs whose ``config.yaml`` is identical except ``train.seed`` form a group;
each group reports mean ± std over its runs (std with ``ddof = 1``, the sample std across seeds;
None for a single run).  Groups are named by the config keys in which they differ.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import yaml

from normgan.errors import UserError
from normgan.evaluation import METRIC_NAMES, check_eval_args, evaluate_run

__all__ = ["compare_runs", "group_runs", "aggregate", "format_table", "format_markdown", "COLUMNS"]

#: (result key, column title) in table order; keys missing from every run are left out.
COLUMNS = (
    ("fid", "FID"),
    ("fid_floor", "FID floor"),
    ("kid_mean", "KID"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("is_mean", "IS"),
    ("class_coverage", "coverage"),
    ("diversity", "diversity"),
)
IGNORED_KEYS = ("train.seed",)


def _flatten(d, prefix: str = "") -> dict:
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _read_config(run: Path) -> dict:
    path = Path(run) / "config.yaml"
    if not path.is_file():
        raise UserError(f"run folder '{run}' has no config.yaml; give folders made by 'normgan train'")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        raise UserError(f"'{path}' is not valid YAML; restore the run's config.yaml") from None


def group_runs(runs: Sequence) -> list[dict]:
    """Group runs whose config.yaml is identical except ``train.seed``, in first-appearance order.

    Returns ``[{"name", "runs": [paths], "seeds": [...], "config": flat config without the seed}]``;
    ``name`` lists the keys whose values differ between groups (``"all"`` for a single group).
    """
    groups: list[dict] = []
    for run in runs:
        flat = _flatten(_read_config(Path(run)))
        seed = flat.get("train.seed")
        key = {k: v for k, v in flat.items() if k not in IGNORED_KEYS}
        for g in groups:
            if g["config"] == key:
                g["runs"].append(str(run))
                g["seeds"].append(seed)
                break
        else:
            groups.append({"runs": [str(run)], "seeds": [seed], "config": key})
    keys = sorted({k for g in groups for k in g["config"]})
    differing = [k for k in keys if len({json.dumps(g["config"].get(k), sort_keys=True) for g in groups}) > 1]
    for g in groups:
        g["name"] = ", ".join(f"{k}={json.dumps(g['config'].get(k))}" for k in differing) or "all"
    return groups


def aggregate(values: Sequence[Optional[float]]) -> tuple[Optional[float], Optional[float]]:
    """``(mean, std)`` of the finite values; std uses ``ddof = 1`` (None for fewer than 2)."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return None, None
    return float(x.mean()), (float(x.std(ddof=1)) if len(x) > 1 else None)


def compare_runs(runs: Sequence, *, n: int = 5000, features: str = "domain", metrics: Sequence[str] = METRIC_NAMES,
                 reference: str = "test", checkpoint: str = "last.pt", ema: bool = True, device="cpu", seed: int = 0,
                 cache_dir=None, out=None, reuse: bool = True) -> dict:
    """Evaluate every run at the same ``n`` and aggregate by seed group.

    Returns ``{"groups": rows, "runs": per-run results, "n", "features", "reference"}`` where each
    row is ``{"group", "runs", "seeds", "n_runs", "steps", "<key>_mean", "<key>_std", "values":
    {key: [per-run]}}`` for the keys of :data:`COLUMNS`.  With ``out``, writes ``out/compare.md``
    and ``out/compare.json``.
    """
    metrics = check_eval_args(n=n, features=features, metrics=metrics, reference=reference)
    if not runs:
        raise UserError("compare needs at least one run folder")
    for r in runs:
        if not Path(r).is_dir():
            raise UserError(f"run folder '{r}' does not exist; give folders made by 'normgan train'")
    groups = group_runs(runs)  # fail on bad configs before any evaluation
    per_run = {}
    for r in runs:
        res = evaluate_run(r, n=n, features=features, metrics=metrics, reference=reference, checkpoint=checkpoint,
                           ema=ema, device=device, seed=seed, cache_dir=cache_dir, reuse=reuse)
        per_run[str(r)] = res
    rows = []
    for g in groups:
        results = [per_run[r] for r in g["runs"]]
        row = {"group": g["name"], "runs": g["runs"], "seeds": g["seeds"], "n_runs": len(g["runs"]),
               "steps": [res.get("step") for res in results], "values": {}}
        for key, _ in COLUMNS:
            vals = [res.get(key) for res in results]
            if all(v is None for v in vals):
                continue
            row["values"][key] = vals
            row[f"{key}_mean"], row[f"{key}_std"] = aggregate(vals)
        rows.append(row)
    table = {"groups": rows, "runs": per_run, "n": n, "features": features, "reference": reference, "seed": seed,
             "metrics": list(metrics)}
    if out is not None:
        out = Path(out)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create output folder '{out}': {e.strerror}; choose another --out") from None
        (out / "compare.json").write_text(json.dumps(table, indent=2, sort_keys=True, default=str) + "\n")
        header = (f"# normgan compare\n\nN={n} generated samples per run, features={features}, "
                  f"reference={reference} split, seed={seed}; mean ± std (ddof=1) over the runs of each group.\n\n")
        (out / "compare.md").write_text(header + format_markdown(rows) + "\n")
        table["out"] = str(out)
    return table


def _cell(row: dict, key: str) -> str:
    m, s = row.get(f"{key}_mean"), row.get(f"{key}_std")
    if m is None:
        return "n/a" if f"{key}_mean" in row else ""
    return f"{m:.4g}" + (f" ± {s:.2g}" if s is not None else "")


def _columns(rows: Sequence[dict]) -> list[tuple[str, str]]:
    return [(k, t) for k, t in COLUMNS if any(f"{k}_mean" in r for r in rows)]


def _grid(rows: Sequence[dict]) -> tuple[list[str], list[list[str]]]:
    cols = _columns(rows)
    head = ["group", "runs", "step"] + [t for _, t in cols]
    body = []
    for r in rows:
        steps = sorted({s for s in r.get("steps", []) if s is not None})
        body.append([str(r["group"]), str(r["n_runs"]), ",".join(map(str, steps))] + [_cell(r, k) for k, _ in cols])
    return head, body


def format_table(rows: Sequence[dict]) -> str:
    """Plain-text table with aligned columns (left-aligned text, right-aligned numbers)."""
    head, body = _grid(rows)
    widths = [max(len(x) for x in col) for col in zip(head, *body)]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(head), sep] + [line(b) for b in body])


def format_markdown(rows: Sequence[dict]) -> str:
    """The same table as GitHub markdown, followed by the runs of each group."""
    head, body = _grid(rows)
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in b) + " |" for b in body]
    out.append("")
    for r in rows:
        out.append(f"- **{r['group']}**: " + ", ".join(f"`{p}` (seed {s})" for p, s in zip(r["runs"], r["seeds"])))
    return "\n".join(out)
