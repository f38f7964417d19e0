"""The outputs of a study folder (``normgan study``, ``normgan report STUDY``).

A study runs config variants × seeds; its folder holds ``study.json`` (the plan and the state and
final metrics of every run, run folders relative to the study folder) and the run folders.
:func:`write_study_outputs` writes, into the study folder::

    table.md                  per variant: final metric mean ± std over seeds, spread, steps to the
                              threshold, diverged and collapsed counts, the other columns
    results.csv               one row per run
    plots/curves-<key>.png    per variant the mean eval/<key> curve over seeds, band min–max
    plots/panels-<metric>.png one panel per variant: each seed, mean, band; the first variant in grey
    plots/final-<metric>.png  per variant each seed's final value (dots) and their mean (bar)
    report.html               one self-contained page: the above, a sample strip per variant,
                              every run, the settings

Definitions: means and stds (``ddof = 1``; None for one run) are over the ``done`` runs;
``spread`` is max − min of the primary metric over them (None for fewer than two); ``p_welch`` is
the two-sided p-value of Welch's t-test between a variant's final primary values and the first
variant's (the reference; None with fewer than two values on either side); steps to the
threshold is the first logged ``eval/<metric>`` step at or beyond the threshold, averaged over the
finished runs (``done`` or ``diverged``) that reached it; a run "collapsed" when the run report's
diagnostics suspect mode collapse (last class coverage < 0.8 or diversity < 0.5), counted over the
finished runs that logged either. Reading a study needs no torch.
"""

from __future__ import annotations

import csv
import io
import math
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from normgan.errors import UserError
from normgan.eval import diagnostics as dg
from normgan.report.folders import (
    STUDY_FILE,
    MetricsLog,
    RunConfig,
    read_config,
    read_json_file,
    read_metrics_file,
    sample_files,
)
from normgan.report.html import CSS, direction_text, escape, format_value, kv_table, write_atomic
from normgan.report.plots import _wide_range, display_size, png_bytes, render, sample_png
from normgan.report.run import _EXTRA_CSS, RunData, _collapse_step, _figure, _img, _summary
from normgan.runtime.version import __version__

__all__ = [
    "STUDY_FILE",
    "load_study",
    "curve",
    "steps_to_threshold",
    "run_collapse",
    "summarize",
    "format_markdown",
    "results_csv",
    "write_study_outputs",
]

#: states of a run that ended: its numbers count
FINISHED = ("done", "diverged")
#: column titles of the metrics (others are shown by their key)
TITLES = {
    "fid": "FID",
    "fid_floor": "FID floor",
    "kid_mean": "KID",
    "is_mean": "IS",
    "fid_train": "FID (train)",
    "fid_heldout": "FID (held-out)",
    "fid_gap": "FID gap",
    "fid_gap_real": "FID gap (real control)",
    "memorization_real": "memorization (real control)",
    "psnr": "PSNR",
    "ssim": "SSIM",
    "l1": "L1",
    "lpips": "LPIPS",
}
#: extra CSS of the study and comparison pages
STUDY_CSS = ".status { font-weight: bold; } details { margin: 0.5em 0; }"


def title(key: str) -> str:
    """The display name of a metric key (``fid`` -> ``FID``)."""
    return TITLES.get(key, key)


# ----------------------------------------------------------------------------- reading


def load_study(folder) -> dict:
    """``folder/study.json`` as a dict with defaults filled in and ``folder`` (the path, a str) added.

    A missing or unreadable file, invalid JSON or a wrong shape raises a one-line :class:`UserError`."""
    folder = Path(folder)
    path = folder / STUDY_FILE
    fix = f"give a folder made by 'normgan study', or rerun 'normgan study' to rewrite {STUDY_FILE}"
    if not path.is_file():
        raise UserError(f"'{folder}' has no {STUDY_FILE}; {fix}")
    study = read_json_file(path, fix=fix)
    if (
        not isinstance(study, dict)
        or not isinstance(study.get("runs", []), list)
        or not isinstance(study.get("variants", []), list)
    ):
        raise UserError(f"'{path}' is not a study (a JSON object with lists 'variants' and 'runs'); {fix}")
    study.setdefault("name", folder.resolve().name)
    for key, default in (
        ("metric", "fid"),
        ("direction", "minimize"),
        ("threshold", None),
        ("columns", []),
        ("variants", []),
        ("runs", []),
        ("seeds", []),
    ):
        if study.get(key) is None:
            study[key] = default
    if study["direction"] not in ("minimize", "maximize"):
        raise UserError(f"'{path}': direction must be 'minimize' or 'maximize', not {study['direction']!r}; {fix}")
    if study["threshold"] is not None and not _finite(study["threshold"]):
        raise UserError(f"'{path}': threshold must be a number or null, not {study['threshold']!r}; {fix}")
    study["runs"] = [r for r in study["runs"] if isinstance(r, dict)]
    if isinstance(study["seeds"], int) and not isinstance(study["seeds"], bool):
        study["seeds"] = list(range(study["seeds"]))
    if not isinstance(study["seeds"], list) or not study["seeds"]:
        study["seeds"] = list(dict.fromkeys(r.get("seed") for r in study["runs"]))
    study["folder"] = str(folder)
    return study


