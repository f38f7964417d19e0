"""Schedules of the optimizer's hyperparameters: ``cosine_warmup`` against closed forms and R3GAN's
``cosine_decay_with_warmup``, the lr/β2 an optimizer really holds at given steps of a run (with the
lazy correction), the EMA half-life, config errors, ``--resume`` overrides and resume exactness."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import TINY

from normgan import Trainer, load_config
from normgan.errors import ConfigError
from normgan.functional.weighting import cosine_warmup
from normgan.regularizers import build_weight
from normgan.train.ema import ema_halflife_decay
from normgan.train.loop import check_resume_overrides

# ----------------------------------------------------------------------------- cosine_warmup

P = dict(end=100, warmup=20, hold=10, start_value=0.2, final=0.1)


@pytest.mark.parametrize(
    "step,expected",
    [
        (0, 0.2),  # start_value
        (10, 0.2 + 0.5 * (1 - 0.2)),  # mid warm-up
        (19, 0.2 + 0.8 * 19 / 20),
        (20, 1.0),  # warm-up done, hold
        (25, 1.0),
        (30, 1.0),  # the decay starts at 1
        (65, (1 + 0.1) / 2),  # mid-decay: final + ½(1 − final)(1 + cos(π/2))
        (100, 0.1),  # end
        (101, 0.1),
        (10_000, 0.1),
    ],
)
def test_cosine_warmup_closed_form(step, expected):
    assert cosine_warmup(step, **P) == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("final", [0.0, 0.25, 1.1])
def test_cosine_warmup_is_r3gans_burn_in_decay(final):
    burn_in = 50
    for step in range(0, 120, 7):
        want = final + 0.5 * (1 - final) * (1 + math.cos(math.pi * min(step, burn_in) / burn_in))
        assert cosine_warmup(step, end=burn_in, final=final) == pytest.approx(want, rel=1e-12, abs=1e-12)


def r3gan_cosine_decay_with_warmup(
    cur_nimg, base_value, total_nimg, final_value=0.0, warmup_value=0.0, warmup_nimg=0, hold_base_value_nimg=0
):
    """brownvc/R3GAN training/training_loop.py, with numpy's where written as ifs."""
    decay = 0.5 * (
        1
        + math.cos(
            math.pi
            * (cur_nimg - warmup_nimg - hold_base_value_nimg)
            / float(total_nimg - warmup_nimg - hold_base_value_nimg)
        )
    )
    cur_value = base_value + (1 - decay) * (final_value - base_value)
    if hold_base_value_nimg > 0 and not cur_nimg > warmup_nimg + hold_base_value_nimg:
        cur_value = base_value
    if warmup_nimg > 0 and cur_nimg < warmup_nimg:
        cur_value = (base_value - warmup_value) / warmup_nimg * cur_nimg + warmup_value
    return final_value if cur_nimg > total_nimg else cur_value


@pytest.mark.parametrize(
    "params",
    [dict(P), dict(end=40, final=0.5), dict(end=50, warmup=40, start_value=0.0), dict(end=60, hold=15, final=2.0)],
)
def test_cosine_warmup_times_base_is_r3gans_function(params):
    base = 2.0e-4
    for step in range(0, 130):
        want = r3gan_cosine_decay_with_warmup(
            step,
            base,
            params["end"],
            final_value=base * params.get("final", 0.0),
            warmup_value=base * params.get("start_value", 0.0),
            warmup_nimg=params.get("warmup", 0),
            hold_base_value_nimg=params.get("hold", 0),
        )
        assert base * cosine_warmup(step, **params) == pytest.approx(want, rel=1e-9, abs=1e-15), step


