"""The report of one run folder: one self-contained HTML page (``normgan report RUN``, ``train.report``).

Sections: the run (name, task, steps done, versions, resolved config), training curves (losses,
D's logits and accuracies, gradient norms, throughput, every regularization term), evaluation
metrics over steps (with the real-vs-real floor or the trivial baseline where logged), sample
grids over time, and the findings of :mod:`normgan.eval.diagnostics` (also drawn on the curves).

The page has inline CSS, images as ``data:image/png;base64`` URIs, no script and no external
resource; every piece of text is escaped. It is written atomically. Reading the run needs no
torch: metrics.jsonl, config.yaml and samples/ only (the pixel-diversity check of ``normgan
diagnose`` needs the generator and is left to that command).
"""

from __future__ import annotations

import base64
import re
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from normgan.errors import UserError
from normgan.eval import diagnostics as dg
from normgan.eval.metric_info import HIGHER_IS_BETTER, LOWER_IS_BETTER
from normgan.report.folders import (
    MetricsLog,
    RunConfig,
    classify,
    read_config,
    read_metrics_file,
    sample_files,
    spread,
    training_pid,
)
from normgan.report.html import CSS as _CSS
from normgan.report.html import REPORT_DIGITS, format_value, write_atomic
from normgan.report.html import escape as _e
from normgan.report.plots import Marker, Panel, display_size, figure_png, sample_png
from normgan.runtime.version import __version__

__all__ = [
    "SECTIONS",
    "MAX_SAMPLE_GRIDS",
    "RunData",
    "load_run",
    "steps_done",
    "run_status",
    "findings",
    "eval_metric_keys",
    "build_run_report",
    "write_run_report",
]

#: the sections, in page order (a progress line is printed as each starts)
SECTIONS = ("run", "training curves", "evaluation", "samples", "diagnostics")
#: sample grids shown at most (evenly spaced, first and last always)
MAX_SAMPLE_GRIDS = 8
#: eval keys that are bookkeeping, not metrics
EVAL_BOOKKEEPING = (
    "n",
    "n_real",
    "n_split",
    "subset_seed",
    "eval_seconds",
    "domain_heldout_accuracy",
    "kid_subset_size",
    "kid_subsets",
)
#: display order of the metrics (others follow, sorted)
EVAL_ORDER = (
    "fid",
    "kid_mean",
    "precision",
    "recall",
    "is_mean",
    "psnr",
    "ssim",
    "l1",
    "lpips",
    "classifier_score",
    "sharpness_ratio",
    "class_coverage",
    "diversity",
)
#: most vertical lines drawn for one kind of marker (gradient spikes)
MAX_MARKERS = 40

_EXTRA_CSS = """
.strip { display: flex; flex-wrap: wrap; align-items: flex-end; gap: 0.3em; }
.strip figure { margin: 0.2em; } .strip img { image-rendering: pixelated; }
figcaption { font-size: 0.85em; color: #444; }
.warn { border-left: 4px solid #c80; padding: 0.3em 0.8em; background: #fff8e6; }
td.alarm { color: #a00; font-weight: bold; } td.note { color: #a60; } td.ok { color: #272; } td.na { color: #777; }
.scroll { overflow-x: auto; max-width: 100%; margin: 0.5em 0; } .scroll > table { margin: 0; }
.scroll th { overflow-wrap: anywhere; min-width: 4em; } .scroll td { overflow-wrap: anywhere; }
.scroll td.num { overflow-wrap: normal; white-space: nowrap; }
"""


# ----------------------------------------------------------------------------- reading a run


class RunData:
    """What a report reads from a run folder (see :func:`load_run`)."""

    def __init__(
        self, run: Path, *, config: RunConfig, log: MetricsLog, samples: List[Tuple[int, Path]], pid: Optional[str]
    ) -> None:
        self.run, self.config, self.log, self.samples, self.pid = run, config, log, samples, pid
        self.name = run.resolve().name

    @property
    def rows(self) -> List[Dict[str, Any]]:
        return self.log.rows

    @property
    def train_rows(self) -> List[Dict[str, Any]]:
        return [r for r in self.rows if any(not k.startswith("eval/") for k in r if k != "step")]

    @property
    def eval_rows(self) -> List[Dict[str, Any]]:
        return [r for r in self.rows if any(k.startswith("eval/") for k in r)]


def load_run(run_dir) -> RunData:
    """Read a run folder; a path that is not one raises a one-line :class:`UserError`."""
    kind, run = classify(run_dir)
    if kind != "run":
        raise UserError(f"'{run}' is a {kind} folder, not a run; write its report with: normgan report {run}")
    return RunData(
        run,
        config=read_config(run),
        log=read_metrics_file(run / "metrics.jsonl"),
        samples=sample_files(run),
        pid=training_pid(run),
    )