def _series(rows: Sequence[dict], key: str) -> List[Tuple[int, float]]:
    return list(zip(*dg.series(rows, key)))


def curve(run_dir, *, key: str = "eval/fid") -> List[Tuple[int, float]]:
    """``(step, value)`` of the rows of ``run_dir/metrics.jsonl`` with a finite ``key``, in file order."""
    return _series(read_metrics_file(Path(run_dir) / "metrics.jsonl").rows, key)


def steps_to_threshold(
    points: Sequence[Tuple[int, float]], *, threshold: Optional[float], direction: str
) -> Optional[int]:
    """The first step (smallest) whose value is <= ``threshold`` (``minimize``) or >= it
    (``maximize``); None when no value gets there or the threshold is None."""
    if threshold is None:
        return None
    hit = [s for s, v in points if (v <= threshold if direction == "minimize" else v >= threshold)]
    return min(hit) if hit else None


def run_collapse(rows: Sequence[dict], *, run_dir=None) -> Tuple[Optional[bool], Optional[int]]:
    """``(collapsed, step)``: the run report's mode-collapse verdict over ``rows`` (the run's
    eval/*.json files stand in for missing eval rows when ``run_dir`` is given) and the eval step
    it points at; ``(None, None)`` when no class coverage or diversity was measured."""
    if run_dir is None:
        found = dg.mode_collapse(rows)
    else:
        data = RunData(Path(run_dir), config=RunConfig(), log=MetricsLog(rows=list(rows)), samples=[], pid=None)
        found = _summary(data)["mode_collapse"]
    if not found:
        return None, None
    return bool(found["suspected"]), (_collapse_step(rows) if found["suspected"] else None)


def _path(folder: Optional[Path], run: Any) -> Optional[Path]:
    if folder is None or not isinstance(run, str) or not run:
        return None
    p = Path(run)
    return p if p.is_absolute() else folder / p


def _read_runs(study: dict, folder: Optional[Path]) -> List[dict]:
    """The runs of ``study`` with what their folders say: ``path``, ``rows``, ``curve`` (of the
    primary metric), ``steps_to_threshold``, ``collapsed``, ``collapse_step``."""
    key = f"eval/{study['metric']}"
    out = []
    for r in study["runs"]:
        run = dict(r)
        run["final"] = run.get("final") if isinstance(run.get("final"), dict) else {}
        run["path"] = _path(folder, r.get("run"))
        rows = read_metrics_file(run["path"] / "metrics.jsonl").rows if run["path"] else []
        run["rows"] = rows
        run["curve"] = _series(rows, key)
        run["steps_to_threshold"] = steps_to_threshold(
            run["curve"], threshold=study["threshold"], direction=study["direction"]
        )
        run["collapsed"], run["collapse_step"] = run_collapse(rows, run_dir=run["path"])
        out.append(run)
    return out


# ----------------------------------------------------------------------------- the summary


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def mean_std(values: Sequence[Any]) -> Tuple[Optional[float], Optional[float]]:
    """``(mean, std)`` of the finite values; std with ``ddof = 1`` (None for fewer than 2)."""
    x = [float(v) for v in values if _finite(v)]
    if not x:
        return None, None
    m = sum(x) / len(x)
    return m, (math.sqrt(sum((v - m) ** 2 for v in x) / (len(x) - 1)) if len(x) > 1 else None)


def _columns(study: dict, runs: Sequence[dict]) -> List[str]:
    """The primary metric, then the other ``columns`` that some run's ``final`` has."""
    have = {k for r in runs for k, v in r["final"].items() if v is not None}
    return [study["metric"]] + [c for c in study["columns"] if c != study["metric"] and c in have]


def _variant_names(study: dict, runs: Sequence[dict]) -> List[str]:
    names = [str(v.get("name")) for v in study["variants"] if isinstance(v, dict)]
    return names + [n for n in dict.fromkeys(str(r.get("variant")) for r in runs) if n not in names]


def welch_p(a: Sequence[float], b: Sequence[float]) -> Optional[float]:
    """Two-sided p-value of Welch's unequal-variance t-test of mean(a) = mean(b); None with fewer
    than two values on either side or no variance at all."""
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy import stats

    p = float(stats.ttest_ind(list(a), list(b), equal_var=False).pvalue)
    return p if math.isfinite(p) else None