@pytest.mark.parametrize(
    "step,params,pattern",
    [
        (0, dict(end=10, warmup=8, hold=5), r"end \(10\) must be >= warmup \+ hold \(13\)"),
        (0, dict(end=10, final=-0.1), "final must be >= 0"),
        (0, dict(end=10, warmup=-1), "warmup must be >= 0"),
        (0, dict(end=10, hold=-1), "hold must be >= 0"),
        (0, dict(end=10, start_value=-1.0), "start_value must be >= 0"),
        (0, dict(end=-1), "end must be >= 0"),
        (-1, dict(end=10), "step must be >= 0"),
    ],
)
def test_cosine_warmup_bad_params_raise(step, params, pattern):
    with pytest.raises(ValueError, match=pattern):
        cosine_warmup(step, **params)


def test_cosine_warmup_is_a_term_weight_rule_with_config_errors():
    w = build_weight({"schedule": "cosine_warmup", "base": 10, "end": 100, "warmup": 20, "hold": 10}, key="k")
    from normgan.regularizers import WeightContext

    assert w.value(WeightContext(step=65)) == pytest.approx(5.0)
    with pytest.raises(ConfigError, match=r"^regularizers\.t\.weight: cosine_warmup end \(5\) must be >= warmup"):
        build_weight({"schedule": "cosine_warmup", "end": 5, "warmup": 10}, key="regularizers.t.weight")
    with pytest.raises(ConfigError, match=r"^k: schedule 'cosine_warmup' takes"):
        build_weight({"schedule": "cosine_warmup", "ends": 5}, key="k")


# ----------------------------------------------------------------------------- a real run

LR_G = {"schedule": "cosine_warmup", "base": 1.0e-3, "end": 6, "warmup": 2, "start_value": 0.5}
LR_D = {"schedule": "cosine_warmup", "base": 4.0e-4, "end": 5, "final": 0.25}
BETA2_D = {"schedule": "cosine_warmup", "base": 0.9, "final": 1.1, "end": 4}
HALFLIFE = {"schedule": "warmup", "base": 64, "steps": 4, "start_value": 0.5}


def _flow(spec) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in spec.items()) + "}"


SCHEDULED = [
    f"optim.g.lr={_flow(LR_G)}",
    f"optim.d.lr={_flow(LR_D)}",
    f"optim.d.betas=[0.0, {_flow(BETA2_D)}]",
    f"optim.ema_halflife={_flow(HALFLIFE)}",
]


def mult(spec, step):
    """The closed form of the specs above: base × multiplier."""
    p = {k: v for k, v in spec.items() if k not in ("schedule", "base")}
    if spec["schedule"] == "warmup":
        s, v0 = p["steps"], p.get("start_value", 0.0)
        return spec["base"] * (1.0 if step >= s else v0 + (1 - v0) * step / s)
    w, v0, end, final = p.get("warmup", 0), p.get("start_value", 0.0), p["end"], p.get("final", 0.0)
    if step < w:
        m = v0 + (1 - v0) * step / w
    elif step >= end:
        m = final
    else:
        m = final + (1 - final) * 0.5 * (1 + math.cos(math.pi * (step - w) / (end - w)))
    return spec["base"] * m


def tiny(*extra, lazy=True):
    """A tiny run; ``lazy``: D has an R1 term every 2 steps (Adam correction c = 2/3) and G has L0
    gates (a second parameter group with optim.gate_lr)."""
    from normgan.config import validate

    cfg = load_config(overrides=[*TINY, "model.discriminator.norm=none", *extra])
    if lazy:
        cfg.regularizers = {
            "r1": {"term": "grad", "net": "D", "at": "real", "weight": 1.0, "every": 2},
            "l0": {"term": "weights", "net": "G", "norm": "l0", "weight": 1.0e-2},
        }
        validate(cfg)
    return cfg


def test_optimizer_groups_follow_the_schedules_with_the_lazy_correction(tmp_path):
    trainer = Trainer(tiny(*SCHEDULED), runs_dir=tmp_path, name="r", progress=False)
    assert len(trainer.opt_g.param_groups) == 2  # the gates' group
    c = 2 / 3  # D's lazy interval 2
    for step in range(6):
        trainer.train_step(step)
        g_main, g_gates = trainer.opt_g.param_groups
        assert g_main["lr"] == pytest.approx(mult(LR_G, step), rel=1e-12)
        assert g_main["betas"] == pytest.approx((0.5, 0.999), rel=1e-12)  # constants: as configured
        assert g_gates["lr"] == pytest.approx(1.0e-2, rel=1e-12)
        (d_main,) = trainer.opt_d.param_groups
        assert d_main["lr"] == pytest.approx(mult(LR_D, step) * c, rel=1e-12)
        assert d_main["betas"] == pytest.approx((0.0, mult(BETA2_D, step) ** c), rel=1e-12)
    assert mult(BETA2_D, 5) == pytest.approx(0.99)  # 0.9 → 0.99