def steps_done(data: RunData) -> Optional[int]:
    """The last step the run reached: its last logged row or sample grid (None: neither yet)."""
    steps = [r["step"] for r in data.rows] + [s for s, _ in data.samples]
    return max(steps) if steps else None


def _int(v: Any) -> Optional[int]:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def run_status(data: RunData) -> str:
    """``finished: 60 of 60 steps``, ``stopped at step 20 of 40; …``, ``training in progress …``."""
    done, total = steps_done(data), _int(data.config.get("train.steps"))
    of = f" of {total}" if total is not None else ""
    if data.pid is not None:
        return f"training in progress (pid {data.pid}): at step {done if done is not None else 0}{of}"
    if done is None:
        return f"no step logged yet{f' (train.steps = {total})' if total is not None else ''}"
    if total is None:
        return f"at step {done} (train.steps unknown)"
    if done >= total:
        return f"finished: {done} of {total} steps"
    return f"stopped at step {done} of {total}; continue it with: normgan train --resume {data.run}"


def _task(data: RunData) -> str:
    """The run's task: its config's, else the task whose ``legacy_eval_keys`` its eval rows carry."""
    from normgan.tasks.info import TASK_INFO, task_names

    task = data.config.get("task")
    if task in TASK_INFO:
        return task
    keys = {k[5:] for r in data.rows for k in r if k.startswith("eval/")}
    found = next((n for n in task_names() if keys & set(TASK_INFO.get(n).legacy_eval_keys)), None)
    if found is not None:
        return found
    return "unknown" if task is None else str(task)


def _task_info(data: RunData):
    """The :class:`normgan.tasks.info.TaskInfo` of the run's task; an unknown task reads as unconditional."""
    from normgan.tasks.info import TASK_INFO, UnconditionalInfo

    task = _task(data)
    return TASK_INFO.get(task) if task in TASK_INFO else UnconditionalInfo


# ----------------------------------------------------------------------------- diagnostics


def _summary(data: RunData) -> dict:
    """:func:`normgan.eval.diagnostics.summarize_rows` over the readable rows, with the run's eval/*.json
    files standing in for missing eval rows (as ``normgan diagnose``, without the pixel check)."""
    rows = data.rows
    out = dg.summarize_rows(rows)
    if not data.eval_rows:
        pick = dg.pick_eval_series(dg.eval_file_results(data.run)["files"])
        if pick:
            out["convergence"] = dg.convergence_step(pick["rows"])
            out["mode_collapse"] = dg.mode_collapse(pick["rows"])
            out["eval_source"] = "eval/*.json"
            out["eval_files"] = {"used": pick["label"], "files": pick["files"], "ignored": pick["ignored"]}
    return out


def _saturated_steps(rows: Sequence[dict]) -> List[int]:
    steps = []
    for r in rows:
        if "d/real_acc" in r and "d/fake_acc" in r:
            a, b = dg.as_float(r["d/real_acc"]), dg.as_float(r["d/fake_acc"])
            if a >= dg.SATURATION and b >= dg.SATURATION:
                steps.append(int(r["step"]))
    return steps


def _collapse_step(rows: Sequence[dict]) -> Optional[int]:
    steps = dg.series(rows, "eval/class_coverage")[0] + dg.series(rows, "eval/diversity")[0]
    return max(steps) if steps else None


def _f(v: Any, digits: int = 4) -> str:
    return "n/a" if v is None else format_value(v, digits=digits)


def _divergence_finding(summary: dict) -> Dict[str, Any]:
    """The divergence finding: an alarm at the detected step, or ``ok``."""
    d = summary.get("divergence") or {}
    if d.get("detected"):
        return {
            "name": "divergence",
            "status": "alarm",
            "text": f"DETECTED at step {d['step']}: {d['reason']}",
            "steps": [int(d["step"])],
        }
    return {
        "name": "divergence",
        "status": "ok",
        "steps": [],
        "text": "none: all logged values finite, no loss above its explosion threshold",
    }


def _oscillation_finding(summary: dict) -> Dict[str, Any]:
    """The oscillation finding: the sign-change rates of the loss differences, or ``n/a``."""
    osc = summary.get("oscillation") or {}
    if osc.get("loss/G") is None and osc.get("loss/D") is None:
        return {"name": "oscillation", "status": "n/a", "text": "fewer than 3 logged losses", "steps": []}
    return {
        "name": "oscillation",
        "status": "info",
        "steps": [],
        "text": f"sign changes of the first difference: loss/G {_f(osc.get('loss/G'), 3)}%, loss/D "
        f"{_f(osc.get('loss/D'), 3)}% (0 monotone, ~67 noise, 100 alternating)",
    }


