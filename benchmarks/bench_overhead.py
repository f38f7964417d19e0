"""Framework overhead: normgan's Trainer vs a bare PyTorch loop with identical models, batch and loss.

Both train the default architecture (normgan/configs/mnist.yaml, no regularization terms) on the same
in-memory mnist5k tensor for the same number of steps, alternating twice; the best of the repeats
counts. normgan's figure includes everything its loop does (EMA, logging, progress bar, sample grids,
checkpoints). Prints JSON:

    python benchmarks/bench_overhead.py [--steps 500] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch
from plain_gan import plain_gan_step

from normgan import Trainer, load_config
from normgan.data import batch_to_float, load_dataset
from normgan.models import build_discriminator, build_generator


def bare_loop(cfg, steps: int, step=plain_gan_step) -> float:
    """The plain PyTorch loop (as in the PyTorch DCGAN example) with the networks of ``cfg``, one
    ``step(G, D, opt_g, opt_d, real, z)`` per batch; returns images/s."""
    torch.manual_seed(cfg.train.seed)
    data = load_dataset(name=cfg.data.name, resolution=cfg.data.resolution, split="train", holdout=cfg.data.holdout)
    images = data.images
    G = build_generator(cfg.model.generator, resolution=data.resolution, channels=data.channels)
    D = build_discriminator(cfg.model.discriminator, resolution=data.resolution, channels=data.channels)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.optim.g.lr, betas=tuple(cfg.optim.g.betas))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.optim.d.lr, betas=tuple(cfg.optim.d.betas))
    B, zdim = cfg.data.batch_size, cfg.model.generator.z_dim
    perm, pos = torch.randperm(len(images)), 0
    start = time.perf_counter()
    for _ in range(steps):
        if pos + B > len(perm):
            perm, pos = torch.randperm(len(images)), 0
        real = batch_to_float(images[perm[pos : pos + B]])
        pos += B
        step(G, D, opt_g, opt_d, real, torch.randn(B, zdim))
    return steps * B / (time.perf_counter() - start)


def normgan_loop(cfg, steps: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, runs_dir=tmp, name="bench", progress=True)
        start = time.perf_counter()
        trainer.fit()
        return steps * cfg.data.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cfg = load_config(
        "configs/mnist.yaml", overrides=["regularizers={}", f"train.steps={args.steps}", "train.device=cpu"]
    )
    # warm-up both (one-time process costs such as imports are not framework overhead per run)
    bare_loop(cfg, 20)
    normgan_loop(
        load_config("configs/mnist.yaml", overrides=["regularizers={}", "train.steps=20", "train.device=cpu"]), 20
    )
    bare, ours = [], []
    for _ in range(args.repeats):
        bare.append(bare_loop(cfg, args.steps))
        ours.append(normgan_loop(cfg, args.steps))
    result = {
        "benchmark": "framework_overhead",
        "config": "configs/mnist.yaml (no regularizers)",
        "steps": args.steps,
        "batch_size": cfg.data.batch_size,
        "threads": torch.get_num_threads(),
        "bare_images_per_s": round(max(bare), 1),
        "normgan_images_per_s": round(max(ours), 1),
        "ratio": round(max(ours) / max(bare), 3),
        "all_bare": [round(x, 1) for x in bare],
        "all_normgan": [round(x, 1) for x in ours],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
