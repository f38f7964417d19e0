"""normgan.search.outputs: trials.csv, plots and report.html written from plain data."""

import base64
import csv
import html
import io
import json
import math
import re

import pytest
from matplotlib.figure import Figure
from PIL import Image

from normgan.report.html import REPORT_DIGITS, format_value
from normgan.search.outputs import (
    axis_scale,
    plot_param,
    slug,
    write_outputs,
)

KEY = "regularizers.l1.weight"
TERM = "regularizers.r1"
LAMBDAS = [0, 1, 10, 100, 1000, 1e5]
ERROR = "ValueError: bad <b>bold</b> & 'quoted'"


def _meta(**kw):
    meta = {
        "name": "l1-sweep",
        "metric": "psnr",
        "direction": "maximize",
        "folds": 3,
        "seeds": 1,
        "sampler": "grid",
        "pruner": "median",
        "config": "edges2digit",
        "storage": "sqlite:///search.db",
        "trials_requested": 8,
        "overrides": ["train.steps=100", "data.batch_size=8"],
    }
    meta.update(kw)
    return meta


PARAMS = [
    {"key": KEY, "spec": "[0,1,10,100,1000,1e5]", "kind": "grid", "log": False},
    {"key": TERM, "spec": "choice:none,r1", "kind": "choice", "log": False},
]


def _rows():
    """6 λ values (0 … 1e5), 3 folds; one PRUNED, one FAIL, one RUNNING."""
    r1 = {"term": "grad", "net": "D", "at": "real", "weight": 10.0}
    rows = []
    for i, lam in enumerate(LAMBDAS):
        folds = [20.0 + i + 0.1 * f + 0.0123 for f in range(3)]
        mean = sum(folds) / 3
        std = math.sqrt(sum((f - mean) ** 2 for f in folds) / 3)
        rows.append(
            {
                "number": i,
                "state": "COMPLETE",
                "params": {KEY: lam, TERM: None if i % 2 else r1},
                "folds": folds,
                "mean": mean,
                "std": std,
                "seconds": 12.5 + i,
                "pruned_at": None,
                "error": None,
            }
        )
    rows.append(
        {
            "number": 6,
            "state": "PRUNED",
            "params": {KEY: 10, TERM: r1},
            "folds": [18.25, None, None],
            "mean": None,
            "std": None,
            "seconds": 3.0,
            "pruned_at": 40,
            "error": None,
        }
    )
    rows.append(
        {
            "number": 7,
            "state": "FAIL",
            "params": {KEY: 1e5, TERM: None},
            "folds": [None, None, None],
            "mean": None,
            "std": None,
            "seconds": 0.5,
            "pruned_at": None,
            "error": ERROR,
        }
    )
    rows.append(
        {
            "number": 8,
            "state": "RUNNING",
            "params": {KEY: 1},
            "folds": [None, None, None],
            "mean": None,
            "std": None,
            "seconds": None,
            "pruned_at": None,
            "error": None,
        }
    )
    return rows[::-1]  # unsorted on purpose: the CSV sorts by number


def _best(rows):
    b = max((r for r in rows if r["state"] == "COMPLETE"), key=lambda r: r["mean"])
    return {"number": b["number"], "params": b["params"], "mean": b["mean"], "std": b["std"], "yaml": "best.yaml"}


FINAL = {
    "metric": "psnr",
    "value": 27.123456789,
    "split": "test",
    "metrics": {"psnr": 27.123456789, "l1": 0.0421},
    "run": "runs/l1-sweep/final",
    "seconds": 321.0,
    "baseline": {"psnr": 25.5, "l1": 0.05},
}


def _num(cell):
    return None if cell == "" else float(cell)


def _close(a, b):
    """Two-sided tolerance (relative and absolute)."""
    return a == pytest.approx(b, rel=1e-12, abs=1e-12) and b == pytest.approx(a, rel=1e-12, abs=1e-12)


@pytest.fixture
def written(tmp_path):
    rows = _rows()
    best = _best(rows)
    (tmp_path / "best.yaml").write_text("regularizers:\n  l1:\n    weight: 100000.0  # <λ>\n")
    out = write_outputs(
        tmp_path, meta=_meta(), params=PARAMS, rows=rows, best=best, final=FINAL, importances={KEY: 0.8, TERM: 0.2}
    )
    return tmp_path, out, rows, best


