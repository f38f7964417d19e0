"""The HTML reports render in a real browser: headless Chromium loads them with every image and
no console error (tests/browser.py). Screenshots go to tmp_path; with NORMGAN_SAVE_SCREENSHOTS=1
the run report's screenshot is also copied to docs/images/report-screenshot.png (the README's
picture; regenerate it deliberately)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from browser import render
from conftest import run_cli
from PIL import Image

from normgan.search.outputs import write_outputs

ROOT = Path(__file__).resolve().parents[1]
README_PICTURE = ROOT / "docs" / "images" / "report-screenshot.png"


# a small search, as tests/test_search_outputs.py builds one: a λ grid and an optional R1 term, 3 folds
KEY = "regularizers.l1.weight"
TERM = "regularizers.r1"
NAME = "browser-sweep"
META = {
    "name": NAME,
    "metric": "psnr",
    "direction": "maximize",
    "folds": 3,
    "seeds": 1,
    "sampler": "grid",
    "pruner": "median",
    "config": "edges2digit",
    "storage": "sqlite:///search.db",
    "trials_requested": 7,
    "overrides": ["train.steps=100"],
}
PARAMS = [
    {"key": KEY, "spec": "[0,1,10,100,1000,1e5]", "kind": "grid", "log": False},
    {"key": TERM, "spec": "choice:none,r1", "kind": "choice", "log": False},
]
FINAL = {
    "metric": "psnr",
    "value": 27.1234,
    "split": "test",
    "metrics": {"psnr": 27.1234, "l1": 0.0421},
    "run": "runs/browser-sweep/final",
    "seconds": 321.0,
    "baseline": {"psnr": 25.5, "l1": 0.05},
}


def _rows():
    r1 = {"term": "grad", "net": "D", "at": "real", "weight": 10.0}
    rows = []
    for i, lam in enumerate([0, 1, 10, 100, 1000, 1e5]):
        folds = [20.0 + i + 0.1 * f for f in range(3)]
        mean = sum(folds) / 3
        std = (sum((f - mean) ** 2 for f in folds) / 3) ** 0.5
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
            "state": "FAIL",
            "params": {KEY: 1e5, TERM: None},
            "folds": [None] * 3,
            "mean": None,
            "std": None,
            "seconds": 0.5,
            "pruned_at": None,
            "error": "ValueError: bad <b>value</b>",
        }
    )
    return rows


def _check_screenshot(path: Path, *, min_width: int = 800, min_height: int = 400) -> None:
    """The PNG exists, is big enough and is not a single colour (a blank page)."""
    assert path.is_file(), path
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size[0] >= min_width and im.size[1] >= min_height, im.size
        colours = im.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50, f"screenshot is (nearly) blank: {len(colours)} colours"


def _check_loaded(got: dict, *, min_images: int) -> None:
    assert not got["errors"], f"console errors: {got['errors']}"
    assert not got["broken"], f"broken images: {got['broken']}"
    assert got["images"] >= min_images, got["images"]
    assert not got["resources"], f"the report fetched files: {got['resources']}"
    assert not got["leftover"], f"browser processes outlived quit(): {got['leftover']}"


def test_search_report_renders_in_chromium(tmp_path):
    rows = _rows()
    b = max((r for r in rows if r["state"] == "COMPLETE"), key=lambda r: r["mean"])
    best = {"number": b["number"], "params": b["params"], "mean": b["mean"], "std": b["std"], "yaml": "best.yaml"}
    (tmp_path / "best.yaml").write_text("regularizers:\n  l1:\n    weight: 100000.0\n")
    out = write_outputs(
        tmp_path, meta=META, params=PARAMS, rows=rows, best=best, final=FINAL, importances={KEY: 0.8, TERM: 0.2}
    )
    got = render(out["report"], tmp_path / "search-report.png")
    _check_loaded(got, min_images=2)
    assert got["images"] == 4  # 2 params + history + importance
    assert NAME in got["title"]
    assert not got["truncated"]
    _check_screenshot(got["screenshot"])


def test_broken_image_and_console_error_are_caught(tmp_path):
    """Negative control: the checks above can fail."""
    page = tmp_path / "broken.html"
    page.write_text(
        '<!doctype html><html><head><meta charset="utf-8"><title>broken</title></head><body>'
        '<p>broken data URI:</p><img src="data:image/png;base64,AAAA" alt="broken">'
        '<p>missing file:</p><img src="missing.png" alt="missing"></body></html>'
    )
    got = render(page, tmp_path / "broken.png", height=600)
    assert got["title"] == "broken"
    assert got["images"] == 2
    assert len(got["broken"]) == 2 and got["broken"][0].startswith("data:image/png;base64,AAAA")
    assert got["broken"][1] == "missing.png"
    # the missing file is a failed load: Chromium logs it as a SEVERE console entry
    assert any("missing.png" in e["message"] for e in got["errors"]), got["console"]
    assert got["resources"]  # missing.png was fetched (file:), unlike a self-contained report
    assert got["screenshot"].is_file()
    assert not got["leftover"]


def test_run_report_renders_in_chromium(tmp_path):
    runs = tmp_path / "runs"
    train = run_cli(
        "train",
        "train.steps=20",
        "train.log_every=5",
        "train.sample_every=10",
        "train.checkpoint_every=10",
        "train.tensorboard=false",
        "--runs-dir",
        runs,
        "--name",
        "r",
        timeout=600,
    )
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    run = runs / "r"
    rep = run_cli("report", run, timeout=300)
    assert rep.returncode == 0, rep.stdout[-3000:] + rep.stderr[-3000:]
    report = run / "report.html"
    assert report.is_file()
    got = render(report, tmp_path / "run-report.png")
    _check_loaded(got, min_images=2)
    assert got["title"] == "normgan run: r"
    _check_screenshot(got["screenshot"])
    if os.environ.get("NORMGAN_SAVE_SCREENSHOTS") == "1":
        README_PICTURE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(got["screenshot"], README_PICTURE)


def test_study_report_renders_in_chromium(tmp_path):
    from test_report_study import make_study

    study = make_study(tmp_path / "studies" / "stability-digits")
    rep = run_cli("report", study, "--no-progress", timeout=300)
    assert rep.returncode == 0, rep.stdout[-3000:] + rep.stderr[-3000:]
    got = render(study / "report.html", tmp_path / "study-report.png")
    _check_loaded(got, min_images=5)
    assert got["images"] == 6  # FID curves and panels, precision curves, final FID, a sample grid per finished variant
    assert got["title"] == "normgan study: stability-digits"
    assert not got["truncated"]
    _check_screenshot(got["screenshot"])
