"""Compare runs at the same N: ``normgan compare RUN [RUN ...] --n 5000 --out DIR``.

    from normgan.eval.compare import compare_runs, format_table
    table = compare_runs(["runs/a-s0", "runs/a-s1", "runs/b-s0"], n=5000, out="compare/")
    print(format_table(table["groups"]))

Every run is evaluated with :func:`normgan.eval.evaluation.evaluate_run` at the same ``n``, features,
reference split and seed (an existing ``run/eval/*.json`` for the same checkpoint step and
options is reused).  A group is a set of runs that differ only by their seed: the same
``config.yaml`` apart from ``train.seed`` and the keys that do not change the model
(:data:`IGNORED_KEYS`: logging/sampling/checkpoint intervals, tensorboard, device, threads,
num_samples, ``eval.*``), evaluated at the same checkpoint step, with distinct seeds (a run that
repeats a seed, or was evaluated at another step, starts its own group).  Each group reports
mean ± std over its runs (std with ``ddof = 1``, the sample std across seeds; None for a single
run).  Groups are labelled by what tells them apart (:func:`group_labels`).
"""

from __future__ import annotations

import errno
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import yaml

from normgan.config import flatten
from normgan.errors import UserError
from normgan.eval.evaluation import METRIC_NAMES, check_eval_args, checkpoint_step, evaluate_run
from normgan.tasks.info import TASK_INFO

__all__ = ["compare_runs", "group_runs", "group_labels", "aggregate", "format_table", "format_markdown", "COLUMNS"]

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
#: config keys (exact, or prefixes ending in ".") that do not change the trained model: ignored when grouping
IGNORED_KEYS = (
    "train.seed",
    "train.log_every",
    "train.sample_every",
    "train.checkpoint_every",
    "train.tensorboard",
    "train.device",
    "train.threads",
    "train.num_samples",
    "eval.",
)
#: config sections whose second key names a term (``regularizers.r1.weight`` belongs to term ``r1``)
TERM_SECTIONS = ("regularizers", "constraints")
#: longest value shown in a group label; longer ones are cut with "…"
LABEL_VALUE_CHARS = 30
_MISSING = object()


def _ignored(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in IGNORED_KEYS)


def _read_config(run: Path) -> dict:
    path = Path(run) / "config.yaml"
    if not path.is_file():
        raise UserError(f"run folder '{run}' has no config.yaml; give folders made by 'normgan train'")
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        raise UserError(f"'{path}' is not valid YAML; restore the run's config.yaml") from None
    if not isinstance(cfg, dict):
        raise UserError(f"'{path}' is not a mapping of config keys; restore the run's config.yaml")
    return cfg


def _show(v) -> str:
    text = v if isinstance(v, str) else json.dumps(v, sort_keys=True, separators=(",", ":"), default=str)
    return text if len(text) <= LABEL_VALUE_CHARS else text[: LABEL_VALUE_CHARS - 1] + "…"


def _term(key: str) -> Optional[str]:
    parts = key.split(".")
    return parts[1] if len(parts) >= 2 and parts[0] in TERM_SECTIONS else None


def _enc(v) -> str:
    return "\0missing" if v is _MISSING else json.dumps(v, sort_keys=True, default=str)


def group_labels(groups: Sequence[dict]) -> list[str]:
    """Short labels of groups (dicts with ``config``, a flat config, and ``step``).

    ``"all"`` for a single group.  Otherwise, in this order: ``+term`` / ``-term`` for each
    regularizer or constraint that some groups have and others lack; ``key=value`` for each config
    key whose value differs between groups (values cut to :data:`LABEL_VALUE_CHARS` characters;
    the keys of a term that only some groups have are shown only where they differ among those
    groups); ``step=S`` when the groups were evaluated at different steps.  An empty label is
    ``base``; a label seen before gets `` #2``, `` #3``… (groups split only by a repeated seed).
    """
    if len(groups) == 1:
        return ["all"]
    configs = [g["config"] for g in groups]
    keys = sorted({k for c in configs for k in c})
    differing = [k for k in keys if len({_enc(c.get(k, _MISSING)) for c in configs}) > 1]
    terms = {_term(k) for k in keys if _term(k)}
    has = [{t for t in terms if any(_term(k) == t for k in c)} for c in configs]
    partial = sorted(t for t in terms if not all(t in h for h in has))
    steps_differ = len({g["step"] for g in groups}) > 1
    labels = []
    for g, c, h in zip(groups, configs, has):
        parts = [("+" if t in h else "-") + t for t in partial]
        for k in differing:
            t = _term(k)
            if t in partial:
                if t not in h:
                    continue
                if len({_enc(o.get(k, _MISSING)) for o, oh in zip(configs, has) if t in oh}) == 1:
                    continue  # the same wherever the term exists: its +term says it all
            parts.append(f"{k}={_show(c[k])}" if k in c else f"{k}=unset")
        if steps_differ:
            parts.append(f"step={g['step']}")
        labels.append(", ".join(parts) or "base")
    seen: dict = {}
    for i, lab in enumerate(labels):
        seen[lab] = seen.get(lab, 0) + 1
        if seen[lab] > 1:
            labels[i] = f"{lab} #{seen[lab]}"
    return labels