def _saturation_finding(summary: dict, rows: Sequence[dict]) -> Dict[str, Any]:
    """The D-saturation finding: the share of saturated rows and the steps they start at."""
    sat = summary.get("d_saturation")
    if sat is None:
        return {"name": "D saturation", "status": "n/a", "text": "D accuracies not logged", "steps": []}
    steps = _saturated_steps(rows)
    return {
        "name": "D saturation",
        "status": "note" if steps else "ok",
        "steps": steps,
        "text": f"real and fake accuracy >= {dg.SATURATION} in {100 * sat:.1f}% of logged rows"
        + (" (vanishing generator gradients)" if steps else ""),
    }


def _spike_findings(summary: dict) -> List[Dict[str, Any]]:
    """One gradient-spike finding per gradient-norm key of the summary."""
    out: List[Dict[str, Any]] = []
    for key, g in (summary.get("grad_spikes") or {}).items():
        if g is None:
            out.append({"name": f"{key} spikes", "status": "n/a", "text": "not logged", "steps": []})
        else:
            out.append(
                {
                    "name": f"{key} spikes",
                    "status": "note" if g["count"] else "ok",
                    "steps": list(g["steps"]),
                    "text": f"{g['count']} logged row{'s' if g['count'] != 1 else ''} above median + "
                    f"{dg.SPIKE_K:g} MAD = {_f(g['threshold'])}",
                }
            )
    return out


def _loss_variance_finding(summary: dict) -> Dict[str, Any]:
    """The loss-variance finding: mean and max windowed variance per loss, or ``n/a``."""
    lv = summary.get("loss_variance") or {}
    parts = [f"{k} mean {_f(v['mean'])}, max {_f(v['max'])}" for k, v in lv.items() if v]
    return {
        "name": "loss variance",
        "status": "info" if parts else "n/a",
        "steps": [],
        "text": (f"over windows of {next(v for v in lv.values() if v)['window']} logged rows: " + "; ".join(parts))
        if parts
        else "fewer logged rows than the window (10)",
    }


def _convergence_finding(summary: dict) -> Dict[str, Any]:
    """The convergence finding: the step from which the metric stays near its final value, or ``n/a``."""
    c = summary.get("convergence")
    if c:
        return {
            "name": "convergence",
            "status": "info",
            "steps": [int(c["step"])],
            "text": f"{c['metric']} within {100 * dg.CONVERGENCE_TOL:g}% of its final {_f(c['final'])} "
            f"from step {c['step']}",
        }
    return {
        "name": "convergence",
        "status": "n/a",
        "steps": [],
        "text": "no eval/fid rows (enable eval.every, or run normgan eval)",
    }


def _mode_collapse_finding(summary: dict, rows: Sequence[dict]) -> Dict[str, Any]:
    """The mode-collapse finding: class coverage and diversity against their alarms, or ``n/a``."""
    m = summary.get("mode_collapse")
    pixel = "the pixel-diversity check needs the generator: run normgan diagnose RUN"
    if not m:
        return {
            "name": "mode collapse",
            "status": "n/a",
            "steps": [],
            "text": f"no class_coverage/diversity eval rows; {pixel}",
        }
    parts = []
    if "class_coverage_last" in m:
        parts.append(
            f"class coverage {_f(m['class_coverage_last'], 3)} (min {_f(m['class_coverage_min'], 3)}, "
            f"suspect below {dg.COVERAGE_ALARM})"
        )
    if "diversity_last" in m:
        parts.append(
            f"diversity {_f(m['diversity_last'], 3)} (min {_f(m['diversity_min'], 3)}, "
            f"suspect below {dg.DIVERSITY_ALARM})"
        )
    at = _collapse_step(rows) if m["suspected"] else None
    return {
        "name": "mode collapse",
        "status": "alarm" if m["suspected"] else "ok",
        "steps": [at] if at is not None else [],
        "text": ("SUSPECTED: " if m["suspected"] else "not detected: ") + "; ".join(parts) + f"; {pixel}",
    }


def findings(summary: dict, rows: Sequence[dict]) -> List[Dict[str, Any]]:
    """The diagnostics as a list of ``{"name", "status", "text", "steps"}``.

    ``status``: ``alarm`` (divergence detected, mode collapse suspected), ``note`` (D saturation or
    gradient spikes seen), ``ok``, ``info`` (a measurement without a verdict) or ``n/a``;
    ``steps``: the logged steps the finding points at (empty when it has none)."""
    return [
        _divergence_finding(summary),
        _oscillation_finding(summary),
        _saturation_finding(summary, rows),
        *_spike_findings(summary),
        _loss_variance_finding(summary),
        _convergence_finding(summary),
        _mode_collapse_finding(summary, rows),
    ]


