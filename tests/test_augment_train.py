"""The augment: section through the real loop: D sees T(·) in every phase and nothing else does,
a paired run's pair is augmented jointly, penalties take the configured input, adaptive p moves,
is logged and checkpointed, and a resumed run continues bit-exactly; config errors are one line."""

import json

import pytest
import torch

from normgan.config import load_config
from normgan.errors import ConfigError
from normgan.train import Trainer
from normgan.train.augment import Augment, AugmentedCritic
from tests.conftest import TINY, run_cli

BASE = [*TINY, "model.discriminator.norm=none"]
R1 = "regularizers.r1={term: grad, net: D, at: real, weight: 1.0}"
ADA = ["augment.kind=ada", "augment.speed=200", "augment.interval=2"]  # p moves fast enough to see


def _cfg(*extra):
    return load_config(overrides=[*BASE, *extra])


def _rows(run):
    return [
        {k: v for k, v in json.loads(line).items() if k != "images_per_s"}
        for line in (run / "metrics.jsonl").read_text().splitlines()
    ]


class _Recorder:
    """A forward pre-hook recording every batch D's layers see."""

    def __init__(self, module):
        self.seen = []
        module.register_forward_pre_hook(lambda m, args: self.seen.append(args[0].detach().clone()))


def test_d_sees_augmented_images_in_every_phase_and_g_outputs_are_untouched(tmp_path):
    tr = Trainer(
        _cfg("augment.kind=diffaugment", "augment.ops=[translation]"), runs_dir=tmp_path, name="r", progress=False
    )
    rec = _Recorder(tr.D)
    torch.manual_seed(5)
    batch_before = tr.task.batches.state_dict()
    tr.train_step(0)
    # D step: real and fake; G step: fake (bce has no real forward in G)
    assert len(rec.seen) == 3
    tr.task.batches.load_state_dict(batch_before)
    real = tr.task.next_batch().real
    assert not torch.equal(rec.seen[0], real)  # translated (a zero border where shifted)
    # the sample grid and the evaluation see G's images as they are (no augmentation in G or G_ema)
    grid = tr.sample_grid()
    from normgan.tasks.builtin import grid01

    with torch.no_grad():
        want = grid01(tr.G_ema(tr.task.fixed), nrow=2)
    torch.testing.assert_close(grid, want, rtol=0, atol=0)


def test_paired_run_augments_the_pair_jointly(tmp_path):
    """edges2digit's D sees cat(x, y): with translation + cutout one draw moves both halves alike,
    so the zero border and the cut square are at the same pixels in x and y."""
    small = ["train.steps=2", "data.batch_size=8", "train.num_samples=4", "train.tensorboard=false"]
    cfg = load_config(
        "edges2digit", overrides=[*small, "augment.kind=diffaugment", "augment.ops=[translation, cutout]"]
    )
    tr = Trainer(cfg, runs_dir=tmp_path, name="p", progress=False)
    rec = _Recorder(tr.D)
    tr.train_step(0)
    assert len(rec.seen) >= 3
    for seen in rec.seen:
        x, y = seen[:, :1], seen[:, 1:]
        zeros_x, zeros_y = (x == 0).all(dim=1), (y == 0).all(dim=1)  # the images have no exact 0 of their own
        assert (
            torch.equal(zeros_x, zeros_y) and zeros_x.flatten(1).sum(1).min() >= 8 * 8
        )  # a cut square clipped at a corner: 8 × 8


def test_augmented_critic_uses_one_draw_for_both_halves_of_a_pair():
    class Cat:
        def __init__(self):
            self.cond, self.D = torch.rand(4, 1, 8, 8), lambda z: z

        def __call__(self, y):  # pragma: no cover - the wrapper calls D on cat(T(x), T(y)) itself
            raise AssertionError

    from types import SimpleNamespace

    a = SimpleNamespace(kind="diffaugment", ops=["translation", "cutout", "xflip"], p=1.0, target=0.6)
    a.speed, a.interval, a.penalty = 1.0, 1, "input"
    aug = Augment(a, batch_size=4)
    c = Cat()
    y = c.cond.clone()
    out = AugmentedCritic(c, aug)(y)
    assert torch.equal(out[:, :1], out[:, 1:])  # x == y before: still equal after one shared draw
    assert not torch.equal(out[:, 1:], y)


