"""Reference checks for normgan.functional.gates (hard-concrete L0 gates)."""

import math

import numpy as np
import pytest
import torch

from normgan.functional.gates import (
    HardConcreteGate,
    expected_l0,
    hard_concrete_eval,
    hard_concrete_open_prob,
    hard_concrete_sample,
)

DT = torch.float64
LOG_ALPHA = torch.tensor([-3.0, -1.0, -0.2, 0.0, 0.8, 2.5], dtype=DT)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_expected_l0_formula_vs_numpy():
    la = LOG_ALPHA.numpy()
    p = _sigmoid(la - (2 / 3) * np.log(0.1 / 1.1))
    torch.testing.assert_close(hard_concrete_open_prob(LOG_ALPHA), torch.tensor(p, dtype=DT))
    torch.testing.assert_close(expected_l0(LOG_ALPHA), torch.tensor(p.sum(), dtype=DT))


def test_expected_l0_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    z = hard_concrete_sample(LOG_ALPHA, sample_shape=(250_000,), generator=g)
    mc = (z > 0).to(DT).mean(0)
    torch.testing.assert_close(mc, hard_concrete_open_prob(LOG_ALPHA), atol=0.01, rtol=0)
    # values in [0, 1], with exact zeros and ones
    assert float(z.min()) >= 0.0 and float(z.max()) <= 1.0
    assert bool((z == 0).any()) and bool((z == 1).any())
    assert bool(((z > 0) & (z < 1)).any())


def test_sample_matches_hand_formula():
    g = torch.Generator().manual_seed(3)
    z = hard_concrete_sample(LOG_ALPHA, generator=g, eps=1e-6)
    u = torch.rand(LOG_ALPHA.shape, generator=torch.Generator().manual_seed(3), dtype=DT).numpy()
    u = u * (1 - 2e-6) + 1e-6
    s = _sigmoid((np.log(u) - np.log(1 - u) + LOG_ALPHA.numpy()) / (2 / 3))
    want = np.clip(s * 1.2 - 0.1, 0, 1)
    torch.testing.assert_close(z, torch.tensor(want, dtype=DT))


def test_eval_gate_vs_numpy():
    want = np.clip(_sigmoid(LOG_ALPHA.numpy()) * 1.2 - 0.1, 0, 1)
    torch.testing.assert_close(hard_concrete_eval(LOG_ALPHA), torch.tensor(want, dtype=DT))
    assert float(hard_concrete_eval(torch.tensor([-5.0]))) == 0.0
    assert float(hard_concrete_eval(torch.tensor([5.0]))) == 1.0


def test_gradients_flow_to_log_alpha():
    la = LOG_ALPHA.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: expected_l0(t), (la,))
    z = hard_concrete_sample(la, generator=torch.Generator().manual_seed(1))
    z.sum().backward()
    assert la.grad is not None


def test_bad_constants_raise():
    with pytest.raises(ValueError):
        expected_l0(LOG_ALPHA, gamma=0.1)
    with pytest.raises(ValueError):
        HardConcreteGate(4, init_drop=1.0)


def test_module_init_and_eval():
    torch.manual_seed(0)
    gate = HardConcreteGate(64, init_drop=0.3)
    assert gate.log_alpha.shape == (64,)
    mean = math.log(0.7) - math.log(0.3)
    assert abs(float(gate.log_alpha.detach().mean()) - mean) < 0.01
    assert 0.005 < float(gate.log_alpha.detach().std()) < 0.015
    torch.testing.assert_close(gate.expected_l0(), expected_l0(gate.log_alpha))
    gate.eval()
    x = torch.randn(2, 64, 3, 3)
    torch.testing.assert_close(gate(x), x * gate.eval_gates().view(1, -1, 1, 1))
    assert gate.num_open() == 64  # σ(log α)·1.2 − 0.1 > 0 for log α ≈ 0.85


def test_module_train_gates_shared_across_batch_and_prunes():
    torch.manual_seed(1)
    gate = HardConcreteGate(4)
    with torch.no_grad():
        gate.log_alpha.copy_(torch.tensor([-20.0, 20.0, 0.0, 0.5]))
    gate.train()
    x = torch.ones(3, 4, 2, 2)
    y = gate(x).detach()
    assert y.shape == x.shape
    for c in range(4):
        assert torch.all(y[:, c] == y[0, c, 0, 0])
    assert float(y[0, 0, 0, 0]) == 0.0 and float(y[0, 1, 0, 0]) == 1.0
    gate.eval()
    assert gate.num_open() == 3
    assert gate.eval_gates().tolist()[:2] == [0.0, 1.0]
    with pytest.raises(ValueError):
        gate(torch.ones(1, 3))
