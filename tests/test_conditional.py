"""The class-conditional task (issue 23, item 1): projection logits, conditional BatchNorm and the AC
term against hand computations (numpy); a gradient penalty on a conditional D is w.r.t. the image with
y fixed; label draws and sharding; resume exact; a conditional config on unlabelled data is one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY, assert_same_weights, run_cli
from torch import nn

import normgan
from normgan.config import load_config
from normgan.errors import ConfigError
from normgan.models.dcgan import DCGANDiscriminator, DCGANGenerator
from normgan.models.layers import ConditionalBatchNorm2d
from normgan.regularizers import TERMS, TermContext
from normgan.runtime.distributed import Dist
from normgan.tasks.builtin import TASKS, LabelledCritic
from normgan.tasks.info import TASK_INFO, auto_task

CPU = torch.device("cpu")
#: a tiny conditional run on the built-in digits (projection D, conditional BatchNorm G)
COND = TINY + ["model.generator.conditioning=cbn", "model.discriminator.conditioning=projection"]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def _log_softmax(a: np.ndarray) -> np.ndarray:
    m = a.max(axis=1, keepdims=True)
    return a - m - np.log(np.exp(a - m).sum(axis=1, keepdims=True))


# ------------------------------------------------------------------------------------------- models
def test_projection_logits_equal_a_hand_computation():
    """D(x, y) = ψ(φ(x)) + ⟨embed(y), φ(x)⟩: ψ the head conv (a linear map of φ), embed(y) column y of W."""
    torch.manual_seed(0)
    D = DCGANDiscriminator(resolution=32, channels=1, width=4, conditioning="projection", classes=5)
    x, y = torch.randn(6, 1, 32, 32), torch.tensor([0, 1, 2, 3, 4, 2])
    h = _np(D.body(x))  # φ(x) as a (B, C, s, s) map
    psi = (h * _np(D.head.weight)[0]).sum(axis=(1, 2, 3)) + _np(D.head.bias)[0]
    embed = _np(D.embed.weight).T  # (classes, C·s·s): the Linear on one-hot labels
    want = psi + (embed[y.numpy()] * h.reshape(6, -1)).sum(axis=1)
    np.testing.assert_allclose(_np(D(x, y)), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(D(x)), psi, rtol=1e-5, atol=1e-6)  # no y: the unconditional part
    assert not torch.allclose(D(x, y), D(x, (y + 1) % 5))


def test_r3gan_projection_and_concat_equal_hand_computations():
    from normgan.models.r3gan import R3GANDiscriminator, R3GANGenerator

    torch.manual_seed(7)
    D = R3GANDiscriminator(resolution=32, channels=1, width=16, conditioning="projection", classes=4)
    x, y = torch.randn(5, 1, 32, 32), torch.tensor([0, 1, 2, 3, 1])
    phi = _np(D.head.basis(D.body(x)).flatten(1))  # φ(x): the depthwise basis conv's (B, C) output
    psi = phi @ _np(D.head.linear.weight)[0]
    want = psi + (_np(D.embed.weight).T[y.numpy()] * phi).sum(axis=1)
    np.testing.assert_allclose(_np(D(x, y)), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_np(D(x)), psi, rtol=1e-5, atol=1e-5)
    G = R3GANGenerator(resolution=32, channels=1, z_dim=8, width=16, conditioning="concat", classes=4)
    z = torch.randn(5, 8)
    joined = torch.cat([z, G.embed.weight[y]], dim=1)  # z ⊕ embed(y)
    torch.testing.assert_close(G(z, y), torch.tanh(G.to_image(G.body(joined))))
    with pytest.raises(ConfigError, match="model.generator.conditioning: bad value 'cbn'"):
        R3GANGenerator(resolution=32, channels=1, conditioning="cbn", classes=4)


def test_conditional_batchnorm_equals_a_per_class_affine_on_normalized_inputs():
    torch.manual_seed(1)
    cbn = ConditionalBatchNorm2d(3, classes=4)
    nn.init.normal_(cbn.gamma.weight)
    nn.init.normal_(cbn.beta.weight)
    x, y = torch.randn(8, 3, 5, 5) * 2 + 1, torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    a = _np(x)
    mean, var = a.mean(axis=(0, 2, 3), keepdims=True), a.var(axis=(0, 2, 3), keepdims=True)  # biased, as BN
    xhat = (a - mean) / np.sqrt(var + 1e-5)
    g, b = _np(cbn.gamma.weight)[y.numpy()], _np(cbn.beta.weight)[y.numpy()]
    want = g[:, :, None, None] * xhat + b[:, :, None, None]
    np.testing.assert_allclose(_np(cbn(x, y)), want, rtol=1e-5, atol=1e-5)


def test_conditional_generators_take_labels_and_default_to_balanced_ones():
    torch.manual_seed(2)
    for conditioning in ("cbn", "concat"):
        G = DCGANGenerator(resolution=32, channels=1, z_dim=8, width=4, conditioning=conditioning, classes=3)
        z = torch.randn(6, 8)
        assert G(z, torch.zeros(6, dtype=torch.long)).shape == (6, 1, 32, 32)
        G.eval()
        for m in G.modules():  # cbn starts as plain BatchNorm (γ = 1, β = 0 for every class): make them differ
            if isinstance(m, ConditionalBatchNorm2d):
                nn.init.normal_(m.beta.weight)
        torch.testing.assert_close(G(z), G(z, torch.tensor([0, 1, 2, 0, 1, 2])))
        assert not torch.allclose(G(z, torch.zeros(6, dtype=torch.long)), G(z, torch.full((6,), 2)))
    bns = [m for m in DCGANGenerator(resolution=32, channels=1, conditioning="cbn", classes=3).modules()]
    assert not any(isinstance(m, nn.BatchNorm2d) and m.affine for m in bns)  # BN's affine replaced


def test_spectral_norm_reaches_the_class_embedding(tmp_path):
    from normgan.models.build import build_networks

    cfg = load_config(overrides=COND + ["constraints.sn={kind: spectral, net: D}", "model.discriminator.norm=none"])
    _, D, _, _ = build_networks(cfg, resolution=32, channels=1, classes=10)
    assert "embed.parametrizations.weight.original" in dict(D.named_parameters())
    sigma = torch.linalg.matrix_norm(D.embed.weight.detach(), ord=2)
    assert float(sigma) == pytest.approx(1.0, rel=0.05)  # W/σ(W) after torch's 15 initial iterations


# ------------------------------------------------------------------------------------------- terms
def test_ac_term_equals_numpy_cross_entropy():
    torch.manual_seed(3)
    D = DCGANDiscriminator(resolution=32, channels=1, width=4, conditioning="ac", classes=4)
    G = DCGANGenerator(resolution=32, channels=1, z_dim=8, width=4, conditioning="cbn", classes=4)
    real, fake = torch.randn(5, 1, 32, 32), torch.randn(5, 1, 32, 32)
    y, y_g = torch.tensor([0, 1, 2, 3, 0]), torch.tensor([3, 3, 1, 0, 2])
    ctx = TermContext(G=G, D=D, real=real, fake=fake, labels=y, g_labels=y_g)

    def ce(x, labels):
        logits = _np(D.classify(D.body(x)).flatten(1))
        return -_log_softmax(logits)[np.arange(len(labels)), labels.numpy()].mean()

    d_term = TERMS.create("ac", {}, key="r", fixed={"net": "D"})
    g_term = TERMS.create("ac", {}, key="r", fixed={"net": "G"})
    assert float(d_term(ctx).detach()) == pytest.approx(ce(real, y) + ce(fake, y_g), rel=1e-5)
    assert float(g_term(ctx).detach()) == pytest.approx(ce(fake, y_g), rel=1e-5)
    with pytest.raises(ConfigError, match="class-conditional"):
        d_term(TermContext(G=G, D=D, real=real, fake=fake))


@pytest.mark.parametrize("at", ["real", "fake"])
def test_gradient_penalty_of_a_conditional_D_is_that_of_D_with_y_fixed(at):
    """R1/R2 through the task's critics equal ½·mean_b ‖∇ₓD(x, y)_b‖² computed by hand, y the real
    images' classes (R1) or the classes G was given (R2); the penalty depends on y."""
    torch.manual_seed(4)
    D = DCGANDiscriminator(resolution=32, channels=1, width=4, conditioning="projection", classes=3)
    real, fake = torch.randn(4, 1, 32, 32), torch.randn(4, 1, 32, 32)
    y, y_g = torch.tensor([0, 1, 2, 0]), torch.tensor([2, 2, 1, 1])
    ctx = TermContext(
        G=nn.Identity(), D=D, real=real, fake=fake, labels=y, g_labels=y_g,
        critic=LabelledCritic(D, y), fake_critic=LabelledCritic(D, y_g),
    )  # fmt: skip
    term = TERMS.create("grad", {"at": at}, key="r", fixed={"net": "D"})

    def by_hand(x, labels):
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(D(x, labels).sum(), x)
        return 0.5 * float(g.pow(2).flatten(1).sum(1).mean())

    x, labels, other = (real, y, y_g) if at == "real" else (fake, y_g, y)
    assert float(term(ctx).detach()) == pytest.approx(by_hand(x, labels), rel=1e-5)
    assert by_hand(x, labels) != pytest.approx(by_hand(x, other), rel=1e-3)


