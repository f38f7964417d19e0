"""Reference checks for normgan.functional.norms: every registered norm vs numpy + gradcheck."""

import numpy as np
import pytest
import torch

from normgan.errors import ConfigError
from normgan.functional.norms import NORMS, l2, l21, residual_norm

# params used for the parametrized checks (non-default, to exercise them)
PARAMS = {
    "lp": {"p": 3.0},
    "huber": {"delta": 0.5},
    "l0_smooth": {"eps": 0.1},
    "sl0": {"sigma": 0.5},
    "logsum": {"eps": 0.1},
}


def _flat(r):
    return r.reshape(r.shape[0], -1)


def _huber(r, delta):
    a = np.abs(r)
    return np.where(a < delta, 0.5 * r**2, delta * (a - 0.5 * delta)).mean()


NUMPY = {
    "l1": lambda r: np.abs(r).mean(),
    "l2": lambda r: np.sqrt((_flat(r) ** 2).sum(1)).mean(),
    "sql2": lambda r: (_flat(r) ** 2).sum(1).mean(),
    "sql2_mean": lambda r: (r**2).mean(),
    "lp": lambda r, p: ((np.abs(_flat(r)) ** p).sum(1) ** (1.0 / p)).mean(),
    "linf": lambda r: np.abs(_flat(r)).max(1).mean(),
    "huber": lambda r, delta: _huber(r, delta),
    "l21": lambda r: np.sqrt((r.reshape(r.shape[0], r.shape[1], -1) ** 2).sum(2)).sum(1).mean(),
    "l0_smooth": lambda r, eps: (r**2 / (r**2 + eps)).mean(),
    "sl0": lambda r, sigma: (1 - np.exp(-(r**2) / (2 * sigma**2))).mean(),
    "logsum": lambda r, eps: np.log1p(np.abs(r) / eps).mean(),
}


def _residual(seed=0, shape=(3, 2, 4, 5)):
    """Random residual whose |values| are in [0.2, 1.4] (away from 0) with no ties."""
    g = torch.Generator().manual_seed(seed)
    mag = 0.2 + 1.2 * torch.rand(shape, generator=g, dtype=torch.float64)
    sign = torch.where(torch.rand(shape, generator=g, dtype=torch.float64) < 0.5, -1.0, 1.0)
    return (mag * sign).to(torch.float64)


def test_every_norm_has_a_reference():
    assert set(NORMS.names()) <= set(NUMPY), set(NORMS.names()) - set(NUMPY)


@pytest.mark.parametrize("name", NORMS.names())
@pytest.mark.parametrize("seed", [0, 1])
def test_norm_matches_numpy(name, seed):
    r = _residual(seed)
    params = PARAMS.get(name, {})
    got = NORMS.get(name)(r, **params)
    want = NUMPY[name](r.numpy(), **params)
    assert got.dim() == 0
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(residual_norm(r, name, **params), got)


@pytest.mark.parametrize("name", NORMS.names())
def test_norm_gradcheck(name):
    r = _residual(3, shape=(2, 2, 2, 3)).requires_grad_(True)
    params = PARAMS.get(name, {})
    fn = NORMS.get(name)
    assert torch.autograd.gradcheck(lambda t: fn(t, **params), (r,), eps=1e-6, atol=1e-6)


def test_huber_both_branches_used():
    r = _residual(0)
    a = r.abs()
    assert bool((a < 0.5).any()) and bool((a > 0.5).any())


def test_l1_and_mean_norms_independent_of_resolution():
    r = _residual(4, shape=(2, 1, 3, 3))
    up = r.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    for name in ["l1", "sql2_mean", "huber", "l0_smooth", "logsum", "linf"]:
        torch.testing.assert_close(NORMS.get(name)(up), NORMS.get(name)(r))
    # sums scale with the element count
    torch.testing.assert_close(NORMS.get("sql2")(up), 4 * NORMS.get("sql2")(r))


def test_l21_on_matrix_rows_and_2d_equals_l2():
    r = torch.tensor([[[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]]], dtype=torch.float64)  # (1, 3, 2)
    torch.testing.assert_close(l21(r), torch.tensor(6.0, dtype=torch.float64))
    m = _residual(5, shape=(4, 6))
    torch.testing.assert_close(l21(m), l2(m))


def test_zero_residual_has_zero_gradient_for_l2():
    r = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    l2(r).backward()
    assert torch.isfinite(r.grad).all() and (r.grad == 0).all()


def test_one_dim_and_scalar_residuals():
    r = torch.tensor([1.0, -3.0], dtype=torch.float64)
    torch.testing.assert_close(NORMS.get("l2")(r), torch.tensor(2.0, dtype=torch.float64))
    torch.testing.assert_close(NORMS.get("sql2")(torch.tensor(2.0)), torch.tensor(4.0))


def test_unknown_norm_is_a_config_error_and_bad_params_raise():
    r = _residual(0)
    with pytest.raises(ConfigError, match="unknown norm"):
        residual_norm(r, "l7")
    with pytest.raises(TypeError):
        residual_norm(r, "l1", delta=3)
    with pytest.raises(ValueError):
        residual_norm(r, "huber", delta=0.0)
    with pytest.raises(ValueError):
        residual_norm(r, "lp", p=0.5)
