"""L0 gates in the generator and pruning them away: same eval outputs, fewer parameters."""

from __future__ import annotations

import pytest
import torch

import normgan
from normgan.config import validate
from normgan.functional.gates import HardConcreteGate
from normgan.models.dcgan import DCGANGenerator
from normgan.models.prune import count_parameters, prune_generator


def _gated(norm="batch", dropout=0.0, seed=0):
    torch.manual_seed(seed)
    G = DCGANGenerator(resolution=32, channels=1, z_dim=8, width=4, norm=norm, dropout=dropout, gates=True)
    G.train()
    with torch.no_grad():
        for _ in range(3):
            G(torch.randn(16, 8))  # give BatchNorm non-trivial running statistics
    return G


def _gates(G):
    return [m for m in G.modules() if isinstance(m, HardConcreteGate)]


def test_gates_are_on_every_hidden_block_and_deterministic_in_eval():
    G = _gated()
    assert [g.num_channels for g in _gates(G)] == [16, 8, 4]
    G.eval()
    z = torch.randn(3, 8)
    torch.testing.assert_close(G(z), G(z))
    assert not any(
        isinstance(m, HardConcreteGate) for m in DCGANGenerator(resolution=32, channels=1, z_dim=8, width=4).modules()
    )


@pytest.mark.parametrize("norm,dropout", [("batch", 0.0), ("instance", 0.0), ("none", 0.3)])
def test_pruned_generator_matches_gated_one_and_is_smaller(norm, dropout):
    G = _gated(norm, dropout)
    with torch.no_grad():
        for i, g in enumerate(_gates(G)):
            g.log_alpha[::2] = -20.0  # closed at test time
            g.log_alpha[1::4] = 0.7 + i  # open, with gate values strictly between 0 and 1 for some
    G.eval()
    P = prune_generator(G)
    assert not _gates(P)
    assert count_parameters(P) < count_parameters(G)
    z = torch.randn(6, 8)
    with torch.no_grad():
        torch.testing.assert_close(P(z), G(z), rtol=1e-5, atol=1e-6)
    assert not P.training
    assert _gates(G), "the original is untouched"


def test_pruning_with_all_gates_open_keeps_channels_and_outputs():
    G = _gated()
    with torch.no_grad():
        for g in _gates(G):
            g.log_alpha.fill_(5.0)  # gate value 1
    G.eval()
    P = prune_generator(G)
    assert count_parameters(P) == count_parameters(G) - sum(g.num_channels for g in _gates(G))  # only log_alpha gone
    z = torch.randn(4, 8)
    with torch.no_grad():
        torch.testing.assert_close(P(z), G(z))


def test_layer_norm_cannot_be_pruned():
    G = _gated("layer")
    with pytest.raises(NotImplementedError, match="statistics mix channels"):
        prune_generator(G.eval())


def test_l0_term_builds_a_gated_generator_that_trains_and_prunes(tmp_path):
    cfg = normgan.load_config(
        overrides=[
            "train.steps=4",
            "data.batch_size=8",
            "model.generator.width=4",
            "model.discriminator.width=4",
            "train.tensorboard=false",
            "train.threads=1",
            "train.log_every=2",
            "train.num_samples=4",
        ]
    )
    cfg.regularizers = {"l0": {"term": "weights", "net": "G", "norm": "l0", "weight": 1.0}}
    validate(cfg)
    tr = normgan.Trainer(cfg, runs_dir=tmp_path, progress=False)
    gates = _gates(tr.G)
    assert len(gates) == 3
    before = [g.log_alpha.detach().clone() for g in gates]
    tr.fit()
    assert any(not torch.equal(b, g.log_alpha) for b, g in zip(before, gates))  # the L0 term trains the gates
    G = tr.G.eval()
    with torch.no_grad():
        torch.testing.assert_close(prune_generator(G)(tr.task.fixed[:4]), G(tr.task.fixed[:4]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_pruned_norm_layers_keep_the_models_dtype_and_device(norm):
    """The rebuilt norm layers are created where the model lives (a CUDA model stays on CUDA): checked
    here through the dtype, which takes the same path, in float64 against the float64 gated model."""
    G = _gated(norm).double()
    with torch.no_grad():
        for g in _gates(G):
            g.log_alpha[::2] = -20.0
    G.eval()
    P = prune_generator(G)
    assert {p.dtype for p in P.parameters()} == {torch.float64}
    assert {b.dtype for b in P.buffers() if b.is_floating_point()} <= {torch.float64}
    z = torch.randn(5, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(P(z), G(z), rtol=1e-10, atol=1e-12)