def test_penalty_input_modes_differentiate_what_they_say(tmp_path):
    """``input``: R1 = ‖∇ₓ D(T(x))‖² w.r.t. the un-augmented x (through T); ``augmented``:
    ‖∇_{T(x)} D(T(x))‖². With cutout T zeroes pixels: through T their gradient is 0."""
    for mode in ("input", "augmented"):
        cfg = _cfg(R1, "augment.kind=diffaugment", "augment.ops=[cutout]", f"augment.penalty={mode}")
        tr = Trainer(cfg, runs_dir=tmp_path, name=mode, progress=False)
        grads = {}
        orig = tr.objective.terms

        def spy(net, ctx, step, **kw):
            if net == "D" and ctx.real is not None and ctx.real.requires_grad and not kw.get("lazy"):
                g = torch.autograd.grad(ctx.d_real.sum(), ctx.real, retain_graph=True)[0]
                grads["g"], grads["x"] = g, ctx.real.detach()
            return orig(net, ctx, step, **kw)

        tr.objective.terms = spy
        tr.train_step(0)
        g, x = grads["g"], grads["x"]
        zero_grad_px = (g == 0).all(dim=1)  # (B, H, W)
        if mode == "input":  # the cut square: no gradient reaches those input pixels
            assert zero_grad_px.flatten(1).sum(1).min() >= 8 * 8  # at least a corner of it
        else:  # the penalty's input is T(x) itself: the cut square is zeros in it, and D sees all of it
            assert zero_grad_px.flatten(1).sum(1).max() < 8 * 8
            assert ((x == 0).all(dim=1).flatten(1).sum(1) >= 8 * 8).all()


def test_adaptive_p_moves_with_rt_and_is_logged(tmp_path):
    run = Trainer(_cfg(*ADA, R1, "train.steps=8"), runs_dir=tmp_path, name="a", progress=False)
    run.fit()
    rows = [r for r in _rows(tmp_path / "a") if "aug/p" in r]
    assert len(rows) == 4 and all("aug/rt" in r for r in rows)
    step = 8 * 2 / 200  # batch · interval / speed
    p = 0.0
    # replay the controller from the logged r_t: every 2 steps one update (rows every 2 steps)
    for r in rows:
        rt = r["aug/rt"]
        p = min(max(p + step * ((rt > 0.6) - (rt < 0.6)), 0.0), 1.0)
        assert r["aug/p"] == pytest.approx(p, abs=1e-12)


def test_resumed_adaptive_run_continues_bit_exactly(tmp_path):
    extra = [*ADA, R1, "augment.interval=3", "train.checkpoint_every=100"]
    full = Trainer(_cfg(*extra, "train.steps=8"), runs_dir=tmp_path, name="full", progress=False)
    full.fit()
    Trainer(_cfg(*extra, "train.steps=4"), runs_dir=tmp_path, name="split", progress=False).fit()
    resumed = Trainer.resume(tmp_path / "split", overrides=["train.steps=8"], progress=False)
    assert resumed.augment.state_dict()["pending"] is not None  # stopped inside an interval: sums carried over
    resumed.fit()
    for a, b in [(full.G, resumed.G), (full.G_ema, resumed.G_ema), (full.D, resumed.D)]:
        for k, v in a.state_dict().items():
            torch.testing.assert_close(v, b.state_dict()[k], rtol=0, atol=0, msg=k)
    assert full.augment.state_dict() == resumed.augment.state_dict()
    assert _rows(tmp_path / "split") == _rows(tmp_path / "full")
    assert any(r.get("aug/p", 0) > 0 for r in _rows(tmp_path / "full"))


def test_scheduled_p_follows_its_schedule(tmp_path):
    sched = "augment.p={schedule: linear, base: 0.8, start: 0, end: 4, final: 0.25}"
    run = Trainer(_cfg("augment.kind=ada", sched, "train.steps=6"), runs_dir=tmp_path, name="s", progress=False)
    run.fit()
    got = {r["step"]: r["aug/p"] for r in _rows(tmp_path / "s") if "aug/p" in r}
    # the row after step t logs p of step t − 1: 0.8·(1 − 0.75·(t−1)/4), then 0.2 from step 4
    assert got == pytest.approx({2: 0.8 * (1 - 0.75 / 4), 4: 0.8 * (1 - 0.75 * 3 / 4), 6: 0.2})


@pytest.mark.parametrize(
    "overrides, words",
    [
        (["augment.kind=mixup"], "augment.kind"),
        (["augment.kind=ada", "augment.ops=[cutout]"], "augment.ops"),
        (["augment.kind=diffaugment", "augment.ops=[]"], "augment.ops"),
        (["augment.kind=ada", "augment.p=1.5"], "augment.p"),
        (["augment.kind=ada", "augment.p=sometimes"], "augment.p"),
        (["augment.kind=ada", "augment.target=1.2"], "augment.target"),
        (["augment.kind=ada", "augment.speed=0"], "augment.speed"),
        (["augment.kind=ada", "augment.interval=0"], "augment.interval"),
        (["augment.penalty=both"], "augment.penalty"),
        (
            ["data.name=edges2digit", "model.generator.name=unet", "augment.kind=ada", "augment.penalty=augmented"],
            "augment.penalty",
        ),
    ],
)
def test_bad_augment_config_is_one_line(overrides, words):
    with pytest.raises(ConfigError, match=words.replace(".", r"\.")) as e:
        load_config(overrides=overrides)
    assert "\n" not in str(e.value)


def test_bad_augment_config_on_the_command_line_exits_2(tmp_path):
    r = run_cli("train", "--runs-dir", tmp_path, "--dry-run", "augment.kind=ada", "augment.ops=[cutout]")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "augment.ops" in r.stderr
