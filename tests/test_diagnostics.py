"""Stability diagnostics against hand-computed values on synthetic metrics.jsonl rows."""

from __future__ import annotations

import json

import pytest

from normgan.errors import UserError
from normgan.eval import diagnostics as dg


def rows_of(key, values, start=10, every=10):
    return [{"step": start + i * every, key: v} for i, v in enumerate(values)]


def test_window_variance_and_loss_variance():
    assert dg.window_variance([1, 2, 3, 4], 2) == [0.25, 0.25, 0.25]
    assert dg.window_variance([1, 2, 3], 4) == []
    # 10 consecutive integers: population variance (10² − 1) / 12 = 8.25 in every window
    lv = dg.loss_variance(rows_of("loss/D", list(range(1, 13))), "loss/D", window=10)
    assert lv == {"mean": pytest.approx(8.25), "max": pytest.approx(8.25), "windows": 3, "window": 10}
    # windows [0,0,0] var 0, [0,0,3] var 2, [0,3,3] var 2 -> mean 4/3, max 2
    lv = dg.loss_variance(rows_of("loss/G", [0, 0, 0, 3, 3]), "loss/G", window=3)
    assert lv["mean"] == pytest.approx(4 / 3) and lv["max"] == pytest.approx(2.0) and lv["windows"] == 3
    assert dg.loss_variance(rows_of("loss/G", [1, 2]), "loss/G", window=10) is None


def test_nonfinite_values_are_skipped():
    rows = rows_of("loss/G", [1.0, "nan", 2.0, "inf", 3.0])
    assert dg.series(rows, "loss/G") == ([10, 30, 50], [1.0, 2.0, 3.0])
    assert dg.summarize_rows(rows)["nonfinite_values"] == 2


@pytest.mark.parametrize(
    "values, expected",
    [
        ([0, 1, 0, 1, 0], 100.0),  # diffs + - + -: 3 changes out of 3 pairs
        ([1, 2, 3, 3, 4], 0.0),  # diffs + + 0 +: the zero is dropped, no change
        ([0, 1, 2, 1, 2, 3], 50.0),  # diffs + + - + +: 2 changes out of 4 pairs
        ([5, 4, 4, 4], None),  # a single non-zero difference
    ],
)
def test_oscillation(values, expected):
    got = dg.oscillation(rows_of("loss/G", values), "loss/G")
    assert got == (None if expected is None else pytest.approx(expected))


def test_d_saturation():
    rows = [
        {"step": 1, "d/real_acc": 1.0, "d/fake_acc": 1.0},
        {"step": 2, "d/real_acc": 0.99, "d/fake_acc": 0.995},
        {"step": 3, "d/real_acc": 0.99, "d/fake_acc": 0.5},
        {"step": 4, "d/real_acc": 0.2, "d/fake_acc": 1.0},
        {"step": 5, "loss/D": 1.0},  # no accuracies: not counted
    ]
    assert dg.d_saturation(rows) == pytest.approx(0.5)
    assert dg.d_saturation([{"step": 1}]) is None


def test_grad_spikes_median_plus_5_mad():
    # median 5.5; |x − 5.5| sorted: .5 .5 1.5 1.5 2.5 2.5 3.5 3.5 4.5 94.5 -> MAD 2.5; threshold 5.5 + 12.5 = 18
    values = [1, 2, 3, 4, 5, 6, 7, 8, 9, 100]
    g = dg.grad_spikes(rows_of("grad_norm/D", values), "grad_norm/D")
    assert g["median"] == pytest.approx(5.5) and g["mad"] == pytest.approx(2.5)
    assert g["threshold"] == pytest.approx(18.0)
    assert g["count"] == 1 and g["steps"] == [100] and g["fraction"] == pytest.approx(0.1)
    assert dg.grad_spikes([{"step": 1}], "grad_norm/D") is None