def group_runs(runs: Sequence, *, steps: Optional[dict] = None, checkpoint: str = "last.pt") -> list[dict]:
    """Group runs that differ only by seed, in first-appearance order.

    A run joins the first group with the same flattened ``config.yaml`` (without ``train.seed``
    and the :data:`IGNORED_KEYS`), the same checkpoint step and no run of the same seed;
    otherwise it starts a new group.  ``steps`` maps run paths (``str``) to their step; the others
    are read from ``RUN/checkpoints/<checkpoint>``.

    Returns ``[{"name", "runs": [paths], "seeds": [...], "step", "config": the flat config used
    for grouping}]`` with ``name`` from :func:`group_labels` (``optim.g.lr=0.0001``, ``+r1``,
    ``regularizers.r1.weight=10``, ``step=500``...).
    """
    groups: list[dict] = []
    steps = dict(steps or {})
    for run in runs:
        flat = flatten(_read_config(Path(run)))
        seed = flat.get("train.seed")
        step = steps[str(run)] if str(run) in steps else checkpoint_step(run, checkpoint)
        key = {k: v for k, v in flat.items() if not _ignored(k)}
        for g in groups:
            if g["config"] == key and g["step"] == step and seed not in g["seeds"]:
                g["runs"].append(str(run))
                g["seeds"].append(seed)
                break
        else:
            groups.append({"runs": [str(run)], "seeds": [seed], "step": step, "config": key})
    for g, name in zip(groups, group_labels(groups)):
        g["name"] = name
    return groups


def aggregate(values: Sequence[Optional[float]]) -> tuple[Optional[float], Optional[float]]:
    """``(mean, std)`` of the finite values; std uses ``ddof = 1`` (None for fewer than 2)."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return None, None
    return float(x.mean()), (float(x.std(ddof=1)) if len(x) > 1 else None)


def compare_runs(
    runs: Sequence,
    *,
    n: int = 5000,
    features: str = "domain",
    metrics: Sequence[str] = METRIC_NAMES,
    reference: str = "test",
    checkpoint: str = "last.pt",
    ema: bool = True,
    device="cpu",
    seed: int = 0,
    cache_dir=None,
    out=None,
    reuse: bool = True,
    progress=False,
) -> dict:
    """Evaluate every run at the same ``n`` and aggregate by seed group.

    Returns ``{"groups": rows, "runs": per-run results, "n", "features", "reference"}`` where each
    row is ``{"group", "runs", "seeds", "n_runs", "step", "steps", "<key>_mean", "<key>_std", "values":
    {key: [per-run]}}`` for the keys of :data:`COLUMNS`.  With ``out``, writes ``out/compare.md``
    and ``out/compare.json`` (atomically, together: a failed write leaves the previous ones).

    The same run folder given twice (the same resolved path) is a :class:`UserError`: it would
    count as two seeds; so is a paired run.  ``progress``: True prints one ``compare: …`` line per
    stage on stderr once every folder has been checked (the groups, evaluating run i/N, writing
    the outputs); a callable gets those lines.
    """
    metrics = check_eval_args(n=n, features=features, metrics=metrics, reference=reference)
    say = _progress(progress)
    groups = _checked_groups(runs, checkpoint=checkpoint, n=n, say=say)
    per_run = _evaluate_each(
        runs,
        say=say,
        n=n,
        features=features,
        metrics=metrics,
        reference=reference,
        checkpoint=checkpoint,
        ema=ema,
        device=device,
        seed=seed,
        cache_dir=cache_dir,
        reuse=reuse,
    )
    rows = [_group_row(g, per_run) for g in groups]
    table = {
        "groups": rows,
        "runs": per_run,
        "n": n,
        "features": features,
        "reference": reference,
        "seed": seed,
        "metrics": list(metrics),
    }
    if out is not None:
        table["out"] = str(_write_compare(Path(out), table, say=say))
    return table


def _checked_groups(runs: Sequence, *, checkpoint: str, n: int, say: Callable[[str], None]) -> list:
    """The seed groups of ``runs`` (see :func:`group_runs`) once every folder, config and checkpoint has been
    checked (a UserError otherwise); then says the first progress line (runs, groups, N)."""
    _check_run_folders(runs)
    groups = group_runs(runs, checkpoint=checkpoint)  # fail on bad configs/checkpoints before any evaluation
    for g in groups:
        task = g["config"].get("task")
        if task in TASK_INFO:
            TASK_INFO.get(task).require_noise_samples(g["runs"][0])
    # progress starts once every run folder has been checked, so a bad input is still one line
    say(
        f"{len(runs)} run folder{'s' if len(runs) != 1 else ''} in {len(groups)} group{'s' if len(groups) != 1 else ''}; "
        f"evaluating each at N={n}"
    )
    return groups


def _check_run_folders(runs: Sequence) -> None:
    """A UserError unless ``runs`` is a non-empty list of existing folders, each given once (by resolved path)."""
    if not runs:
        raise UserError("compare needs at least one run folder")
    seen: dict = {}
    for r in runs:
        if not Path(r).is_dir():
            raise UserError(f"run folder '{r}' does not exist; give folders made by 'normgan train'")
        key = Path(r).resolve()
        if key in seen:
            same = f"'{r}'" if str(seen[key]) == str(r) else f"'{seen[key]}' and '{r}'"
            raise UserError(
                f"run folder {same} given twice ({key}): one run would count as two seeds; give each run once"
            )
        seen[key] = r


def _evaluate_each(runs: Sequence, *, say: Callable[[str], None], n: int, features: str, **kwargs) -> dict:
    """``{str(run): evaluate_run(...)}`` for each run in order, saying one progress line per run (and per reuse)."""
    per_run = {}
    for i, r in enumerate(runs, 1):
        say(f"evaluating run {i}/{len(runs)}: {r} (N={n}, features={features})")
        res = evaluate_run(r, n=n, features=features, **kwargs)
        if res.get("reused"):
            say(f"  reused {res.get('path', 'its saved evaluation')}")
        per_run[str(r)] = res
    return per_run


def _group_row(g: dict, per_run: dict) -> dict:
    """One seed group's row: its runs, seeds and steps, and per metric key the per-run values, mean and std."""
    results = [per_run[r] for r in g["runs"]]
    row = {
        "group": g["name"],
        "runs": g["runs"],
        "seeds": g["seeds"],
        "n_runs": len(g["runs"]),
        "step": g["step"],
        "steps": [res.get("step") for res in results],
        "values": {},
    }
    for key, _ in COLUMNS:
        vals = [res.get(key) for res in results]
        if all(v is None for v in vals):
            continue
        row["values"][key] = vals
        row[f"{key}_mean"], row[f"{key}_std"] = aggregate(vals)
    return row