def _summary_rows(study: dict, runs: Sequence[dict]) -> List[dict]:
    metric = study["metric"]
    out = []
    for name in _variant_names(study, runs):
        mine = [r for r in runs if str(r.get("variant")) == name]
        finished = [r for r in mine if r.get("state") in FINISHED]
        done = [r for r in mine if r.get("state") == "done"]
        row: Dict[str, Any] = {
            "variant": name,
            "n_runs": len(finished),
            "n_done": len(done),
            "diverged": sum(r.get("state") == "diverged" for r in mine),
            "failed": sum(r.get("state") == "failed" for r in mine),
            "pending": sum(r.get("state") in ("running", "waiting") for r in mine),
            "seeds": [r.get("seed") for r in done],
            "values": {},
        }
        measured = [r["collapsed"] for r in finished if r["collapsed"] is not None]
        row["collapse_measured"] = len(measured)
        row["collapsed"] = sum(measured) if measured else None
        for key in _columns(study, runs):
            vals = [r["final"].get(key) for r in done]
            row["values"][key] = vals
            row[f"{key}_mean"], row[f"{key}_std"] = mean_std(vals)
        primary = [float(v) for v in row["values"][metric] if _finite(v)]
        row["spread"] = max(primary) - min(primary) if len(primary) > 1 else None
        if not out:
            reference = primary
        row["p_welch"] = welch_p(primary, reference) if out else None
        reached = [r["steps_to_threshold"] for r in finished if r["steps_to_threshold"] is not None]
        row["reached"] = len(reached)
        row["steps_to_threshold_mean"] = sum(reached) / len(reached) if reached else None
        out.append(row)
    return out


def summarize(study: dict, *, folder=None) -> List[dict]:
    """One row per variant (in the order of ``study["variants"]``) with ``variant``, ``n_runs``
    (done + diverged), ``n_done``, ``diverged``, ``failed``, ``pending`` (running or waiting),
    ``collapsed`` (None when no finished run measured it) of ``collapse_measured``, ``seeds`` of
    the done runs, for each column ``<key>_mean``/``<key>_std`` and ``values[key]`` (per done run),
    ``spread``, ``reached`` and ``steps_to_threshold_mean`` (see the module docstring).

    ``folder``: where the run paths are relative to (default ``study["folder"]`` set by
    :func:`load_study`); without one the run folders are not read (no steps, no collapse)."""
    folder = folder if folder is not None else study.get("folder")
    return _summary_rows(study, _read_runs(study, Path(folder) if folder else None))


# ----------------------------------------------------------------------------- table.md, results.csv


def _g(v: Any, digits: int = 4) -> str:
    return f"{float(v):.{digits}g}" if _finite(v) else "n/a"


def cell(mean: Any, std: Any) -> str:
    """``mean ± std`` (4 and 2 significant digits), ``mean`` alone without a std, ``n/a`` without a mean."""
    if not _finite(mean):
        return "n/a"
    return _g(mean) + (f" ± {_g(std, 2)}" if _finite(std) else "")


def _threshold_text(study: dict) -> str:
    sign = "≤" if study["direction"] == "minimize" else "≥"
    return f"{title(study['metric'])} {sign} {study['threshold']:g}"


def _grid(study: dict, rows: Sequence[dict], columns: Sequence[str]) -> Tuple[List[str], List[List[str]]]:
    thr = _finite(study["threshold"])
    ref = rows[0]["variant"] if rows else "the first variant"
    head = ["variant", f"final {title(study['metric'])} (mean ± std)", "spread", f"p vs {ref} (Welch)"]
    head += [f"steps to {_threshold_text(study)} (mean, k/n reached)"] if thr else []
    head += ["diverged", "collapsed"] + [f"{title(c)} (mean ± std)" for c in columns[1:]]
    body = []
    for r in rows:
        n = r["n_runs"]
        line = [
            r["variant"],
            cell(r[f"{columns[0]}_mean"], r[f"{columns[0]}_std"]),
            _g(r["spread"]),
            "" if r is rows[0] else _g(r["p_welch"], 2),
        ]
        if thr:
            steps = r["steps_to_threshold_mean"]
            line.append("n/a" if not n else f"{round(steps) if steps is not None else 'never'} ({r['reached']}/{n})")
        line.append(f"{r['diverged']}/{n}")
        m = r["collapse_measured"]
        line.append("n/a" if r["collapsed"] is None else f"{r['collapsed']}/{m}")
        line += [cell(r[f"{c}_mean"], r[f"{c}_std"]) for c in columns[1:]]
        body.append(line)
    return head, body