def _half_gap(steps: Sequence[int]) -> float:
    gaps = sorted(b - a for a, b in zip(steps, steps[1:]) if b > a)
    return gaps[len(gaps) // 2] / 2 if gaps else 0.5


def _markers(found: Sequence[dict], rows: Sequence[dict]) -> Dict[str, List[Marker]]:
    """Markers by kind: ``divergence``, ``collapse``, ``spikes:<key>``, ``saturation``, ``convergence``."""
    out: Dict[str, List[Marker]] = {}
    logged = sorted({int(r["step"]) for r in rows if "d/real_acc" in r})
    half = _half_gap(logged)
    for f in found:
        if not f["steps"]:
            continue
        name = f["name"]
        if name == "divergence":
            s = f["steps"][0]
            out["divergence"] = [Marker(s, f"divergence (step {s})", color="C3", note="divergence")]
        elif name == "mode collapse":
            s = f["steps"][0]
            out["collapse"] = [
                Marker(s, f"mode collapse suspected (eval at step {s})", color="C4", style="--", note="collapse?")
            ]
        elif name.endswith(" spikes"):
            key = name[: -len(" spikes")]
            color = "C1" if key.endswith("/G") else "C5"
            out[f"spikes:{key}"] = [Marker(s, f"{key} spike", color=color, style=":") for s in f["steps"][:MAX_MARKERS]]
        elif name == "D saturation":
            spans, start, prev = [], None, None
            index = {s: i for i, s in enumerate(logged)}
            for s in f["steps"]:
                if start is not None and index.get(s, -2) == index.get(prev, -9) + 1:
                    prev = s
                    continue
                if start is not None:
                    spans.append((start, prev))
                start = prev = s
            if start is not None:
                spans.append((start, prev))
            out["saturation"] = [
                Marker(a - half, "D saturated (both accuracies >= 0.99)", color="0.5", x1=b + half) for a, b in spans
            ]
        elif name == "convergence":
            s = f["steps"][0]
            out["convergence"] = [Marker(s, f"within 10% of the final value from step {s}", color="C2", style="--")]
    return out


# ----------------------------------------------------------------------------- HTML pieces


def _img(png: bytes, alt: str, *, width: Optional[int] = None, height: Optional[int] = None) -> str:
    size = f' width="{width}" height="{height}"' if width and height else ""
    return f'<img src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}" alt="{_e(alt)}"{size}>'


def _figure(png: bytes, caption: str) -> str:
    return f"<figure>{_img(png, caption)}<figcaption>{_e(caption)}</figcaption></figure>"


def _boxed(table: str) -> str:
    """A table inside its own horizontally scrolling box, so that a wide one never widens the page."""
    return f'<div class="scroll">{table}</div>'


def _name(text: Any) -> str:
    """An escaped column name; inside a :func:`_boxed` table the CSS lets it wrap anywhere
    (``overflow-wrap: anywhere``), so ``classifier_score_real`` does not widen its column."""
    return _e(text)


def _table(items: Sequence[Tuple[str, Any]]) -> str:
    return _boxed("<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in items) + "</table>")


def _series(rows, key) -> Tuple[List[int], List[float]]:
    return dg.series(rows, key)


def _lines(rows, keys: Sequence[str]) -> List[Tuple[str, List[int], List[float]]]:
    out = []
    for k in keys:
        xs, ys = _series(rows, k)
        if xs:
            out.append((k, xs, ys))
    return out


def _regularizers(data: RunData) -> str:
    regs = data.config.get("regularizers")
    if not isinstance(regs, dict) or not regs:
        return "none"
    parts = []
    for name, spec in regs.items():
        if isinstance(spec, dict):
            bits = ", ".join(
                f"{k}={format_value(v)}" for k, v in spec.items() if k in ("term", "net", "weight", "every", "at")
            )
            parts.append(f"{name} ({bits})" if bits else str(name))
        else:
            parts.append(str(name))
    return "; ".join(parts)


def _run_section(data: RunData) -> str:
    c = data.config
    v = c.versions
    versions = (
        f"normgan {v['normgan']}, torch {v['torch']}, python {v['python']}"
        if v
        else "unknown (config.yaml has no version header)"
    )
    every = c.get("eval.every")
    if every:
        metrics = c.get("eval.metrics")
        ev = f"every {every} steps" + (f": {', '.join(map(str, metrics))}" if isinstance(metrics, list) else "")
        if c.get("eval.n") is not None and _task_info(data).report_eval_size:
            ev += f" (N = {c.get('eval.n')}, features {c.get('eval.features')})"
    else:
        ev = "off (eval.every = 0)" if every == 0 else "unknown"
    evals = len(data.eval_rows)
    items = [
        ("run", data.name),
        ("folder", str(data.run)),
        ("task", _task(data)),
        ("steps", run_status(data)),
        ("dataset", c.get("data.name", "unknown")),
        ("loss", c.get("loss", "unknown")),
        ("regularizers", _regularizers(data)),
        ("evaluation", ev),
        ("logged rows", f"{len(data.train_rows)} training, {evals} evaluation"),
        ("sample grids", str(len(data.samples))),
        ("versions (training)", versions),
        ("report written by", f"normgan {__version__}"),
    ]
    notes = [n for n in (c.error, data.log.note()) if n]
    out = ["<h2>Run</h2>", _table(items)]
    out += [f'<p class="warn">{_e(n)}</p>' for n in notes]
    out.append("<h3>Resolved config (config.yaml)</h3>")
    out.append(
        f"<pre>{_e(c.text)}</pre>" if c.text is not None else f'<p class="note">{_e(c.error or "no config.yaml")}</p>'
    )
    return "\n".join(out)


_CORE_KEYS = {
    "loss/D",
    "loss/G",
    "d/real_logit",
    "d/fake_logit",
    "d/real_acc",
    "d/fake_acc",
    "grad_norm/D",
    "grad_norm/G",
    "images_per_s",
}


def _loss_figure(rows: Sequence[dict], marks: Dict[str, List[Marker]]) -> str:
    """The loss figure, with every diagnostic marked and named in its caption."""
    spikes = [m for k, ms in marks.items() if k.startswith("spikes:") for m in ms]
    events = marks.get("divergence", []) + marks.get("collapse", [])
    sat = marks.get("saturation", [])
    described = []
    if events or spikes or sat:
        described = [
            t
            for t, ok in (
                ("red line: divergence", marks.get("divergence")),
                ("purple dashed: mode collapse suspected", marks.get("collapse")),
                ("dotted: gradient-norm spikes", spikes),
                ("grey bands: D saturated", sat),
            )
            if ok
        ]
    loss_cap = "losses: loss/D and loss/G (mean over each logging interval)"
    if described:
        loss_cap += "; diagnostics marked (" + ", ".join(described) + ")"
    return _figure(
        figure_png([Panel("losses", _lines(rows, ["loss/D", "loss/G"]), ylabel="loss")], markers=events + spikes + sat),
        loss_cap,
    )


def _discriminator_figure(rows: Sequence[dict], marks: Dict[str, List[Marker]]) -> str:
    """The figure of D's mean logits and accuracies, marked with divergence and saturation."""
    d = [
        Panel("D logits (mean)", _lines(rows, ["d/real_logit", "d/fake_logit"])),
        Panel("D accuracy", _lines(rows, ["d/real_acc", "d/fake_acc"])),
    ]
    return _figure(
        figure_png(d, markers=marks.get("divergence", []) + marks.get("saturation", [])),
        "discriminator: mean logits on real and fake images, accuracy on real and fake images",
    )


def _gradient_figure(rows: Sequence[dict], marks: Dict[str, List[Marker]]) -> str:
    """The figure of gradient norms and throughput, marked with divergence and spikes."""
    spikes = [m for k, ms in marks.items() if k.startswith("spikes:") for m in ms]
    g = [
        Panel("gradient norms", _lines(rows, ["grad_norm/D", "grad_norm/G"]), ylabel="L2 norm"),
        Panel("throughput", _lines(rows, ["images_per_s"]), ylabel="images / s", markers=False),
    ]
    return _figure(
        figure_png(g, markers=marks.get("divergence", []) + spikes),
        "gradient norms of D and G (before clipping or scaling) and training throughput",
    )


def _extra_keys(rows: Sequence[dict]) -> Tuple[Dict[str, List[str]], List[str]]:
    """The logged keys beyond the core curves: regularization keys grouped by term, and the rest (sorted)."""
    terms: Dict[str, List[str]] = {}
    other = []
    for k in sorted({k for r in rows for k in r if k != "step"}):
        m = re.fullmatch(r"reg/(.+)/(raw|weight|loss)", k)
        if m:
            terms.setdefault(m.group(1), []).append(k)
        elif k not in _CORE_KEYS:
            other.append(k)
    return terms, other


def _regularization_figures(rows: Sequence[dict], terms: Dict[str, List[str]]) -> List[str]:
    """A heading and one figure (raw, weight, loss) per regularization term; empty without terms."""
    out = ["<h3>Regularization terms</h3>"] if terms else []
    for name in sorted(terms):
        panels = [
            Panel(f"reg/{name}/{part}", _lines(rows, [f"reg/{name}/{part}"]), markers=False)
            for part in ("raw", "weight", "loss")
        ]
        out.append(
            _figure(
                figure_png(panels, ncols=3), f"reg/{name}: raw value, weight (schedule), weighted loss (raw × weight)"
            )
        )
    return out


def _other_figures(rows: Sequence[dict], other: List[str]) -> List[str]:
    """A heading and one figure of the first 12 other logged values; empty when there are none."""
    if not other:
        return []
    panels = [Panel(k, _lines(rows, [k]), markers=False) for k in other[:12]]
    return [
        "<h3>Other logged values</h3>",
        _figure(
            figure_png(panels, ncols=3),
            ", ".join(other[:12]) + (f" (and {len(other) - 12} more not shown)" if len(other) > 12 else ""),
        ),
    ]


def _training_section(data: RunData, marks: Dict[str, List[Marker]]) -> str:
    """The HTML of the training-curves section: losses, D, gradients, regularization and other values."""
    rows = data.train_rows
    out = ["<h2>Training curves</h2>"]
    if not rows:
        out.append('<p class="note">no training rows logged: nothing to plot</p>')
        return "\n".join(out)
    out.append(_loss_figure(rows, marks))
    out.append(_discriminator_figure(rows, marks))
    out.append(_gradient_figure(rows, marks))
    terms, other = _extra_keys(rows)
    out += _regularization_figures(rows, terms)
    out += _other_figures(rows, other)
    return "\n".join(out)


def eval_metric_keys(rows: Sequence[dict]) -> List[str]:
    """The metric names of the ``eval/<name>`` keys in ``rows`` (floors, baselines, stds, ``_real``
    references and bookkeeping such as ``n`` left out), in display order."""
    names = {k[5:] for r in rows for k in r if k.startswith("eval/")}
    metrics = {
        m
        for m in names
        if m not in EVAL_BOOKKEEPING
        and not m.startswith("baseline_")
        and not m.endswith(("_floor", "_floor_n", "_std", "_real"))
    }
    return [m for m in EVAL_ORDER if m in metrics] + sorted(metrics - set(EVAL_ORDER))


def _eval_figure(rows: Sequence[dict], m: str, marks: Dict[str, List[Marker]], summary: dict) -> str:
    xs, ys = _series(rows, f"eval/{m}")
    panel = Panel(f"eval/{m}", [(m, xs, ys)] if xs else [], ylabel=m)
    caption = [f"eval/{m}"]
    direction = "lower is better" if m in LOWER_IS_BETTER else "higher is better" if m in HIGHER_IS_BETTER else None
    if direction:
        caption.append(direction)
    for ref, label in (
        (f"eval/{m}_floor", "real-vs-real floor"),
        (f"eval/baseline_{m}", "trivial baseline"),
        (f"eval/{m}_real", "real images"),
    ):
        rx, ry = _series(rows, ref)
        if not rx:
            continue
        nx, ny = _series(rows, f"{ref}_n")
        n = f" at N={int(ny[-1])}" if ny else ""
        text = f"{label} {format_value(ry[-1], digits=REPORT_DIGITS)}{n}" if len(set(ry)) == 1 else f"{label}{n}"
        if len(set(ry)) == 1:
            panel.hlines.append((ry[-1], text))
        else:
            panel.references.append((text, rx, ry))
        caption.append(f"dashed line: {text}")
    if m.endswith("_mean"):
        sx, sy = _series(rows, f"eval/{m[:-5]}_std")
        if sx and sx == xs:
            panel.bands.append(("± std", xs, [a - b for a, b in zip(ys, sy)], [a + b for a, b in zip(ys, sy)]))
            caption.append("band: ± std")
    if xs and direction:
        sign = 1.0 if direction == "lower is better" else -1.0
        by, bx = min(zip(ys, xs), key=lambda t: (sign * t[0], t[1]))  # the earliest of equal bests
        panel.best = (bx, by, f"best {format_value(by, digits=REPORT_DIGITS)} at step {bx}")
        caption.append(f"star: best {format_value(by, digits=REPORT_DIGITS)} at step {bx}")
    markers = list(marks.get("collapse", []))
    conv = summary.get("convergence")
    if conv and conv.get("metric") == f"eval/{m}":
        markers += marks.get("convergence", [])
        caption.append(f"green dashed: within 10% of the final value from step {conv['step']}")
    return _figure(figure_png([panel], markers=markers), "; ".join(caption))


def _eval_section(data: RunData, marks: Dict[str, List[Marker]], summary: dict) -> str:
    out = ["<h2>Evaluation</h2>"]
    rows = data.eval_rows
    every = data.config.get("eval.every")
    metrics = eval_metric_keys(rows)
    if not metrics:
        if every == 0:
            out.append('<p class="note">evaluation was off (eval.every = 0): no metrics over steps</p>')
        else:
            setting = f"eval.every = {every}" if every is not None else "eval.every unknown"
            out.append(f'<p class="note">no evaluation row logged ({_e(setting)}): no metrics over steps</p>')
        out += _eval_files_section(data, summary)
        return "\n".join(out)
    out.append(
        f"<p>{len(rows)} evaluation{'s' if len(rows) != 1 else ''} of the EMA generator, at steps "
        f"{_e(', '.join(str(r['step']) for r in rows[:20]))}{' …' if len(rows) > 20 else ''}.</p>"
    )
    for m in metrics:
        out.append(_eval_figure(rows, m, marks, summary))
    out.append("<h3>Last evaluation</h3>")
    out.append(_eval_table(rows[-1:]))
    out += _eval_files_section(data, summary)
    return "\n".join(out)


def _eval_table(rows: Sequence[dict]) -> str:
    keys = sorted({k for r in rows for k in r if k.startswith("eval/")})
    head = "<tr><th>step</th>" + "".join(f"<th>{_name(k[5:])}</th>" for k in keys) + "</tr>"
    body = "".join(
        "<tr><td>"
        + _e(r.get("step"))
        + "</td>"
        + "".join(f'<td class="num">{_e(format_value(r.get(k), digits=REPORT_DIGITS))}</td>' for k in keys)
        + "</tr>"
        for r in rows
    )
    return _boxed(f"<table>{head}{body}</table>")


#: the option columns of the evaluation-files table, in order (those some file records)
FILE_OPTIONS = ("reference", "split", "features", "seed", "ema", "n")


def _eval_files_table(files: Sequence[dict]) -> str:
    """Every evaluation file, one row each (keyed by its file name): its step, the options that tell
    files of one step apart (reference or split, features, seed, EMA, N), then its metrics."""
    opts = [k for k in FILE_OPTIONS if any(k in f["options"] for f in files)]
    names = {k for f in files for k in f["values"]} - {"step", "seed", "n"}
    metrics = [m for m in EVAL_ORDER if m in names] + sorted(names - set(EVAL_ORDER))
    head = (
        "<tr><th>file</th><th>step</th>"
        + "".join(f"<th>{_name(k)}</th>" for k in opts)
        + "".join(f"<th>{_name(k)}</th>" for k in metrics)
        + "</tr>"
    )

    def opt(f, k):
        v = f["options"].get(k)
        return "" if v is None else ("EMA" if v else "raw") if k == "ema" else str(v)

    body = "".join(
        f"<tr><td>{_name(f['file'])}</td><td>{_e(f['step'])}</td>"
        + "".join(f"<td>{_e(opt(f, k))}</td>" for k in opts)
        + "".join(
            f'<td class="num">{_e(format_value(f["values"].get(m), digits=REPORT_DIGITS))}</td>'
            if m in f["values"]
            else "<td></td>"
            for m in metrics
        )
        + "</tr>"
        for f in files
    )
    return _boxed(f"<table>{head}{body}</table>")


def _eval_files_section(data: RunData, summary: dict) -> List[str]:
    """Every ``eval/*.json`` of ``normgan eval`` (none dropped: two files of one step are two rows)
    and which of them the diagnostics used."""
    found = dg.eval_file_results(data.run)
    files = found["files"]
    out: List[str] = []
    if files:
        out.append(
            f"<h3>Results of <code>normgan eval</code> (eval/*.json)</h3>"
            f"<p>{len(files)} evaluation file{'s' if len(files) != 1 else ''}, one row each.</p>"
        )
        out.append(_eval_files_table(files))
        pick = summary.get("eval_files")
        if pick and pick.get("used"):
            note = (
                f"convergence and mode collapse (Diagnostics below) use the {len(pick['files'])} file"
                f"{'s' if len(pick['files']) != 1 else ''} of one series: {pick['used']}"
            )
            if pick["ignored"]:
                note += f"; not used: {', '.join(pick['ignored'])}"
            out.append(f'<p class="note">{_e(note)}</p>')
    if found["unreadable"]:
        out.append(
            f'<p class="warn">unreadable evaluation file{"s" if len(found["unreadable"]) != 1 else ""} '
            f"skipped: {_e(', '.join(found['unreadable']))}</p>"
        )
    return out


def _samples_section(data: RunData) -> str:
    out = ["<h2>Samples over time</h2>"]
    if not data.samples:
        out.append('<p class="note">no sample grids in samples/</p>')
        return "\n".join(out)
    picked = [data.samples[i] for i in spread(len(data.samples), MAX_SAMPLE_GRIDS)]
    what = _task_info(data).grid_caption
    shown = (
        f"all {len(picked)} grids"
        if len(picked) == len(data.samples)
        else f"{len(picked)} of {len(data.samples)} grids, evenly spaced (the first and the last included)"
    )
    out.append(f"<p>{_e(what)}; {_e(shown)}.</p>")
    figs, bad = [], []
    for step, path in picked:
        try:
            png, w, h = sample_png(path)
        except (OSError, ValueError):
            bad.append(path.name)
            continue
        dw, dh = display_size(w, h)
        figs.append(
            f"<figure>{_img(png, f'samples at step {step}', width=dw, height=dh)}"
            f"<figcaption>step {step}</figcaption></figure>"
        )
    out.append('<div class="strip">' + "".join(figs) + "</div>")
    if bad:
        out.append(
            f'<p class="warn">unreadable sample grid{"s" if len(bad) > 1 else ""} skipped: {_e(", ".join(bad))}</p>'
        )
    return "\n".join(out)


def _diagnostics_section(found: Sequence[dict], summary: dict) -> str:
    out = [
        "<h2>Diagnostics</h2>",
        "<p>The checks of <code>normgan diagnose</code> over the logged rows (definitions in docs/evaluation.md); "
        "findings with steps are marked on the curves above.</p>",
        '<div class="scroll"><table><tr><th>check</th><th>status</th><th>finding</th><th>steps</th></tr>',
    ]
    cls = {"alarm": "alarm", "note": "note", "ok": "ok", "n/a": "na", "info": ""}
    for f in found:
        steps = ", ".join(map(str, f["steps"][:20])) + (" …" if len(f["steps"]) > 20 else "")
        c = cls.get(f["status"], "")
        out.append(
            f"<tr><td>{_e(f['name'])}</td><td{f' class={chr(34)}{c}{chr(34)}' if c else ''}>{_e(f['status'])}</td>"
            f"<td>{_e(f['text'])}</td><td>{_e(steps)}</td></tr>"
        )
    out.append("</table></div>")
    if summary.get("nonfinite_values"):
        out.append(f'<p class="warn">{summary["nonfinite_values"]} non-finite logged values (NaN/inf)</p>')
    if summary.get("eval_source") == "eval/*.json":
        used = (summary.get("eval_files") or {}).get("used")
        out.append(
            '<p class="note">convergence and mode collapse from the eval/*.json files of normgan eval'
            + (f" (one series: {_e(used)})" if used else "")
            + "</p>"
        )
    return "\n".join(out)


# ----------------------------------------------------------------------------- entry points


def build_run_report(run_dir, *, progress: Optional[Callable[[int, str], None]] = None) -> str:
    """The text of the report of ``run_dir`` (see the module docstring); ``progress(i, section)``
    is called as each of :data:`SECTIONS` starts (``i`` from 1)."""
    tick = progress or (lambda i, name: None)
    data = load_run(run_dir)
    summary = _summary(data)
    found = findings(summary, data.rows)
    marks = _markers(found, data.rows)
    parts = []
    builders = (
        lambda: _run_section(data),
        lambda: _training_section(data, marks),
        lambda: _eval_section(data, marks, summary),
        lambda: _samples_section(data),
        lambda: _diagnostics_section(found, summary),
    )
    for i, (name, build) in enumerate(zip(SECTIONS, builders), 1):
        tick(i, name)
        parts.append(build())
    status = run_status(data)
    return (
        "\n".join(
            [
                "<!DOCTYPE html>",
                '<html lang="en"><head><meta charset="utf-8">',
                f"<title>normgan run: {_e(data.name)}</title>",
                f"<style>{_CSS}{_EXTRA_CSS}</style></head><body>",
                f"<h1>normgan run: {_e(data.name)}</h1>",
                f"<p>{_e(_task(data))} run, {_e(status)}</p>",
                *parts,
                "</body></html>",
            ]
        )
        + "\n"
    )


def write_run_report(run_dir, *, out=None, progress: bool = True, file=None) -> Path:
    """Write the report of ``run_dir`` to ``out`` (default ``run_dir/report.html``; an existing
    folder gets ``report.html`` inside) atomically; returns its path.

    ``progress``: print ``report [i/5] <section>`` as each section starts and, at the end,
    ``report written to <path>`` to ``file`` (default stdout). A path that is not a run folder
    or an ``out`` that cannot be written raises a one-line :class:`UserError`.
    """
    stream = file if file is not None else sys.stdout

    def tick(i: int, name: str) -> None:
        if progress:
            print(f"report [{i}/{len(SECTIONS)}] {name}", file=stream, flush=True)

    kind, run = classify(run_dir)
    if kind != "run":
        raise UserError(f"'{run}' is a {kind} folder, not a run; write its report with: normgan report {run}")
    target = Path(out) if out is not None else run / "report.html"
    if target.is_dir():
        target = target / "report.html"
    text = build_run_report(run, progress=tick)
    try:
        write_atomic(target, text.encode("utf-8"))
    except OSError as e:
        raise UserError(f"cannot write the report to '{target}': {e.strerror or e}; choose another --out") from None
    if progress:
        print(f"report written to {target}", file=stream, flush=True)
    return target
