"""L0 pruning: train the gated generator (normgan/configs/l0-gates.yaml), prune it, and measure.

Reports the fraction of G's hidden channels whose test-time gate is 0, the parameter counts of the
gated and the pruned generator, the largest output difference between them in eval mode, and the
domain FID of the pruned generator against the held-out split (with the real-vs-real floor).

    python benchmarks/bench_l0.py [--steps 3000] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from normgan import Trainer, load_config
from normgan.data import load_dataset
from normgan.functional.gates import HardConcreteGate
from normgan.metrics.domain import load_or_train
from normgan.metrics.evaluate import evaluate
from normgan.models.prune import count_parameters, prune_generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args()
    cfg = load_config("configs/l0-gates.yaml", overrides=[f"train.steps={args.steps}", "train.tensorboard=false"])
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, runs_dir=tmp, progress=False)
        trainer.fit()
    wall = time.perf_counter() - start
    G = trainer.G_ema.eval()
    gates = [m for m in G.modules() if isinstance(m, HardConcreteGate)]
    channels = sum(g.log_alpha.numel() for g in gates)
    open_ = sum(int(g.num_open()) for g in gates)
    pruned = prune_generator(G).eval()
    z = torch.randn(256, cfg.model.generator.z_dim)
    with torch.no_grad():
        max_diff = float((G(z) - pruned(z)).abs().max())
    train = load_dataset(name="mnist5k", resolution=32, split="train")
    test = load_dataset(name="mnist5k", resolution=32, split="test")
    clf = load_or_train(train, heldout=test, cache_dir=args.cache_dir or tempfile.mkdtemp())
    with torch.no_grad():
        m = evaluate(
            sample_fn=lambda b: pruned(torch.randn(b, cfg.model.generator.z_dim)),
            reference=test,
            extractor=clf,
            n=args.n,
            metrics=("fid", "pr"),
            seed=0,
        )
    print(
        json.dumps(
            {
                "benchmark": "l0_pruning",
                "config": "configs/l0-gates.yaml",
                "steps": args.steps,
                "wall_time_s": round(wall, 1),
                "hidden_channels": channels,
                "open_channels": open_,
                "pruned_fraction": round(1 - open_ / channels, 3),
                "params_gated": count_parameters(G),
                "params_pruned": count_parameters(pruned),
                "max_abs_output_difference": max_diff,
                "pruned_domain_fid": round(m["fid"], 3),
                "fid_floor": round(m["fid_floor"], 3),
                "precision": round(m["precision"], 3),
                "recall": round(m["recall"], 3),
                "n": m["n"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