def _plan(study: dict) -> str:
    seeds = study["seeds"]
    return (
        f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({', '.join(map(str, seeds))}) per variant, "
        f"{study.get('steps') or '?'} steps per run"
    )


def _headline(study: dict) -> str:
    return f"{_plan(study)}; command: `{study.get('command') or 'normgan study'}`"


def format_markdown(study: dict, rows: Sequence[dict]) -> str:
    """``table.md``: a line with the seeds, steps and command, then a GitHub table with a row per
    variant of ``rows`` (:func:`summarize`), then what the columns mean."""
    columns = list(rows[0]["values"]) if rows else [study["metric"]]
    head, body = _grid(study, rows, columns)
    out = [_headline(study), "", "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in b) + " |" for b in body]
    out += ["", _legend(study)]
    return "\n".join(out) + "\n"


def _legend(study: dict) -> str:
    text = (
        "mean ± std (ddof = 1) over the runs that finished without diverging; spread: max − min of the "
        f"final {title(study['metric'])} over them; p: two-sided Welch t-test of the final "
        f"{title(study['metric'])} against the first variant's (small samples: a p above 0.05 is no evidence either way)"
    )
    if _finite(study["threshold"]):
        text += (
            f"; steps to {_threshold_text(study)}: first evaluation step at the threshold, mean over the "
            "finished runs that reached it (k) of all finished runs (n)"
        )
    return (
        text
        + (
            "; diverged: runs stopped by a NaN/inf; collapsed: runs whose last evaluation has class "
            f"coverage < {dg.COVERAGE_ALARM} or diversity < {dg.DIVERSITY_ALARM}, of the runs that measured them."
        )
        + _measures_features(study)
    )


def measure_features(study: dict) -> List[str]:
    """The feature extractors the overfitting measures of ``study`` used: the ``features`` each run's
    ``final`` records, else (runs from before it was recorded) the study's ``eval.features``, else
    ``domain``; empty when the study has no such measures."""
    if "overfitting" not in (study.get("measures") or ()):
        return []
    finals = [r.get("final") for r in study["runs"]]
    names = [f.get("features") for f in finals if isinstance(f, dict) and isinstance(f.get("features"), str)]
    if not names:
        settings = study.get("eval") if isinstance(study.get("eval"), dict) else {}
        names = [str(settings.get("features") or "domain")]
    return list(dict.fromkeys(names))


def _measures_features(study: dict) -> str:
    names = measure_features(study)
    if not names:
        return ""
    return (
        " FID (train), FID (held-out), their gap and memorization (with their real controls) use the "
        f"{' and '.join(names)} features."
    )


def results_csv(study: dict, runs: Sequence[dict]) -> str:
    """``results.csv``: one row per run (cells as in ``trials.csv``: empty for None, exact numbers)."""
    cols = _columns(study, runs)
    if measure_features(study):  # the extractor of the overfitting measures, per run
        cols.append("features")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        ["variant", "seed", "state", "step", "seconds", "steps_to_threshold", "collapsed", *cols, "run", "error"]
    )
    for r in runs:
        w.writerow(
            [
                format_value(r.get(k))
                for k in ("variant", "seed", "state", "step", "seconds", "steps_to_threshold", "collapsed")
            ]
            + [format_value(r["final"].get(c)) for c in cols]
            + [format_value(r.get("run")), format_value(r.get("error"))]
        )
    return buf.getvalue()


# ----------------------------------------------------------------------------- figures


def band(curves: Sequence[Sequence[Tuple[int, float]]]) -> Tuple[List[int], List[float], List[float], List[float]]:
    """``(steps, mean, min, max)`` at every step of ``curves``, over the curves with a value there
    (a curve that ends early, a diverged run, stops counting after its last step)."""
    at: Dict[int, List[float]] = {}
    for c in curves:
        for s, v in c:
            at.setdefault(int(s), []).append(float(v))
    steps = sorted(at)
    return (steps, [sum(at[s]) / len(at[s]) for s in steps], [min(at[s]) for s in steps], [max(at[s]) for s in steps])


#: matplotlib's tab10 without its grey (C7), which marks the reference variant
COLORS = ("C0", "C1", "C2", "C3", "C4", "C5", "C6", "C8", "C9")


def color(i: int) -> str:
    """The colour of the i-th variant (never the reference grey)."""
    return COLORS[i % len(COLORS)]