# ------------------------------------------------------------------------------------------- the task
def test_auto_picks_conditional_when_conditioning_is_set_on_a_labelled_dataset():
    cfg = load_config(overrides=COND)
    assert cfg.task == "conditional" == auto_task("mnist5k", conditioned=True)
    assert load_config(overrides=TINY).task == "unconditional"
    with pytest.raises(ConfigError, match="task: conditional"):
        load_config(overrides=COND + ["task=unconditional"])
    with pytest.raises(ConfigError, match="set model.generator.conditioning"):
        load_config(overrides=TINY + ["task=conditional"])
    with pytest.raises(ConfigError, match="needs class labels"):
        load_config(overrides=COND + ["data.name=edges2digit"])
    with pytest.raises(ConfigError, match="model.discriminator.conditioning"):
        load_config(overrides=COND + ["model.discriminator.conditioning=nope"])
    with pytest.raises(ConfigError, match="regularizers.ac: this term needs D's class head"):
        load_config(overrides=COND + ["regularizers.ac={term: ac, net: G}"])  # a projection D has none
    with pytest.raises(ConfigError, match="model.generator.conditioning: bad value 'cbn'; unet"):
        load_config(overrides=COND + ["model.generator.name=unet"])
    spec = TASK_INFO.get("conditional").generator_inputs(z_dim=8, in_channels=None, resolution=32, classes=10)
    assert [s["name"] for s in spec] == ["z", "y"] and spec[1]["range"] == [0, 9] and spec[1]["dtype"] == "int64"


