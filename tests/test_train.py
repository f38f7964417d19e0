"""End-to-end behaviour of the training loop: resume exactness, interrupts, NaN stops, sampling."""

import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import TINY, run_cli
from PIL import Image

from normgan import Trainer, load_config
from normgan.errors import UserError
from normgan.functional.losses import LOSSES, AdversarialLoss
from normgan.models.checkpoint import load_checkpoint


def tiny_cfg(*extra):
    return load_config(overrides=[*TINY, *extra])


STATEFUL_TERMS = {
    # a lazy penalty (gain and Adam correction), EMA anchors, a controller weight, a learned weight, gates
    "r1": {"term": "grad", "net": "D", "at": "real", "weight": 1.0, "every": 2},
    "lecam": {"term": "lecam", "net": "D", "weight": {"adaptive": "target", "base": 0.1}},
    "tv": {"term": "tv", "net": "G", "weight": {"adaptive": "uncertainty"}},
    "l0": {"term": "weights", "net": "G", "norm": "l0", "weight": 1.0e-2},
}


def stateful_cfg(*extra):
    from normgan.config import validate

    cfg = tiny_cfg("model.discriminator.norm=none", *extra)
    cfg.regularizers = {k: dict(v) for k, v in STATEFUL_TERMS.items()}
    validate(cfg)
    return cfg


@pytest.mark.parametrize("make_cfg", [tiny_cfg, stateful_cfg], ids=["plain", "stateful-terms"])
def test_resume_is_exact(tmp_path, make_cfg):
    n = 5
    full = Trainer(
        make_cfg(f"train.steps={2 * n}", "train.checkpoint_every=100"), runs_dir=tmp_path, name="full", progress=False
    )
    full.fit()
    first = Trainer(make_cfg(f"train.steps={n}"), runs_dir=tmp_path, name="split", progress=False)
    first.fit()
    resumed = Trainer.resume(tmp_path / "split", overrides=[f"train.steps={2 * n}"], progress=False)
    assert resumed.step == n
    resumed.fit()
    for a, b in [(full.G, resumed.G), (full.G_ema, resumed.G_ema), (full.D, resumed.D), *zip(full.regs, resumed.regs)]:
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        for k in sa:
            torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0, msg=k)
    # the resumed run's log has each step once
    steps = [json.loads(line)["step"] for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 2 * n


def test_run_folder_contents(tmp_path):
    run = Trainer(tiny_cfg(), runs_dir=tmp_path, name="r", progress=False).fit()
    assert (run / "config.yaml").is_file()
    cfg = load_config(run / "config.yaml")  # the saved config reproduces the run's config
    assert cfg.train.steps == 6 and cfg.data.batch_size == 8
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6]
    for key in ("loss/D", "loss/G", "images_per_s", "grad_norm/G", "grad_norm/D", "d/real_acc"):
        assert all(isinstance(r[key], float) for r in rows), key
    grids = sorted(p.name for p in (run / "samples").glob("*.png"))
    assert grids == ["step-000000.png", "step-000003.png", "step-000006.png"]
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] == 6 and state["image_shape"] == [1, 32, 32]


def test_regularizer_logged_under_stable_names(tmp_path):
    over = [o for o in TINY if not o.startswith("regularizers")]
    cfg = load_config("configs/mnist.yaml", overrides=over)
    run = Trainer(cfg, runs_dir=tmp_path, name="r", progress=False).fit()
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    G = Trainer.resume(run, progress=False).G
    expected_raw = sum(float(p.detach().pow(2).sum()) for p in G.parameters() if p.ndim > 1)
    # the raw value is logged at the step before the final update: same order of magnitude, exact weight
    assert row["reg/wd_g/weight"] == pytest.approx(1e-6)
    assert row["reg/wd_g/raw"] == pytest.approx(expected_raw, rel=0.05)
    assert row["reg/wd_g/loss"] == pytest.approx(row["reg/wd_g/raw"] * 1e-6, rel=1e-5)


class NanAfter:
    """The bce loss, returning NaN for D from the k-th call on."""

    def __init__(self, k):
        self.k, self.calls = k, 0
        self.base = LOSSES.get("bce")

    def d(self, real, fake):
        self.calls += 1
        out = self.base.d(real, fake)
        return out * float("nan") if self.calls >= self.k else out


def test_nan_loss_stops_without_corrupting_checkpoint(tmp_path):
    trainer = Trainer(tiny_cfg("train.steps=20"), runs_dir=tmp_path, name="nan", progress=False)
    nan = NanAfter(5)
    trainer.objective.loss = AdversarialLoss(nan.d, LOSSES.get("bce").g)
    with pytest.raises(UserError) as err:
        trainer.fit()
    msg = str(err.value)
    assert err.value.exit_code == 3
    assert "step 4" in msg and "last.pt (step 3)" in msg and "\n" not in msg
    state = load_checkpoint(tmp_path / "nan" / "checkpoints" / "last.pt")
    assert state["step"] == 3
    assert all(torch.isfinite(v).all() for v in state["generator"].values() if v.is_floating_point())


def test_ctrl_c_saves_and_resumes(tmp_path):
    args = [
        sys.executable,
        "-m",
        "normgan",
        "train",
        *TINY,
        "train.steps=100000",
        "train.log_every=1",
        "--runs-dir",
        str(tmp_path),
        "--name",
        "int",
        "--no-progress",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "int" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "--resume" in err
    state = load_checkpoint(tmp_path / "int" / "checkpoints" / "last.pt")
    assert 3 <= state["step"] < 100000
    proc = run_cli("train", "--resume", tmp_path / "int", f"train.steps={state['step'] + 2}", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert load_checkpoint(tmp_path / "int" / "checkpoints" / "last.pt")["step"] == state["step"] + 2


def test_cli_train_dry_run_prints_resolved_config(tmp_path):
    proc = run_cli("train", "configs/mnist.yaml", "train.steps=123", "optim.g.lr=1e-4", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    cfg = load_config(overrides=[])
    printed = __import__("yaml").safe_load(proc.stdout)
    assert printed["train"]["steps"] == 123 and printed["optim"]["g"]["lr"] == 1e-4
    assert printed["data"]["resolution"] == cfg.data.resolution
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


def test_cli_train_then_sample(tmp_path):
    proc = run_cli("train", *TINY, "--runs-dir", tmp_path / "runs", "--name", "s", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = proc.stdout.strip().splitlines()[-1]
    assert run.endswith("s")
    out = tmp_path / "out"
    proc = run_cli("sample", run, "--n", 10, "--out", out, "--seed", 3)
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = sorted(p.name for p in out.glob("*.png"))
    assert files == [f"{i:06d}.png" for i in range(10)] + ["grid.png"]
    img = Image.open(out / "000000.png")
    assert img.size == (32, 32)
    # same seed, same images; another seed, other images
    out2 = tmp_path / "out2"
    run_cli("sample", run, "--n", 2, "--out", out2, "--seed", 3)
    assert (out / "000001.png").read_bytes() == (out2 / "000001.png").read_bytes()