def _plain_log_ticks(ax) -> None:
    """Log-axis labels as plain numbers (3, 5, 10, 20, 50) instead of 3×10⁰."""
    from matplotlib.ticker import FuncFormatter

    def minor(v, _):
        if v <= 0:
            return ""
        lead = v / 10 ** math.floor(math.log10(v) + 1e-12)
        return f"{v:g}" if round(lead) in (2, 5) and abs(lead - round(lead)) < 1e-6 else ""

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(minor))


def _scale(ax, values: Sequence[float]) -> None:
    vals = [v for v in values if math.isfinite(v)]
    if vals and min(vals) > 0 and (max(vals) / min(vals) >= 100 or _wide_range(vals)):
        ax.set_yscale("log")
        _plain_log_ticks(ax)
    elif _wide_range(vals):
        ax.set_yscale("symlog", linthresh=1.0)


def draw_curves(
    ax,
    *,
    groups: Sequence[Tuple[str, Sequence[Sequence[Tuple[int, float]]]]],
    key: str,
    threshold: Optional[float] = None,
) -> None:
    """Per group ``(name, curves)`` its mean curve and a min–max band over its curves, on ``ax``;
    a dashed line at ``threshold``; a log y axis when the values span two decades or more."""
    values: List[float] = []
    for i, (name, curves) in enumerate(groups):
        steps, mean, lo, hi = band(curves)
        if not steps:
            continue
        n = sum(1 for c in curves if c)
        ax.plot(
            steps,
            mean,
            color=color(i),
            linewidth=1.4,
            marker="o" if len(steps) <= 30 else None,
            markersize=3,
            label=f"{name} (n={n})",
        )
        if n > 1:
            ax.fill_between(steps, lo, hi, color=color(i), alpha=0.18, linewidth=0)
        values += lo + hi
    if _finite(threshold):
        ax.axhline(threshold, linestyle="--", color="0.35", linewidth=1.1, label=f"threshold {threshold:g}")
        values.append(float(threshold))
    if not values:
        ax.text(0.5, 0.5, f"no eval/{key} logged yet", ha="center", va="center", transform=ax.transAxes, color="0.4")
    else:
        _scale(ax, values)
        ax.legend(loc="best", fontsize="x-small")
    ax.set_title(f"eval/{key}: mean over seeds, band min–max", fontsize="medium")
    ax.set_xlabel("step")
    ax.set_ylabel(title(key))
    ax.grid(True, alpha=0.3)


def panels_png(
    *,
    groups: Sequence[Tuple[str, Sequence[Sequence[Tuple[int, float]]]]],
    key: str,
    threshold: Optional[float] = None,
    ncols: int = 4,
) -> bytes:
    """Small multiples: one panel per group ``(name, curves)`` with each seed's curve (thin), their
    mean (thick) and min–max band, the first group's mean in grey in every other panel (the
    reference), ``threshold`` dashed; shared axes (log y when the values span two decades)."""
    from matplotlib.figure import Figure

    groups = [(n, [c for c in curves if c]) for n, curves in groups]
    ncols = max(1, min(ncols, len(groups)))
    nrows = -(-len(groups) // ncols)
    fig = Figure(figsize=(2.9 * ncols, 2.3 * nrows + 0.4))
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).ravel()
    ref = band(groups[0][1]) if groups and groups[0][1] else None
    values = [v for _, curves in groups for c in curves for _, v in c]
    values += [float(threshold)] if _finite(threshold) else []
    try:
        for i, ax in enumerate(axes):
            if i >= len(groups):
                ax.set_visible(False)
                continue
            name, curves = groups[i]
            if ref is not None and i > 0:
                ax.plot(ref[0], ref[1], color="0.6", linewidth=1.2, label=f"{groups[0][0]} (mean)")
            for c in curves:
                ax.plot([s for s, _ in c], [v for _, v in c], color=color(i), linewidth=0.6, alpha=0.7)
            if curves:
                steps, mean, lo, hi = band(curves)
                ax.fill_between(steps, lo, hi, color=color(i), alpha=0.18, linewidth=0)
                ax.plot(steps, mean, color=color(i), linewidth=1.8, label=f"{name} (mean of {len(curves)})")
            else:
                ax.text(0.5, 0.5, "no finished run", ha="center", va="center", transform=ax.transAxes, color="0.4")
            if _finite(threshold):
                ax.axhline(threshold, linestyle="--", color="0.35", linewidth=0.9)
            ax.set_title(name, fontsize="medium")
            ax.grid(True, alpha=0.3)
            if i % ncols == 0:
                ax.set_ylabel(title(key))
            if i >= len(groups) - ncols:
                ax.set_xlabel("step")
            ax.legend(loc="upper right", fontsize="xx-small")
        positive = [v for v in values if math.isfinite(v)]
        if positive and min(positive) > 0 and max(positive) / min(positive) >= 10:
            axes[0].set_yscale("log")  # shared: every panel; the end of training is where variants differ
            _plain_log_ticks(axes[0])
        elif values:
            _scale(axes[0], values)
        fig.tight_layout()
        return png_bytes(fig)
    finally:
        fig.clear()


