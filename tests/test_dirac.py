"""The Dirac-GAN (Mescheder et al. 2018) on normgan's losses and penalties: R1 converges to the
equilibrium, unregularized gradient descent does not, WGAN-GP does not return θ to 0; near the
equilibrium the simultaneous updates grow at the closed-form rate of the linearized field.

RpGAN (R3GAN) with R1, R2 or R1 + R2: in this toy RpGAN is bce bit for bit and, D being linear,
R1 = R2 and R1 + R2 = R1 at 2γ, so all three converge and unregularized RpGAN orbits; the contraction
rate near (0, 0) is the closed-form spectral radius of the linearized alternating step."""

import math

import pytest
import torch

from normgan.study.dirac import DAMPING, alternating_spectral_radius, dirac_trajectory


def _radius(p):
    return math.hypot(float(p[0]), float(p[1]))


@pytest.mark.parametrize("gamma", [0.3, 1.0, 3.0])
def test_r1_converges_to_the_equilibrium(gamma):
    traj = dirac_trajectory(loss="bce", penalty="r1", gamma=gamma, steps=4000, lr=0.05)
    assert _radius(traj[-1]) < 1e-4 * _radius(traj[0])


def test_unregularized_alternating_descent_does_not_converge():
    """Far from the equilibrium it drifts in slowly (nonlinear terms), but after 6,000 steps it is
    still far from (0, 0), while R1 reaches 1e-4 of its start in 4,000; near (0, 0) alternating
    updates of the rotation field have determinant 1 ([[1, −h/2], [h/2, 1 − h²/4]]): they orbit."""
    traj = dirac_trajectory(loss="bce", penalty="none", steps=6000, lr=0.1)
    assert min(_radius(p) for p in traj[-500:]) > 0.05
    near = dirac_trajectory(loss="bce", penalty="none", steps=400, lr=0.1, theta0=1e-4, psi0=0.0)
    radii = [_radius(p) / 1e-4 for p in near]
    assert 0.9 < min(radii) and max(radii) < 1.1  # an orbit of (nearly) constant radius: no decay, no growth


def test_unregularized_simultaneous_descent_spirals_out_at_the_linearized_rate():
    """Near (0, 0) with the bce loss, ψ' = −θ·σ'(…)… linearizes to the rotation field J = [[0, −½], [½, 0]]
    (f'(0) = ½); one simultaneous step multiplies the radius by |1 + h·i/2| = sqrt(1 + h²/4)."""
    h, steps, r0 = 0.1, 400, 1e-4
    traj = dirac_trajectory(loss="bce", penalty="none", steps=steps, lr=h, theta0=r0, psi0=0.0, simultaneous=True)
    growth = _radius(traj[-1]) / _radius(traj[0])
    assert growth == pytest.approx((1 + h * h / 4) ** (steps / 2), rel=1e-3)
    assert growth > 1.0


def test_wgan_gp_does_not_bring_the_generator_back_to_the_data():
    traj = dirac_trajectory(loss="wasserstein", penalty="wgan_gp", gamma=1.0, steps=3000, lr=0.1)
    assert min(abs(float(p[0])) for p in traj[-500:]) > 0.5


def test_rpgan_is_the_bce_game_here_and_r1_r2_coincide():
    """softplus(ψθ − ψ·0) vs log 2 + softplus(ψθ): the same gradients, so the same trajectories;
    ∇ₓD = ψ at the real and at the fake point, so R2 = R1 and R1 + R2 at γ = R1 at 2γ."""
    kw = dict(steps=300, lr=0.1)
    assert torch.equal(dirac_trajectory(loss="rpgan", **kw), dirac_trajectory(loss="bce", **kw))
    r1 = dirac_trajectory(loss="rpgan", penalty="r1", gamma=0.7, **kw)
    assert torch.equal(dirac_trajectory(loss="rpgan", penalty="r2", gamma=0.7, **kw), r1)
    assert torch.equal(r1, dirac_trajectory(loss="bce", penalty="r1", gamma=0.7, **kw))
    both = dirac_trajectory(loss="rpgan", penalty="r1_r2", gamma=0.7, **kw)
    assert torch.allclose(both, dirac_trajectory(loss="rpgan", penalty="r1", gamma=1.4, **kw), rtol=0, atol=1e-12)
    assert not torch.allclose(both, r1)


@pytest.mark.parametrize("penalty", ["r1", "r2", "r1_r2"])
@pytest.mark.parametrize("gamma", [0.3, 1.0, 3.0])
def test_rpgan_with_r1_r2_or_both_converges(penalty, gamma):
    traj = dirac_trajectory(loss="rpgan", penalty=penalty, gamma=gamma, steps=3000, lr=0.1)
    assert _radius(traj[-1]) < 1e-4 * _radius(traj[0])


def test_unregularized_rpgan_does_not_converge():
    """Like bce: still far from (0, 0) after 6,000 steps; near it an orbit (det M = 1 at c = 0)."""
    traj = dirac_trajectory(loss="rpgan", penalty="none", steps=6000, lr=0.1)
    assert min(_radius(p) for p in traj[-500:]) > 0.05
    near = dirac_trajectory(loss="rpgan", penalty="none", steps=400, lr=0.1, theta0=1e-4, psi0=0.0)
    radii = [_radius(p) / 1e-4 for p in near]
    assert 0.9 < min(radii) and max(radii) < 1.1
    assert alternating_spectral_radius(0.1, 0.0) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("penalty", ["r1", "r2", "r1_r2"])
@pytest.mark.parametrize("gamma", [0.3, 1.0, 3.0])
def test_rpgan_contracts_at_the_closed_form_rate(penalty, gamma):
    """Per-step contraction over steps 200-400 from 10⁻⁶ vs the spectral radius of
    M = [[1 − h²/4, (h/2)(1 − hc)], [−h/2, 1 − hc]], c = γ (R1 or R2) or 2γ (R1 + R2).
    At h = 0.1: γ = 0.3 complex roots (ρ = sqrt(1 − hc)), γ ≥ 1 real roots (overdamped)."""
    h, n = 0.1, 400
    traj = dirac_trajectory(loss="rpgan", penalty=penalty, gamma=gamma, steps=n, lr=h, theta0=1e-6, psi0=0.0)
    rate = (_radius(traj[n]) / _radius(traj[n // 2])) ** (2 / n)
    rho = alternating_spectral_radius(h, DAMPING[penalty] * gamma)
    assert rho < 1.0
    assert rate == pytest.approx(rho, rel=2e-3)


def test_the_closed_form_is_the_linearized_step():
    """The spectral radius from the trace/determinant formula is that of M built entry by entry."""
    for h, c in [(0.1, 0.3), (0.1, 2.0), (0.05, 6.0), (0.1, 0.0)]:
        m = torch.tensor([[1 - h * h / 4, h / 2 * (1 - h * c)], [-h / 2, 1 - h * c]], dtype=torch.float64)
        rho = torch.linalg.eigvals(m).abs().max().item()
        assert alternating_spectral_radius(h, c) == pytest.approx(rho, rel=1e-12)


def test_unknown_penalty_is_refused():
    with pytest.raises(ValueError):
        dirac_trajectory(penalty="l2")
