"""Paired (image-to-image) training on the one loop: the task object, the conditional critic,
reconstruction terms, resume, and the commands (train, sample, eval, translate) end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import run_cli
from PIL import Image

from normgan.config import load_config
from normgan.errors import ConfigError
from normgan.functional.penalties import r1_penalty, wgan_gp_penalty
from normgan.models.checkpoint import load_checkpoint
from normgan.regularizers import TermContext, build_regularizers
from normgan.tasks.builtin import ConditionalCritic
from normgan.train import Trainer

#: a tiny paired run: edges2digit at 32 px, small U-Net and PatchGAN
PAIRED = [
    "data.name=edges2digit",
    "data.resolution=32",
    "data.batch_size=4",
    "model.generator.name=unet",
    "model.generator.width=4",
    "model.generator.dropout=0.5",
    "model.discriminator.name=patchgan",
    "model.discriminator.width=4",
    "model.discriminator.norm=instance",
    "+model.discriminator.options.layers=2",
    "train.steps=6",
    "train.log_every=2",
    "train.sample_every=3",
    "train.checkpoint_every=3",
    "train.tensorboard=false",
    "+regularizers.l1.term=recon",
    "+regularizers.l1.weight=100",
]


def paired_cfg(*extra):
    return load_config(overrides=PAIRED + list(extra))


def test_task_resolves_from_the_dataset_and_paired_eval_defaults():
    cfg = paired_cfg()
    assert cfg.task == "paired" and cfg.paired
    assert cfg.eval.metrics == ["psnr", "ssim", "l1"] and cfg.eval.best_metric == "psnr"
    assert load_config().task == "unconditional"


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["+regularizers.l1.term=recon"], "regularizers.l1"),  # recon on an unconditional run
        (["task=paired"], "data.name"),  # paired task, unpaired data
        (["data.name=edges2digit"], "model.generator.name"),  # dcgan G on a paired run
        (PAIRED + ["model.generator.name=dcgan"], "model.generator.name"),
        (PAIRED + ["data.direction=sideways"], "data.direction"),
        (PAIRED + ["data.load_size=16"], "data.load_size"),
        (PAIRED + ["+model.generator.options.blocks=3"], "model.generator.options"),  # unet has no 'blocks'
        (PAIRED + ["eval.every=5", "eval.metrics=[psnr]", "eval.best_metric=ssim"], "eval.best_metric"),
        (PAIRED + ["eval.every=5", "eval.metrics=[fid]"], "metric"),
    ],
)
def test_bad_paired_configs_name_the_key(overrides, key):
    with pytest.raises(ConfigError) as e:
        load_config(overrides=overrides)
    assert key in str(e.value) and "\n" not in str(e.value)


def test_gradient_penalties_on_a_conditional_critic_are_wrt_the_image_only():
    torch.manual_seed(0)
    D = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv2d(4, 1, 3, padding=1))
    x, y, fake = torch.randn(3, 1, 8, 8), torch.randn(3, 2, 8, 8), torch.randn(3, 2, 8, 8)
    critic = ConditionalCritic(D, x)
    # independent: R1 by hand, differentiating D(cat(x, y)) w.r.t. y only
    yy = y.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(D(torch.cat([x, yy], 1)).sum(), yy)
    expected = 0.5 * g.pow(2).flatten(1).sum(1).mean()
    (reg,) = build_regularizers({"r1": {"term": "grad", "net": "D", "at": "real"}})
    got = reg.term(TermContext(G=None, D=D, real=y, fake=fake, critic=critic))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(r1_penalty(critic, y), expected, rtol=1e-5, atol=1e-7)
    # WGAN-GP: the interpolates mix y and G(x) for the same x; the condition is not interpolated
    gen = torch.Generator().manual_seed(1)
    gp = wgan_gp_penalty(critic, y, fake, generator=gen)
    eps = torch.rand(3, generator=torch.Generator().manual_seed(1)).reshape(3, 1, 1, 1)
    xh = (y + eps * (fake - y)).requires_grad_(True)
    (gh,) = torch.autograd.grad(D(torch.cat([x, xh], 1)).sum(), xh)
    expected_gp = (gh.flatten(1).norm(dim=1) - 1).pow(2).mean()
    torch.testing.assert_close(gp, expected_gp, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "norm, reduction, expected",
    [
        ("l1", "mean", lambda r: np.abs(r).mean()),
        ("l1", "sum", lambda r: np.abs(r).sum()),  # λ·Σ_i |G(x_i) − y_i|, the article's L1 formula
        ("sql2", "sum", lambda r: (r**2).sum()),  # λ·Σ_i ‖G(x_i) − y_i‖², the article's L2 formula
        ("sql2", "mean", lambda r: (r**2).reshape(len(r), -1).sum(1).mean()),
        ("l2", "sum", lambda r: np.sqrt((r**2).reshape(len(r), -1).sum(1)).sum()),
    ],
)
def test_recon_term_reductions_match_the_formulas(norm, reduction, expected):
    torch.manual_seed(0)
    fake, target = torch.randn(5, 3, 4, 4, dtype=torch.float64), torch.randn(5, 3, 4, 4, dtype=torch.float64)
    (reg,) = build_regularizers(
        {"rec": {"term": "recon", "net": "G", "norm": norm, "reduction": reduction}}, paired=True
    )
    got = float(reg.term(TermContext(G=None, D=None, fake=fake, target=target)))
    assert got == pytest.approx(float(expected((fake - target).numpy())), rel=1e-12)


def test_paired_trainer_builds_a_conditional_D_and_pairs_batches(tmp_path):
    tr = Trainer(paired_cfg("train.steps=1"), runs_dir=tmp_path, name="r", progress=False)
    assert tr.task.in_channels == 1 and tr.task.channels == 1
    assert tr.D.body[0].in_channels == 2  # condition + image
    b = tr.task.next_batch()
    # the pair is aligned: each target is the digit whose outline is the input (edges lie on the digit's border)
    x01, y01 = (b.g_in + 1) / 2, (b.real + 1) / 2
    assert float((x01 * (1 - y01)).sum()) < 0.5 * float(x01.sum())
    assert b.cond is b.g_in and b.target is b.real and b.real.shape == (4, 1, 32, 32)
    assert float(b.g_in.min()) >= -1 and float(b.g_in.max()) <= 1


def test_paired_resume_is_exact_with_jitter(tmp_path):
    # the split run evaluates at the end of its first part (step 3), the full run does not: neither the
    # evaluation nor the sample grids (G's dropout stays on) may move the training RNG
    over = [
        "data.load_size=36",
        "data.flip=true",
        "train.checkpoint_every=100",
        "train.sample_every=2",
        "eval.every=1000",
        "eval.metrics=[psnr,classifier_score]",
    ]  # the classifier is built (drawing its init) at the first evaluation
    full = Trainer(paired_cfg("train.steps=6", *over), runs_dir=tmp_path, name="full", progress=False)
    full.fit()
    first = Trainer(paired_cfg("train.steps=3", *over), runs_dir=tmp_path, name="split", progress=False)
    first.fit()
    resumed = Trainer.resume(tmp_path / "split", overrides=["train.steps=6"], progress=False)
    resumed.fit()
    for a, b in [(full.G, resumed.G), (full.D, resumed.D), (full.G_ema, resumed.G_ema)]:
        for k, v in a.state_dict().items():
            torch.testing.assert_close(v, b.state_dict()[k], rtol=0, atol=0, msg=k)
    state = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    assert state["image_shape"] == [1, 32, 32] and state["input_shape"] == [1, 32, 32]


def _write(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_paired_commands_end_to_end(tmp_path):
    env_home = {
        "HOME": str(tmp_path / "home"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "TORCH_HOME": str(tmp_path / "torch"),
    }
    import os

    env = {k: v for k, v in os.environ.items() if k != "NORMGAN_CACHE"} | env_home
    r = run_cli(
        "train",
        *PAIRED,
        "eval.every=3",
        "eval.metrics=[psnr,ssim,l1,classifier_score]",
        "--runs-dir",
        tmp_path / "runs",
        "--name",
        "p",
        "--no-progress",
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    run = tmp_path / "runs" / "p"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [row for row in rows if "eval/psnr" in row]
    assert [row["step"] for row in evals] == [3, 6]
    assert all(0 <= row["eval/classifier_score"] <= 1 and row["eval/classifier_score_real"] > 0.9 for row in evals)
    assert (run / "checkpoints" / "best.pt").is_file()
    # the sample grid holds 3 rows (input, output, target) of 4 validation pairs: 3·32 + 4·2 px high
    grid = Image.open(run / "samples" / "step-000006.png")
    assert grid.size == (min(8, 64) * 34 + 2, 3 * 34 + 2)

    r = run_cli("sample", run, "--n", 5, "--out", tmp_path / "s", env=env)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [f"{i:06d}.png" for i in range(5)] + ["grid.png"]
    assert Image.open(tmp_path / "s" / "000000.png").size == (96, 32)  # input | output | target

    r = run_cli("eval", run, "--json", env=env)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["split"] == "test" and res["n"] == 500 and 0 <= res["ssim"] <= 1 and res["psnr"] > 0
    assert "classifier_score" in res and "lpips" not in res  # no AlexNet weights in this fresh TORCH_HOME
    assert res["baseline_psnr"] > 0 and "trivial baseline" not in r.stdout  # JSON only with --json
    assert "LPIPS" in r.stderr and "\n" not in r.stderr.strip()

    # translate: larger and smaller than the training resolution, grey and colour, nested names kept
    rng = np.random.default_rng(0)
    src = tmp_path / "in"
    _write(src / "big_grey.png", rng.integers(0, 255, (70, 45), dtype=np.uint8))
    _write(src / "sub" / "small_colour.jpg", rng.integers(0, 255, (12, 20, 3), dtype=np.uint8))
    for mode in ("resize", "tile"):
        out = tmp_path / f"out-{mode}"
        r = run_cli("translate", run, "--input", src, "--out", out, "--mode", mode, "--no-progress", env=env)
        assert r.returncode == 0, r.stderr
        assert Image.open(out / "big_grey.png").size == (45, 70)
        assert Image.open(out / "sub" / "small_colour.jpg").size == (20, 12)


def test_translate_refuses_an_unconditional_run(tmp_path):
    from conftest import TINY

    r = run_cli("train", *TINY, "train.steps=1", "--runs-dir", tmp_path, "--name", "u", "--no-progress")
    assert r.returncode == 0, r.stderr
    (tmp_path / "in").mkdir()
    _write(tmp_path / "in" / "a.png", np.zeros((8, 8), dtype=np.uint8))
    r = run_cli("translate", tmp_path / "u", "--input", tmp_path / "in", "--out", tmp_path / "o")
    assert r.returncode == 2 and "unconditional" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr


def test_translate_keeps_dropout_on_only_when_configured(tmp_path):
    from normgan.inference.translate import translate_folder

    _write(tmp_path / "in" / "a.png", np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8))
    outputs = {}
    for keep in (True, False):
        cfg = paired_cfg("train.steps=1", f"+model.generator.options.test_dropout={str(keep).lower()}")
        run = Trainer(cfg, runs_dir=tmp_path, name=f"keep-{keep}", progress=False).fit()
        for seed in (0, 1):
            out, n = translate_folder(
                run, input=tmp_path / "in", out=tmp_path / f"o-{keep}-{seed}", seed=seed, progress=False
            )
            assert n == 1
            outputs[keep, seed] = np.asarray(Image.open(out / "a.png"), dtype=np.int16)
    assert np.abs(outputs[True, 0] - outputs[True, 1]).max() > 0  # dropout draws differ by seed
    assert np.array_equal(outputs[False, 0], outputs[False, 1])  # deterministic G: same output


def test_compare_refuses_a_paired_run_with_one_line(tmp_path):
    run = Trainer(paired_cfg("train.steps=1"), runs_dir=tmp_path, name="p", progress=False).fit()
    r = run_cli("compare", run, "--n", 10)
    assert r.returncode == 2 and "paired" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("dname", ["dcgan", "patchgan"])
@pytest.mark.parametrize("gname", ["unet", "resnet"])
def test_every_generator_and_discriminator_trains_paired(tmp_path, gname, dname):
    from normgan.models import DISCRIMINATORS, GENERATORS

    assert {gname} <= set(GENERATORS.names()) and {dname} <= set(DISCRIMINATORS.names())
    over = [o for o in PAIRED if "options.layers" not in o] + [
        "train.steps=2",
        f"model.generator.name={gname}",
        f"model.discriminator.name={dname}",
        "+regularizers.r1={term: grad, net: D, at: real, weight: 1.0}",
    ]
    tr = Trainer(load_config(overrides=over), runs_dir=tmp_path, name="r", progress=False)
    first = next(m for m in tr.D.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 2  # any D is conditional in a paired run: condition + image
    tr.fit()
    row = json.loads((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["reg/r1/raw"] > 0 and np.isfinite(row["loss/D"])
