"""Training-stability diagnostics computed from a run's ``metrics.jsonl`` (``normgan diagnose RUN``).

Every function is pure: it takes the list of logged rows (dicts with ``step`` and scalar keys, as
written by the training loop; non-finite values logged as the strings ``"nan"``/``"inf"`` are read
as floats and skipped) and returns plain numbers.  Definitions (also in docs/evaluation.md):

* **loss variance** — population variance (``ddof = 0``) of ``loss/D`` and ``loss/G`` over each
  rolling window of ``window = 10`` consecutive logged rows; reported as the mean and max over
  windows (None with fewer than ``window`` values).
* **oscillation** — drop zero first differences of ``loss/G``; the percentage of consecutive
  first-difference pairs with opposite signs.  0 = monotone, ≈ 66.7 = white noise, 100 = the loss
  alternates up/down at every logged row.
* **D saturation** — fraction of rows with ``d/real_acc >= 0.99`` AND ``d/fake_acc >= 0.99``
  (the discriminator separates everything: vanishing generator gradients).
* **gradient-norm spikes** — rows where ``grad_norm/G`` (resp. ``/D``) exceeds
  ``median + 5 · MAD`` (MAD = median absolute deviation from the median, unscaled).
* **convergence step** — for the main metric (``eval/fid``), the first eval step from which every
  later eval value stays within 10% of the final value (``|v - final| <= 0.1 · |final|``); None
  when no row carries the metric.
* **mode collapse** — from ``eval/class_coverage`` and ``eval/diversity`` rows (or the run's
  ``eval/*.json`` files): last and minimum values; ``suspected`` when the last class coverage is
  below 0.8 or the last diversity below 0.5.
* **pixel diversity** (needs the run's checkpoint, not eval rows; :func:`pixel_diversity`) —
  mean pairwise Euclidean pixel distance among 256 images of the EMA generator (noise seed 0)
  divided by the same among 256 training images (a permutation with seed 0); ``suspected``
  collapse below 0.5.  Identical outputs give 0, a generator as varied as the data ≈ 1.
* **divergence** (:func:`divergence`, also used by the training loop's end-of-run summary) —
  detected at the first row where a training value (any key except ``step`` and ``eval/*``) is
  NaN/inf, or when a loss exploded: with ``m_first``/``m_last`` the medians of ``|loss|`` over
  the first and last ``w = max(1, min(10, rows // 3))`` logged rows of ``loss/G`` (resp.
  ``loss/D``), the threshold is ``T = max(1e6, 1e3 · clamp(m_first, 1, 1e6))`` (so ``T`` lies
  in [1e6, 1e9]: a 1000-fold growth of an O(1) loss is not yet an explosion, a loss that starts
  near 1e5 may grow to 1e8) and the loss exploded when ``m_last > T``; the step reported is the
  first logged step with ``|loss| > T``.  (GAN losses are O(1)–O(100); lr = 1e6 gives
  ``loss/G`` ≈ 1e14 from the first logged row, caught by the cap on ``m_first``.)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from normgan.errors import UserError

__all__ = [
    "series",
    "window_variance",
    "loss_variance",
    "oscillation",
    "d_saturation",
    "grad_spikes",
    "convergence_step",
    "mode_collapse",
    "divergence",
    "pixel_diversity",
    "summarize_rows",
    "summarize_run",
    "format_summary",
    "read_rows",
    "eval_file_results",
    "pick_eval_series",
]

SATURATION = 0.99
SPIKE_K = 5.0
CONVERGENCE_TOL = 0.1
COVERAGE_ALARM = 0.8
DIVERSITY_ALARM = 0.5
PIXEL_DIVERSITY_ALARM = 0.5
PIXEL_SAMPLES = 256
EXPLOSION_FACTOR = 1e3
EXPLOSION_FLOOR = 1e6
EXPLOSION_CAP = 1e6  # m_first is clamped to [1, EXPLOSION_CAP]: T <= 1e9


def as_float(v) -> float:
    """``float(v)``, or NaN when ``v`` is not a number."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def series(rows: Iterable[dict], key: str) -> tuple[list[int], list[float]]:
    """``(steps, values)`` of the rows that carry a finite ``key``."""
    steps, values = [], []
    for r in rows:
        if key in r:
            v = as_float(r[key])
            if math.isfinite(v):
                steps.append(int(r.get("step", len(steps))))
                values.append(v)
    return steps, values


