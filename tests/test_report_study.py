"""Study and comparison reports (normgan.report.study, normgan.report.compare) on synthetic folders:
hand-written study.json / compare.json, metrics.jsonl and small PNG sample grids; no training."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from conftest import run_cli
from PIL import Image

from normgan.cli import main
from normgan.errors import UserError
from normgan.report.compare import write_compare_report
from normgan.report.folders import classify
from normgan.report.study import curve, format_markdown, load_study, steps_to_threshold, summarize, write_study_outputs

SEEDS = [0, 1, 2]
STEPS = [500, 1000, 1500]
#: eval/fid per (variant, seed) at STEPS; r1 seed 2 diverges after step 1000
FID = {
    ("none", 0): [40.0, 3.1, 1.5],
    ("none", 1): [35.0, 2.5, 1.9],
    ("none", 2): [50.0, 6.0, 2.7],
    ("r1", 0): [20.0, 1.8, 0.9],
    ("r1", 1): [25.0, 2.0, 1.1],
    ("r1", 2): [30.0, 4.0],
}
PREC = {k: [0.2 + 0.1 * i + 0.01 * k[1] for i in range(len(v))] for k, v in FID.items()}
KID = {k: [v[-1] / 1000] for k, v in FID.items()}


def _png(path: Path, colour, size=(40, 40)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), colour, dtype=np.uint8)).save(path)


def _run(folder: Path, variant: str, seed: int, *, coverage=None, diverged=False) -> Path:
    run = folder / "runs" / variant / f"seed{seed}"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"# normgan 0.1.0, torch 2.4.0, python 3.11.7\ntrain:\n  seed: {seed}\n")
    lines = []
    fid = FID[(variant, seed)]
    for i, step in enumerate(STEPS[: len(fid)]):
        lines.append({"step": step, "loss/D": 1.0, "loss/G": 2.0, "d/real_acc": 0.6, "d/fake_acc": 0.6})
        row = {"step": step, "eval/fid": fid[i], "eval/precision": PREC[(variant, seed)][i], "eval/fid_floor": 0.3}
        if coverage is not None:
            row["eval/class_coverage"] = coverage[i]
        lines.append(row)
    if diverged:
        lines.append({"step": 1100, "loss/D": "nan", "loss/G": "nan"})
        lines.append({"step": 1100, "eval/fid": "nan"})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    _png(run / "samples" / "step-000500.png", (200, 0, 0))
    _png(run / "samples" / f"step-{STEPS[len(fid) - 1]:06d}.png", (0, 0, 200 - 40 * seed), size=(300, 150))
    return run


def make_study(folder: Path, *, threshold=2.0, direction="minimize") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    runs = []
    for variant in ("none", "r1"):
        for seed in SEEDS:
            diverged = (variant, seed) == ("r1", 2)
            _run(
                folder,
                variant,
                seed,
                diverged=diverged,
                coverage=[0.9, 0.8, 0.5] if (variant, seed) == ("r1", 1) else [0.9, 0.9, 0.95],
            )
            final = (
                {}
                if diverged
                else {
                    "fid": FID[(variant, seed)][-1],
                    "kid_mean": KID[(variant, seed)][0],
                    "precision": PREC[(variant, seed)][-1],
                }
            )
            runs.append(
                {
                    "variant": variant,
                    "seed": seed,
                    "run": f"runs/{variant}/seed{seed}",
                    "state": "diverged" if diverged else "done",
                    "step": 1100 if diverged else 1500,
                    "error": "loss/G is nan at step 1100" if diverged else None,
                    "seconds": 90.0 + seed,
                    "final": final,
                }
            )
    runs += [
        {
            "variant": "lr-high",
            "seed": 0,
            "run": "runs/lr-high/seed0",
            "state": "failed",
            "step": None,
            "error": "RuntimeError: <boom>",
            "seconds": 1.0,
            "final": {},
        },
        {
            "variant": "lr-high",
            "seed": 1,
            "run": "runs/lr-high/seed1",
            "state": "running",
            "step": None,
            "error": None,
            "seconds": None,
            "final": {},
        },
        {
            "variant": "lr-high",
            "seed": 2,
            "run": "runs/lr-high/seed2",
            "state": "waiting",
            "step": None,
            "error": None,
            "seconds": None,
            "final": {},
        },
    ]
    study = {
        "name": "stability-digits",
        "title": "Stability and convergence on MNIST digits",
        "description": "Does a `norm` penalty make training <stable>?",
        "command": "normgan study stability-digits",
        "metric": "fid",
        "direction": direction,
        "threshold": threshold,
        "steps": 1500,
        "seeds": SEEDS,
        "config": "configs/mnist.yaml",
        "overrides": {"train.steps": 1500},
        "columns": ["fid", "kid_mean", "precision", "recall"],
        "variants": [
            {"name": "none", "values": {"regularizers.wd_g": "none"}},
            {"name": "r1", "values": {"regularizers.r1": {"term": "grad", "weight": 10}}},
            {"name": "lr-high", "values": {"optim.g.lr": 0.01}},
        ],
        "runs": runs,
    }
    (folder / "study.json").write_text(json.dumps(study, indent=1))
    return folder


@pytest.fixture
def study(tmp_path) -> Path:
    return make_study(tmp_path / "studies" / "stability-digits")


# ------------------------------------------------------------------------------------------ curves, thresholds


def test_curve_keeps_finite_values_only(study):
    run = study / "runs" / "r1" / "seed2"
    assert curve(run) == [(500, 30.0), (1000, 4.0)]  # the "nan" at step 1100 is skipped
    assert curve(run, key="eval/precision") == list(zip(STEPS[:2], PREC[("r1", 2)]))
    assert curve(study / "runs" / "missing") == []


def test_steps_to_threshold_both_directions():
    points = [(100, 5.0), (200, 2.0), (300, 2.5), (400, 1.0)]
    assert steps_to_threshold(points, threshold=2.0, direction="minimize") == 200
    assert steps_to_threshold(points, threshold=0.5, direction="minimize") is None
    assert steps_to_threshold(points, threshold=2.5, direction="maximize") == 100
    assert steps_to_threshold([(100, 0.1), (200, 0.6), (300, 0.7)], threshold=0.6, direction="maximize") == 200
    assert steps_to_threshold(points, threshold=9.0, direction="maximize") is None
    assert steps_to_threshold(points, threshold=None, direction="minimize") is None
    assert steps_to_threshold([], threshold=1.0, direction="minimize") is None


# ------------------------------------------------------------------------------------------ the summary


def _first_at(values, thr, direction):
    for step, v in zip(STEPS, values):
        if (v <= thr) if direction == "minimize" else (v >= thr):
            return step
    return None


@pytest.mark.parametrize("direction,threshold", [("minimize", 2.0), ("maximize", 0.35)])
def test_summary_matches_numpy(tmp_path, direction, threshold):
    folder = make_study(tmp_path / "s", threshold=threshold, direction=direction)
    if direction == "maximize":  # precision is the primary metric here
        data = json.loads((folder / "study.json").read_text())
        data["metric"] = "precision"
        (folder / "study.json").write_text(json.dumps(data))
    study = load_study(folder)
    rows = summarize(study)
    assert [r["variant"] for r in rows] == ["none", "r1", "lr-high"]
    metric = study["metric"]
    curves = FID if metric == "fid" else PREC
    for r in rows[:2]:
        v = r["variant"]
        done = [s for s in SEEDS if (v, s) != ("r1", 2)]
        assert r["n_runs"] == 3 and r["n_done"] == len(done) and r["diverged"] == (v == "r1")
        assert r["seeds"] == done
        for key, table in (("fid", FID), ("precision", PREC), ("kid_mean", KID)):
            x = np.array([table[(v, s)][-1] for s in done])
            assert r[f"{key}_mean"] == pytest.approx(x.mean())
            assert r[f"{key}_std"] == pytest.approx(x.std(ddof=1))
            assert r["values"][key] == pytest.approx(list(x))
        x = np.array([curves[(v, s)][-1] for s in done])
        assert r["spread"] == pytest.approx(x.max() - x.min())
        reached = [_first_at(curves[(v, s)], threshold, direction) for s in SEEDS]  # diverged runs count too
        reached = [s for s in reached if s is not None]
        assert r["reached"] == len(reached)
        assert r["steps_to_threshold_mean"] == (pytest.approx(np.mean(reached)) if reached else None)
        assert "recall_mean" not in r  # absent from every run's final
    assert rows[0]["collapsed"] == 0 and rows[1]["collapsed"] == 1 and rows[1]["collapse_measured"] == 3
    # Welch's t-test of r1 against none (the first variant), by its formula
    a = np.array([curves[("r1", s)][-1] for s in SEEDS if s != 2])
    b = np.array([curves[("none", s)][-1] for s in SEEDS])
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    t = (a.mean() - b.mean()) / np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    assert rows[1]["p_welch"] == pytest.approx(2 * scipy.stats.t.sf(abs(t), df), rel=1e-9)
    assert rows[0]["p_welch"] is None and rows[2]["p_welch"] is None
    pending = rows[2]
    assert (pending["n_runs"], pending["n_done"], pending["failed"], pending["pending"]) == (0, 0, 1, 2)
    assert pending["fid_mean"] is None and pending["fid_std"] is None and pending["spread"] is None
    assert pending["collapsed"] is None and pending["steps_to_threshold_mean"] is None


def test_one_seed_has_no_std_and_no_spread(tmp_path):
    folder = make_study(tmp_path / "s")
    data = json.loads((folder / "study.json").read_text())
    data["runs"] = [r for r in data["runs"] if r["seed"] == 0 and r["variant"] == "none"]
    (folder / "study.json").write_text(json.dumps(data))
    row = summarize(load_study(folder))[0]
    assert row["fid_mean"] == FID[("none", 0)][-1] and row["fid_std"] is None and row["spread"] is None


# ------------------------------------------------------------------------------------------ table.md, results.csv


def _md_rows(text):
    lines = [line for line in text.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]
    return cells[0], {c[0]: dict(zip(cells[0], c)) for c in cells[2:]}


def test_markdown_table(study):
    s = load_study(study)
    text = format_markdown(s, summarize(s))
    assert "3 seeds (0, 1, 2) per variant, 1500 steps per run" in text
    assert "`normgan study stability-digits`" in text
    head, rows = _md_rows(text)
    assert head == [
        "variant",
        "final FID (mean ± std)",
        "spread",
        "p vs none (Welch)",
        "steps to FID ≤ 2 (mean, k/n reached)",
        "diverged",
        "collapsed",
        "KID (mean ± std)",
        "precision (mean ± std)",
    ]
    none = np.array([FID[("none", s)][-1] for s in SEEDS])
    assert rows["none"]["final FID (mean ± std)"] == f"{none.mean():.4g} ± {none.std(ddof=1):.2g}"
    assert rows["none"]["spread"] == f"{none.max() - none.min():.4g}"
    # none reaches FID <= 2 at 1500 (seeds 0, 1), seed 2 never; r1 at 1000, 1000 and the diverged seed never
    assert rows["none"]["steps to FID ≤ 2 (mean, k/n reached)"] == "1500 (2/3)"
    assert rows["r1"]["steps to FID ≤ 2 (mean, k/n reached)"] == "1000 (2/3)"
    assert rows["none"]["diverged"] == "0/3" and rows["r1"]["diverged"] == "1/3"
    assert rows["none"]["collapsed"] == "0/3" and rows["r1"]["collapsed"] == "1/3"
    assert rows["lr-high"]["final FID (mean ± std)"] == "n/a" and rows["lr-high"]["diverged"] == "0/0"
    assert rows["lr-high"]["steps to FID ≤ 2 (mean, k/n reached)"] == "n/a"
    kid = np.array([KID[("r1", s)][0] for s in (0, 1)])
    assert rows["r1"]["KID (mean ± std)"] == f"{kid.mean():.4g} ± {kid.std(ddof=1):.2g}"


def test_no_threshold_drops_the_steps_column(tmp_path):
    s = load_study(make_study(tmp_path / "s", threshold=None))
    head, _ = _md_rows(format_markdown(s, summarize(s)))
    assert not any(h.startswith("steps to") for h in head)


def test_outputs_files_and_csv(study):
    paths = write_study_outputs(study)
    assert paths["table"] == study / "table.md" and paths["csv"] == study / "results.csv"
    assert paths["report"] == study / "report.html"
    for name in ("curves-fid.png", "curves-precision.png", "final-fid.png", "panels-fid.png"):
        with Image.open(study / "plots" / name) as im:
            assert im.format == "PNG"
    with Image.open(study / "plots" / "panels-fid.png") as a, Image.open(study / "plots" / "curves-fid.png") as b:
        assert a.size[0] > b.size[0]  # one panel per variant, side by side
    assert not (study / "plots" / "curves-kid_mean.png").exists()  # KID was not logged over steps
    with open(study / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "variant",
        "seed",
        "state",
        "step",
        "seconds",
        "steps_to_threshold",
        "collapsed",
        "fid",
        "kid_mean",
        "precision",
        "run",
        "error",
    ]
    assert len(rows) == 9
    by = {(r["variant"], int(r["seed"])): r for r in rows}
    assert float(by[("none", 1)]["fid"]) == FID[("none", 1)][-1]
    assert by[("none", 1)]["steps_to_threshold"] == "1500" and by[("none", 2)]["steps_to_threshold"] == ""
    assert by[("r1", 1)]["collapsed"] == "true" and by[("r1", 0)]["collapsed"] == "false"
    assert by[("r1", 2)]["state"] == "diverged" and by[("r1", 2)]["fid"] == ""
    assert by[("r1", 2)]["error"] == "loss/G is nan at step 1100"
    assert by[("lr-high", 1)]["state"] == "running" and by[("lr-high", 1)]["collapsed"] == ""
    # a plot this call no longer writes is removed
    (study / "plots" / "curves-old.png").write_bytes(b"x")
    write_study_outputs(study)
    assert not (study / "plots" / "curves-old.png").exists()


# ------------------------------------------------------------------------------------------ report.html


def check_self_contained(html: str, *, min_images: int) -> int:
    """No network source, every <img> a data:image/png URI PIL can open; returns the image count."""
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html)
    assert "<script" not in html.lower() and "<link" not in html.lower()
    imgs = re.findall(r"<img\b[^>]*>", html)
    assert len(imgs) >= min_images
    for tag in imgs:
        m = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', tag)
        assert m, tag[:120]
        with Image.open(io.BytesIO(base64.b64decode(m.group(1), validate=True))) as im:
            im.verify()
            assert im.format == "PNG"
    return len(imgs)


def test_report_html(study):
    (study / "runs" / "none" / "seed0" / "report.html").write_text("<html></html>")
    html = write_study_outputs(study)["report"].read_text()
    n = check_self_contained(html, min_images=5)
    assert n == 4 + 2  # curves-fid, panels-fid, curves-precision, final-fid; a sample grid for none and r1
    assert "<title>normgan study: stability-digits</title>" in html
    assert "<h1>Stability and convergence on MNIST digits</h1>" in html
    assert "a <code>norm</code> penalty make training &lt;stable&gt;?" in html
    assert "normgan study stability-digits" in html
    assert "9 runs: 5 done, 1 diverged, 1 failed, 1 running, 1 waiting" in html
    assert "RuntimeError: &lt;boom&gt;" in html and "<boom>" not in html
    assert 'href="runs/none/seed0/report.html"' in html and html.count("<a href") == 1
    assert "none: seed 0, step 1500" in html and "r1: seed 0, step 1500" in html
    assert "lr-high: no done run with sample grids yet" in html
    assert "yes (step 1500)" in html  # r1 seed 1 collapsed at its last evaluation
    assert "regularizers.r1" in html and "configs/mnist.yaml" in html
    assert "resolved config of runs/none/seed0" in html


def test_a_study_with_no_finished_run_gets_a_page(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "study.json").write_text(
        json.dumps(
            {
                "name": "empty",
                "metric": "fid",
                "direction": "minimize",
                "threshold": None,
                "seeds": [0],
                "columns": ["fid"],
                "variants": [{"name": "a", "values": {}}],
                "runs": [{"variant": "a", "seed": 0, "run": "runs/a/seed0", "state": "running", "final": {}}],
            }
        )
    )
    paths = write_study_outputs(folder)
    html = paths["report"].read_text()
    assert "no run has finished yet" in html and "1 running" in html
    check_self_contained(html, min_images=1)  # the (empty) curves figure
    assert "final-fid.png" not in {p.name for p in (folder / "plots").iterdir()}
    assert "| a | n/a |" in (folder / "table.md").read_text()


# ------------------------------------------------------------------------------------------ the command line


def one_line_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("normgan: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_cli_writes_the_study_report(study):
    p = run_cli("report", study, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == f"report written to {study / 'report.html'}"
    assert "study report [1/3] table" in p.stdout
    assert (study / "table.md").is_file() and (study / "results.csv").is_file()


def test_cli_study_no_progress_and_out(study, tmp_path, capsys):
    out = tmp_path / "elsewhere.html"
    assert main(["report", str(study), "--out", str(out), "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == f"report written to {out}"
    assert out.is_file() and not (study / "report.html").exists()


def test_missing_or_corrupt_study_json(study, tmp_path, capsys):
    (study / "study.json").write_text('{"name": "x", "runs": [')
    p = run_cli("report", study, timeout=120)
    one_line_error(p.returncode, p.stderr, "study.json", "is not valid JSON", "normgan study")
    (study / "study.json").write_text('["not", "a", "study"]')
    assert main(["report", str(study)]) == 2
    one_line_error(2, capsys.readouterr().err, "is not a study")
    (study / "study.json").write_text('{"threshold": "low", "runs": [], "variants": []}')
    with pytest.raises(UserError, match="threshold must be a number"):
        load_study(study)
    (study / "study.json").unlink()
    with pytest.raises(UserError, match="has no study.json"):
        load_study(study)
    p = run_cli("report", study, timeout=120)
    one_line_error(p.returncode, p.stderr, "is not a run folder", "study.json")
    assert not (study / "report.html").exists()


def test_classify_kinds(study, tmp_path):
    assert classify(study) == ("study", study)
    (tmp_path / "cmp").mkdir()
    (tmp_path / "cmp" / "compare.json").write_text("{}")
    assert classify(tmp_path / "cmp")[0] == "compare"
    assert classify(study / "runs" / "none" / "seed0")[0] == "run"


def test_the_study_report_loads_no_torch():
    code = "import sys, normgan.report.study, normgan.report.compare; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


# ------------------------------------------------------------------------------------------ comparison folders


def make_compare(tmp_path: Path) -> Path:
    study = make_study(tmp_path / "study")
    out = tmp_path / "cmp"
    out.mkdir()
    runs_a = [str(study / "runs" / "none" / f"seed{s}") for s in SEEDS]
    runs_b = ["../study/runs/r1/seed0", "gone/r1-seed1"]  # relative to the folder's parent; a deleted run
    res = {r: {"step": 1500, "fid": FID[("none", i)][-1], "precision": 0.5} for i, r in enumerate(runs_a)}
    res.update({runs_b[0]: {"step": 1500, "fid": 0.9}, runs_b[1]: {"step": 1500, "fid": 1.1}})
    groups = [
        {
            "group": "-r1",
            "runs": runs_a,
            "seeds": SEEDS,
            "n_runs": 3,
            "step": 1500,
            "steps": [1500] * 3,
            "fid_mean": 2.0333,
            "fid_std": 0.61,
            "precision_mean": 0.5,
            "precision_std": 0.0,
            "values": {"fid": [1.5, 1.9, 2.7]},
        },
        {
            "group": "+r1",
            "runs": runs_b,
            "seeds": [0, 1],
            "n_runs": 2,
            "step": 1500,
            "steps": [1500, 1500],
            "fid_mean": 1.0,
            "fid_std": 0.1414,
            "values": {"fid": [0.9, 1.1]},
        },
    ]
    (out / "compare.json").write_text(
        json.dumps(
            {
                "groups": groups,
                "runs": res,
                "n": 500,
                "features": "domain",
                "reference": "test",
                "seed": 0,
                "metrics": ["fid", "pr"],
            }
        )
    )
    (out / "compare.md").write_text("# normgan compare\n")
    return out


def test_compare_report(tmp_path, monkeypatch):
    out = make_compare(tmp_path)
    monkeypatch.chdir(tmp_path / "study")  # the relative run path only resolves from the folder's parent
    report = write_compare_report(out)
    assert report == out / "report.html"
    html = report.read_text()
    assert check_self_contained(html, min_images=3) == 3  # the FID figure, a sample grid per group
    assert "<title>normgan compare: cmp</title>" in html
    assert "N = 500 generated samples per run" in html
    assert "<td>-r1</td>" in html and "<td>+r1</td>" in html
    assert ">2.033 ± 0.61<" in html and ">1 ± 0.14<" in html
    assert "not found (moved or deleted)" in html and "gone/r1-seed1" in html
    assert "-r1: seed0, step 1500" in html


def test_cli_compare_report(tmp_path):
    out = make_compare(tmp_path)
    p = run_cli("report", out, "--out", tmp_path / "c.html", timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"report written to {tmp_path / 'c.html'}"
    (out / "compare.json").write_text("{")
    p = run_cli("report", out, timeout=120)
    one_line_error(p.returncode, p.stderr, "compare.json", "is not valid JSON", "normgan compare")