def test_convergence_step():
    # final 32, band 3.2: 35 and 30 are inside, 50 is not -> stays inside from step 300
    rows = rows_of("eval/fid", [100, 50, 30, 35, 32], start=100, every=100)
    c = dg.convergence_step(rows)
    assert c == {"metric": "eval/fid", "step": 300, "final": 32, "first_step": 100, "last_step": 500}
    # an early dip into the band does not count when the metric leaves it again
    rows = rows_of("eval/fid", [100, 33, 60, 32], start=1, every=1)
    assert dg.convergence_step(rows)["step"] == 4
    assert dg.convergence_step(rows_of("loss/G", [1, 2, 3])) is None  # no eval rows


def test_mode_collapse_indicators():
    rows = [
        {"step": 1, "eval/class_coverage": 1.0, "eval/diversity": 0.9},
        {"step": 2, "eval/class_coverage": 0.6, "eval/diversity": 0.4},
    ]
    m = dg.mode_collapse(rows)
    assert m == {
        "class_coverage_last": 0.6,
        "class_coverage_min": 0.6,
        "diversity_last": 0.4,
        "diversity_min": 0.4,
        "suspected": True,
    }
    healthy = dg.mode_collapse([{"step": 1, "eval/class_coverage": 1.0, "eval/diversity": 0.95}])
    assert healthy["suspected"] is False
    assert dg.mode_collapse(rows_of("loss/G", [1.0])) is None


def _write_run(tmp_path, rows):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 9')  # torn last line
    return run


def test_summarize_run_and_format(tmp_path):
    rows = [
        {
            "step": 10 * (i + 1),
            "loss/D": float(i % 2),
            "loss/G": float(i),
            "d/real_acc": 1.0,
            "d/fake_acc": 1.0,
            "grad_norm/G": 1.0 + i,
            "grad_norm/D": 2.0,
        }
        for i in range(12)
    ]
    rows[5]["eval/fid"] = 80.0
    rows[11]["eval/fid"] = 40.0
    run = _write_run(tmp_path, rows)
    s = dg.summarize_run(run)
    assert s["rows"] == 12 and s["first_step"] == 10 and s["last_step"] == 120
    assert s["loss_variance"]["loss/D"]["mean"] == pytest.approx(0.25)  # 0/1 alternating: variance 1/4
    assert s["oscillation"]["loss/D"] == pytest.approx(100.0) and s["oscillation"]["loss/G"] == pytest.approx(0.0)
    assert s["d_saturation"] == 1.0
    assert s["convergence"]["step"] == 120 and s["eval_source"] == "metrics.jsonl"
    assert s["mode_collapse"] is None
    text = dg.format_summary(s)
    assert "D saturation" in text and "100.0% of rows" in text and "from step 120" in text


def test_summarize_run_uses_eval_files(tmp_path):
    run = _write_run(tmp_path, [{"step": 1, "loss/G": 1.0}])
    (run / "eval").mkdir()
    for step, fid, cov in ((100, 90.0, 0.3), (200, 20.0, 0.2)):
        (run / "eval" / f"eval-step{step:06d}-domain-n100.json").write_text(
            json.dumps({"step": step, "fid": fid, "class_coverage": cov, "diversity": 0.1, "features": "domain"})
        )
    s = dg.summarize_run(run)
    assert s["eval_source"] == "eval/*.json"
    assert s["convergence"]["step"] == 200 and s["convergence"]["final"] == 20.0
    assert s["mode_collapse"]["suspected"] and s["mode_collapse"]["class_coverage_min"] == 0.2
    assert "SUSPECTED" in dg.format_summary(s)


def test_missing_run_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist") as info:
        dg.summarize_run(tmp_path / "nope")
    assert "\n" not in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no metrics.jsonl"):
        dg.summarize_run(tmp_path / "empty")