def window_variance(values: Sequence[float], window: int = 10) -> list[float]:
    """Population variance of every run of ``window`` consecutive values (``len - window + 1`` windows)."""
    x = np.asarray(values, dtype=float)
    if window < 1 or len(x) < window:
        return []
    w = np.lib.stride_tricks.sliding_window_view(x, window)
    return [float(v) for v in w.var(axis=1)]


def loss_variance(rows: Sequence[dict], key: str, *, window: int = 10) -> Optional[dict]:
    """``{"mean", "max", "windows"}`` of :func:`window_variance` of ``key``; None if too few rows."""
    var = window_variance(series(rows, key)[1], window)
    if not var:
        return None
    return {"mean": float(np.mean(var)), "max": float(np.max(var)), "windows": len(var), "window": window}


def oscillation(rows: Sequence[dict], key: str = "loss/G") -> Optional[float]:
    """Percentage of consecutive non-zero first differences of ``key`` that change sign; None if < 2."""
    d = np.diff(np.asarray(series(rows, key)[1], dtype=float))
    s = np.sign(d[d != 0])
    if len(s) < 2:
        return None
    return float(100.0 * np.count_nonzero(s[1:] != s[:-1]) / (len(s) - 1))


def d_saturation(rows: Sequence[dict], *, threshold: float = SATURATION) -> Optional[float]:
    """Fraction of rows (having both accuracies) where d/real_acc and d/fake_acc are both >= threshold."""
    both = [
        (as_float(r["d/real_acc"]), as_float(r["d/fake_acc"])) for r in rows if "d/real_acc" in r and "d/fake_acc" in r
    ]
    if not both:
        return None
    return sum(1 for a, b in both if a >= threshold and b >= threshold) / len(both)


def grad_spikes(rows: Sequence[dict], key: str, *, k: float = SPIKE_K) -> Optional[dict]:
    """Rows where ``key`` > median + k·MAD: ``{"count", "fraction", "threshold", "median", "mad", "steps"}``."""
    steps, values = series(rows, key)
    if not values:
        return None
    x = np.asarray(values)
    med = float(np.median(x))
    mad = float(np.median(np.abs(x - med)))
    thr = med + k * mad
    hit = [s for s, v in zip(steps, values) if v > thr]
    return {
        "count": len(hit),
        "fraction": len(hit) / len(values),
        "threshold": thr,
        "median": med,
        "mad": mad,
        "steps": hit,
    }


def convergence_step(rows: Sequence[dict], key: str = "eval/fid", *, tol: float = CONVERGENCE_TOL) -> Optional[dict]:
    """First step from which ``key`` stays within ``tol·|final|`` of its final value:
    ``{"metric", "step", "final", "first_step", "last_step"}``, or None without such rows."""
    steps, values = series(rows, key)
    if not values:
        return None
    final = values[-1]
    band = tol * abs(final)
    at = steps[-1]
    for s, v in zip(reversed(steps), reversed(values)):
        if abs(v - final) > band:
            break
        at = s
    return {"metric": key, "step": at, "final": final, "first_step": steps[0], "last_step": steps[-1]}


def mode_collapse(
    rows: Sequence[dict], *, coverage_key: str = "eval/class_coverage", diversity_key: str = "eval/diversity"
) -> Optional[dict]:
    """Last/min class coverage and diversity from eval rows; ``suspected`` if the last coverage
    < 0.8 or the last diversity < 0.5.  None when no row carries either (a paired run logs
    ``eval/dropout_diversity`` instead, near 0 by design)."""
    _, cov = series(rows, coverage_key)
    _, div = series(rows, diversity_key)
    if not cov and not div:
        return None
    out: dict = {}
    if cov:
        out.update(class_coverage_last=cov[-1], class_coverage_min=min(cov))
    if div:
        out.update(diversity_last=div[-1], diversity_min=min(div))
    out["suspected"] = bool((cov and cov[-1] < COVERAGE_ALARM) or (div and div[-1] < DIVERSITY_ALARM))
    return out