def test_metrics_rows_log_the_scheduled_values_only(tmp_path):
    run = Trainer(tiny(*SCHEDULED[:3], lazy=False), runs_dir=tmp_path, name="s", progress=False).fit()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for r in rows:  # a row at step s holds the values of the step just taken, s − 1
        t = r["step"] - 1
        assert r["optim/lr_g"] == pytest.approx(mult(LR_G, t), rel=1e-12)
        assert r["optim/lr_d"] == pytest.approx(mult(LR_D, t), rel=1e-12)
        assert r["optim/beta2_d"] == pytest.approx(mult(BETA2_D, t), rel=1e-12)
        assert "optim/beta2_g" not in r and "optim/ema_beta" not in r  # constants are not logged
    plain = Trainer(tiny(lazy=False), runs_dir=tmp_path, name="c", progress=False).fit()
    row = json.loads((plain / "metrics.jsonl").read_text().splitlines()[0])
    assert not [k for k in row if k.startswith("optim/")]


# ----------------------------------------------------------------------------- EMA half-life


@pytest.mark.parametrize("halflife,batch", [(1000.0, 64), (64.0, 8), (10.0, 10), (1e6, 32)])
def test_ema_halflife_decay_closed_form(halflife, batch):
    beta = ema_halflife_decay(halflife, batch_size=batch)
    assert beta == pytest.approx(math.exp(-batch * math.log(2) / halflife), rel=1e-12)
    # after `halflife` images (halflife / batch steps) the current weights' share halves
    assert beta ** (halflife / batch) == pytest.approx(0.5, rel=1e-9)


def test_ema_halflife_decay_edges():
    assert ema_halflife_decay(0.0, batch_size=8) == 0.0
    with pytest.raises(ValueError, match="half-life"):
        ema_halflife_decay(-1.0, batch_size=8)


def test_ema_weights_after_two_steps_are_a_lerp_with_the_halflife_betas(tmp_path):
    trainer = Trainer(tiny(SCHEDULED[3], lazy=False), runs_dir=tmp_path, name="r", progress=False)
    ema = [p.detach().clone() for p in trainer.G_ema.parameters()]
    batch = trainer.cfg.data.batch_size
    betas = []
    for step in range(2):
        trainer.train_step(step)
        beta = 0.5 ** (batch / mult(HALFLIFE, step))  # h_0 = 32, h_1 = 40 images
        betas.append(beta)
        ema = [beta * e + (1 - beta) * p.detach() for e, p in zip(ema, trainer.G.parameters())]
    assert betas == pytest.approx([0.5**0.25, 0.5**0.2], rel=1e-12)
    for e, got in zip(ema, trainer.G_ema.parameters()):
        torch.testing.assert_close(got, e, rtol=1e-6, atol=1e-7)
    # the schedule matters: the default decay (ramp-up min(0.99, (1+t)/(10+t))) would be far off
    default = Trainer(tiny(lazy=False), runs_dir=tmp_path, name="d", progress=False)
    assert default.hyper.ema_beta(0) == pytest.approx(0.1) and abs(betas[0] - 0.1) > 0.5
    assert trainer.hyper.ema_beta(1) == pytest.approx(betas[1], rel=1e-12)


