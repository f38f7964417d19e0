"""The report of a comparison folder: ``normgan compare RUN [RUN ...] --out DIR``, then ``normgan report DIR``.

The folder holds ``compare.json`` (:func:`normgan.eval.compare.compare_runs`: the seed groups with
mean ± std per metric, every run's evaluation, N, features, reference split, seed). The page
shows the groups' table, per group the FID curves logged during training by its runs (their
metrics.jsonl, while the run folders exist) and its last sample grid, and every run. It is
self-contained (inline CSS, images as data: URIs, no script) and written atomically. No torch:
the evaluation results are read from compare.json, not recomputed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

from normgan.errors import UserError
from normgan.eval import diagnostics as dg
from normgan.report.folders import COMPARE_FILE, RUN_FILES, read_json_file, read_metrics_file, sample_files
from normgan.report.html import escape, write_atomic
from normgan.report.plots import render
from normgan.report.run import _figure
from normgan.report.study import _g, cell, draw_curves, html_table, page, sample_strip, title

__all__ = ["load_compare", "resolve_run", "build_compare_report", "write_compare_report"]

#: column order of the metrics (others follow, sorted)
ORDER = ("fid", "fid_floor", "kid_mean", "precision", "recall", "is_mean", "class_coverage", "diversity")


def load_compare(folder) -> dict:
    """``folder/compare.json`` (a dict with a list ``groups``); a missing or damaged file raises a
    one-line :class:`UserError`."""
    path = Path(folder) / COMPARE_FILE
    fix = "rerun 'normgan compare RUN [RUN ...] --out DIR' to rewrite it"
    if not path.is_file():
        raise UserError(f"'{folder}' has no {COMPARE_FILE}; give a folder made by 'normgan compare ... --out DIR'")
    data = read_json_file(path, fix=fix)
    if not isinstance(data, dict) or not isinstance(data.get("groups"), list):
        raise UserError(f"'{path}' is not a comparison (a JSON object with a list 'groups'); {fix}")
    data["groups"] = [g for g in data["groups"] if isinstance(g, dict)]
    if not isinstance(data.get("runs"), dict):
        data["runs"] = {}
    return data


def resolve_run(run: Any, folder: Path) -> Optional[Path]:
    """The run folder ``run`` (as given to ``normgan compare``): as is (absolute, or relative to the
    current folder), else relative to the comparison folder or its parent; None when none is a run folder."""
    p = Path(str(run))
    for cand in [p] if p.is_absolute() else [p, folder / p, folder.parent / p]:
        if any((cand / f).is_file() for f in RUN_FILES):
            return cand
    return None


def _columns(groups: Sequence[dict]) -> List[str]:
    keys = {k[:-5] for g in groups for k in g if k.endswith("_mean")}
    return [k for k in ORDER if k in keys] + sorted(keys - set(ORDER))


def _groups_table(groups: Sequence[dict]) -> str:
    cols = _columns(groups)
    head = ["group", "runs", "seeds", "step"] + [f"{title(c)} (mean ± std)" for c in cols]
    body = []
    for g in groups:
        steps = sorted({s for s in g.get("steps") or [] if s is not None}) or [g.get("step")]
        body.append(
            [
                str(g.get("group")),
                str(g.get("n_runs", len(g.get("runs") or []))),
                ", ".join(map(str, g.get("seeds") or [])),
                ", ".join(map(str, steps)),
            ]
            + [cell(g.get(f"{c}_mean"), g.get(f"{c}_std")) for c in cols]
        )
    return html_table(head, body, first_text=3)


def _runs_table(data: dict, found: dict) -> str:
    cols = _columns(data["groups"])
    head = ["group", "run", "seed", "step"] + [title(c) for c in cols] + ["run folder"]
    body = []
    for g in data["groups"]:
        for run, seed in zip(g.get("runs") or [], g.get("seeds") or [None] * len(g.get("runs") or [])):
            res = data["runs"].get(str(run)) or {}
            body.append(
                [str(g.get("group")), str(run), str(seed), str(res.get("step", g.get("step")))]
                + [_g(res.get(c)) for c in cols]
                + ["found" if found[str(run)] else "not found"]
            )
    return html_table(head, body, first_text=3)


def _curves(data: dict, found: dict) -> Tuple[str, List[Tuple[str, Optional[Path]]]]:
    """The FID figure (or a note) and the sample strip items, per group."""
    groups, strip, missing = [], [], []
    for g in data["groups"]:
        paths = [found[str(r)] for r in g.get("runs") or []]
        missing += [str(r) for r, p in zip(g.get("runs") or [], paths) if p is None]
        runs = [p for p in paths if p is not None]
        groups.append((str(g.get("group")), [list(zip(*_fid(p))) for p in runs]))
        grid = next((sample_files(p)[-1] for p in runs if sample_files(p)), None)
        strip.append(
            (f"{g.get('group')}: {grid[1].parent.parent.name}, step {grid[0]}", grid[1])
            if grid
            else (f"{g.get('group')}: no sample grid found", None)
        )
    out = ["<h2>FID during training</h2>"]
    if any(c for _, cs in groups for c in cs):
        out.append(
            _figure(
                render(draw_curves, groups=groups, key="fid"),
                "eval/fid logged during training: per group the mean over its runs at each step, "
                "shaded min–max (the training-time evaluation, not the comparison's N)",
            )
        )
    else:
        out.append('<p class="note">no eval/fid logged by the runs found (training without eval.every)</p>')
    if missing:
        out.append(
            f'<p class="warn">run folder{"s" if len(missing) > 1 else ""} not found (moved or deleted), '
            f"left out of the curves and samples: {escape(', '.join(missing))}</p>"
        )
    return "\n".join(out), strip


def _fid(run: Path):
    return dg.series(read_metrics_file(run / "metrics.jsonl").rows, "eval/fid")


def build_compare_report(folder) -> str:
    """The text of the report of the comparison folder ``folder`` (see the module docstring)."""
    folder = Path(folder)
    data = load_compare(folder)
    found = {str(r): resolve_run(r, folder) for g in data["groups"] for r in g.get("runs") or []}
    name = folder.resolve().name
    head = (
        f"<h1>normgan compare: {escape(name)}</h1><p>N = {escape(data.get('n', '?'))} generated samples per run, "
        f"features {escape(data.get('features', '?'))}, reference: {escape(data.get('reference', '?'))} split, seed "
        f"{escape(data.get('seed', '?'))}; mean ± std (ddof = 1) over the seeds of each group (runs of one config "
        "at one checkpoint step).</p>"
    )
    curves, strip = _curves(data, found)
    sections = [
        "<h2>Groups</h2>",
        _groups_table(data["groups"]) if data["groups"] else '<p class="note">no groups</p>',
        curves,
        "<h2>Samples</h2><p>The last sample grid of the first run found in each group.</p>",
        sample_strip(strip),
        "<h2>Runs</h2>",
        _runs_table(data, found),
    ]
    return page(title_text=f"normgan compare: {name}", head=head, sections=sections)


def write_compare_report(folder, *, out=None) -> Path:
    """Write the report of the comparison folder ``folder`` to ``out`` (default ``folder/report.html``;
    an existing folder gets report.html inside) atomically; returns its path. A bad compare.json or
    an unwritable ``out`` raises a one-line :class:`UserError`."""
    target = Path(out) if out is not None else Path(folder) / "report.html"
    if target.is_dir():
        target = target / "report.html"
    text = build_compare_report(folder)
    try:
        return write_atomic(target, text.encode("utf-8"))
    except OSError as e:
        raise UserError(f"cannot write the report to '{target}': {e.strerror or e}; choose another --out") from None
