"""The Dirac-GAN (Mescheder et al. 2018) on normgan's losses and penalties: R1 converges to the
equilibrium, unregularized gradient descent does not, WGAN-GP does not return θ to 0; near the
equilibrium the simultaneous updates grow at the closed-form rate of the linearized field."""

import math

import pytest

from normgan.study.dirac import dirac_trajectory


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


def test_unknown_penalty_is_refused():
    with pytest.raises(ValueError):
        dirac_trajectory(penalty="l2")
