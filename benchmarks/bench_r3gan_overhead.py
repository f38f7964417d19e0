"""Framework overhead with the r3gan backbone: normgan's Trainer vs a bare PyTorch loop with the same
networks, batch, loss (non-saturating) and penalties (R1 at the real and R2 at the fake batch, γ = 1,
both every step).

normgan runs normgan/configs/r3gan.yaml (smaller width and batch so that a CPU run takes minutes);
the bare loop is :func:`plain_gan.plain_r1_r2_step` (each penalty from the D forward its loss made,
as R3GAN's code does). Both alternate per repeat; the best of the repeats counts; torch uses the same
number of threads in both. Prints JSON:

    python benchmarks/bench_r3gan_overhead.py [--steps 40] [--repeats 2] [--width 8] [--batch 32]
"""

from __future__ import annotations

import argparse
import json

import torch
from bench_overhead import bare_loop, normgan_loop
from plain_gan import plain_r1_r2_step

from normgan import load_config


def config(args, steps: int):
    return load_config(
        "r3gan",
        overrides=[
            f"train.steps={steps}",
            "train.device=cpu",
            f"train.threads={args.threads}",
            f"data.batch_size={args.batch}",
            f"model.generator.width={args.width}",
            f"model.discriminator.width={args.width}",
            "train.tensorboard=false",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = config(args, args.steps)
    # warm-up both (one-time process costs such as imports are not framework overhead per run)
    bare_loop(cfg, 5, step=plain_r1_r2_step)
    normgan_loop(config(args, 5), 5)
    bare, ours = [], []
    for _ in range(args.repeats):
        bare.append(bare_loop(cfg, args.steps, step=plain_r1_r2_step))
        ours.append(normgan_loop(cfg, args.steps))
    result = {
        "benchmark": "framework_overhead_r3gan",
        "config": "configs/r3gan.yaml (bce + R1 + R2 every step)",
        "width": args.width,
        "steps": args.steps,
        "batch_size": args.batch,
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