def test_cmd_diagnose_in_process(tmp_path, capsys):
    from normgan.cli import build_parser

    run = _write_run(tmp_path, [{"step": i, "loss/G": float(i), "loss/D": 1.0} for i in range(1, 15)])
    parser = build_parser()
    args = parser.parse_args(["diagnose", str(run), "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rows"] == 14 and out["loss_variance"]["loss/D"]["max"] == 0.0
    args = parser.parse_args(["diagnose", str(run)])
    assert args.func(args) == 0
    assert "loss/G variance (window 10)" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ divergence
def test_divergence_rule_by_hand():
    healthy = rows_of("loss/G", [0.7, 0.9, 1.2, 0.8, 1.1, 0.6])
    d = dg.divergence(healthy)
    assert d["detected"] is False and d["step"] is None and d["reason"] is None
    # 6 rows: window 2; first median 0.8 -> threshold max(1e6, 1e3 * max(0.8, 1)) = 1e6
    assert d["losses"]["loss/G"] == {
        "first_median": pytest.approx(0.8),
        "last_median": pytest.approx(0.85),
        "threshold": 1e6,
        "window": 2,
        "exploded": False,
    }
    # lr = 1e6: exploded from the first logged row; m_first is clamped to 1e6, so T = 1e9
    lr_1e6 = [
        {"step": 2 * (i + 1), "loss/G": g, "loss/D": dd}
        for i, (g, dd) in enumerate([(7.9e13, 1.9e13), (1.1e14, 1.9e14), (1.9e14, 0.0)])
    ]
    d = dg.divergence(lr_1e6)
    assert d["detected"] and d["kind"] == "explosion" and d["key"] == "loss/G" and d["step"] == 2
    assert d["losses"]["loss/G"]["threshold"] == 1e9 and d["losses"]["loss/G"]["window"] == 1
    assert d["losses"]["loss/D"]["exploded"] is False  # last |loss/D| 0
    assert d["reason"].startswith("|loss/G| reached 7.9e+13 at step 2")
    # a loss that starts large: the threshold is relative, 1e3 x the first-window median
    big = [2e4] * 6 + [5e6] * 3  # window 3: first median 2e4 -> T = 2e7
    assert not dg.divergence(rows_of("loss/D", big))["detected"]
    d = dg.divergence(rows_of("loss/D", [2e4] * 6 + [3e7] * 3))
    assert d["detected"] and d["step"] == 70 and d["losses"]["loss/D"]["threshold"] == pytest.approx(2e7)
    assert dg.divergence([])["detected"] is False


def test_divergence_flags_nonfinite_training_values_only():
    rows = rows_of("loss/G", [1.0, 1.1, 0.9, 1.0])
    rows[1]["eval/diversity"] = float("nan")  # an undefined eval number is not a divergence
    assert not dg.divergence(rows)["detected"]
    rows[2]["grad_norm/D"] = "inf"
    rows[3]["loss/D"] = "nan"
    d = dg.divergence(rows)
    assert d["detected"] and d["kind"] == "nonfinite" and d["step"] == 30 and d["key"] == "grad_norm/D"
    assert d["reason"] == "grad_norm/D is inf at step 30"
    # both kinds: the earlier step wins
    rows = rows_of("loss/G", [1.0] * 6 + [1e12] * 3)
    rows[8]["loss/D"] = float("nan")
    d = dg.divergence(rows)
    assert d["kind"] == "explosion" and d["step"] == 70
    text = dg.format_summary({**dg.summarize_rows(rows), "run": "r"})
    assert "divergence: DETECTED at step 70: |loss/G| reached 1e+12 at step 70" in text
    assert "divergence: none" in dg.format_summary({**dg.summarize_rows(rows[:6]), "run": "r"})


# ------------------------------------------------------------------------------------------ runs made to fail
TINY_FAST = [
    "train.steps=6",
    "data.batch_size=8",
    "model.generator.width=8",
    "model.discriminator.width=8",
    "train.log_every=2",
    "train.sample_every=1000",
    "train.checkpoint_every=1000",
    "train.num_samples=4",
    "train.tensorboard=false",
    "regularizers={}",
]


def test_diagnose_a_run_made_to_diverge(tmp_path):
    from conftest import run_cli

    p = run_cli(
        "train",
        *TINY_FAST,
        "optim.g.lr=1e6",
        "optim.d.lr=1e6",
        "--runs-dir",
        tmp_path,
        "--name",
        "div",
        "--no-progress",
    )
    assert p.returncode in (0, 3), p.stderr  # 3: stopped on NaN; otherwise it stays finite but explodes
    rows = [json.loads(line) for line in (tmp_path / "div" / "metrics.jsonl").read_text().splitlines()]
    assert rows and dg.divergence(rows)["detected"]
    p = run_cli("diagnose", tmp_path / "div")
    assert p.returncode == 0, p.stderr
    line = next((line for line in p.stdout.splitlines() if "divergence:" in line), "")
    assert line.strip().startswith("divergence: DETECTED at step "), p.stdout
    assert "loss/" in line or "nan" in line or "inf" in line


def test_diagnose_a_run_made_to_collapse(tmp_path):
    """A generator whose last layer outputs a constant (64 identical grey tiles) and no eval rows."""
    import numpy as np
    import torch
    from conftest import run_cli
    from scipy.spatial.distance import pdist

    import normgan
    from normgan.data import batch_to_float, load_dataset
    from normgan.inference.sample import load_generator, sample_images

    run = normgan.Trainer(normgan.load_config(overrides=TINY_FAST), runs_dir=tmp_path, name="ok", progress=False).fit()
    # the pixel diversity ratio of the intact run, recomputed with scipy
    got = dg.pixel_diversity(run)
    G, _ = load_generator(run)
    fake = sample_images(G, n=256, seed=0).flatten(1).numpy()
    train = load_dataset(name="mnist5k", split="train")
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:256]
    real = batch_to_float(train.images[idx]).flatten(1).numpy()
    assert got["ratio"] == pytest.approx(pdist(fake).mean() / pdist(real).mean(), rel=1e-6)
    assert got["n"] == 256 and got["ratio"] > 0

    ckpt = run / "checkpoints" / "last.pt"
    state = torch.load(ckpt, weights_only=True)
    state["generator_ema"]["to_image.weight"].zero_()
    if "to_image.bias" in state["generator_ema"]:
        state["generator_ema"]["to_image.bias"].fill_(0.0)
    torch.save(state, ckpt)
    G, _ = load_generator(run)
    tiles = sample_images(G, n=64, seed=0)
    assert torch.equal(tiles, tiles[:1].expand_as(tiles))  # 64 identical tiles
    assert not any(
        "eval/" in k for r in (json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()) for k in r
    )

    p = run_cli("diagnose", run)
    assert p.returncode == 0, p.stderr
    m = next((line for line in p.stdout.splitlines() if "mode collapse:" in line), "")
    assert m.strip().startswith("mode collapse: SUSPECTED (pixel diversity ratio 0.00"), p.stdout
    p = run_cli("diagnose", run, "--json")
    s = json.loads(p.stdout)
    assert s["pixel_diversity"]["ratio"] == pytest.approx(0.0, abs=1e-9) and s["mode_collapse"]["suspected"] is True
    assert np.isfinite(s["pixel_diversity"]["real"]) and s["pixel_diversity"]["real"] > 1.0


def test_paired_dropout_diversity_is_not_a_mode_collapse():
    """A paired run's evaluation logs the dropout diversity of G(x) (≈ 0 without test-time dropout)
    under its own name: the collapse check, meant for unconditional generators, says nothing there."""
    from normgan.config import load_config
    from normgan.eval.diagnostics import mode_collapse
    from normgan.eval.paired import PairedEvaluator
    from normgan.models.build import build_networks

    cfg = load_config("edges2digit", overrides=["model.generator.width=4", "eval.metrics=[psnr]"])
    G = build_networks(cfg, resolution=32, channels=1, in_channels=1)[0]
    res = PairedEvaluator(cfg, split="val", metrics=("psnr",))(G)
    assert "dropout_diversity" in res and "diversity" not in res
    rows = [{"step": 10, **{f"eval/{k}": v for k, v in res.items() if isinstance(v, float)}}]
    assert mode_collapse(rows) is None
    unconditional = [{"step": 500, "eval/fid": 3.0, "eval/diversity": 0.1}]
    assert mode_collapse(unconditional)["suspected"] is True