def test_csv_roundtrip(written):
    folder, out, rows, _ = written
    assert out["csv"] == folder / "trials.csv"
    with open(out["csv"], newline="") as f:
        got = list(csv.DictReader(f))
    header = list(got[0].keys())
    assert header == [
        "number",
        "state",
        KEY,
        TERM,
        "fold_0",
        "fold_1",
        "fold_2",
        "mean",
        "std",
        "seconds",
        "pruned_at",
        "error",
    ]
    want = sorted(rows, key=lambda r: r["number"])
    assert [int(g["number"]) for g in got] == [r["number"] for r in want]
    for g, r in zip(got, want):
        assert g["state"] == r["state"]
        # the λ column: numbers (exact); the term column: compact JSON (null for an absent term)
        assert _close(float(g[KEY]), r["params"][KEY])
        if TERM in r["params"]:
            assert json.loads(g[TERM]) == r["params"][TERM]
        else:
            assert g[TERM] == ""
        for i in range(3):
            want_f = r["folds"][i]
            assert (_num(g[f"fold_{i}"]) is None) if want_f is None else _close(_num(g[f"fold_{i}"]), want_f)
        for col in ("mean", "std", "seconds", "pruned_at"):
            if r[col] is None:
                assert g[col] == ""
            else:
                assert _num(g[col]) == r[col]  # exact: what was passed
        assert g["error"] == (r["error"] or "")


def test_pngs_exist_and_open(written):
    folder, out, _, _ = written
    names = {p.name for p in (folder / "plots").iterdir()}
    assert names == {f"metric-vs-{slug(KEY)}.png", f"metric-vs-{slug(TERM)}.png", "history.png", "importance.png"}
    for name in ("history", "importance", f"param:{KEY}", f"param:{TERM}"):
        with Image.open(out[name]) as im:
            assert im.format == "PNG"
            assert im.size[0] >= 300 and im.size[1] >= 150
    assert not list(folder.glob("**/*.tmp")), "temp files left behind"


def test_no_figures_leak(tmp_path):
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    for _ in range(3):
        write_outputs(tmp_path, meta=_meta(), params=PARAMS, rows=_rows(), best=None, final=None, importances=None)
    assert set(plt.get_fignums()) == before


def test_slug():
    assert slug(KEY) == "regularizers.l1.weight"
    assert re.fullmatch(r"[A-Za-z0-9._-]+", slug("a/b c:../d"))
    assert not slug("../x").startswith(".")
    assert slug("") == "param"


def test_axis_scale():
    assert axis_scale([0, 1, 10, 100, 1000, 1e5], log=False) == "symlog"
    assert axis_scale([1e-3, 0.1, 10.0], log=True) == "log"
    assert axis_scale([0.1, 0.2, 0.3], log=False) == "linear"
    assert axis_scale([0, 1, 5], log=False) == "linear"  # 0 but < 2 decades
    assert axis_scale(["a", "b"], log=False) == "category"
    assert axis_scale([None, 1.0], log=False) == "category"  # choice with an absent term
    assert axis_scale([], log=False) == "linear"


def test_format_value():
    assert format_value(None) == ""
    assert float(format_value(0.1 + 0.2)) == 0.1 + 0.2
    assert format_value(1e5) == "100000.0" and format_value(3) == "3"
    assert format_value({"b": 1, "a": None}) == '{"a":null,"b":1}'
    assert format_value(True) == "true"
    assert format_value(27.123456789, digits=4) == "27.12"


def _draw(param, rows, **kw):
    fig = Figure()
    ax = fig.subplots()
    scale = plot_param(ax, param=param, rows=rows, metric="psnr", direction="maximize", **kw)
    return ax, scale


def test_plot_param_scales():
    rows = _rows()
    ax, scale = _draw(PARAMS[0], rows)
    assert scale == "symlog" and ax.get_xscale() == "symlog"
    assert ax.get_xlabel() == KEY and ax.get_ylabel() == "psnr"
    assert "higher is better" in ax.get_title()

    log_rows = [
        dict(r, params={"optim.d.lr": lr}) for r, lr in zip(rows, [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 2e-1, 0.5])
    ]
    ax, scale = _draw({"key": "optim.d.lr", "spec": "log:1e-4:1", "kind": "log", "log": True}, log_rows)
    assert scale == "log" and ax.get_xscale() == "log"

    lin_rows = [dict(r, params={"x": 0.1 * (i % 3 + 1)}) for i, r in enumerate(rows)]
    ax, scale = _draw({"key": "x", "spec": "[0.1,0.2,0.3]", "kind": "grid", "log": False}, lin_rows)
    assert scale == "linear" and ax.get_xscale() == "linear"

    cat_rows = [dict(r, params={"c": "ab"[i % 2]}) for i, r in enumerate(rows)]
    ax, scale = _draw({"key": "c", "spec": "choice:a,b", "kind": "choice", "log": False}, cat_rows)
    assert scale == "category"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]

    ax, scale = _draw(PARAMS[1], rows)  # dicts and None: categories
    assert scale == "category"
    assert "none" in [t.get_text() for t in ax.get_xticklabels()]


