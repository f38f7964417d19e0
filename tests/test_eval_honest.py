"""Results that do not mislead (issue 19, item 6 and item 9's eval parts): KID's spread over
subsets that differ, with the subset size stated; ``--metrics`` restricts what ``normgan eval``
prints; the report shows every evaluation file in tables that fit the page; ``diagnose`` says which
evaluation files it reasons from; ``eval --split train`` and an ``--n`` beyond memory are refused."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY
from torch import nn

import normgan
from normgan.cli import main
from normgan.errors import UserError
from normgan.eval import diagnostics as dg
from normgan.metrics import ReferenceScorer
from normgan.metrics.functional import kid_from_features


def mmd2_numpy(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with the cubic polynomial kernel k(a, b) = (a·b / d + 1)³, written out."""
    d, m, n = x.shape[1], x.shape[0], y.shape[0]
    kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
    return (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean()


class Pixels(nn.Module):
    """Features = the image's pixels (float, [-1, 1]) flattened: an extractor with a closed form."""

    name, num_features = "pixels", 8

    def forward(self, x):
        return x.flatten(1)


def _reference(n: int, seed: int):
    images = torch.randint(0, 256, (n, 1, 2, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    return type("Ref", (), {"images": images, "__len__": lambda self: n})()  # the ImageData interface used


def _pixels_np(images: torch.Tensor) -> np.ndarray:
    return (
        (images.numpy().astype(np.float32) / np.float32(127.5) - np.float32(1.0))
        .reshape(len(images), -1)
        .astype(np.float64)
    )


# ------------------------------------------------------------------------------------------ KID
def test_kid_subset_size_is_below_n():
    from normgan.metrics.functional import kid_subset_size

    assert kid_subset_size(500, 500) == 250  # the issue's N: subsets of 1000 would be the whole sample
    assert kid_subset_size(5000, 5000) == 1000 and kid_subset_size(50_000, 2001) == 1000
    assert kid_subset_size(5000, 600) == 300 and kid_subset_size(40, 40, 10) == 10
    assert kid_subset_size(4, 4) == 2 and kid_subset_size(3, 9) == 3 and kid_subset_size(2, 2) == 2  # N < 4: no spread


def test_scorer_kid_at_n_500_matches_numpy_and_has_a_spread():
    """The issue's case (N = 500 both sides, 100 subsets of up to 1000): the scorer's KID is the
    mean and population std of the numpy MMD² over the documented subsets (the reference
    permutation's generator stream, continued), of 250 samples each, and the spread is real."""
    n, seed = 500, 3
    ref = _reference(900, 0)
    scorer = ReferenceScorer(reference=ref, extractor=Pixels(), n=n, metrics=("kid",), seed=seed)
    rng = np.random.default_rng(1)
    fake = rng.uniform(-1, 1, size=(n, 8)) * 0.8 + 0.1
    res = scorer.score(torch.from_numpy(fake))

    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(ref), generator=gen)
    real = _pixels_np(ref.images)[perm[:n].numpy()]
    m = 250
    vals = []
    for _ in range(100):
        ir = torch.randperm(n, generator=gen)[:m].numpy()
        ig = torch.randperm(n, generator=gen)[:m].numpy()
        vals.append(mmd2_numpy(real[ir], fake[ig]))
    assert res["kid_subset_size"] == m and res["kid_subsets"] == 100
    assert res["kid_mean"] == pytest.approx(np.mean(vals), rel=1e-6)
    assert res["kid_std"] == pytest.approx(np.std(vals), rel=1e-6)
    # a spread that means something: far above rounding noise (the bug printed ± 7.3e-16)
    assert res["kid_std"] > 1e-3 * abs(res["kid_mean"]) and res["kid_std"] > 1e-6
    # and the mean is an estimate of the same MMD² as the whole-sample one
    whole = mmd2_numpy(real, fake)
    assert abs(res["kid_mean"] - whole) < 4 * res["kid_std"]


def test_kid_spread_is_the_size_of_the_sampling_noise():
    """Where subsets differ, their std is of the order of the std of independent estimates at the
    same subset size (drawn afresh from the same distributions): about 0.7 of it at m = N/2 (the
    subsets share samples), never 1e-16 and never larger."""
    rng = np.random.default_rng(0)
    d, n, m = 8, 500, 250  # m: what kid_subset_size gives at N = 500
    ratios = []
    for rep in range(3):
        x, y = rng.standard_normal((n, d)), rng.standard_normal((n, d)) + 0.3
        _, std = kid_from_features(
            torch.from_numpy(x),
            torch.from_numpy(y),
            subsets=100,
            subset_size=m,
            generator=torch.Generator().manual_seed(rep),
        )
        fresh = [mmd2_numpy(rng.standard_normal((m, d)), rng.standard_normal((m, d)) + 0.3) for _ in range(150)]
        ratios.append(std / np.std(fresh))
    assert 0.45 < float(np.mean(ratios)) < 1.1, ratios


def test_kid_without_a_spread_says_so():
    """N = 3 per side: no two subsets can differ; one estimate on the whole sample (numpy) and no std."""
    x, y = np.random.default_rng(2).normal(size=(3, 4)), np.random.default_rng(3).normal(size=(3, 4)) + 1
    mean, std = kid_from_features(torch.from_numpy(x), torch.from_numpy(y), subsets=100, subset_size=3)
    assert std is None and mean == pytest.approx(mmd2_numpy(x, y), rel=1e-9)
    scorer = ReferenceScorer(reference=_reference(20, 1), extractor=Pixels(), n=3, metrics=("kid",))
    res = scorer.score(torch.from_numpy(np.random.default_rng(4).uniform(-1, 1, (3, 8))))
    assert res["kid_std"] is None and res["kid_subsets"] == 1 and res["kid_subset_size"] == 3


def test_eval_text_states_the_kid_subsets():
    from normgan.cli.eval import format_eval

    base = {"run": "r", "step": 1, "reference": "test", "n": 500, "features": "domain"}
    text = format_eval({**base, "kid_mean": 0.0123, "kid_std": 0.0021, "kid_subset_size": 250, "kid_subsets": 100})
    line = next(l for l in text.splitlines() if l.startswith("KID"))
    assert line.startswith("KID 0.0123 ± 0.0021") and "100 subsets of 250" in line
    text = format_eval({**base, "kid_mean": 0.5, "kid_std": None, "kid_subset_size": 3, "kid_subsets": 1})
    line = next(l for l in text.splitlines() if l.startswith("KID"))
    assert "±" not in line and "no spread" in line and "3 samples" in line
    old = format_eval({**base, "kid_mean": 0.5, "kid_std": 7.3e-16})  # saved before the subset size was recorded
    assert "7.3e-16" not in old and "subset size not recorded" in old


# ------------------------------------------------------------------------------------------ --metrics
PAIRED_RES = {
    "run": "runs/p",
    "step": 6,
    "ema": True,
    "split": "test",
    "dataset": "edges2digit",
    "n": 500,
    "psnr": 11.5,
    "ssim": 0.41,
    "l1": 0.52,
    "sharpness_ratio": 0.8,
    "dropout_diversity": 0.01,
    "baseline_psnr": 6.1,
    "baseline_ssim": 0.05,
    "baseline_l1": 0.9,
    "task": "paired",
}


def test_format_paired_prints_only_the_metrics_asked_for():
    from normgan.eval.paired import format_paired

    text = format_paired({**PAIRED_RES, "metrics": ["psnr"]})
    assert "PSNR 11.50 dB" in text and "PSNR 6.10 dB" in text  # the metric and its own baseline
    for other in ("L1", "SSIM", "0.5200", "0.4100", "0.0500", "sharpness"):
        assert other not in text, (other, text)
    text = format_paired({**PAIRED_RES, "metrics": ["ssim", "l1"]})
    assert "SSIM 0.4100" in text and "L1 0.5200" in text and "SSIM 0.0500" in text and "PSNR" not in text
    text = format_paired({**PAIRED_RES, "metrics": ["psnr", "ssim", "l1", "lpips", "classifier_score"]})  # the default
    assert all(s in text for s in ("PSNR 11.50", "SSIM 0.4100", "L1 0.5200", "sharpness ratio 0.800", "PSNR 6.10"))
    assert "LPIPS n/a" in format_paired({**PAIRED_RES, "metrics": ["psnr", "lpips"]})  # asked for, not computed: said


def test_format_eval_prints_only_the_groups_asked_for():
    """A reused evaluation may hold more groups than --metrics asks for: only those are printed."""
    from normgan.cli.eval import format_eval

    res = {
        "run": "r",
        "step": 1,
        "reference": "test",
        "n": 40,
        "features": "domain",
        "fid": 50.0,
        "fid_floor": 5.0,
        "fid_floor_n": 40,
        "kid_mean": 0.1,
        "kid_std": 0.01,
        "kid_subset_size": 20,
        "kid_subsets": 100,
        "precision": 0.5,
        "recall": 0.4,
        "class_coverage": 0.9,
        "diversity": 0.8,
    }
    text = format_eval(res, metrics=("fid",))
    assert "FID 50.0" in text and "KID" not in text and "precision" not in text and "class coverage 0.90" in text
    assert "KID" in format_eval(res) and "precision 0.500" in format_eval(res)


# ------------------------------------------------------------------------------------------ real runs
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
    "train.steps=2",
    "train.log_every=1",
    "train.sample_every=2",
    "train.checkpoint_every=2",
    "train.tensorboard=false",
    "train.num_samples=4",
    "+regularizers.l1.term=recon",
    "+regularizers.l1.weight=100",
]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("honest-runs")
    plain = normgan.Trainer(normgan.load_config(overrides=TINY), runs_dir=root, name="plain", progress=False).fit()
    paired = normgan.Trainer(normgan.load_config(overrides=PAIRED), runs_dir=root, name="paired", progress=False).fit()
    return {"plain": Path(plain), "paired": Path(paired)}


def test_eval_metrics_psnr_prints_psnr_only(made, capsys):
    assert main(["eval", str(made["paired"]), "--metrics", "psnr"]) == 0
    out = capsys.readouterr().out
    assert "PSNR" in out and "L1" not in out and "SSIM" not in out, out
    saved = json.loads(Path(out.strip().splitlines()[-1].split("written to ", 1)[1]).read_text())
    assert saved["metrics"] == ["psnr"] and "l1" in saved  # computed anyway; kept in the JSON


def test_eval_n_reaches_a_paired_run(made, capsys):
    """--n 50 scores 50 of the 500 test pairs and says so (it silently scored all 500)."""
    assert main(["eval", str(made["paired"]), "--n", "50", "--metrics", "psnr", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n"] == 50 and res["n_split"] == 500
    assert main(["eval", str(made["paired"]), "--n", "50", "--metrics", "psnr"]) == 0
    assert "(50 of its 500 pairs (a subset drawn with seed 0))" in capsys.readouterr().out


def test_eval_split_train_is_refused(made, capsys):
    assert main(["eval", str(made["paired"]), "--split", "train", "--metrics", "psnr"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("normgan: error: --split: 'train'") and "test" in err and "val" in err
    assert len(err.splitlines()) == 1
    assert not list((made["paired"] / "eval").glob("*-train*.json"))  # nothing evaluated


def test_eval_n_beyond_memory_is_refused_before_evaluating(made, capsys, monkeypatch):
    import normgan.eval.evaluation as ev

    monkeypatch.setattr(ev, "evaluate_run", lambda *a, **k: pytest.fail("evaluation started for --n 1e9"))
    assert main(["eval", str(made["plain"]), "--n", "1000000000"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("normgan: error: --n: 1000000000 samples need") and len(err.splitlines()) == 1
    assert "TiB" in err and "available" in err
    from normgan.eval.metric_info import eval_memory_bytes

    # the estimate: float64 features and logits of the domain classifier (128 + 10), twice while gathered
    assert eval_memory_bytes(1000, "domain", ("fid", "is")) == 2 * 1000 * (128 + 10) * 8
    assert eval_memory_bytes(1000, "inception", ("fid",)) == 2 * 1000 * 2048 * 8
    from normgan.eval.metric_info import check_eval_memory

    check_eval_memory(5000, available=10**9)  # 11 MB of features: fine
    with pytest.raises(UserError, match=r"--n: 5000 samples need .* more than the 1000 bytes available"):
        check_eval_memory(5000, available=1000)


# ------------------------------------------------------------------------------------------ eval files
def _fake_run(tmp_path: Path, files: dict) -> Path:
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    (run / "metrics.jsonl").write_text(
        "".join(
            json.dumps({"step": s, "loss/G": 1.0 + 0.1 * (s % 3), "loss/D": 1.0}) + "\n" for s in range(10, 210, 10)
        )
    )
    (run / "config.yaml").write_text(
        "task: unconditional\ndata:\n  name: mnist\ntrain:\n  steps: 200\neval:\n  every: 0\n"
    )
    for name, res in files.items():
        (run / "eval" / name).write_text(json.dumps(res))
    return run


EVAL_FILES = {
    # series A: n=50, at steps 100 and 200 (the longer series)
    "eval-step000100-domain-n50.json": {
        "step": 100,
        "n": 50,
        "features": "domain",
        "reference": "test",
        "seed": 0,
        "ema": True,
        "fid": 90.0,
        "class_coverage": 0.9,
        "diversity": 0.9,
    },
    "eval-step000200-domain-n50.json": {
        "step": 200,
        "n": 50,
        "features": "domain",
        "reference": "test",
        "seed": 0,
        "ema": True,
        "fid": 31.0,
        "class_coverage": 0.95,
        "diversity": 0.9,
    },
    # series B: n=100 at step 200 only; its name sorts first among the step-200 files
    "eval-step000200-domain-n100.json": {
        "step": 200,
        "n": 100,
        "features": "domain",
        "reference": "test",
        "seed": 0,
        "ema": True,
        "fid": 77.7,
        "class_coverage": 0.2,
        "diversity": 0.1,
    },
}


def test_diagnose_names_the_evaluation_files_it_uses(tmp_path):
    run = _fake_run(tmp_path, EVAL_FILES)
    s = dg.summarize_run(run, pixels=False)
    assert s["eval_source"] == "eval/*.json"
    assert s["eval_files"]["files"] == ["eval-step000100-domain-n50.json", "eval-step000200-domain-n50.json"]
    assert s["eval_files"]["ignored"] == ["eval-step000200-domain-n100.json"]
    assert "n=50" in s["eval_files"]["used"]
    # reasoned from series A only: final FID 31 (not B's 77.7), no collapse (B's coverage 0.2 not mixed in)
    assert s["convergence"]["final"] == 31.0 and s["convergence"]["step"] == 200
    assert s["mode_collapse"]["suspected"] is False and s["mode_collapse"]["class_coverage_min"] == 0.9
    text = dg.format_summary(s)
    assert "n=50" in text and "eval-step000200-domain-n100.json" in text


class _Tables(HTMLParser):
    """Every <table> with the classes of its enclosing <div>s, and the <style> text."""

    def __init__(self):
        super().__init__()
        self.stack, self.tables, self.css, self._style = [], [], "", False
        self.cells: list = []
        self._cell = None

    def handle_starttag(self, tag, attrs):
        if tag == "style":
            self._style = True
        if tag == "table":
            self.tables.append([c for t, c in self.stack if t == "div"])
        if tag in ("td", "th"):
            self._cell = ""
        self.stack.append((tag, dict(attrs).get("class") or ""))

    def handle_endtag(self, tag):
        if tag == "style":
            self._style = False
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append(self._cell)
            self._cell = None
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data):
        if self._style:
            self.css += data
        if self._cell is not None:
            self._cell += data


def test_report_shows_every_evaluation_file_in_tables_that_fit(tmp_path):
    from normgan.report import write_run_report

    files = dict(EVAL_FILES)
    files["eval-step000200-domain-n50-ref_train-seed1.json"] = {
        "step": 200,
        "n": 50,
        "features": "domain",
        "reference": "train",
        "seed": 1,
        "ema": True,
        "fid": 12.5,
        "classifier_score_real_with_a_very_long_name": 0.5,
    }
    run = _fake_run(tmp_path, files)
    html = write_run_report(run, progress=False).read_text()
    p = _Tables()
    p.feed(html)
    # every evaluation file is a row of its own, with its options and its FID
    for name in files:
        assert name in p.cells, name
    for fid in ("90", "31", "77.7", "12.5"):
        assert fid in p.cells, (fid, p.cells)
    assert "train" in p.cells and "test" in p.cells  # the reference column tells the step-200 files apart
    # every table scrolls inside its own box; headers may wrap
    assert p.tables and all("scroll" in " ".join(classes).split() for classes in p.tables), p.tables
    css = p.css.replace(" ", "")
    assert ".scroll{overflow-x:auto;" in css and "overflow-wrap:anywhere" in css
    # and the diagnostics say which series they used
    assert "one series: features=domain, n=50" in html