# ----------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    "overrides,pattern",
    [
        (["optim.g.lr={schedule: nope, base: 1.0e-3}"], r"^optim\.g\.lr\.schedule: unknown schedule 'nope'"),
        (["optim.d.lr={adaptive: target}"], r"^optim\.d\.lr: a mapping here is a schedule and needs 'schedule: NAME'"),
        (["optim.g.lr={schedule: cosine_warmup, base: 0, end: 5}"], r"^optim\.g\.lr\.base: bad value 0; must be > 0"),
        (["optim.g.lr={schedule: cosine_warmup, ends: 5}"], r"^optim\.g\.lr: schedule 'cosine_warmup' takes"),
        (["optim.g.lr={schedule: cosine_warmup, end: 5, warmup: 9}"], r"^optim\.g\.lr: cosine_warmup end \(5\)"),
        (
            ["optim.g.betas=[0.0, {schedule: cosine_warmup, base: 0.95, final: 1.1, end: 4}]"],
            r"^optim\.g\.betas\[1\]: the schedule reaches 1\.03\d* at step 3; it must stay below 1",
        ),
        (["optim.d.betas=[{schedule: warmup, steps: 2}, 0.99]"], r"^optim\.d\.betas: bad value .*only β2"),
        (["optim.g.betas=[0.5, 1.0]"], r"^optim\.g\.betas: bad value \[0\.5, 1\.0\]; two numbers in \[0, 1\)"),
        (["optim.g.lr=fast"], r"^optim\.g\.lr: bad value 'fast'; must be > 0"),
        (["optim.ema=0.9", "optim.ema_halflife=1000"], r"^optim\.ema_halflife: set together with optim\.ema=0\.9"),
        (
            ["optim.ema=0.5", "optim.ema_halflife={schedule: warmup, base: 100, steps: 3}"],
            r"^optim\.ema_halflife: set together with optim\.ema",
        ),
        (["optim.ema_halflife=-5"], r"^optim\.ema_halflife: bad value -5; a half-life in images is a number >= 0"),
        (
            ["optim.ema_halflife={schedule: warmup, base: -5, steps: 3}"],
            r"^optim\.ema_halflife\.base: bad value -5",
        ),
    ],
)
def test_config_errors_name_the_key(overrides, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(overrides=[*TINY, *overrides])


@pytest.mark.parametrize(
    "overrides,words",
    [
        (["optim.g.lr={schedule: nope}"], ["optim.g.lr.schedule", "nope"]),
        (["optim.ema=0.9", "optim.ema_halflife=1000"], ["optim.ema_halflife", "optim.ema"]),
        (["optim.ema_halflife=-5"], ["optim.ema_halflife", "-5"]),
    ],
)
def test_config_errors_are_one_line_on_the_command_line(capsys, overrides, words):
    from normgan.cli import main

    rc = main(["train", *overrides, "--dry-run"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("normgan: error:"), err
    assert all(w in lines[0] for w in words), lines[0]


def test_numbers_stay_floats_and_a_schedule_replaces_what_was_there():
    cfg = load_config(overrides=["optim.g.lr=1", "optim.g.betas=[0, 0.99]", "optim.ema_halflife=500"])
    assert cfg.optim.g.lr == 1.0 and isinstance(cfg.optim.g.lr, float)
    assert cfg.optim.g.betas == [0.0, 0.99] and all(isinstance(b, float) for b in cfg.optim.g.betas)
    assert isinstance(cfg.optim.ema_halflife, float)
    base = {"optim": {"g": {"lr": {"schedule": "cosine_warmup", "base": 1e-3, "end": 5, "hold": 2}}}}
    # a mapping with `schedule:` replaces the old one (its `hold` does not stay), one without updates it
    cfg = load_config(base=base, overrides=["optim.g.lr={schedule: warmup, base: 2.0e-3, steps: 3}"])
    assert cfg.optim.g.lr == {"schedule": "warmup", "base": 2.0e-3, "steps": 3}
    cfg = load_config(base=base, overrides=["optim.g.lr.end=9"])
    assert cfg.optim.g.lr == {"schedule": "cosine_warmup", "base": 1e-3, "end": 9, "hold": 2}
    cfg = load_config(base=base, overrides=["optim.g.lr=3.0e-4"])  # a number replaces a schedule
    assert cfg.optim.g.lr == 3.0e-4


# ----------------------------------------------------------------------------- resume


def rows(run):
    return [
        {k: v for k, v in json.loads(line).items() if k != "images_per_s"}
        for line in (run / "metrics.jsonl").read_text().splitlines()
    ]


def test_resume_with_schedules_is_exact(tmp_path):
    n = 4
    full = Trainer(
        tiny(*SCHEDULED, "train.steps=8", "train.checkpoint_every=100"), runs_dir=tmp_path, name="full", progress=False
    )
    full.fit()
    first = Trainer(tiny(*SCHEDULED, f"train.steps={n}"), runs_dir=tmp_path, name="split", progress=False)
    first.fit()
    resumed = Trainer.resume(tmp_path / "split", overrides=["train.steps=8"], progress=False)
    assert resumed.step == n
    # the restored optimizers hold the values of the resumed step, not those of the checkpoint's config at 0
    assert resumed.opt_g.param_groups[0]["lr"] == pytest.approx(mult(LR_G, n), rel=1e-12)
    resumed.fit()
    for a, b in [(full.G, resumed.G), (full.G_ema, resumed.G_ema), (full.D, resumed.D)]:
        sa, sb = a.state_dict(), b.state_dict()
        for k in sa:
            torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0, msg=k)
    for x, y in zip(full.opts.values(), resumed.opts.values()):
        assert [(g["lr"], g["betas"]) for g in x.param_groups] == [(g["lr"], g["betas"]) for g in y.param_groups]
    got, want = rows(tmp_path / "split"), rows(tmp_path / "full")
    assert [r["step"] for r in got] == [2, 4, 6, 8] and got == want


def test_resume_may_change_lr_and_beta2_schedules_but_not_the_halflife(tmp_path):
    run = Trainer(tiny(*SCHEDULED, "train.steps=3"), runs_dir=tmp_path, name="r", progress=False).fit()
    new_lr = {"schedule": "cosine_warmup", "base": 2.0e-3, "end": 10, "final": 0.5}
    resumed = Trainer.resume(
        run,
        overrides=["train.steps=5", f"optim.g.lr={_flow(new_lr)}", "optim.d.betas=[0.0, 0.95]", "optim.d.lr=1.0e-4"],
        progress=False,
    )
    assert resumed.opt_g.param_groups[0]["lr"] == pytest.approx(mult(new_lr, 3), rel=1e-12)
    c = 2 / 3
    assert resumed.opt_d.param_groups[0]["lr"] == pytest.approx(1.0e-4 * c, rel=1e-12)
    assert resumed.opt_d.param_groups[0]["betas"] == pytest.approx((0.0, 0.95**c), rel=1e-12)
    resumed.fit()
    row = rows(run)[-1]
    assert row["optim/lr_g"] == pytest.approx(mult(new_lr, 4), rel=1e-12) and "optim/lr_d" not in row
    # a partial change of a schedule's option is an lr change too
    Trainer.resume(run, overrides=["train.steps=6", "optim.g.lr.end=20"], progress=False)
    for change in ("optim.ema_halflife=100", "optim.ema_halflife.base=128", "optim.ema_halflife=null"):
        with pytest.raises(ConfigError, match=r"^--resume cannot change optim\.ema_halflife"):
            Trainer.resume(run, overrides=["train.steps=6", change], progress=False)


def test_resume_rule_for_schedules_matches_constants():
    saved = load_config(overrides=[*TINY, "optim.g.lr=1.0e-3"])
    check_resume_overrides(saved, load_config(overrides=[*TINY, f"optim.g.lr={_flow(LR_G)}"]))  # allowed
    with pytest.raises(ConfigError, match=r"--resume cannot change optim\.ema "):
        check_resume_overrides(saved, load_config(overrides=[*TINY, "optim.ema=0.5"]))
    with pytest.raises(ConfigError, match=r"--resume cannot change optim\.ema_halflife"):
        check_resume_overrides(saved, load_config(overrides=[*TINY, "optim.ema_halflife=1000"]))
