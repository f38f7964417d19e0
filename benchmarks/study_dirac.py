"""The Dirac-GAN figure (Mescheder et al. 2018, Fig. 1/3) on normgan's losses and penalties.

Writes docs/studies/dirac-gan.png (trajectories in the (θ, ψ) plane) and prints JSON with the
distance to the equilibrium after the last step of each setting (and, for alternating bce / rpgan
with none / R1 / R2 / R1 + R2, the spectral radius of the step linearized at (0, 0)):

    python benchmarks/study_dirac.py [--steps 3000] [--lr 0.1] [--out docs/studies/dirac-gan.png]
"""

from __future__ import annotations

import argparse
import json
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from normgan.study.dirac import DAMPING, alternating_spectral_radius, dirac_trajectory  # noqa: E402

SETTINGS = [
    ("unregularized, alternating GD (bce)", dict(loss="bce", penalty="none")),
    ("unregularized, simultaneous GD (bce)", dict(loss="bce", penalty="none", simultaneous=True)),
    ("R1, γ = 1 (bce)", dict(loss="bce", penalty="r1", gamma=1.0)),
    ("WGAN-GP, λ = 1 (wasserstein)", dict(loss="wasserstein", penalty="wgan_gp", gamma=1.0)),
    ("unregularized, alternating GD (rpgan)", dict(loss="rpgan", penalty="none")),
    ("R1, γ = 1 (rpgan)", dict(loss="rpgan", penalty="r1", gamma=1.0)),
    ("R2, γ = 1 (rpgan)", dict(loss="rpgan", penalty="r2", gamma=1.0)),
    ("R1 + R2, γ = 1 (rpgan)", dict(loss="rpgan", penalty="r1_r2", gamma=1.0)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--out", default="docs/studies/dirac-gan.png")
    args = parser.parse_args()
    cols = 4
    rows = math.ceil(len(SETTINGS) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows))
    axes = axes.ravel()
    result = {}
    for ax, (title, kw) in zip(axes, SETTINGS):
        traj = dirac_trajectory(steps=args.steps, lr=args.lr, **kw).numpy()
        ax.plot(traj[:, 0], traj[:, 1], lw=0.8)
        ax.plot(traj[0, 0], traj[0, 1], "o", color="tab:green", label="start")
        ax.plot(traj[-1, 0], traj[-1, 1], "s", color="tab:red", label=f"step {args.steps}")
        ax.plot(0, 0, "*", color="k", ms=10, label="equilibrium")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("θ (generator)")
        ax.set_ylabel("ψ (discriminator)")
        ax.grid(alpha=0.3)
        result[title] = {
            "distance_end": math.hypot(*traj[-1]),
            "theta_end": float(traj[-1, 0]),
            "psi_end": float(traj[-1, 1]),
        }
        if kw["loss"] in ("bce", "rpgan") and not kw.get("simultaneous"):
            c = DAMPING[kw["penalty"]] * kw.get("gamma", 0.0)
            result[title]["linearized_spectral_radius"] = alternating_spectral_radius(args.lr, c)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(json.dumps({"steps": args.steps, "lr": args.lr, "start": [1.0, 1.0], "settings": result}, indent=2))


if __name__ == "__main__":
    main()
