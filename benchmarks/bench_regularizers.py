"""Speed of the default model with each kind of regularization, as images/s and as a ratio to "no term".

    python benchmarks/bench_regularizers.py [--steps 320] [--warmup 20] [--chunk 16] [--threads 0]

The default model is normgan/configs/mnist.yaml without its wd_g term (regularizers = {}) and with
D's normalization off (as in every config that uses a gradient penalty); the rows are terms,
spectral norm, the consistency terms bCR and zCR, and D's inputs augmented by DiffAugment (alone and
with R1) and by ADA at p = 0.5. Every configuration is built in this one process and timed with ``Trainer.train_step`` directly (no file
I/O), interleaved in chunks of ``--chunk`` steps (16, so each chunk holds exactly one lazy R1/16
phase) to spread machine noise over all of them. Prints one JSON object with the ratio of total
throughputs and the median over rounds of the per-round ratios (robust to noise bursts).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time

import torch

import normgan
from normgan.config import packaged_config_dir, validate

CONFIGS = {
    "none": ({}, {}),
    "r1_every_1": ({"r1": {"term": "grad", "net": "D", "at": "real", "weight": 1.0}}, {}),
    "r1_every_16": ({"r1": {"term": "grad", "net": "D", "at": "real", "weight": 1.0, "every": 16}}, {}),
    "wgan_gp": ({"gp": {"term": "grad", "net": "D", "at": "interpolates", "center": 1, "weight": 10.0}}, {}),
    "spectral_d": ({}, {"sn": {"kind": "spectral", "net": "D"}}),
    "l0_gates": ({"l0": {"term": "weights", "net": "G", "norm": "l0", "weight": 1.0e-3}}, {}),
}
#: rows of this benchmark only (bench_gpu.py times CONFIGS): consistency terms and augmentation
MORE_CONFIGS = {
    # consistency terms (bCR: two extra D forwards; zCR on D and G: two extra G forwards, one D)
    "bcr": ({"bcr": {"term": "bcr", "net": "D", "weight": 10.0}}, {}),
    "zcr": (
        {"zcr_d": {"term": "zcr", "net": "D", "weight": 20.0}, "zcr_g": {"term": "zcr", "net": "G", "weight": 0.5}},
        {},
    ),
}
#: the augment section of each configuration (DiffAugment's policy; ADA's ops at a constant p of 0.5)
AUGMENT = {
    "diffaugment": {"kind": "diffaugment"},
    "diffaugment_r1": {"kind": "diffaugment"},
    "ada_p05": {"kind": "ada", "p": 0.5},
}
MORE_CONFIGS |= {
    "diffaugment": ({}, {}),
    "diffaugment_r1": (CONFIGS["r1_every_1"][0], {}),
    "ada_p05": ({}, {}),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=320, help="timed steps per configuration")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--chunk", type=int, default=16, help="steps per configuration before switching to the next")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    # D without BatchNorm in every configuration: per-sample gradient penalties need it (docs/decisions.md)
    overrides = [
        "train.tensorboard=false",
        f"train.threads={args.threads}",
        "train.device=cpu",
        "model.discriminator.norm=none",
    ]
    trainers, steps, elapsed = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (regs, cons) in {**CONFIGS, **MORE_CONFIGS}.items():
            cfg = normgan.load_config(packaged_config_dir() / "mnist.yaml", overrides=overrides)
            cfg.regularizers, cfg.constraints = regs, cons
            for key, value in AUGMENT.get(name, {}).items():
                setattr(cfg.augment, key, value)
            validate(cfg)
            tr = normgan.Trainer(cfg, runs_dir=tmp, progress=False)
            for s in range(args.warmup):
                tr.train_step(s)
            trainers[name], steps[name], elapsed[name] = tr, args.warmup, 0.0
        # start the timed steps of every configuration at a multiple of the chunk (lazy phases at step % 16 == 0)
        start = -(-args.warmup // args.chunk) * args.chunk
        for name in trainers:
            steps[name] = start
        done, rounds = 0, []
        while done < args.steps:
            n = min(args.chunk, args.steps - done)
            times = {}
            for name, tr in trainers.items():
                t0 = time.perf_counter()
                for _ in range(n):
                    tr.train_step(steps[name])
                    steps[name] += 1
                times[name] = time.perf_counter() - t0
                elapsed[name] += times[name]
            rounds.append(times)
            done += n
        images = {name: tr.cfg.data.batch_size * tr.cfg.optim.d_steps * args.steps for name, tr in trainers.items()}
    ips = {name: images[name] / elapsed[name] for name in trainers}
    out = {
        "benchmark": "regularizers",
        "model": "configs/mnist.yaml, regularizers={}",
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "steps": args.steps,
        "warmup": args.warmup,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "images_per_s": {k: round(v, 1) for k, v in ips.items()},
        "ratio_to_none": {k: round(v / ips["none"], 3) for k, v in ips.items()},
        # per round, every configuration ran the same steps back to back: the median of the per-round
        # ratios is robust to bursts of machine noise (CPU steal) that hit one configuration's chunk
        "median_round_ratio_to_none": {
            k: round(statistics.median(r["none"] / r[k] for r in rounds), 3) for k in trainers
        },
        "rounds": len(rounds),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