def _write_compare(out: Path, table: dict, *, say: Callable[[str], None]) -> Path:
    """Write ``out/compare.json`` and ``out/compare.md`` for ``table`` together; returns ``out``."""
    n, features, reference, seed = table["n"], table["features"], table["reference"], table["seed"]
    say(f"writing {out / 'compare.json'} and compare.md")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create output folder '{out}': {e.strerror}; choose another --out") from None
    header = (
        f"# normgan compare\n\nN={n} generated samples per run, features={features}, "
        f"reference={reference} split, seed={seed}; mean ± std (ddof=1) over the seeds of each group "
        "(runs of one config at one checkpoint step, distinct seeds).\n\n"
    )
    _write_together(
        out,
        {
            "compare.json": json.dumps(table, indent=2, sort_keys=True, default=str) + "\n",
            "compare.md": header + format_markdown(table["groups"]) + "\n",
        },
    )
    return out


def _progress(progress) -> Callable[[str], None]:
    """``progress``: False (silent), True (``compare: …`` lines on stderr) or a callable taking a line."""
    if callable(progress):
        return progress
    if not progress:
        return lambda line: None
    return lambda line: print(f"compare: {line}", file=sys.stderr, flush=True)


def _write_together(folder: Path, files: dict) -> None:
    """Write every ``{name: text}`` into ``folder`` atomically and together: each goes to a temp
    file first and only when all are written (and fsynced) are they renamed into place, so a full
    disk or a read-only folder leaves the previous compare.json and compare.md as they were.  An
    OSError becomes a one-line :class:`UserError` naming the file and the fix."""
    tmps: dict = {}
    try:
        for name, text in files.items():
            target = folder / name
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
            tmps[name] = tmp
            with os.fdopen(fd, "wb") as f:
                f.write(text.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
        for name, tmp in tmps.items():
            target = folder / name
            os.replace(tmp, target)
    except OSError as e:
        for tmp in tmps.values():
            try:
                os.unlink(tmp)
            except OSError:
                pass
        why = e.strerror or str(e)
        fix = "free some space" if e.errno == errno.ENOSPC else "make it writable"
        raise UserError(
            f"cannot write '{target}': {why}; {fix} or choose another --out (the previous "
            f"{' and '.join(files)} in '{folder}', if any, are unchanged)"
        ) from None


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
