"""Default-run quality: normgan's default `normgan train` vs a bare PyTorch loop, equal wall time, several seeds.

1. Speed, interleaved: short alternating bursts of normgan's training step (``Trainer.train_step``)
   and of the bare loop's step (``plain_gan.plain_gan_step``), same thread count; the median
   per-round ratio r = t_normgan_step / t_bare_step fixes the bare loop's step count,
   ``round(steps × r)``, so both sides get the same compute time even on a shared machine (one
   wall-clock measurement per run would not be reliable there).  Both throughputs are reported.
2. For each seed: normgan's default config (``load_config()`` plus ``--set`` overrides) trained
   with ``train.seed=<seed>``; then bare non-saturating loops with the same architecture,
   resolution, data pixels, batch, loss and seed, without EMA or regularizers, for
   ``max(steps, round(steps × r))`` steps (never fewer than normgan's); all wall times are reported:
   - ``plain_same_arch``: ``torch.optim.Adam(lr=2e-4, betas=(0.5, 0.999))``, the PyTorch DCGAN
     example's optimizer (the bare loop of the earlier benchmark);
   - ``plain_same_arch_same_adam`` (when normgan's Adam settings differ from those): normgan's
     ``optim.g`` / ``optim.d`` learning rates and betas — the control that shows how much of the
     difference is the optimizer setting alone.
3. Scores: normgan's EMA generator and the bare loop's generator (eval mode) with two feature
   extractors, each against the held-out split at the same N, with its real-vs-real floor:
   - ``domain``: normgan's domain classifier (normgan.metrics.domain), trained on the training
     split at the training resolution (what ``normgan eval`` uses);
   - ``lenet28``: an independent judge — a LeNet-style CNN (5×5 convs, max-pooling, a 128-unit
     fully connected penultimate layer; no BatchNorm, no augmentation) trained here, with its own
     seed, on the training split at the digits' native 28 px; features = the 128-d penultimate
     layer.  Generated images are scored at 28 px: centre-cropped when the data are zero-padded to
     32 px (exact), resized (bilinear, antialiased) when the data were resized (reported as such).
   It also scores the training images themselves, as the model sees them, with the judge: the
   cost of the data handling alone (``data_handling``).
4. mean ± std (sample std, ddof 1) over the seeds, and the per-seed ratios bare / normgan.

Prints JSON (and writes it to ``--out``).  3 seeds × (normgan + two bare loops) × 3,000 steps at
one thread each took 49 minutes on a 2-core machine shared with other jobs (one thread per side:
with two threads, a competing process made every step up to 12× slower).

    python benchmarks/bench_quality.py --seeds 0 1 2 --threads 1 --out quality.json \
        --set optim.g.lr=5e-4 optim.d.lr=5e-4 optim.ema=0.99   # until these are config.py defaults
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plain_gan import plain_gan_step  # noqa: E402

from normgan import Trainer, load_config  # noqa: E402
from normgan.config import to_dict  # noqa: E402
from normgan.data import batch_to_float, center_crop, load_dataset  # noqa: E402
from normgan.data.builtin import NATIVE_SIZE, fit_mode  # noqa: E402
from normgan.metrics.domain import load_or_train  # noqa: E402
from normgan.metrics.evaluate import evaluate  # noqa: E402
from normgan.models import build_discriminator, build_generator  # noqa: E402


# ----------------------------------------------------------------------------- the independent judge
class LeNetJudge(nn.Module):
    """conv5×5(32)-ReLU-pool, conv5×5(64)-ReLU-pool, FC 1024→128-ReLU (features), FC 128→10 (head); 28-px input."""

    name = "lenet28"

    def __init__(self, channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 128),
            nn.ReLU(),
        )
        self.head = nn.Linear(128, num_classes)

    def forward(self, x):
        if x.shape[-1] != 28:
            raise ValueError(f"the judge scores 28-px images, got {tuple(x.shape)}")
        return self.body(x)


def train_judge(train28, test28, *, seed: int = 1, epochs: int = 8) -> LeNetJudge:
    """Adam 1e-3, batch 64, ``epochs`` epochs on the 28-px training split; records held-out accuracy."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        judge = LeNetJudge(channels=train28.channels, num_classes=int(train28.labels.max()) + 1)
        opt = torch.optim.Adam(judge.parameters(), lr=1e-3)
        x, y = batch_to_float(train28.images), train28.labels
        for _ in range(epochs):
            perm = torch.randperm(len(x))
            for s in range(0, len(x), 64):
                i = perm[s : s + 64]
                loss = F.cross_entropy(judge.head(judge(x[i])), y[i])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    judge.eval()
    with torch.no_grad():
        judge.heldout_accuracy = float(
            (judge.head(judge(batch_to_float(test28.images))).argmax(1) == test28.labels).float().mean()
        )
    return judge


