"""Every registered term trains (smoke), intervals run on the right steps with gain k, term state is
checkpointed, and bad regularizer configs fail with one-line errors naming the key (API and CLI)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import torch

import normgan
from normgan.config import validate
from normgan.errors import ConfigError
from normgan.functional.norms import residual_norm
from normgan.functional.penalties import r1_penalty
from normgan.regularizers import TERMS, TermContext, build_regularizers

TINY = [
    "train.steps=20",
    "data.batch_size=16",
    "model.generator.width=8",
    "model.discriminator.width=8",
    "model.discriminator.norm=none",
    "train.tensorboard=false",
    "train.threads=1",
    "train.log_every=5",
    "train.num_samples=4",
]

#: extra option sets beyond each term's defaults, so every quantity/variant trains once
VARIANTS = {
    "weights": [{"norm": "l1"}, {"norm": "l21"}, {"norm": "ortho"}, {"norm": "l0", "net": "G"}],
    "grad": [
        {"at": "fake"},
        {"at": "interpolates"},
        {"at": "interpolates", "center": 0},
        {"at": "interpolates", "one_sided": True},
        {"at": "perturbed"},
    ],
    "features": [{"kind": "colour"}, {"kind": "texture"}],
    "tv": [{"norm": "l2"}],
    "lecam": [{"one_sided": False}],
    "bcr": [{"fake_weight": 0.0}],
}


def _cases():
    out = []
    for name in TERMS.names():
        cls = TERMS.get(name)
        if cls.paired_only:
            continue  # tested on tensors below: an unconditional run cannot use it
        for net in cls.nets:
            out.append(pytest.param(name, {"net": net}, id=f"{name}-{net}"))
        for i, extra in enumerate(VARIANTS.get(name, [])):
            out.append(
                pytest.param(name, {"net": cls.nets[0], **extra}, id=f"{name}-{i}-{'-'.join(map(str, extra.values()))}")
            )
    return out


def _fit(tmp_path, regularizers, extra=()):
    cfg = normgan.load_config(overrides=TINY + list(extra))
    cfg.regularizers = regularizers
    validate(cfg)
    run = normgan.Trainer(cfg, runs_dir=tmp_path, progress=False).fit()
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


#: terms that need more than the tiny unconditional run: their overrides
RUN_OVERRIDES = {"ac": ["model.generator.conditioning=cbn", "model.discriminator.conditioning=ac"]}


@pytest.mark.parametrize("name,options", _cases())
def test_every_term_trains_20_steps_with_finite_logs(tmp_path, name, options):
    rows = _fit(tmp_path, {"t": {"term": name, "weight": 0.5, **options}}, RUN_OVERRIDES.get(name, ()))
    assert [r["step"] for r in rows] == [5, 10, 15, 20]
    for row in rows:
        assert all(torch.isfinite(torch.tensor(row[k])) for k in ("loss/D", "loss/G"))
        for k in ("raw", "weight", "loss"):
            v = row[f"reg/t/{k}"]
            assert torch.isfinite(torch.tensor(v)), (k, v)
        assert row["reg/t/weight"] == pytest.approx(0.5)
        assert row["reg/t/loss"] == pytest.approx(0.5 * row["reg/t/raw"], rel=1e-5, abs=1e-12)


def test_l0_term_asks_for_gates_and_others_do_not():
    regs = build_regularizers(
        {"a": {"term": "weights", "net": "G", "norm": "l0"}, "b": {"term": "weights", "net": "G", "norm": "l2"}}
    )
    assert [getattr(r.term, "needs_gates", False) for r in regs] == [True, False]


@pytest.mark.parametrize("norm", ["l1", "sql2_mean", "huber", "l2"])
def test_recon_is_the_norm_of_the_residual_on_tensors(norm):
    torch.manual_seed(0)
    (r,) = build_regularizers({"rec": {"term": "recon", "norm": norm, "weight": 100.0}}, paired=True)
    fake, target = torch.randn(3, 2, 4, 4, requires_grad=True), torch.randn(3, 2, 4, 4)
    raw = r.term(TermContext(G=None, D=None, fake=fake, target=target))
    torch.testing.assert_close(raw, residual_norm(fake - target, norm))
    raw.backward()
    assert fake.grad is not None and torch.isfinite(fake.grad).all()
    if norm == "l1":
        torch.testing.assert_close(raw, (fake - target).abs().mean())


def test_recon_norm_params_are_passed_and_checked():
    (r,) = build_regularizers({"rec": {"term": "recon", "norm": "huber", "norm_params": {"delta": 0.5}}}, paired=True)
    x, y = torch.randn(2, 1, 3, 3), torch.zeros(2, 1, 3, 3)
    torch.testing.assert_close(
        r.term(TermContext(G=None, D=None, fake=x, target=y)), residual_norm(x, "huber", delta=0.5)
    )
    with pytest.raises(ConfigError, match=r"^regularizers\.rec\.norm_params: "):
        build_regularizers({"rec": {"term": "recon", "norm": "l1", "norm_params": {"delta": 0.5}}}, paired=True)


# ----------------------------------------------------------------------------- intervals


def _trainer(tmp_path, regularizers):
    cfg = normgan.load_config(overrides=TINY)
    cfg.regularizers = regularizers
    validate(cfg)
    return normgan.Trainer(cfg, runs_dir=tmp_path, progress=False)


@pytest.mark.parametrize("k", [1, 3])
def test_interval_runs_the_term_exactly_on_multiples_of_k(tmp_path, k, monkeypatch):
    tr = _trainer(
        tmp_path,
        {
            "r1": {"term": "grad", "at": "real", "weight": 1.0, "every": k},
            "pl": {"term": "jacobian", "weight": 1.0, "every": k},
        },
    )
    calls = {"r1": [], "pl": []}
    for r in tr.regs:
        orig = r.term.forward
        monkeypatch.setattr(r.term, "forward", lambda ctx, _o=orig, _n=r.name: (calls[_n].append(tr.step), _o(ctx))[1])
    for step in range(10):
        tr.step = step
        tr.train_step(step)
    expected = [s for s in range(10) if s % k == 0]
    assert calls == {"r1": expected, "pl": expected}


def test_lazy_phase_gradient_is_k_times_the_weighted_term_gradient(tmp_path, monkeypatch):
    k, weight = 4, 0.5
    tr = _trainer(tmp_path, {"r1": {"term": "grad", "at": "real", "weight": weight, "every": k}})
    (reg,) = tr.regs
    seen = {}
    orig_forward = reg.term.forward

    def spy(ctx):
        seen["D"], seen["real"] = copy.deepcopy(ctx.D), ctx.real.detach().clone()
        return orig_forward(ctx)

    monkeypatch.setattr(reg.term, "forward", spy)
    grads = []
    orig_step = tr.opt_d.step
    monkeypatch.setattr(
        tr.opt_d,
        "step",
        lambda *a, **kw: (
            grads.append([torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in tr.D.parameters()]),
            orig_step(*a, **kw),
        )[1],
    )
    tr.train_step(0)
    assert len(grads) == 2  # the main D step, then the lazy phase
    D = seen["D"]
    raw = weight * r1_penalty(D, seen["real"])
    expected = torch.autograd.grad(raw, list(D.parameters()), allow_unused=True, materialize_grads=True)
    assert any(float(g.abs().sum()) > 0 for g in expected)
    for got, want in zip(grads[1], expected):
        torch.testing.assert_close(got, k * want, rtol=1e-4, atol=1e-8)


# ----------------------------------------------------------------------------- state


def _ctx(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 1, 32, 32, generator=g), torch.randn(4, 16, generator=g)


def test_lecam_and_path_length_state_survive_state_dict(tmp_path):
    from normgan.models.dcgan import DCGANDiscriminator, DCGANGenerator

    torch.manual_seed(0)
    G = DCGANGenerator(resolution=32, channels=1, z_dim=16, width=4)
    D = DCGANDiscriminator(resolution=32, channels=1, width=4)
    specs = {"lc": {"term": "lecam", "weight": 0.3}, "pl": {"term": "jacobian", "weight": 2.0}}
    regs = build_regularizers(specs)
    real, z = _ctx()
    fake = G(z).detach()
    for r in regs:
        for _ in range(3):
            ctx = TermContext(G=G, D=D, real=real, fake=fake, z=z) if r.net == "D" else TermContext(G=G, D=D, z=z)
            r.term(ctx)
    state = {r.name: copy.deepcopy(r.state_dict()) for r in regs}
    assert float(state["lc"]["term.anchor_real"]) != 0.0 and float(state["pl"]["term.target"]) > 0.0
    fresh = build_regularizers(specs)
    for r in fresh:
        r.load_state_dict(state[r.name])
    for a, b in zip(regs, fresh):
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert ka == kb
            torch.testing.assert_close(va, vb)
    ctx = TermContext(G=G, D=D, real=real, fake=fake, z=z)
    torch.testing.assert_close(regs[0].term(ctx), fresh[0].term(ctx))


def test_trainer_checkpoint_round_trip_keeps_term_and_weight_state(tmp_path):
    tr = _trainer(tmp_path, {"lc": {"term": "lecam", "weight": {"adaptive": "target", "base": 0.3}}})
    for s in range(3):
        tr.train_step(s)
    state = tr.state_dict()
    lam = float(state["regularizers"]["lc"]["weight.lam"])
    assert lam != pytest.approx(0.3)
    tr2 = _trainer(tmp_path, {"lc": {"term": "lecam", "weight": {"adaptive": "target", "base": 0.3}}})
    tr2.load_state_dict(state)
    for key, value in state["regularizers"]["lc"].items():
        torch.testing.assert_close(tr2.regs[0].state_dict()[key], value)


# ----------------------------------------------------------------------------- bad input

BAD = [
    (["+regularizers.x.term=nope"], r"^regularizers\.x\.term: unknown regularization term 'nope'"),
    (["+regularizers.x.term=weights", "+regularizers.x.norm=l7"], r"^regularizers\.x\.norm: unknown norm 'l7'"),
    (["+regularizers.x.term=recon"], r"^regularizers\.x: term 'recon' needs a paired"),
    (
        ["+regularizers.x.term=jacobian", "+regularizers.x.net=D"],
        r"^regularizers\.x\.net: term 'jacobian' cannot regularize D",
    ),
    (["+regularizers.x.term=tv", "+regularizers.x.weight=-1"], r"^regularizers\.x\.weight: bad value -1"),
    (["+regularizers.x.term=grad", "+regularizers.x.every=0"], r"^regularizers\.x\.every: bad value 0"),
    (["+regularizers.x.term=grad", "+regularizers.x.every=-2"], r"^regularizers\.x\.every: bad value -2"),
    (
        [
            "+regularizers.x.term=tv",
            "+regularizers.x.weight.schedule=linear",
            "+regularizers.x.weight.start=100",
            "+regularizers.x.weight.end=10",
        ],
        r"^regularizers\.x\.weight\.end: bad value 10",
    ),
    (["+regularizers.x.term=grad", "+regularizers.x.at=nowhere"], r"^regularizers\.x\.at: bad value 'nowhere'"),
    (["+regularizers.x.term=recon", "+regularizers.x.norm=l7"], r"^regularizers\.x"),
    (["+constraints.c.kind=spectrul"], r"^constraints\.c\.kind: unknown constraint 'spectrul'"),
    (["+regularizers.x.term=zcr", "+regularizers.x.sigma=0"], r"^regularizers\.x\.sigma: bad value 0"),
]


@pytest.mark.parametrize("overrides,pattern", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_regularizer_config_is_a_one_line_error_naming_the_key(overrides, pattern):
    with pytest.raises(ConfigError, match=pattern) as info:
        normgan.load_config(overrides=overrides)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "overrides,pattern", [BAD[i] for i in (0, 1, 2, 3, 4, 5, 7, 10)], ids=[str(i) for i in (0, 1, 2, 3, 4, 5, 7, 10)]
)
def test_bad_regularizer_config_via_cli_exits_2_without_traceback(overrides, pattern):
    proc = subprocess.run(
        [sys.executable, "-m", "normgan", "train", *overrides, "--dry-run"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    key = pattern.lstrip("^").split(":")[0].replace("\\", "")
    assert key in proc.stderr


def test_lecam_anchors_are_bias_corrected_running_means():
    """After t updates each anchor equals Σ_i d^{t−i}(1−d)·m_i / (1 − d^t), computed here in numpy:
    the first anchor is the first batch mean (no start at 0)."""
    import numpy as np

    decay = 0.9
    reg = build_regularizers({"lc": {"term": "lecam", "weight": 1.0, "decay": decay}})[0]
    g = torch.Generator().manual_seed(1)
    means_r, means_f = [], []
    for t in range(1, 8):
        d_real = torch.randn(16, 1, generator=g, dtype=torch.float64) + 3.0
        d_fake = torch.randn(16, 1, generator=g, dtype=torch.float64) - 2.0
        means_r.append(float(d_real.mean()))
        means_f.append(float(d_fake.mean()))
        reg.term(TermContext(G=None, D=None, d_real=d_real, d_fake=d_fake))
        w = np.array([decay ** (t - 1 - i) * (1 - decay) for i in range(t)])
        assert float(reg.term.anchor_real) == pytest.approx(
            float(w @ np.array(means_r)) / (1 - decay**t), rel=1e-6, abs=1e-9
        )
        assert float(reg.term.anchor_fake) == pytest.approx(
            float(w @ np.array(means_f)) / (1 - decay**t), rel=1e-6, abs=1e-9
        )
        if t == 1:
            assert float(reg.term.anchor_real) == pytest.approx(means_r[0], rel=1e-6)


def test_path_length_penalty_uses_the_updated_target():
    """StyleGAN2 order: a ← a + decay·(mean length − a), then penalty mean (length − a)². For a linear
    G(z) = z Aᵀ with a fixed y the lengths are ‖A y_b‖ per sample, computed here directly."""
    torch.manual_seed(0)
    A = torch.randn(6, 4, dtype=torch.float64)
    G = lambda z: z @ A.T  # noqa: E731
    reg = build_regularizers({"pl": {"term": "jacobian", "weight": 1.0, "decay": 0.5, "batch_fraction": 1.0}})[0]
    reg.term.target.fill_(0.3)
    z = torch.randn(8, 4, dtype=torch.float64)
    torch.manual_seed(5)
    pen = reg.term(TermContext(G=G, D=None, z=z))
    torch.manual_seed(5)
    y = torch.randn(8, 6, dtype=torch.float64)  # (B, D) output: y is not rescaled
    lengths = torch.linalg.vector_norm(y @ A, dim=1)  # J_zᵀ y = Aᵀ y
    a_new = 0.3 + 0.5 * (float(lengths.mean()) - 0.3)
    assert float(reg.term.target) == pytest.approx(a_new, rel=1e-6)
    assert float(pen) == pytest.approx(float(((lengths - a_new) ** 2).mean()), rel=1e-5)