def test_batches_grid_entries_and_label_sampling():
    cfg = load_config(overrides=COND)
    task = TASKS.get("conditional")(cfg, device=CPU)
    assert task.classes == 10 and task.checkpoint_entries()["classes"] == 10
    torch.manual_seed(5)
    b = task.next_batch()
    idx_labels = task.labels  # the batch's real labels are those of its images
    assert b.labels.shape == b.g_labels.shape == (8,) and b.labels.dtype == b.g_labels.dtype == torch.int64
    assert set(b.labels.tolist()) <= set(idx_labels.tolist())
    # G's labels: drawn after z from torch's default generator, uniform over the classes
    torch.manual_seed(5)
    task.batches.next_indices()
    torch.randn(8, cfg.model.generator.z_dim)
    assert torch.equal(torch.randint(10, (8,)), b.g_labels)
    # the grid: one row per class, k = num_samples // 10 (at least 1) per row, the same noise per column
    assert task.fixed_labels.tolist() == [k for k in range(10) for _ in range(task.grid_k)]
    G = DCGANGenerator(
        resolution=32, channels=1, z_dim=cfg.model.generator.z_dim, width=4, conditioning="cbn", classes=10
    )
    grid = task.sample_grid(G.eval())
    assert grid.shape[1] == 10 * 34 + 2  # 10 rows of 32 px with 2 px padding
    hist = TASKS.get("conditional")(load_config(overrides=COND + ["data.label_sampling=histogram"]), device=CPU)
    counts = torch.bincount(hist.data.labels, minlength=10).float()
    torch.testing.assert_close(hist.label_probs, counts / counts.sum())