# ----------------------------------------------------------------------------- the bare loop
#: The PyTorch DCGAN example's optimizer: Adam(lr=2e-4, betas=(0.5, 0.999)) for G and D.
EXAMPLE_ADAM = {"lr": 2.0e-4, "betas": (0.5, 0.999)}


def bare_setup(cfg, data, seed: int, adam: dict | None = None):
    """Same architecture, batch, loss and pixels as normgan's config; ``torch.optim.Adam`` (as a user would write it).

    ``adam``: {"lr", "betas"} for both networks; None takes normgan's ``optim.g`` / ``optim.d`` settings.
    """
    torch.manual_seed(seed)
    G = build_generator(cfg.model.generator, resolution=data.resolution, channels=data.channels)
    D = build_discriminator(cfg.model.discriminator, resolution=data.resolution, channels=data.channels)
    ag = adam or {"lr": cfg.optim.g.lr, "betas": cfg.optim.g.betas}
    ad = adam or {"lr": cfg.optim.d.lr, "betas": cfg.optim.d.betas}
    opt_g = torch.optim.Adam(G.parameters(), lr=ag["lr"], betas=tuple(ag["betas"]))
    opt_d = torch.optim.Adam(D.parameters(), lr=ad["lr"], betas=tuple(ad["betas"]))
    images = batch_to_float(data.images)
    state = {"perm": torch.randperm(len(images)), "pos": 0}

    def step():
        B = cfg.data.batch_size
        if state["pos"] + B > len(state["perm"]):
            state["perm"], state["pos"] = torch.randperm(len(images)), 0
        real = images[state["perm"][state["pos"] : state["pos"] + B]]
        state["pos"] += B
        plain_gan_step(G, D, opt_g, opt_d, real, torch.randn(B, cfg.model.generator.z_dim))

    return G, D, step


def interleaved_step_times(cfg, data, *, rounds: int, burst: int, runs_dir: str) -> dict:
    """Median seconds per step of normgan's train_step and of the bare step, from alternating bursts."""
    trainer = Trainer(cfg, runs_dir=runs_dir, name="timing", progress=False)
    _, _, bare_step = bare_setup(cfg, data, seed=cfg.train.seed)
    t_ng, t_bare, ratios, step = [], [], [], 0
    for r in range(rounds + 1):  # round 0 warms up both
        t0 = time.perf_counter()
        for _ in range(burst):
            trainer.train_step(step)
            step += 1
        a = (time.perf_counter() - t0) / burst
        t0 = time.perf_counter()
        for _ in range(burst):
            bare_step()
        b = (time.perf_counter() - t0) / burst
        if r:
            t_ng.append(a)
            t_bare.append(b)
            ratios.append(a / b)
    B = cfg.data.batch_size
    return {
        "rounds": rounds,
        "burst_steps": burst,
        "normgan_step_s": statistics.median(t_ng),
        "bare_step_s": statistics.median(t_bare),
        "ratio_normgan_over_bare": statistics.median(ratios),
        "ratio_range": [min(ratios), max(ratios)],
        "normgan_images_per_s": B / statistics.median(t_ng),
        "bare_images_per_s": B / statistics.median(t_bare),
    }


# ----------------------------------------------------------------------------- scoring
def mean_std(values):
    values = [float(v) for v in values]
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
    }