def _images(text):
    return re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)


def test_report(written):
    folder, out, rows, best = written
    text = out["report"].read_text(encoding="utf-8")
    low = text.lower()
    assert "http://" not in low and "https://" not in low and "<script" not in low
    assert "<title>normgan search: l1-sweep</title>" in text
    # one embedded PNG per plot: 2 params + history + importance
    assert text.count('<img src="data:image/png;base64,') == 4
    for b64 in _images(text):
        png = base64.b64decode(b64, validate=True)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(io.BytesIO(png)) as im:
            im.verify()
    # best trial: its params and mean ± std, link to and contents of best.yaml (escaped)
    assert f"trial {best['number']}:" in text
    assert format_value(best["mean"], digits=REPORT_DIGITS) in text
    assert format_value(best["std"], digits=REPORT_DIGITS) in text
    assert f"<td>{html.escape(KEY)}</td><td>{format_value(best['params'][KEY], digits=REPORT_DIGITS)}</td>" in text
    assert '<a href="best.yaml">best.yaml</a>' in text
    assert "weight: 100000.0  # &lt;λ&gt;" in text
    # the final test figure, in its own labelled section
    assert "Retrained on the whole training split, evaluated once on the test split" in text
    assert format_value(FINAL["value"], digits=REPORT_DIGITS) in text
    assert "not retrained yet" not in text
    # trials table: pruned step, escaped error text
    assert "pruned at step 40" in text
    assert "<b>bold</b>" not in text
    assert html.escape(ERROR) in text
    assert "sqlite:///search.db" in text and "train.steps=100" in text


def test_report_before_final(tmp_path):
    rows = _rows()
    out = write_outputs(
        tmp_path, meta=_meta(), params=PARAMS, rows=rows, best=_best(rows), final=None, importances=None
    )
    text = out["report"].read_text(encoding="utf-8")
    assert "not retrained yet: the search is not finished" in text
    assert "importance" not in out and not (tmp_path / "plots" / "importance.png").exists()
    assert text.count('<img src="data:image/png;base64,') == 3
    assert "best.yaml not written yet" in text  # no best.yaml in the folder: no link


def test_stale_importance_removed(tmp_path):
    rows = _rows()
    write_outputs(tmp_path, meta=_meta(), params=PARAMS, rows=rows, best=None, final=None, importances={KEY: 1.0})
    assert (tmp_path / "plots" / "importance.png").is_file()
    write_outputs(tmp_path, meta=_meta(), params=PARAMS, rows=rows, best=None, final=None, importances={})
    assert not (tmp_path / "plots" / "importance.png").exists()


def test_all_failed(tmp_path):
    rows = [
        {
            "number": i,
            "state": "FAIL",
            "params": {KEY: lam},
            "folds": [None, None, None],
            "mean": None,
            "std": None,
            "seconds": None,
            "pruned_at": None,
            "error": "CUDA out of memory",
        }
        for i, lam in enumerate([0, 10])
    ]
    rows.append(
        {
            "number": 2,
            "state": "WAITING",
            "params": {},
            "folds": [],
            "mean": None,
            "std": None,
            "seconds": None,
            "pruned_at": None,
            "error": None,
        }
    )
    out = write_outputs(
        tmp_path,
        meta=_meta(direction="minimize", metric="fid"),
        params=PARAMS[:1],
        rows=rows,
        best=None,
        final=None,
        importances=None,
    )
    with open(out["csv"], newline="") as f:
        got = list(csv.DictReader(f))
    assert [g["state"] for g in got] == ["FAIL", "FAIL", "WAITING"]
    assert got[2][KEY] == "" and got[2]["fold_2"] == ""
    text = out["report"].read_text(encoding="utf-8")
    assert "no completed trial yet" in text and "CUDA out of memory" in text
    assert out["history"].is_file() and out[f"param:{KEY}"].is_file()
    fig = Figure()
    assert plot_param(fig.subplots(), param=PARAMS[0], rows=rows, metric="fid", direction="minimize") == "linear"


def test_no_rows_at_all(tmp_path):
    out = write_outputs(tmp_path / "new", meta=_meta(), params=PARAMS, rows=[], best=None, final=None, importances=None)
    assert out["csv"].read_text().splitlines()[0].startswith("number,state,")
    assert out["report"].is_file()