def draw_finals(ax, *, rows: Sequence[dict], key: str, direction: str, threshold: Optional[float] = None) -> None:
    """Per variant row (:func:`summarize`) each done seed's final ``key`` as a dot and their mean as a bar."""
    values: List[float] = []
    for i, r in enumerate(rows):
        vals = [float(v) for v in r["values"].get(key, []) if _finite(v)]
        if not vals:
            continue
        m = sum(vals) / len(vals)
        ax.bar([i], [m], width=0.6, color=color(i), alpha=0.35, label="mean" if not values else None)
        off = [0.0] if len(vals) == 1 else [-0.18 + 0.36 * j / (len(vals) - 1) for j in range(len(vals))]
        ax.plot(
            [i + o for o in off],
            vals,
            linestyle="none",
            marker="o",
            color=color(i),
            markersize=5,
            markeredgecolor="k",
            markeredgewidth=0.5,
            label="one seed" if not values else None,
        )
        values += vals
    if _finite(threshold):
        ax.axhline(threshold, linestyle="--", color="0.35", linewidth=1.1, label=f"threshold {threshold:g}")
        values.append(float(threshold))
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(
        [r["variant"] if len(r["variant"]) <= 16 else r["variant"][:15] + "…" for r in rows],
        rotation=30 if len(rows) > 4 else 0,
        ha="right" if len(rows) > 4 else "center",
    )
    if not values:
        ax.text(0.5, 0.5, "no finished run yet", ha="center", va="center", transform=ax.transAxes, color="0.4")
    else:
        _scale(ax, values)
        ax.legend(loc="best", fontsize="x-small")
    ax.set_title(f"final {title(key)} per seed ({direction_text(direction)})", fontsize="medium")
    ax.set_ylabel(title(key))
    ax.grid(True, axis="y", alpha=0.3)


def _curve_keys(study: dict, runs: Sequence[dict]) -> List[str]:
    """The primary metric, then the other columns some finished run logged as eval/<key>."""
    logged = {k[5:] for r in runs if r.get("state") in FINISHED for row in r["rows"] for k in row}
    return [study["metric"]] + [c for c in _columns(study, runs)[1:] if c in logged]


def _images(study: dict, runs: Sequence[dict], rows: Sequence[dict]) -> List[Tuple[str, str, bytes]]:
    """``(file name, caption, png)`` of the figures."""
    metric, names = study["metric"], [r["variant"] for r in rows]
    out = []
    for key in _curve_keys(study, runs):
        groups = [
            (
                n,
                [
                    r["curve"] if key == metric else _series(r["rows"], f"eval/{key}")
                    for r in runs
                    if str(r.get("variant")) == n and r.get("state") in FINISHED
                ],
            )
            for n in names
        ]
        thr = study["threshold"] if key == metric else None
        png = render(draw_curves, groups=groups, key=key, threshold=thr)
        out.append(
            (
                f"curves-{key}.png",
                f"eval/{key} over training steps: per variant the mean over its finished "
                "seeds at each step (a diverged run counts until its last evaluation), shaded min–max",
                png,
            )
        )
        if key == metric and len(groups) > 1:
            out.append(
                (
                    f"panels-{key}.png",
                    f"eval/{key} per variant: each seed (thin), their mean (thick) and min–max "
                    f"band; grey: the mean of {names[0]}, the reference",
                    panels_png(groups=groups, key=key, threshold=thr),
                )
            )
    if any(r["n_done"] for r in rows):
        png = render(draw_finals, rows=rows, key=metric, direction=study["direction"], threshold=study["threshold"])
        out.append((f"final-{metric}.png", f"final {title(metric)} of each done seed (dots) and their mean (bar)", png))
    return out


# ----------------------------------------------------------------------------- report.html


def _description(text: Any) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(text)) if text else ""


def _state_counts(runs: Sequence[dict]) -> str:
    counts: Dict[str, int] = {}
    for r in runs:
        counts[str(r.get("state"))] = counts.get(str(r.get("state")), 0) + 1
    order = ["done", "diverged", "failed", "running", "waiting"]
    return ", ".join(f"{counts[s]} {s}" for s in order + sorted(set(counts) - set(order)) if counts.get(s))