def test_label_draws_are_global_and_sharded_per_rank():
    """Each of 2 ranks draws the global batch's G labels (the same RNG stream) and keeps its half."""
    cfg = load_config(overrides=COND)
    one = TASKS.get("conditional")(cfg, device=CPU)
    torch.manual_seed(6)
    whole = one.next_batch()
    for rank in (0, 1):
        part = TASKS.get("conditional")(cfg, device=CPU, dist=Dist(rank=rank, world=2))
        torch.manual_seed(6)
        b = part.next_batch()
        rows = slice(4 * rank, 4 * rank + 4)
        assert torch.equal(b.g_labels, whole.g_labels[rows]) and torch.equal(b.labels, whole.labels[rows])
        torch.testing.assert_close(b.g_in, whole.g_in[rows])
        torch.testing.assert_close(b.real, whole.real[rows])


@pytest.mark.parametrize("extra", [[], ["model.discriminator.conditioning=ac", "regularizers.ac_d={term: ac, net: D}",
                                        "regularizers.ac_g={term: ac, net: G}"]], ids=["projection", "ac"])  # fmt: skip
def test_resume_is_exact(tmp_path, extra):
    """Train 4 steps = train 2 + resume 2: G's label draws come from the checkpointed RNG."""
    cfg = lambda steps: load_config(overrides=COND + extra + [f"train.steps={steps}", "train.checkpoint_every=2"])  # noqa: E731
    full = normgan.Trainer(cfg(4), runs_dir=tmp_path, name="full", progress=False)
    full.fit()
    normgan.Trainer(cfg(2), runs_dir=tmp_path, name="split", progress=False).fit()
    resumed = normgan.Trainer.resume(tmp_path / "split", overrides=["train.steps=4"], progress=False)
    resumed.fit()
    assert_same_weights((full.G, resumed.G), (full.D, resumed.D))
    assert torch.load(tmp_path / "full" / "checkpoints" / "last.pt", weights_only=True)["classes"] == 10
    from normgan.inference.sample import load_generator  # the checkpoint's classes rebuild G without the data

    G, _ = load_generator(tmp_path / "full")
    torch.testing.assert_close(G.state_dict(), full.G_ema.state_dict())
    z, y = torch.randn(3, 64), torch.tensor([0, 5, 9])
    torch.testing.assert_close(G(z, y), full.G_ema.eval()(z, y))


def test_terms_that_run_G_or_D_themselves_see_the_labels(tmp_path):
    """Lazy R1 and R2 (the fake side's critic), zCR and path length (G(z, y_g) via ctx.generate) and
    DiffAugment (T before D(·, y)) train a conditional run with finite logs."""
    import json

    regs = (
        "regularizers={r1: {term: grad, at: real, every: 2}, r2: {term: grad, at: fake, weight: 0.5},"
        " zcr: {term: zcr, net: G, weight: 0.5}, pl: {term: jacobian, net: G, every: 2}}"
    )
    extra = [regs, "augment.kind=diffaugment", "model.discriminator.norm=none", "train.steps=4"]
    run = normgan.Trainer(load_config(overrides=COND + extra), runs_dir=tmp_path, progress=False).fit()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(np.isfinite(v) for r in rows for k, v in r.items() if k.startswith(("loss/", "reg/")))
    assert {"reg/r1/raw", "reg/r2/raw", "reg/zcr/raw", "reg/pl/raw"} <= set(rows[-1])


# ------------------------------------------------------------------------------------------- bad input
def test_conditional_config_on_unlabelled_data_is_one_line_exit_2(tmp_path):
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    for i in range(4):  # images at the top level: no class sub-folders, no labels
        Image.fromarray(np.full((32, 32), 40 * i, dtype=np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
    common = ["train", *COND, "train.steps=1", "eval.every=0", "--runs-dir", tmp_path / "runs", "--no-progress"]
    for data in (
        ["data.name=folder", f"data.root={tmp_path / 'imgs'}", "data.stream=false"],
        ["data.name=edges2digit"],
    ):
        r = run_cli(*common, *data)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "labels" in lines[0] and "conditioning" in lines[0], r.stderr
