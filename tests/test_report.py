"""normgan report: one self-contained HTML page per run folder (runs without and with evaluation,
a paired run, a run stopped early, damaged logs, bad paths, search folders, train.report: true)."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY, run_cli
from PIL import Image
from torch import nn

import normgan
from normgan.cli import main
from normgan.errors import Interrupted
from normgan.report import write_run_report
from normgan.report.folders import read_metrics_file, spread

#: a D gradient penalty (per-sample gradients: no batch norm in D), so the run logs reg/r1/*
R1 = [
    "+regularizers.r1.term=grad",
    "+regularizers.r1.net=D",
    "+regularizers.r1.at=real",
    "+regularizers.r1.weight=1",
    "model.discriminator.norm=none",
]
#: a tiny paired run: edges2digit at 32 px, small U-Net and PatchGAN, an L1 reconstruction term
PAIRED = [
    "data.name=edges2digit",
    "data.resolution=32",
    "data.batch_size=4",
    "model.generator.name=unet",
    "model.generator.width=4",
    "model.discriminator.name=patchgan",
    "model.discriminator.width=4",
    "model.discriminator.norm=instance",
    "+model.discriminator.options.layers=2",
    "train.steps=6",
    "train.log_every=2",
    "train.sample_every=3",
    "train.checkpoint_every=3",
    "train.tensorboard=false",
    "train.num_samples=4",
    "+regularizers.l1.term=recon",
    "+regularizers.l1.weight=100",
]


class PoolFeatures(nn.Module):
    """A tiny feature extractor for FID in tests (``eval.features=test_report:PoolFeatures``):
    grey 4×4 average pools, so no classifier is trained or cached."""

    name = "pool4"
    num_features = 16

    def forward(self, x):
        return nn.functional.adaptive_avg_pool2d(x.mean(1, keepdim=True), 4).flatten(1)


def _train(runs: Path, name: str, overrides, *, stop_at: int | None = None) -> Path:
    trainer = normgan.Trainer(normgan.load_config(overrides=list(overrides)), runs_dir=runs, name=name, progress=False)
    if stop_at is not None:  # the Ctrl-C path: finish the step, checkpoint, raise Interrupted
        step = trainer.train_step

        def stopping(s, **kw):
            out = step(s, **kw)
            if s + 1 == stop_at:
                trainer._request_stop(signal.SIGINT, None)
            return out

        trainer.train_step = stopping
        with pytest.raises(Interrupted):
            trainer.fit()
        return trainer.run_dir
    return trainer.fit()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("report-runs")
    return {
        "plain": _train(root, "plain", TINY + R1),
        "eval": _train(
            root,
            "eval",
            TINY
            + [
                "eval.every=3",
                "eval.n=32",
                "eval.metrics=[fid]",
                "eval.features=test_report:PoolFeatures",
                "train.report=true",
            ],
        ),
        "paired": _train(root, "paired", PAIRED),
        "stopped": _train(root, "stopped", TINY + ["train.steps=12"], stop_at=4),
    }


def self_contained(html: str) -> int:
    """Assert the page needs nothing outside itself; returns the number of images (all valid PNGs)."""
    low = html.lower()
    assert "<script" not in low and "<iframe" not in low and "<link" not in low and "@import" not in low
    assert "url(" not in low
    for attr, value in re.findall(r'\b(src|href)\s*=\s*["\']([^"\']*)["\']', html, flags=re.I):
        assert not re.match(r"(https?:)?//", value.strip(), flags=re.I), (attr, value)
        assert attr.lower() != "src" or value.startswith("data:image/png;base64,"), value[:60]
    imgs = re.findall(r"<img\b[^>]*>", html)
    for tag in imgs:
        m = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', tag)
        assert m, tag[:80]
        with Image.open(io.BytesIO(base64.b64decode(m.group(1), validate=True))) as im:
            assert im.format == "PNG"
            im.verify()
    return len(imgs)


def strip_images(html: str) -> int:
    """Images in the sample strip."""
    m = re.search(r'<div class="strip">(.*?)</div>', html, flags=re.S)
    return len(re.findall(r"<img\b", m.group(1))) if m else 0


def one_line_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("normgan: error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])


# ------------------------------------------------------------------------------------------ runs


def test_a_run_without_evaluation_from_an_empty_home(runs, tmp_path):
    """The command line, from an empty HOME: progress lines, the final line, a self-contained page."""
    run = runs["plain"]
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "MPLCONFIGDIR")}
    env["HOME"] = str(home)
    p = run_cli("report", run, env=env, cwd=tmp_path, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert lines[-1] == f"report written to {run / 'report.html'}"
    assert [line for line in lines if line.startswith("report [")] == [
        "report [1/5] run",
        "report [2/5] training curves",
        "report [3/5] evaluation",
        "report [4/5] samples",
        "report [5/5] diagnostics",
    ]
    html = (run / "report.html").read_text()
    assert self_contained(html) == 7  # losses, D, gradients, reg/r1 + 3 sample grids
    for text in (
        "normgan run: plain",
        "unconditional",
        "finished: 6 of 6 steps",
        "loss/D",
        "loss/G",
        "discriminator: mean logits",
        "gradient norms",
        "reg/r1: raw value, weight",
        "evaluation was off (eval.every = 0): no metrics over steps",
        "Samples over time",
        "step 0",
        "step 6",
        "Diagnostics",
        "divergence",
        "D saturation",
        "mode collapse",
        "<pre># normgan ",
        "regularizers:",
    ):
        assert text in html, text
    assert re.search(r"normgan [\w.+-]+, torch [\w.+-]+, python \d", html)
    assert strip_images(html) == 3  # samples at steps 0, 3, 6


def test_a_run_with_evaluation_and_train_report(runs, tmp_path):
    """train.report: true wrote report.html at the end of fit(); --out writes elsewhere; the FID
    plot carries the real-vs-real floor."""
    run = runs["eval"]
    hook = run / "report.html"
    assert hook.is_file(), "train.report: true did not write the report"
    out = tmp_path / "pages" / "eval.html"
    code = (
        "import sys; from normgan.cli import main; rc = main(sys.argv[1:]); "
        "print('torch loaded' if 'torch' in sys.modules else 'no torch'); sys.exit(rc)"
    )
    p = subprocess.run(
        [sys.executable, "-c", code, "report", str(run), "--out", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [f"report written to {out}", "no torch"]
    for html in (out.read_text(), hook.read_text()):
        self_contained(html)
        assert "eval/fid" in html and "real-vs-real floor" in html and "lower is better" in html
        assert "evaluation was off" not in html
        assert "2 evaluations of the EMA generator, at steps 3, 6" in html
        assert "Last evaluation" in html and "fid_floor" in html


def test_a_paired_run(runs, tmp_path, capsys):
    html_path = write_run_report(runs["paired"], out=tmp_path, progress=False)
    assert html_path == tmp_path / "report.html" and capsys.readouterr().out == ""
    html = html_path.read_text()
    self_contained(html)
    for text in (
        "paired run",
        "edges2digit",
        "rows of validation inputs, generator outputs and targets",
        "reg/l1: raw value",
        "l1 (term=recon",
        "evaluation was off",
    ):
        assert text in html, text
    assert strip_images(html) == 3


def test_a_stopped_run_says_where_it_stopped(runs):
    run = runs["stopped"]
    p = run_cli("report", run, "--no-progress", timeout=120)
    assert p.returncode == 0 and p.stdout.strip().splitlines() == [f"report written to {run / 'report.html'}"], p.stderr
    html = (run / "report.html").read_text()
    self_contained(html)
    assert "stopped at step 4 of 12" in html and f"normgan train --resume {run}" in html
    assert "finished" not in html


# ------------------------------------------------------------------------------------------ damaged logs


def test_damaged_and_empty_metrics_still_get_a_report(runs, tmp_path, capsys):
    run = tmp_path / "damaged"
    shutil.copytree(runs["plain"], run, ignore=shutil.ignore_patterns("checkpoints", "report.html", ".lock"))
    rows = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text(
        "\n".join(
            [
                rows[0],
                "{not json",
                "[1, 2]",
                '{"loss/D": 1.0}',
                *rows[1:],
                '{"step": 7, "loss/D": 0.5, "loss/G": [1]}',
                '{"step": 8, "loss/',
            ]
        )
    )
    log = read_metrics_file(run / "metrics.jsonl")
    assert log.bad_lines == [2, 3, 4, len(rows) + 5] and log.dropped == 1 and len(log.rows) == len(rows) + 1
    assert main(["report", str(run), "--no-progress"]) == 0
    assert capsys.readouterr().out.strip().splitlines() == [f"report written to {run / 'report.html'}"]
    html = (run / "report.html").read_text()
    self_contained(html)
    assert "4 of " in html and "lines of metrics.jsonl could not be read and were skipped" in html
    assert "loss/D" in html and "finished: 8 of 6 steps" not in html

    (run / "metrics.jsonl").write_text("")
    (run / "config.yaml").write_text((run / "config.yaml").read_text() + "\n: : [broken\n")
    assert main(["report", str(run), "--no-progress"]) == 0
    html = (run / "report.html").read_text()
    self_contained(html)
    assert "no training rows logged" in html and "metrics.jsonl has no readable rows" in html
    assert "config.yaml could not be parsed" in html and "evaluation" in html


# ------------------------------------------------------------------------------------------ bad paths, search folders


def test_bad_paths_are_one_line_errors(runs, tmp_path, capsys):
    p = run_cli("report", tmp_path / "missing", timeout=60)
    one_line_error(p.returncode, p.stderr, "does not exist", "normgan train")
    cases = [
        (runs["plain"] / "config.yaml", ["is a file, not a folder", f"'{runs['plain']}'"]),
        (tmp_path, ["is not a run folder", "no config.yaml or metrics.jsonl"]),
        (runs["plain"].parent, ["holds run folders", "give one of its"]),
    ]
    for path, needles in cases:
        rc = main(["report", str(path)])
        one_line_error(rc, capsys.readouterr().err, *needles)
    assert not (tmp_path / "report.html").exists()
    rc = main(["report", str(runs["plain"]), "--out", str(runs["plain"] / "config.yaml" / "x.html")])
    one_line_error(rc, capsys.readouterr().err, "cannot write the report", "--out")


def test_a_search_folder_points_at_its_own_report(tmp_path, capsys):
    folder = tmp_path / "searches" / "s"
    folder.mkdir(parents=True)
    (folder / "trials.csv").write_text("number,state\n")
    rc = main(["report", str(folder)])
    one_line_error(rc, capsys.readouterr().err, "has no report.html yet", "normgan search")
    (folder / "report.html").write_text("<html></html>")
    assert main(["report", str(folder)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and str(folder / "report.html") in out[0] and "normgan search" in out[0]
    assert (folder / "report.html").read_text() == "<html></html>"


def test_spread_keeps_the_first_and_the_last():
    assert spread(3, 8) == [0, 1, 2]
    assert spread(20, 8) == [0, 3, 5, 8, 11, 14, 16, 19]
    for n in range(1, 40):
        idx = spread(n, 8)
        assert idx[0] == 0 and idx[-1] == n - 1 and len(idx) == min(n, 8) and idx == sorted(set(idx))