def html_table(head: Sequence[str], body: Sequence[Sequence[str]], *, first_text: int = 1) -> str:
    """An HTML table of text cells; columns after the first ``first_text`` are right-aligned."""
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    tr = "".join(
        "<tr>"
        + "".join(
            f"<td>{escape(c)}</td>" if i < first_text else f'<td class="num">{escape(c)}</td>'
            for i, c in enumerate(line)
        )
        + "</tr>"
        for line in body
    )
    return f'<div class="scroll"><table><tr>{th}</tr>{tr}</table></div>'


def sample_strip(items: Sequence[Tuple[str, Optional[Path]]]) -> str:
    """A row of sample grids ``(caption, path)`` (downscaled, inline); a None or unreadable path is a note."""
    figs, notes = [], []
    for caption, path in items:
        if path is None:
            notes.append(caption)
            continue
        try:
            png, w, h = sample_png(path)
        except (OSError, ValueError):
            notes.append(f"{caption}: unreadable {path.name}")
            continue
        dw, dh = display_size(w, h)
        figs.append(
            f"<figure>{_img(png, caption, width=dw, height=dh)}<figcaption>{escape(caption)}</figcaption></figure>"
        )
    out = ['<div class="strip">' + "".join(figs) + "</div>"] if figs else []
    out += [f'<p class="note">{escape(n)}</p>' for n in notes]
    return "\n".join(out)


def _samples(study: dict, runs: Sequence[dict], names: Sequence[str]) -> str:
    items: List[Tuple[str, Optional[Path]]] = []
    for n in names:
        for r in runs:
            grids = (
                sample_files(r["path"]) if str(r.get("variant")) == n and r.get("state") == "done" and r["path"] else []
            )
            if grids:
                step, path = grids[-1]
                items.append((f"{n}: seed {r.get('seed')}, step {step}", path))
                break
        else:
            items.append((f"{n}: no done run with sample grids yet", None))
    return (
        "<h2>Samples</h2><p>The last sample grid of the first done seed of each variant (EMA generator).</p>"
        + sample_strip(items)
    )


def _runs_table(study: dict, runs: Sequence[dict]) -> str:
    metric = title(study["metric"])
    head = [
        "variant",
        "seed",
        "state",
        "step",
        "seconds",
        f"final {metric}",
        "steps to threshold",
        "collapsed",
        "error",
        "report",
    ]
    body = []
    for r in runs:
        cls = {"failed": "fail", "diverged": "fail"}.get(r.get("state"), "pruned" if r.get("state") != "done" else "")
        link = '<td class="na">none yet</td>'
        if r["path"] is not None and (r["path"] / "report.html").is_file():
            href = f"{r.get('run')}/report.html"
            link = f'<td><a href="{escape(href)}">{escape(r.get("run"))}</a></td>'
        collapsed = (
            "n/a" if r["collapsed"] is None else (f"yes (step {r['collapse_step']})" if r["collapsed"] else "no")
        )
        cells = [
            f"<td>{escape(r.get('variant'))}</td>",
            f"<td>{escape(r.get('seed'))}</td>",
            f"<td>{escape(r.get('state'))}</td>",
            f'<td class="num">{escape(format_value(r.get("step")))}</td>',
            f'<td class="num">{escape(_g(r.get("seconds")) if r.get("seconds") is not None else "")}</td>',
            f'<td class="num">{escape(_g(r["final"].get(study["metric"])))}</td>',
            f'<td class="num">{escape(r["steps_to_threshold"] if r["steps_to_threshold"] is not None else "")}</td>',
            f"<td>{escape(collapsed)}</td>",
            f'<td class="err">{escape(r.get("error") or "")}</td>',
            link,
        ]
        body.append((f'<tr class="{cls}">' if cls else "<tr>") + "".join(cells) + "</tr>")
    return (
        '<h2>Runs</h2><div class="scroll"><table><tr>'
        + "".join(f"<th>{escape(h)}</th>" for h in head)
        + "</tr>"
        + "".join(body)
        + "</table></div>"
    )


def _settings(study: dict, runs: Sequence[dict]) -> str:
    keys = ("name", "command", "config", "overrides", "steps", "seeds", "metric", "direction", "threshold", "columns")
    keys += tuple(k for k in ("measures", "eval", "storage") if study.get(k) not in (None, "", [], {}))
    items = [(k, study.get(k) if isinstance(study.get(k), str) else format_value(study.get(k))) for k in keys]
    items = [(k, f"{v} ({direction_text(v)})" if k == "direction" else v) for k, v in items]
    variants = "".join(
        f"<tr><td>{escape(v.get('name'))}</td><td><code>{escape(format_value(v.get('values') or {}))}</code></td></tr>"
        for v in study["variants"]
        if isinstance(v, dict)
    )
    out = [
        "<h2>Settings</h2>",
        kv_table(items),
        "<h3>Variants</h3>",
        f'<div class="scroll"><table><tr><th>variant</th><th>values (config keys)</th></tr>{variants}</table></div>',
    ]
    first = next((r for r in runs if r["path"] is not None and (r["path"] / "config.yaml").is_file()), None)
    if first is not None:
        text = read_config(first["path"]).text or ""
        out.append(
            f"<details><summary>resolved config of {escape(first.get('run'))} (the other runs differ by their "
            f"variant's values and train.seed)</summary><pre>{escape(text)}</pre></details>"
        )
    return "\n".join(out)