def _explosion(rows: Sequence[dict], key: str, *, window: int) -> Optional[dict]:
    steps, values = series(rows, key)
    if not values:
        return None
    x = np.abs(np.asarray(values, dtype=float))
    w = max(1, min(window, len(x) // 3))
    m_first, m_last = float(np.median(x[:w])), float(np.median(x[-w:]))
    thr = max(EXPLOSION_FLOOR, EXPLOSION_FACTOR * min(max(m_first, 1.0), EXPLOSION_CAP))
    out = {
        "key": key,
        "first_median": m_first,
        "last_median": m_last,
        "threshold": thr,
        "window": w,
        "exploded": m_last > thr,
    }
    if out["exploded"]:
        i = int(np.argmax(x > thr))
        out.update(step=steps[i], value=values[i])
    return out


def divergence(rows: Sequence[dict], *, keys: Sequence[str] = ("loss/G", "loss/D"), window: int = 10) -> dict:
    """Did training diverge?  A pure function of the logged rows (see the module docstring).

    Returns ``{"detected": bool, "step", "key", "kind": "nonfinite" | "explosion" | None,
    "reason": str | None, "losses": {key: {"first_median", "last_median", "threshold", "window",
    "exploded"}}}``; when both kinds occur, the earlier step wins.  ``reason`` is a short phrase
    such as ``"|loss/G| reached 7.9e+13 at step 2 (median of the last 1 logged rows 1.9e+14 >
    threshold 1e+09)"`` or ``"loss/D is nan at step 40"``.
    """
    found: list = []
    for r in rows:
        for k, v in r.items():
            if k == "step" or k.startswith("eval/") or isinstance(v, bool):
                continue
            if isinstance(v, (int, float)) or (
                isinstance(v, str) and v.strip().lower().lstrip("+-") in ("nan", "inf", "infinity")
            ):
                x = as_float(v)
                if not math.isfinite(x):
                    step = int(r.get("step", 0))
                    found.append((step, 0, k, "nonfinite", f"{k} is {x} at step {step}"))
                    break
        if found:
            break
    losses = {}
    for k in keys:
        e = _explosion(rows, k, window=window)
        if e is None:
            continue
        losses[k] = {n: e[n] for n in ("first_median", "last_median", "threshold", "window", "exploded")}
        if e["exploded"]:
            found.append(
                (
                    e["step"],
                    1,
                    k,
                    "explosion",
                    f"|{k}| reached {abs(e['value']):.3g} at step {e['step']} (median of the last {e['window']} "
                    f"logged rows {e['last_median']:.3g} > threshold {e['threshold']:.3g})",
                )
            )
    if not found:
        return {"detected": False, "step": None, "key": None, "kind": None, "reason": None, "losses": losses}
    step, _, key, kind, reason = min(found, key=lambda f: (f[0], f[1]))
    return {"detected": True, "step": step, "key": key, "kind": kind, "reason": reason, "losses": losses}


def pixel_diversity(
    run, *, n: int = PIXEL_SAMPLES, seed: int = 0, checkpoint: str = "last.pt", device: str = "cpu"
) -> dict:
    """Mean pairwise pixel distance of ``n`` EMA-generator images over that of ``n`` training images.

    Generated: :func:`normgan.inference.sample.sample_images` with noise seed ``seed``; real: the first ``n``
    of a permutation (``torch.Generator`` seeded with ``seed``) of the run's training split, both
    as float images in [-1, 1] compared by :func:`normgan.metrics.functional.mean_pairwise_distance`
    over flattened pixels.  Returns ``{"ratio", "generated", "real", "n", "suspected"}`` with
    ``suspected = ratio < 0.5``; a checkpoint or dataset that cannot be used raises ``UserError``.
    """
    import torch

    from normgan.data import batch_to_float
    from normgan.eval.evaluation import reference_dataset
    from normgan.inference.sample import load_generator, sample_images
    from normgan.metrics.functional import mean_pairwise_distance

    G, cfg = load_generator(run, ema=True, device=device, checkpoint=checkpoint)
    fake = sample_images(G, n=n, seed=seed)
    train = reference_dataset(cfg, "train")
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n]
    real = batch_to_float(train.images[idx])
    d_fake, d_real = mean_pairwise_distance(fake, max_samples=n), mean_pairwise_distance(real, max_samples=n)
    ratio = d_fake / d_real if d_real > 0 else float("nan")
    return {
        "ratio": ratio,
        "generated": d_fake,
        "real": d_real,
        "n": int(min(n, len(fake), len(real))),
        "suspected": bool(ratio < PIXEL_DIVERSITY_ALARM),
    }


def summarize_rows(rows: Sequence[dict], *, window: int = 10, eval_key: str = "eval/fid") -> dict:
    """Every diagnostic over ``rows`` (see the module docstring)."""
    steps = [int(r["step"]) for r in rows if "step" in r]
    nonfinite = sum(1 for r in rows for k, v in r.items() if k != "step" and not math.isfinite(as_float(v)))
    return {
        "rows": len(rows),
        "first_step": min(steps) if steps else None,
        "last_step": max(steps) if steps else None,
        "nonfinite_values": nonfinite,
        "loss_variance": {k: loss_variance(rows, k, window=window) for k in ("loss/D", "loss/G")},
        "oscillation": {"loss/G": oscillation(rows, "loss/G"), "loss/D": oscillation(rows, "loss/D")},
        "d_saturation": d_saturation(rows),
        "grad_spikes": {k: grad_spikes(rows, k) for k in ("grad_norm/G", "grad_norm/D")},
        "convergence": convergence_step(rows, eval_key),
        "mode_collapse": mode_collapse(rows),
        "divergence": divergence(rows),
    }


#: the options that tell evaluation files of one step apart (the suffixes of their file names)
EVAL_OPTIONS = ("task", "features", "n", "reference", "split", "seed", "ema")


def eval_file_results(run) -> dict:
    """Every ``run/eval/eval-step*.json``: ``{"files": [{"file", "step", "options", "values"}],
    "unreadable": [names]}`` sorted by step then name.  ``options``: the :data:`EVAL_OPTIONS`
    found in the file (``reference`` for unconditional runs, ``split`` for paired ones);
    ``values``: its numeric entries (booleans excluded)."""
    files, bad = [], []
    for p in sorted(Path(run, "eval").glob("eval-step*.json")):
        try:
            res = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            bad.append(p.name)
            continue
        step = res.get("step") if isinstance(res, dict) else None
        if not isinstance(step, int) or isinstance(step, bool):
            bad.append(p.name)
            continue
        options = {k: res[k] for k in EVAL_OPTIONS if k in res}
        values = {k: v for k, v in res.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        files.append({"file": p.name, "step": step, "options": options, "values": values})
    files.sort(key=lambda f: (f["step"], f["file"]))
    return {"files": files, "unreadable": bad}


def options_label(options: dict) -> str:
    """``features=domain, n=100, reference=test, seed=0, EMA`` from a file's ``options``."""
    parts = [f"{k}={options[k]}" for k in ("features", "n", "reference", "split", "seed") if k in options]
    if "ema" in options:
        parts.append("EMA" if options["ema"] else "raw generator")
    return ", ".join(parts) or "no options recorded"


def pick_eval_series(files: Sequence[dict]) -> Optional[dict]:
    """The evaluation files :func:`summarize_run` reasons from, chosen explicitly.

    Files are grouped by their options (one series per features/n/reference/split/seed/EMA); the
    series with the most distinct steps is used, ties broken by the largest ``n``, then by the
    default options (test reference, seed 0, EMA), then by the label.  Within the series, one
    file per step (the first by name; another at the same step goes to ``ignored``).

    Returns ``{"label", "rows": [{"step", "eval/<key>": v}], "files": [names used],
    "ignored": [names of the other files]}``, or None without files."""
    if not files:
        return None
    groups: dict = {}
    for f in files:
        groups.setdefault(json.dumps(f["options"], sort_keys=True, default=str), []).append(f)

    def rank(item):
        _, fs = item
        o = fs[0]["options"]
        n = o.get("n") if isinstance(o.get("n"), (int, float)) and not isinstance(o.get("n"), bool) else -1
        default = int(o.get("reference", "test") == "test") + int(o.get("seed", 0) == 0) + int(bool(o.get("ema", True)))
        return (-len({f["step"] for f in fs}), -n, -default, options_label(o))

    key, chosen = min(groups.items(), key=rank)
    rows, used, ignored = {}, [], []
    for f in chosen:
        if f["step"] in rows:
            ignored.append(f["file"])
            continue
        rows[f["step"]] = {"step": f["step"], **{f"eval/{k}": v for k, v in f["values"].items() if k != "step"}}
        used.append(f["file"])
    ignored += [f["file"] for k, fs in groups.items() if k != key for f in fs]
    return {
        "label": options_label(chosen[0]["options"]),
        "rows": [rows[s] for s in sorted(rows)],
        "files": used,
        "ignored": sorted(ignored),
    }


def _eval_file_rows(run: Path) -> list[dict]:
    """Rows ``{"step", "eval/<key>": ...}`` of the series :func:`pick_eval_series` chooses among
    ``run/eval/*.json`` (empty without files)."""
    pick = pick_eval_series(eval_file_results(run)["files"])
    return pick["rows"] if pick else []


def _parse_line(raw: bytes, *, last: bool) -> Optional[tuple]:
    """``(row, None)`` for a good line, ``(None, reason)`` for a damaged one, None for a torn last line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, f"is not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1})"
    try:
        obj = json.loads(text)
    except ValueError:
        if last:
            return None  # the half-written last line of a killed run: not damage
        return None, "is not valid JSON"
    if not isinstance(obj, dict):
        kind = {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(obj), "null")
        return None, f"is a JSON {kind}, not an object of logged values"
    if "step" not in obj:
        return None, "has no step"
    step = obj["step"]
    if isinstance(step, float) and math.isfinite(step) and step == int(step):
        step = int(step)
    if not isinstance(step, int) or isinstance(step, bool):
        return None, f"has a non-integer step {json.dumps(obj['step'])[:40]}"
    return {**obj, "step": step}, None


def read_rows(path, *, skip_bad: bool = False) -> tuple[list[dict], list[tuple[int, str]]]:
    """The rows of a ``metrics.jsonl``: ``(rows, bad)`` with ``bad`` the ``(line number, reason)``
    of every damaged line (not UTF-8, not JSON, not an object, no integer step).

    A half-written last line (no trailing newline: a killed run) is dropped silently, as the
    training loop does.  Damaged lines raise a one-line :class:`UserError` naming the file, the
    first bad line and the fix, unless ``skip_bad`` (they are then left out and returned in
    ``bad``); an unreadable file (permissions, a folder in its place) raises one as well."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise UserError(
            f"'{path}' is not a file (a folder or a device is in its place); restore the run's "
            "metrics.jsonl (normgan train writes it)"
        )
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise UserError(
            f"cannot read '{path}': {e.strerror or e}; make it readable (chmod u+r) or restore it"
        ) from None
    lines = data.split(b"\n")
    torn_ok = not data.endswith(b"\n")
    rows, bad = [], []
    for i, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        got = _parse_line(raw, last=torn_ok and i == len(lines))
        if got is None:
            continue
        row, why = got
        if why is None:
            rows.append(row)
        else:
            bad.append((i, why))
    if bad and not skip_bad:
        i, why = bad[0]
        more = (
            f" ({len(bad)} damaged lines in all: {', '.join(str(b[0]) for b in bad[:8])}{' …' if len(bad) > 8 else ''})"
            if len(bad) > 1
            else ""
        )
        raise UserError(
            f"'{path}' line {i} {why}{more}; repair or delete the damaged line{'s' if len(bad) > 1 else ''}, "
            "or pass --skip-bad-lines to diagnose the other rows"
        )
    return rows, bad


def summarize_run(run, *, window: int = 10, pixels: bool = True, skip_bad: bool = False) -> dict:
    """:func:`summarize_rows` over ``run/metrics.jsonl`` (read by :func:`read_rows`: damaged lines
    are a one-line :class:`UserError` unless ``skip_bad``; they are then listed in
    ``skipped_lines``).  A log without a readable row is a :class:`UserError` ("nothing logged
    yet"), never a healthy verdict.  When the log has no ``eval/*`` rows, one series of the run's
    ``eval/*.json`` files (from ``normgan eval``; :func:`pick_eval_series` says which, in
    ``eval_files``) stands in for convergence and mode collapse.
    With ``pixels`` and a ``checkpoints/last.pt``, :func:`pixel_diversity` is added
    (``pixel_diversity``) and joins the mode-collapse verdict (``mode_collapse.suspected`` is
    true when either the eval indicators or the pixel diversity ratio raise it)."""
    run = Path(run)
    rows, bad = _read_run_log(run, skip_bad=skip_bad)
    found = eval_file_results(run)
    pick = None
    if not any(k.startswith("eval/") for r in rows for k in r):
        pick = pick_eval_series(found["files"])
        eval_source = "eval/*.json" if pick else None
    else:
        eval_source = "metrics.jsonl"
    out = summarize_rows(rows, window=window)
    out["skipped_lines"] = [{"line": i, "reason": why} for i, why in bad]
    out["eval_files"] = None
    if pick:
        out["convergence"] = convergence_step(pick["rows"])
        out["mode_collapse"] = mode_collapse(pick["rows"])
    out["eval_files"] = _eval_files_entry(pick, found)
    out["pixel_diversity"] = None
    if pixels and (run / "checkpoints" / "last.pt").is_file():
        _add_pixel_diversity(out, run)
    out["eval_source"] = eval_source
    out["run"] = str(run)
    return out


def _read_run_log(run: Path, *, skip_bad: bool) -> tuple:
    """``(rows, bad)`` of ``run/metrics.jsonl`` (see :func:`read_rows`); a UserError when the folder or
    the log is missing or the log has no readable row."""
    if not run.is_dir():
        raise UserError(f"run folder '{run}' does not exist; give a folder made by 'normgan train'")
    path = run / "metrics.jsonl"
    if not path.exists():
        raise UserError(f"run folder '{run}' has no metrics.jsonl; give a folder made by 'normgan train'")
    rows, bad = read_rows(path, skip_bad=skip_bad)
    if not rows:
        what = f"{len(bad)} damaged line{'s' if len(bad) != 1 else ''} and no readable row" if bad else "no logged rows"
        raise UserError(
            f"'{path}' has {what}: nothing logged yet (the run has not reached its first train.log_every "
            "step), so there is nothing to diagnose; diagnose it once training has logged"
        )
    return rows, bad


def _eval_files_entry(pick: Optional[dict], found: dict) -> Optional[dict]:
    """The ``eval_files`` entry of the summary: the series used (``pick``) with the ignored and unreadable
    files, only the ignored and unreadable ones when none is used, or None when there are no eval files."""
    if pick:
        return {
            "used": pick["label"],
            "files": pick["files"],
            "ignored": pick["ignored"],
            "unreadable": found["unreadable"],
        }
    if found["files"] or found["unreadable"]:
        return {
            "used": None,
            "files": [],
            "ignored": [f["file"] for f in found["files"]],
            "unreadable": found["unreadable"],
        }
    return None


def _add_pixel_diversity(out: dict, run: Path) -> None:
    """Set ``out["pixel_diversity"]`` from :func:`pixel_diversity` (its error, when it fails) and join its
    ratio into ``out["mode_collapse"]``."""
    try:
        pix = pixel_diversity(run)
    except UserError as e:  # a damaged checkpoint or a moved dataset: report, do not fail the diagnosis
        pix = {"error": str(e)}
    out["pixel_diversity"] = pix
    if "ratio" in pix:
        mc = dict(out["mode_collapse"] or {})
        mc["pixel_diversity_ratio"] = pix["ratio"]
        mc["suspected"] = bool(mc.get("suspected", False) or pix["suspected"])
        out["mode_collapse"] = mc


def _f(v, fmt: str = ".4g") -> str:
    return "n/a" if v is None else format(v, fmt)


def format_summary(s: dict) -> str:
    """A readable multi-line report of :func:`summarize_run`'s dict."""
    lines = _header_lines(s) + _eval_files_lines(s.get("eval_files")) + _training_lines(s)
    c = s["convergence"]
    lines.append(
        f"  convergence: {c['metric']} within 10% of its final {_f(c['final'])} from step {c['step']}"
        if c
        else "  convergence: n/a (no eval/fid rows; run normgan eval or enable periodic evaluation)"
    )
    lines.append(_mode_collapse_line(s))
    d = s.get("divergence")
    if d is not None:
        lines.append(
            f"  divergence: DETECTED at step {d['step']}: {d['reason']}"
            if d["detected"]
            else "  divergence: none (all logged values finite, no loss above its explosion threshold)"
        )
    return "\n".join(lines)


def _header_lines(s: dict) -> list:
    """The report's first line (run, rows, steps, non-finite values) and the skipped damaged lines, if any."""
    lines = [
        f"run {s.get('run', '?')}: {s['rows']} logged rows, steps {s['first_step']}..{s['last_step']}"
        + (f", {s['nonfinite_values']} non-finite values" if s["nonfinite_values"] else "")
    ]
    skipped = s.get("skipped_lines") or []
    if skipped:
        lines.append(
            f"  skipped {len(skipped)} damaged line{'s' if len(skipped) != 1 else ''} of metrics.jsonl "
            f"(line {', '.join(str(b['line']) for b in skipped[:8])}{' …' if len(skipped) > 8 else ''}: "
            f"{skipped[0]['reason']}{' …' if len(skipped) > 1 else ''})"
        )
    return lines


def _eval_files_lines(ef: Optional[dict]) -> list:
    """The report's lines on the eval/*.json files: the series used or ignored, and the unreadable ones."""
    lines = []
    if ef and ef.get("used"):
        text = (
            f"  evaluations: {len(ef['files'])} eval/*.json file{'s' if len(ef['files']) != 1 else ''} of one series "
            f"({ef['used']})"
        )
        if ef["ignored"]:
            text += (
                f"; not used: {len(ef['ignored'])} with other options ({', '.join(ef['ignored'][:4])}"
                f"{' …' if len(ef['ignored']) > 4 else ''})"
            )
        lines.append(text)
    elif ef and ef.get("ignored"):
        lines.append(
            f"  evaluations: from metrics.jsonl; {len(ef['ignored'])} eval/*.json file"
            f"{'s' if len(ef['ignored']) != 1 else ''} of normgan eval not used"
        )
    if ef and ef.get("unreadable"):
        lines.append(f"  unreadable evaluation files skipped: {', '.join(ef['unreadable'][:4])}")
    return lines


def _training_lines(s: dict) -> list:
    """The report's lines on the training curves: loss variance, oscillation, D saturation, gradient spikes."""
    lines = []
    for k, lv in s["loss_variance"].items():
        lines.append(
            f"  {k} variance (window {lv['window']}): mean {_f(lv['mean'])}, max {_f(lv['max'])}"
            if lv
            else f"  {k} variance: n/a (fewer rows than the window)"
        )
    osc = s["oscillation"]
    lines.append(
        f"  oscillation (sign changes of the first difference, %): loss/G {_f(osc['loss/G'], '.1f')}, "
        f"loss/D {_f(osc['loss/D'], '.1f')}  (0 monotone, ~67 noise, 100 alternating)"
    )
    sat = s["d_saturation"]
    lines.append(
        f"  D saturation (real and fake accuracy >= 0.99): {'n/a' if sat is None else f'{100 * sat:.1f}% of rows'}"
    )
    for k, g in s["grad_spikes"].items():
        lines.append(
            f"  {k} spikes (> median + 5 MAD = {_f(g['threshold'])}): {g['count']}"
            + (
                f" at steps {', '.join(map(str, g['steps'][:10]))}{' ...' if g['count'] > 10 else ''}"
                if g["count"]
                else ""
            )
            if g
            else f"  {k} spikes: n/a (not logged)"
        )
    return lines


def _mode_collapse_line(s: dict) -> str:
    """The report's mode-collapse line: the verdict with its indicators, or why there is none."""
    m = s["mode_collapse"]
    pix = s.get("pixel_diversity") or {}
    if m:
        parts = []
        if "class_coverage_last" in m:
            parts.append(
                f"class coverage {_f(m['class_coverage_last'], '.2f')} (min {_f(m['class_coverage_min'], '.2f')})"
            )
        if "diversity_last" in m:
            parts.append(f"diversity {_f(m['diversity_last'], '.2f')} (min {_f(m['diversity_min'], '.2f')})")
        if "pixel_diversity_ratio" in m:
            k = pix.get("n", PIXEL_SAMPLES)
            parts.append(
                f"pixel diversity ratio {_f(m['pixel_diversity_ratio'], '.2f')}: {k} EMA samples vs {k} training "
                f"images, suspect below {PIXEL_DIVERSITY_ALARM}"
            )
        return f"  mode collapse: {'SUSPECTED' if m['suspected'] else 'not detected'} (" + "; ".join(parts) + ")"
    if "error" in pix:
        return f"  mode collapse: n/a (no eval rows, and the pixel check failed: {pix['error']})"
    return "  mode collapse: n/a (no class_coverage/diversity eval rows and no checkpoints/last.pt)"
