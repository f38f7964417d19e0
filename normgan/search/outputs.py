"""The files of a search folder, written from plain Python data (no Optuna objects).

:func:`write_outputs` writes, into the search folder::

    trials.csv                       one row per trial: params, metric per fold, mean, std, …
    plots/metric-vs-<slug(key)>.png  mean metric (± std over folds) against each searched param
    plots/history.png                metric of each finished trial vs trial number, best so far
    plots/importance.png             param importances (only when given)
    report.html                      one self-contained page: summary, best trial, final test
                                     result, all plots (embedded), the trials table

Every file is written atomically (a temp file in the same folder, then ``os.replace``), so a
reader never sees a half-written file and the function may run again and again (after every
trial) in one process. Figures are built with :func:`normgan.report.plots.render` (no pyplot, no
global figure registry, no backend switch), so nothing leaks between calls.

Cell conventions (``trials.csv``): ``None`` is an empty cell; numbers are written so that
``float(cell)`` gives back the exact value (``repr``); a param value that is ``None``, a dict,
a list or a bool is compact JSON (``null``, ``{"a":1}``, ``true``); a param the trial never
got (missing from its ``params``) is an empty cell.
"""

from __future__ import annotations

import base64
import csv
import io
import math
import re
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from normgan.report.html import (
    CSS,
    REPORT_DIGITS,
    direction_text,
    escape,
    format_value,
    is_number,
    kv_table,
    plain,
    write_atomic,
)
from normgan.report.plots import render

# ----------------------------------------------------------------------------- small helpers


