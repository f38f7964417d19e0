"""Constraints: spectral normalization, max-norm and clipping, their config validation and a short run."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import normgan
from normgan.config import validate
from normgan.errors import ConfigError
from normgan.models.dcgan import DCGANDiscriminator, DCGANGenerator
from normgan.regularizers import CONSTRAINTS, build_constraints
from normgan.regularizers.constraints import validate_constraints


def _nets(seed=0):
    torch.manual_seed(seed)
    return DCGANGenerator(resolution=32, channels=1, z_dim=8, width=4), DCGANDiscriminator(resolution=32, channels=1, width=4)


def _sigma(w: torch.Tensor, transposed: bool) -> float:
    m = (w.transpose(0, 1) if transposed else w).reshape(w.shape[1] if transposed else w.shape[0], -1)
    return float(torch.linalg.matrix_norm(m.detach(), ord=2))


@pytest.mark.parametrize("net", ["G", "D"])
def test_spectral_norm_wraps_every_layer_and_normalizes_sigma(net):
    G, D = _nets()
    (c,) = build_constraints({"sn": {"kind": "spectral", "net": net, "n_power_iterations": 30}}, G=G, D=D)
    module = G if net == "G" else D
    layers = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert layers and all(parametrize.is_parametrized(m, "weight") for m in layers)
    module.train()
    for m in layers:
        w = m.weight  # a training-mode access runs the power iterations
        assert _sigma(w, isinstance(m, nn.ConvTranspose2d)) == pytest.approx(1.0, rel=2e-2)
    assert any("parametrizations.weight.original" in k for k in module.state_dict())
    c.project(module)  # a no-op


def test_max_norm_caps_each_output_unit_and_leaves_small_ones():
    G, D = _nets()
    (c,) = build_constraints({"mn": {"kind": "max_norm", "net": "G", "c": 0.1}}, G=G, D=D)
    with torch.no_grad():
        G.to_image.weight.mul_(100)
        before = G.body[1].weight.clone()
    c.project(G)
    for m in G.modules():
        if isinstance(m, nn.ConvTranspose2d):
            norms = m.weight.transpose(0, 1).flatten(1).norm(dim=1)  # per output unit
            assert float(norms.detach().max()) <= 0.1 * (1 + 1e-5)
    small = before.transpose(0, 1).flatten(1).norm(dim=1) <= 0.1
    torch.testing.assert_close(G.body[1].weight.transpose(0, 1).flatten(1)[small], before.transpose(0, 1).flatten(1)[small])


def test_clip_clamps_every_parameter():
    G, D = _nets()
    (c,) = build_constraints({"clip": {"kind": "clip", "net": "D"}}, G=G, D=D)
    c.project(D)
    assert all(float(p.detach().abs().max()) <= 0.01 for p in D.parameters())
    assert any(float(p.detach().abs().max()) == pytest.approx(0.01) for p in D.parameters())


@pytest.mark.parametrize(
    "specs,pattern",
    [
        ({"c": {"kind": "nope"}}, r"^constraints\.c\.kind: unknown constraint 'nope'"),
        ({"c": {"net": "D"}}, r"^constraints\.c: expected a mapping with 'kind'"),
        ({"c": {"kind": "clip", "net": "E"}}, r"^constraints\.c\.net: bad value 'E'"),
        ({"c": {"kind": "clip", "c": -1}}, r"^constraints\.c\.c: bad value -1"),
        ({"c": {"kind": "max_norm", "cc": 3}}, r"^constraints\.c: unknown option 'cc'"),
        ({"c": {"kind": "spectral", "n_power_iterations": 0}}, r"^constraints\.c\.n_power_iterations: bad value 0"),
    ],
)
def test_bad_constraints_are_config_errors_without_networks(specs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        validate_constraints(specs)
    cfg = normgan.load_config()
    cfg.constraints = specs
    with pytest.raises(ConfigError, match=pattern):
        validate(cfg)


def test_constraints_validate_through_overrides():
    with pytest.raises(ConfigError, match=r"^constraints\.sn\.kind: "):
        normgan.load_config(overrides=["+constraints.sn.kind=spectrall"])
    assert set(CONSTRAINTS.names()) == {"clip", "max_norm", "spectral"}


def test_short_run_with_constraints(tmp_path):
    cfg = normgan.load_config(overrides=["train.steps=6", "data.batch_size=8", "model.generator.width=4", "model.discriminator.width=4",
                                         "train.tensorboard=false", "train.threads=1", "train.log_every=3", "train.num_samples=4", "loss=hinge"])
    cfg.constraints = {"sn": {"kind": "spectral", "net": "D"}, "mn": {"kind": "max_norm", "net": "G", "c": 0.5}}
    validate(cfg)
    tr = normgan.Trainer(cfg, runs_dir=tmp_path, progress=False)
    run = tr.fit()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor([r["loss/D"], r["loss/G"]])).all() for r in rows)
    for m in tr.G.modules():
        if isinstance(m, nn.ConvTranspose2d):
            assert float(m.weight.detach().transpose(0, 1).flatten(1).norm(dim=1).max()) <= 0.5 * (1 + 1e-5)
    assert set(tr.G_ema.state_dict()) == set(tr.G.state_dict())