def rounded(obj, nd=4):
    if isinstance(obj, float):
        return round(obj, nd) if math.isfinite(obj) else obj
    if isinstance(obj, dict):
        return {k: rounded(v, nd) for k, v in obj.items()}
    if isinstance(obj, list):
        return [rounded(v, nd) for v in obj]
    return obj


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n", type=int, default=2000, help="generated samples per FID")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for both sides")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved timing rounds")
    parser.add_argument("--burst", type=int, default=40, help="steps per timing burst")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of the default config (both sides)"
    )
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument(
        "--runs-dir", default=None, help="keep normgan's run folders here (default: a temporary folder)"
    )
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    base = [f"train.threads={args.threads}", *args.set]
    cfg = load_config(overrides=base)
    d = cfg.data
    load = dict(name=d.name, root=d.root, resolution=d.resolution, channels=d.channels, holdout=d.holdout)
    train, test = load_dataset(**load, split="train"), load_dataset(**load, split="test")
    native = NATIVE_SIZE[d.name]
    mode = fit_mode(d.name, d.resolution)
    train28 = load_dataset(**dict(load, resolution=native), split="train")
    test28 = load_dataset(**dict(load, resolution=native), split="test")

    def to_native(x):
        if x.shape[-1] == native:
            return x
        if mode == "pad":
            return center_crop(x, native)
        return F.interpolate(x, size=native, mode="bilinear", antialias=True, align_corners=False)

    cache = args.cache_dir or tempfile.mkdtemp()
    runs_dir = args.runs_dir or tempfile.mkdtemp()
    t0 = time.perf_counter()
    clf = load_or_train(train, heldout=test, cache_dir=cache)
    judge = train_judge(train28, test28)
    setup_s = time.perf_counter() - t0

    def score(sample_fn):
        """domain and judge FID (+ floors) of ``sample_fn`` at N = args.n against the held-out split."""
        with torch.no_grad():
            dom = evaluate(sample_fn=sample_fn, reference=test, extractor=clf, n=args.n, metrics=("fid",), seed=0)
            jdg = evaluate(
                sample_fn=lambda b: to_native(sample_fn(b)),
                reference=test28,
                extractor=judge,
                n=args.n,
                metrics=("fid",),
                seed=0,
            )
        return {
            "domain_fid": dom["fid"],
            "domain_floor": dom["fid_floor"],
            "judge_fid": jdg["fid"],
            "judge_floor": jdg["fid_floor"],
        }

    def score_judge_only(sample_fn):
        with torch.no_grad():
            jdg = evaluate(sample_fn=sample_fn, reference=test28, extractor=judge, n=args.n, metrics=("fid",), seed=0)
        return {"judge_fid": jdg["fid"], "judge_floor": jdg["fid_floor"]}

    def gen_sampler(G):
        return lambda b: G(torch.randn(b, cfg.model.generator.z_dim))

    def real_sampler(images):
        g = torch.Generator().manual_seed(0)
        return lambda b: batch_to_float(images[torch.randint(0, len(images), (b,), generator=g)])

    # what the data handling alone costs: the training images as the model sees them, judged at 28 px
    data_handling = {
        "mode": mode,
        "resolution": d.resolution,
        "native": native,
        "train_images_as_trained": score(real_sampler(train.images)),
    }
    # the earlier handling, for comparison: bilinear 28 -> 32 px resize (uint8), judged after resizing back to 28 px
    resized32 = (
        F.interpolate(train28.images.float(), size=32, mode="bilinear", antialias=True, align_corners=False)
        .round_()
        .clamp_(0, 255)
        .to(torch.uint8)
    )
    data_handling["train_images_resized_to_32_and_back"] = score_judge_only(
        lambda b: F.interpolate(
            real_sampler(resized32)(b), size=native, mode="bilinear", antialias=True, align_corners=False
        )
    )
    data_handling["train_images_native"] = score_judge_only(real_sampler(train28.images))

    timing = interleaved_step_times(cfg, train, rounds=args.rounds, burst=args.burst, runs_dir=runs_dir)
    # equal compute time; never fewer steps than normgan (if normgan's step is the faster one, the bare loop
    # still gets as many steps, i.e. at least equal wall time)
    equal_time_steps = round(cfg.train.steps * timing["ratio_normgan_over_bare"])
    bare_steps = max(cfg.train.steps, equal_time_steps)
    torch.manual_seed(12345)
    G_random = build_generator(cfg.model.generator, resolution=train.resolution, channels=train.channels).eval()
    random_init = score(gen_sampler(G_random))

    # plain_same_arch: the bare loop with the PyTorch DCGAN example's Adam (what the earlier benchmark ran);
    # plain_same_arch_same_adam: also normgan's Adam settings (the control: what the defaults' optimizer alone gives)
    same_adam = all(
        abs(o.lr - EXAMPLE_ADAM["lr"]) < 1e-12 and tuple(o.betas) == EXAMPLE_ADAM["betas"]
        for o in (cfg.optim.g, cfg.optim.d)
    )
    BARE_SIDES = [("plain_same_arch", EXAMPLE_ADAM)] + ([] if same_adam else [("plain_same_arch_same_adam", None)])
    per_seed = []
    for seed in args.seeds:
        scfg = load_config(overrides=base + [f"train.seed={seed}"])
        t0 = time.perf_counter()
        trainer = Trainer(scfg, runs_dir=runs_dir, progress=False)
        trainer.fit()
        ng_wall = time.perf_counter() - t0
        row = {
            "seed": seed,
            "normgan_run": str(trainer.run_dir),
            "normgan_wall_s": ng_wall,
            "normgan_images_per_s": scfg.train.steps * scfg.data.batch_size / ng_wall,
            "normgan_default": score(gen_sampler(trainer.G_ema.eval())),
        }
        for side, adam in BARE_SIDES:
            G_bare, _, bare_step = bare_setup(scfg, train, seed=seed, adam=adam)
            t0 = time.perf_counter()
            for _ in range(bare_steps):
                bare_step()
            bare_wall = time.perf_counter() - t0
            row[side] = score(gen_sampler(G_bare.eval()))
            row[side]["wall_s"] = bare_wall
            row[side]["images_per_s"] = bare_steps * scfg.data.batch_size / bare_wall
        row["ratio_bare_over_normgan"] = {
            side: {k: row[side][k] / row["normgan_default"][k] for k in ("domain_fid", "judge_fid")}
            for side, _ in BARE_SIDES
        }
        per_seed.append(row)
        print(json.dumps(rounded(row)), file=sys.stderr, flush=True)

    summary = {
        "normgan_default": {
            k: mean_std([r["normgan_default"][k] for r in per_seed]) for k in ("domain_fid", "judge_fid")
        }
    }
    summary["normgan_default"]["wall_s"] = mean_std([r["normgan_wall_s"] for r in per_seed])
    summary["normgan_default"]["images_per_s"] = mean_std([r["normgan_images_per_s"] for r in per_seed])
    for side, _ in BARE_SIDES:
        summary[side] = {
            k: mean_std([r[side][k] for r in per_seed]) for k in ("domain_fid", "judge_fid", "wall_s", "images_per_s")
        }
    summary["floors"] = {
        k: mean_std([r["normgan_default"][k] for r in per_seed]) for k in ("domain_floor", "judge_floor")
    }
    summary["ratio_bare_over_normgan"] = {
        side: {
            k: mean_std([r["ratio_bare_over_normgan"][side][k] for r in per_seed]) for k in ("domain_fid", "judge_fid")
        }
        for side, _ in BARE_SIDES
    }
    out = {
        "benchmark": "default_quality",
        "config_overrides": args.set,
        "threads": args.threads,
        "seeds": args.seeds,
        "n": args.n,
        "steps": {"normgan_default": cfg.train.steps, "bare_loops": bare_steps, "bare_equal_time": equal_time_steps},
        "bare_loops": {
            side: (dict(adam, betas=list(adam["betas"])) if adam else "normgan's optim.g / optim.d")
            for side, adam in BARE_SIDES
        },
        "config": to_dict(cfg),
        "extractors": {
            "domain": {"heldout_accuracy": getattr(clf, "heldout_accuracy", None), "resolution": d.resolution},
            "lenet28": {
                "heldout_accuracy": judge.heldout_accuracy,
                "resolution": native,
                "generated_images": {
                    "native": "as generated",
                    "pad": "centre-cropped (exact)",
                    "resize": "resized to 28 px (bilinear, antialiased)",
                }[mode],
            },
        },
        "classifiers_train_s": setup_s,
        "data_handling": data_handling,
        "timing": timing,
        "summary": summary,
        "random_init_generator": random_init,
        "per_seed": per_seed,
    }
    text = json.dumps(rounded(out), indent=2, default=str)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