def slug(key: str) -> str:
    """A filesystem-safe name for a param key: ``regularizers.l1.weight`` stays as is, any run
    of characters other than letters, digits, ``.``, ``_`` and ``-`` becomes ``_``; no leading
    dot; at most 120 characters; never empty (``param``)."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", str(key)).lstrip(".")
    s = s[:120]
    return s or "param"


def _param_cell(params: Dict[str, Any], key: str, *, digits: Optional[int] = None, none: str = "null") -> str:
    """The cell of param ``key``: empty when the trial has no such param, ``none`` (``null``
    in the CSV, JSON) when its value is ``None``, else :func:`format_value`."""
    if key not in params:
        return ""
    v = params[key]
    if v is None:
        return none
    return format_value(v, digits=digits)


def _label(v: Any) -> str:
    """A label of a param value for plot ticks and the report (``none`` for ``None``)."""
    return "none" if v is None else format_value(v, digits=REPORT_DIGITS)


def _short(text: str, n: int = 28) -> str:
    """``text`` cut to ``n`` characters (``…`` at the end) for plot ticks and legends."""
    return text if len(text) <= n else text[: n - 1] + "…"


def axis_scale(values: Iterable[Any], *, log: bool) -> str:
    """The x-axis scale for the param values ``values``.

    * ``"category"``: some value is not a number (a string, dict, bool or ``None``);
    * ``"log"``: ``log`` (a log-uniform param) and all values are > 0;
    * ``"symlog"``: the values include 0 and their non-zero magnitudes span >= 2 decades
      (``[0, 1, 10, 100]``: λ = 0 and λ = 1e5 both show); use ``linthresh`` = the smallest
      non-zero magnitude (:func:`symlog_linthresh`);
    * ``"linear"`` otherwise (and for no values at all).
    """
    vals = [plain(v) for v in values]
    if any(not is_number(v) for v in vals):
        return "category"
    nums = [float(v) for v in vals if math.isfinite(float(v))]
    if not nums:
        return "linear"
    if log and min(nums) > 0:
        return "log"
    nonzero = [abs(v) for v in nums if v != 0]
    if 0.0 in nums and nonzero and max(nonzero) / min(nonzero) >= 100.0 - 1e-9:
        return "symlog"
    return "linear"


def symlog_linthresh(values: Iterable[Any]) -> float:
    """The smallest non-zero magnitude among the numeric ``values`` (1.0 when there is none)."""
    nonzero = [abs(float(v)) for v in map(plain, values) if is_number(v) and float(v) != 0 and math.isfinite(float(v))]
    return min(nonzero) if nonzero else 1.0


def _finite(x: Any) -> bool:
    return is_number(x) and math.isfinite(float(x))


def _partial_mean(folds: Sequence[Any]) -> Optional[float]:
    """The mean of the finite fold values (a pruned trial's metric so far), or None."""
    done = [float(f) for f in folds or () if _finite(f)]
    return sum(done) / len(done) if done else None


def _better(a: float, b: float, direction: str) -> bool:
    """``a`` is strictly better than ``b``."""
    return a > b if direction == "maximize" else a < b


def best_row(rows: Sequence[Dict[str, Any]], direction: str) -> Optional[Dict[str, Any]]:
    """The COMPLETE row with the best finite mean (lowest trial number on ties), or None."""
    best = None
    for r in sorted(rows, key=lambda r: r.get("number", 0)):
        if r.get("state") == "COMPLETE" and _finite(r.get("mean")):
            if best is None or _better(float(r["mean"]), float(best["mean"]), direction):
                best = r
    return best


# ----------------------------------------------------------------------------- trials.csv


def _fold_count(meta: Dict[str, Any], rows: Sequence[Dict[str, Any]]) -> int:
    """K: the configured folds, or more if a row carries more fold values."""
    k = int(meta.get("folds") or 0)
    for r in rows:
        k = max(k, len(r.get("folds") or ()))
    return k


def _param_keys(params: Sequence[Dict[str, Any]], rows: Sequence[Dict[str, Any]]) -> List[str]:
    """The searched keys in ``params`` order, then any other key found in the rows (sorted)."""
    keys = [p["key"] for p in params]
    extra = sorted({k for r in rows for k in (r.get("params") or {}) if k not in keys})
    return keys + extra


def _sorted_rows(rows: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return sorted(rows, key=lambda r: r.get("number", 0))


def trials_csv(rows: Sequence[Dict[str, Any]], *, keys: Sequence[str], folds: int) -> str:
    """The text of ``trials.csv`` (see the module docstring for the cell conventions)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        ["number", "state", *keys, *(f"fold_{i}" for i in range(folds)), "mean", "std", "seconds", "pruned_at", "error"]
    )
    for r in _sorted_rows(rows):
        p = r.get("params") or {}
        fv = list(r.get("folds") or ())
        fv += [None] * (folds - len(fv))
        w.writerow(
            [
                format_value(r.get("number")),
                r.get("state") or "",
                *(_param_cell(p, k) for k in keys),
                *(format_value(f) for f in fv),
                format_value(r.get("mean")),
                format_value(r.get("std")),
                format_value(r.get("seconds")),
                format_value(r.get("pruned_at")),
                format_value(r.get("error")),
            ]
        )
    return buf.getvalue()


# ----------------------------------------------------------------------------- plots


def _category_order(values: Sequence[Any]) -> List[str]:
    """Distinct labels (:func:`_label`): numbers first (ascending), then the others (sorted)."""
    order: List[str] = []
    for _, lab in sorted((float(plain(v)), _label(v)) for v in values if is_number(v)):
        if lab not in order:
            order.append(lab)
    return order + sorted({_label(v) for v in values if not is_number(v)} - set(order))


def _param_points(
    rows: Sequence[Dict[str, Any]], key: str
) -> Tuple[List[Tuple[Any, float, float]], List[Tuple[Any, float]]]:
    """The points of param ``key``: ``(x, mean, std)`` of COMPLETE trials and ``(x, partial mean)``
    of PRUNED trials with finished folds, in trial order."""
    complete: List[Tuple[Any, float, float]] = []
    pruned: List[Tuple[Any, float]] = []
    for r in _sorted_rows(rows):
        p = r.get("params") or {}
        if key not in p:
            continue
        if r.get("state") == "COMPLETE" and _finite(r.get("mean")):
            std = float(r["std"]) if _finite(r.get("std")) else 0.0
            complete.append((plain(p[key]), float(r["mean"]), std))
        elif r.get("state") == "PRUNED":
            m = _partial_mean(r.get("folds") or ())
            if m is not None:
                pruned.append((plain(p[key]), m))
    return complete, pruned


def _best_point(
    *, rows: Sequence[Dict[str, Any]], key: str, direction: str, best: Optional[Dict[str, Any]]
) -> Optional[Tuple[Any, float]]:
    """The ``(x, mean)`` of the best trial (``best``, or else the best COMPLETE row for
    ``direction``), or None when it has no finite mean or no value for ``key``."""
    if best is None:
        b = best_row(rows, direction)
        if b is not None and key in (b.get("params") or {}):
            best = {"params": b["params"], "mean": b["mean"]}
    if best is not None and key in (best.get("params") or {}) and _finite(best.get("mean")):
        return (plain(best["params"][key]), float(best["mean"]))
    return None


def _x_positions(xs_all: Sequence[Any], scale: str) -> Tuple[Callable[[Any], float], List[str]]:
    """The map from a param value to its x coordinate, and the category labels in axis order
    (empty unless ``scale`` is ``"category"``)."""
    if scale == "category":
        order = _category_order(xs_all)
        pos = {lab: i for i, lab in enumerate(order)}

        def to_x(v: Any) -> float:
            return float(pos[_label(v)])

        return to_x, order
    return float, []


def _draw_param_points(
    ax,
    *,
    complete: Sequence[Tuple[Any, float, float]],
    pruned: Sequence[Tuple[Any, float]],
    best_point: Optional[Tuple[Any, float]],
    to_x: Callable[[Any], float],
) -> None:
    """Draw COMPLETE trials with error bars, PRUNED trials hollow and the best trial as a star."""
    if complete:
        ax.errorbar(
            [to_x(x) for x, _, _ in complete],
            [m for _, m, _ in complete],
            yerr=[s for _, _, s in complete],
            fmt="o",
            color="C0",
            ecolor="C0",
            capsize=3,
            label="complete (mean ± std over folds)",
        )
    if pruned:
        ax.plot(
            [to_x(x) for x, _ in pruned],
            [m for _, m in pruned],
            linestyle="none",
            marker="o",
            markerfacecolor="none",
            markeredgecolor="C1",
            label="pruned (mean of finished folds)",
        )
    if best_point is not None:
        ax.plot(
            [to_x(best_point[0])],
            [best_point[1]],
            linestyle="none",
            marker="*",
            markersize=16,
            color="C3",
            label=f"best: {_short(_label(best_point[0]))} → {_label(best_point[1])}",
        )


def _set_param_x_axis(ax, *, scale: str, order: Sequence[str], xs_all: Sequence[Any]) -> None:
    """Set the x axis for ``scale``: labelled integer ticks for categories, symlog or log scale."""
    if scale == "category":
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels([_short(lab) for lab in order])
        if len(order) > 4:
            for t in ax.get_xticklabels():
                t.set_rotation(30)
                t.set_horizontalalignment("right")
        ax.set_xlim(-0.5, max(len(order), 1) - 0.5)
    elif scale == "symlog":
        ax.set_xscale("symlog", linthresh=symlog_linthresh(xs_all))
    elif scale == "log":
        ax.set_xscale("log")


def plot_param(
    ax,
    *,
    param: Dict[str, Any],
    rows: Sequence[Dict[str, Any]],
    metric: str,
    direction: str,
    best: Optional[Dict[str, Any]] = None,
) -> str:
    """Draw the mean metric (error bars: std over folds) against param ``param["key"]`` on the
    matplotlib Axes ``ax``; returns the x scale used (:func:`axis_scale`).

    COMPLETE trials are filled markers; PRUNED trials are hollow markers at the mean of their
    finished folds (when they have any); the best trial (``best``, or else the best COMPLETE row
    for ``direction``) is a star. A categorical param gets integer positions labelled with its
    values (``ax.get_xscale()`` is then ``"linear"``; the return value says ``"category"``).
    """
    key = param["key"]
    complete, pruned = _param_points(rows, key)
    best_point = _best_point(rows=rows, key=key, direction=direction, best=best)
    xs_all = [x for x, _, _ in complete] + [x for x, _ in pruned] + ([best_point[0]] if best_point else [])
    scale = axis_scale(xs_all, log=bool(param.get("log")))
    to_x, order = _x_positions(xs_all, scale)
    _draw_param_points(ax, complete=complete, pruned=pruned, best_point=best_point, to_x=to_x)
    _set_param_x_axis(ax, scale=scale, order=order, xs_all=xs_all)
    if not complete and not pruned:
        ax.text(0.5, 0.5, "no finished trials yet", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.legend(loc="best", fontsize="small")
    ax.set_xlabel(key)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs {key} ({direction_text(direction)})", fontsize="medium")
    ax.grid(True, alpha=0.3)
    return scale


def plot_history(ax, *, rows: Sequence[Dict[str, Any]], metric: str, direction: str) -> None:
    """Draw the metric of each finished trial against its number on ``ax`` (COMPLETE filled,
    PRUNED hollow at the mean of its finished folds) and the best-so-far line over COMPLETE
    trials (min or max by ``direction``)."""
    done, pruned = [], []
    for r in _sorted_rows(rows):
        if r.get("state") == "COMPLETE" and _finite(r.get("mean")):
            done.append((r["number"], float(r["mean"])))
        elif r.get("state") == "PRUNED":
            m = _partial_mean(r.get("folds") or ())
            if m is not None:
                pruned.append((r["number"], m))
    if done:
        ax.plot([n for n, _ in done], [m for _, m in done], linestyle="none", marker="o", color="C0", label="complete")
        best_so_far, cur = [], None
        for _, m in done:
            cur = m if cur is None or _better(m, cur, direction) else cur
            best_so_far.append(cur)
        ax.step([n for n, _ in done], best_so_far, where="post", color="C3", label="best so far")
    if pruned:
        ax.plot(
            [n for n, _ in pruned],
            [m for _, m in pruned],
            linestyle="none",
            marker="o",
            markerfacecolor="none",
            markeredgecolor="C1",
            label="pruned (partial mean)",
        )
    if done or pruned:
        ax.legend(loc="best", fontsize="small")
    else:
        ax.text(0.5, 0.5, "no finished trials yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("trial number")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per trial ({direction_text(direction)})", fontsize="medium")
    ax.grid(True, alpha=0.3)


def plot_importance(ax, *, importances: Dict[str, float]) -> None:
    """Horizontal bars of the param importances on ``ax``, most important on top."""
    items = sorted(importances.items(), key=lambda kv: (float(kv[1]), kv[0]))
    ax.barh([k for k, _ in items], [float(v) for _, v in items], color="C0")
    ax.set_xlabel("importance")
    ax.set_xlim(0, max(1.0, max((float(v) for _, v in items), default=0.0)))
    ax.set_title("param importance", fontsize="medium")
    ax.grid(True, axis="x", alpha=0.3)


# ----------------------------------------------------------------------------- report.html


def _num_td(v: Any) -> str:
    return f'<td class="num">{escape(format_value(v, digits=REPORT_DIGITS))}</td>'


def _mean_std(mean: Any, std: Any) -> str:
    s = format_value(mean, digits=REPORT_DIGITS)
    if is_number(std):
        s += " ± " + format_value(std, digits=REPORT_DIGITS)
    return s


def _state_text(r: Dict[str, Any]) -> str:
    state = r.get("state") or ""
    if state == "PRUNED":
        return f"pruned at step {r['pruned_at']}" if r.get("pruned_at") is not None else "pruned"
    if state == "FAIL":
        return "failed"
    return state.lower()


def _summary_section(meta: Dict[str, Any], params: Sequence[Dict[str, Any]], rows: Sequence[Dict[str, Any]]) -> str:
    counts: Dict[str, int] = {}
    for r in rows:
        counts[r.get("state") or "?"] = counts.get(r.get("state") or "?", 0) + 1
    order = ["COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING"]
    words = {"FAIL": "failed"}
    states = ", ".join(
        f"{counts[s]} {words.get(s, s.lower())}" for s in order + sorted(set(counts) - set(order)) if counts.get(s)
    )
    items = [
        ("name", meta.get("name", "")),
        ("config", meta.get("config", "")),
        (
            "metric",
            f"{meta.get('metric', '')} ({meta.get('direction', '')}: {direction_text(meta.get('direction', ''))})",
        ),
        ("cross-validation", f"{meta.get('folds', '')} folds × {meta.get('seeds', '')} seed(s)"),
        ("sampler", meta.get("sampler", "")),
        ("pruner", meta.get("pruner", "")),
        ("storage", meta.get("storage", "")),
        (
            "trials",
            f"{len(rows)} of {meta.get('trials_requested', '?')} requested" + (f" ({states})" if states else ""),
        ),
        ("overrides", " ".join(meta.get("overrides") or []) or "(none)"),
    ]
    known = {
        "name",
        "config",
        "metric",
        "direction",
        "folds",
        "seeds",
        "sampler",
        "pruner",
        "storage",
        "trials_requested",
        "overrides",
    }
    items += [(k, format_value(v)) for k, v in meta.items() if k not in known]
    ptable = "".join(
        f"<tr><td>{escape(p.get('key', ''))}</td><td>{escape(p.get('kind', ''))}</td>"
        f"<td>{escape(p.get('spec', ''))}</td></tr>"
        for p in params
    )
    return (
        "<h2>Search</h2>"
        + kv_table(items)
        + "<h3>Searched parameters</h3><table><tr><th>key</th><th>kind</th><th>spec</th></tr>"
        + ptable
        + "</table>"
    )


def _best_section(folder: Path, best: Optional[Dict[str, Any]], meta: Dict[str, Any]) -> str:
    out = ["<h2>Best trial (cross-validation)</h2>"]
    if best is None:
        out.append('<p class="note">no completed trial yet</p>')
        return "".join(out)
    out.append(
        f"<p>trial {escape(best.get('number', ''))}: {escape(meta.get('metric', 'metric'))} = "
        f"<b>{escape(_mean_std(best.get('mean'), best.get('std')))}</b> "
        f"(mean ± std over folds)</p>"
    )
    out.append(
        "<table><tr><th>param</th><th>value</th></tr>"
        + "".join(
            f"<tr><td>{escape(k)}</td><td>{escape(_label(v))}</td></tr>" for k, v in (best.get("params") or {}).items()
        )
        + "</table>"
    )
    name = best.get("yaml")
    if name:
        path = folder / Path(str(name)).name
        if path.is_file():
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = None
            out.append(f'<p>config: <a href="{escape(path.name)}">{escape(path.name)}</a></p>')
            if text is not None:
                out.append(f"<pre>{escape(text)}</pre>")
        else:
            out.append(f'<p class="note">{escape(path.name)} not written yet</p>')
    return "".join(out)


def _final_section(final: Optional[Dict[str, Any]]) -> str:
    out = ["<h2>Final test result</h2>"]
    if final is None:
        out.append('<p class="note">not retrained yet: the search is not finished</p>')
        return "".join(out)
    split = final.get("split", "test")
    out.append('<div class="final">')
    out.append(f"<p>Retrained on the whole training split, evaluated once on the {escape(split)} split.</p>")
    out.append(
        f"<p>{escape(final.get('metric', ''))} on {escape(split)}: "
        f"<b>{escape(format_value(final.get('value'), digits=REPORT_DIGITS))}</b></p>"
    )
    metrics = final.get("metrics") or {}
    baseline = final.get("baseline") or {}
    if metrics or baseline:
        head = "<tr><th>metric</th><th>best config</th>" + ("<th>baseline</th>" if baseline else "") + "</tr>"
        body = ""
        for name in list(metrics) + [n for n in baseline if n not in metrics]:
            body += (
                f"<tr><td>{escape(name)}</td>{_num_td(metrics.get(name))}"
                + (_num_td(baseline.get(name)) if baseline else "")
                + "</tr>"
            )
        out.append(f"<table>{head}{body}</table>")
    extra = [("run", final.get("run")), ("seconds", format_value(final.get("seconds"), digits=REPORT_DIGITS))]
    out.append(kv_table((k, v) for k, v in extra if v not in (None, "")))
    out.append("</div>")
    return "".join(out)


def _plots_section(images: Sequence[Tuple[str, bytes]]) -> str:
    out = ["<h2>Plots</h2>"]
    for caption, png in images:
        data = base64.b64encode(png).decode("ascii")
        out.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{escape(caption)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>"
        )
    return "".join(out)


def _trials_section(rows: Sequence[Dict[str, Any]], keys: Sequence[str], folds: int, best_number: Optional[int]) -> str:
    head = (
        "<tr><th>#</th><th>state</th>"
        + "".join(f"<th>{escape(k)}</th>" for k in keys)
        + "".join(f"<th>fold {i}</th>" for i in range(folds))
        + "<th>mean</th><th>std</th><th>seconds</th><th>error</th></tr>"
    )
    body = []
    for r in _sorted_rows(rows):
        cls = (
            "best"
            if best_number is not None and r.get("number") == best_number
            else {"FAIL": "fail", "PRUNED": "pruned"}.get(r.get("state") or "", "")
        )
        p = r.get("params") or {}
        fv = list(r.get("folds") or ())
        fv += [None] * (folds - len(fv))
        cells = [f'<td class="num">{escape(format_value(r.get("number")))}</td>', f"<td>{escape(_state_text(r))}</td>"]
        cells += [f"<td>{escape(_param_cell(p, k, digits=REPORT_DIGITS, none='none'))}</td>" for k in keys]
        cells += [_num_td(f) for f in fv]
        cells += [_num_td(r.get("mean")), _num_td(r.get("std")), _num_td(r.get("seconds"))]
        cells.append(f'<td class="err">{escape(r.get("error") or "")}</td>')
        tr = f'<tr class="{cls}">' if cls else "<tr>"
        body.append(tr + "".join(cells) + "</tr>")
    return f"<h2>Trials</h2><table>{head}{''.join(body)}</table>"


def report_html(
    folder: Path,
    *,
    meta: Dict[str, Any],
    params: Sequence[Dict[str, Any]],
    rows: Sequence[Dict[str, Any]],
    best: Optional[Dict[str, Any]],
    final: Optional[Dict[str, Any]],
    images: Sequence[Tuple[str, bytes]],
    keys: Sequence[str],
    folds: int,
) -> str:
    """The text of ``report.html``: one self-contained page (inline CSS, images as data: URIs,
    no script, no external resource); every piece of text is escaped."""
    name = meta.get("name", "")
    best_number = best.get("number") if best is not None else None
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>normgan search: {escape(name)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>normgan search: {escape(name)}</h1>",
        _summary_section(meta, params, rows),
        _best_section(Path(folder), best, meta),
        _final_section(final),
        _plots_section(images),
        _trials_section(rows, keys, folds, best_number),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


# ----------------------------------------------------------------------------- entry point


def _unique_slugs(keys: Sequence[str]) -> Dict[str, str]:
    """``slug(key)`` for each key, made unique with ``-2``, ``-3``… suffixes."""
    out: Dict[str, str] = {}
    used: set = set()
    for k in keys:
        s, i = slug(k), 2
        while s in used:
            s, i = f"{slug(k)}-{i}", i + 1
        used.add(s)
        out[k] = s
    return out


def _write_plots(
    plots: Path,
    *,
    params: List[Dict[str, Any]],
    rows: List[Dict[str, Any]],
    metric: str,
    direction: str,
    best: Optional[Dict[str, Any]],
    importances: Optional[Dict[str, float]],
) -> Tuple[Dict[str, Path], List[Tuple[str, bytes]]]:
    """Render and write the per-param, history and (when given) importance plots into ``plots``;
    returns their paths by name and the ``(caption, png)`` images for the report, in that order."""
    out: Dict[str, Path] = {}
    images: List[Tuple[str, bytes]] = []
    slugs = _unique_slugs([p["key"] for p in params])
    for p in params:
        png = render(plot_param, param=p, rows=rows, metric=metric, direction=direction, best=best)
        out[f"param:{p['key']}"] = write_atomic(plots / f"metric-vs-{slugs[p['key']]}.png", png)
        images.append((f"{metric} vs {p['key']}", png))

    png = render(plot_history, rows=rows, metric=metric, direction=direction)
    out["history"] = write_atomic(plots / "history.png", png)
    images.append(("history: metric per trial and best so far", png))

    if importances:
        png = render(plot_importance, importances=importances, _height=max(2.5, 1.0 + 0.45 * len(importances)))
        out["importance"] = write_atomic(plots / "importance.png", png)
        images.append(("param importance", png))
    return out, images


def _remove_stale_plots(plots: Path, written: Iterable[str]) -> None:
    """Remove the param and importance plots in ``plots`` whose names are not in ``written``
    (a file that cannot be removed is left)."""
    written = set(written)
    for stale in list(plots.glob("metric-vs-*.png")) + [plots / "importance.png"]:
        if stale.name not in written and stale.is_file():
            try:
                stale.unlink()
            except OSError:
                pass


def write_outputs(
    folder: Path,
    *,
    meta: Dict[str, Any],
    params: List[Dict[str, Any]],
    rows: List[Dict[str, Any]],
    best: Optional[Dict[str, Any]],
    final: Optional[Dict[str, Any]],
    importances: Optional[Dict[str, float]],
) -> Dict[str, Path]:
    """Write ``trials.csv``, the plots and ``report.html`` of a search into ``folder``.

    See the module docstring for the files and :func:`format_value` for the CSV cells. Returns
    the written paths by name: ``csv``, ``report``, ``plots`` (the folder), ``history``,
    ``importance`` (only when importances has an entry) and ``param:<key>`` for each param.
    Plot files of this module that the call does not write (an importance plot from an earlier
    call, a param no longer searched) are removed, so the folder matches the report.
    """
    folder = Path(folder)
    plots = folder / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    metric = str(meta.get("metric", "metric"))
    direction = str(meta.get("direction", "minimize"))
    keys = _param_keys(params, rows)
    folds = _fold_count(meta, rows)
    out: Dict[str, Path] = {}

    out["csv"] = write_atomic(folder / "trials.csv", trials_csv(rows, keys=keys, folds=folds).encode("utf-8"))
    paths, images = _write_plots(
        plots,
        params=params,
        rows=rows,
        metric=metric,
        direction=direction,
        best=best,
        importances=importances,
    )
    out.update(paths)
    _remove_stale_plots(plots, [path.name for path in paths.values()])
    out["plots"] = plots

    text = report_html(
        folder, meta=meta, params=params, rows=rows, best=best, final=final, images=images, keys=keys, folds=folds
    )
    out["report"] = write_atomic(folder / "report.html", text.encode("utf-8"))
    return out