def page(*, title_text: str, head: str, sections: Sequence[str]) -> str:
    """A self-contained HTML page: inline CSS, no script, no external resource."""
    return (
        "\n".join(
            [
                "<!DOCTYPE html>",
                '<html lang="en"><head><meta charset="utf-8">',
                f"<title>{escape(title_text)}</title>",
                f"<style>{CSS}{_EXTRA_CSS}{STUDY_CSS}</style></head><body>",
                head,
                *sections,
                f'<p class="note">written by normgan {escape(__version__)}</p>',
                "</body></html>",
            ]
        )
        + "\n"
    )


def build_study_report(
    study: dict, runs: Sequence[dict], rows: Sequence[dict], images: Sequence[Tuple[str, str, bytes]]
) -> str:
    """The text of a study's report.html (see the module docstring)."""
    name = study.get("name")
    head = [f"<h1>{escape(study.get('title') or name)}</h1>"]
    if study.get("description"):
        head.append(f"<p>{_description(study['description'])}</p>")
    head.append(
        f"<p>study <code>{escape(name)}</code>: {escape(_plan(study))}; reproduce with "
        f"<code>{escape(study.get('command') or 'normgan study')}</code></p>"
    )
    head.append(
        f'<p class="status">{len(runs)} run{"s" if len(runs) != 1 else ""}: {escape(_state_counts(runs) or "none")}</p>'
    )
    finished = sum(r["n_runs"] for r in rows)
    sections = ["<h2>Results</h2>"]
    if not finished:
        sections.append('<p class="warn">no run has finished yet: the table and plots fill in as runs finish</p>')
    columns = _columns(study, runs)
    grid_head, body = _grid(study, rows, columns)
    sections += [html_table(grid_head, body), f'<p class="note">{escape(_legend(study))}</p>']
    sections += [_figure(png, caption) for _, caption, png in images]
    sections += [_samples(study, runs, [r["variant"] for r in rows]), _runs_table(study, runs), _settings(study, runs)]
    return page(title_text=f"normgan study: {name}", head="\n".join(head), sections=sections)


def write_study_outputs(folder, *, out=None, progress: bool = False, file=None) -> Dict[str, Path]:
    """Write ``table.md``, ``results.csv``, ``plots/*.png`` and ``report.html`` of the study in ``folder``
    (each atomically); returns the paths by name: ``table``, ``csv``, ``plots``, ``plot:<file>``, ``report``.

    ``out``: where report.html goes instead (an existing folder gets report.html inside).
    ``progress``: print ``study report [i/3] <step>`` lines and ``report written to <path>`` to
    ``file`` (default stdout). Plot files of an earlier call that this one does not write are
    removed. A bad study.json or an unwritable ``out`` raises a one-line :class:`UserError`."""
    stream = file if file is not None else sys.stdout

    def tick(i: int, what: str) -> None:
        if progress:
            print(f"study report [{i}/3] {what}", file=stream, flush=True)

    study = load_study(folder)
    folder = Path(folder)
    tick(1, "table")
    runs = _read_runs(study, folder)
    rows = _summary_rows(study, runs)
    paths = {
        "table": write_atomic(folder / "table.md", format_markdown(study, rows).encode("utf-8")),
        "csv": write_atomic(folder / "results.csv", results_csv(study, runs).encode("utf-8")),
    }
    tick(2, "plots")
    images = _images(study, runs, rows)
    plots = folder / "plots"
    for name, _, png in images:
        paths[f"plot:{name}"] = write_atomic(plots / name, png)
    for stale in list(plots.glob("curves-*.png")) + list(plots.glob("final-*.png")):
        if f"plot:{stale.name}" not in paths:
            stale.unlink(missing_ok=True)
    paths["plots"] = plots
    tick(3, "page")
    target = Path(out) if out is not None else folder / "report.html"
    if target.is_dir():
        target = target / "report.html"
    try:
        paths["report"] = write_atomic(target, build_study_report(study, runs, rows, images).encode("utf-8"))
    except OSError as e:
        raise UserError(f"cannot write the report to '{target}': {e.strerror or e}; choose another --out") from None
    if progress:
        print(f"report written to {target}", file=stream, flush=True)
    return paths
