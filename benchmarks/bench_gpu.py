"""normgan on one accelerator (CUDA; CPU for a smoke test): framework overhead, regularizer cost,
precision and multi-process scaling, as ONE JSON object on stdout.

    python benchmarks/bench_gpu.py                                  # CUDA when present: about 3-5 min on one H100
    python benchmarks/bench_gpu.py --device cpu --steps 20 --quick  # smoke test, < 2 min on 2 CPU cores
    python benchmarks/bench_gpu.py --device cpu --quick --ddp-procs 2 --only ddp  # DDP smoke test (gloo)

Sections (``--only`` picks some; the others are reported as skipped, with the reason):

- ``overhead``: normgan's ``Trainer.fit()`` vs the bare PyTorch loop (benchmarks/plain_gan.py) with the
  same models, batch and loss on the same device, at each of ``--batches`` (64 and 256), default
  architecture (configs/mnist.yaml), no terms. As benchmarks/bench_overhead.py, normgan's figure
  (``ratio``) includes everything its loop does (EMA, logging, progress bar, end-of-run samples and
  checkpoint); ``ratio_steady`` takes normgan's steady-state images/s from its metrics.jsonl instead
  (the logged intervals after the first: per-step cost with logging, without the run's fixed start
  and end). Warm-up steps run through ``Trainer.train_step`` first and ``fit()`` continues from there.
- ``regularizers``: images/s of each regularizer ÷ images/s with no term at ``--reg-batch`` (64), D
  without normalization in every configuration (as benchmarks/bench_regularizers.py), timed with
  ``Trainer.train_step`` interleaved in chunks of 16 steps (one lazy R1/16 phase per chunk).
- ``precision``: ``train.precision`` fp32 vs bf16 and fp16 (when the config accepts it; else "not
  supported" with the config's message) at each of ``--batches``, default architecture, same
  interleaved timing; the speed-up is over fp32. ``--quick`` on CPU times fp32 and bf16 only (CPU
  fp16 is emulated, ~20x slower than fp32) and reports whether the config accepts fp16.
- ``compile``: ``train.compile: true`` vs eager for no term, R1 every step and spectral norm on D at
  ``--reg-batch``, same interleaved timing (D without normalization); ``speedup`` = compiled ÷ eager
  images/s after warm-up, ``first_step_s`` the first step of each (the compiled one includes compilation).
- ``ops``: kernels and host reads per step, counted (benchmarks/op_count.py), not timed, so the same
  on any device: the bare loop vs normgan (default architecture, first of ``--batches``) and each
  regularizer vs no term. When a small model on a GPU is launch-bound, kernels(A) ÷ kernels(B)
  predicts images/s(B) ÷ images/s(A); a CPU session can check a change's GPU cost with it.
- ``ddp``: ``python -m torch.distributed.run --standalone --nproc_per_node=N -m normgan train ...`` for a
  fixed number of steps at the same GLOBAL batch, N processes vs 1 (both through the same launcher);
  efficiency = (t1 / tN) / N from the wall times (startup included), and the same from the steady-state
  images/s that the main rank logs in metrics.jsonl (first log interval dropped). Runs when
  ``torch.cuda.device_count() >= 2`` (nccl, one GPU per process) or with ``--ddp-procs N`` (gloo on CPU).

``--quick`` (smoke test): 20 steps, 3 warm-up steps, 1 repeat, 20 DDP steps and, on CPU, 1 torch thread
(2 threads on a busy 2-core machine run several times slower than 1); explicit flags win.

Every timing synchronizes the device before reading the clock (``torch.cuda.synchronize``), excludes
its warm-up steps, and keeps the best of ``--repeats``. Every figure carries the name of its device.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import op_count
import torch
from bench_regularizers import CONFIGS
from plain_gan import plain_gan_step

import normgan
from normgan import Trainer, load_config
from normgan.config import packaged_config_dir, validate
from normgan.data import batch_to_float, load_dataset
from normgan.errors import ConfigError
from normgan.models import build_discriminator, build_generator

SECTIONS = ("overhead", "regularizers", "precision", "compile", "ddp", "ops")
CONFIG = packaged_config_dir() / "mnist.yaml"
#: regularizers and constraints by name: (regularizers, constraints); "none" is the baseline
REGULARIZERS = {
    **CONFIGS,  # bench_regularizers.py's terms (none, r1_every_1, r1_every_16, wgan_gp, spectral_d, l0_gates)
    "path_length_g4": ({"pl": {"term": "jacobian", "net": "G", "weight": 2.0, "every": 4}}, {}),
    "l2_d": ({"l2": {"term": "weights", "net": "D", "norm": "l2", "weight": 1.0e-6}}, {}),
}
PRECISIONS = ("fp32", "bf16", "fp16")
#: configurations of the compile section (keys of REGULARIZERS)
COMPILE_CASES = ("none", "r1_every_1", "spectral_d")


# ---------------------------------------------------------------------------------------------- helpers
def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu: {platform.processor() or platform.machine()}"


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that the clock read next covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def base_overrides(device: torch.device, batch: int, *extra: str) -> List[str]:
    return ["regularizers={}", f"data.batch_size={batch}", f"train.device={device}", *extra]


def rnd(x: float, nd: int = 1) -> float:
    return round(float(x), nd)


# ---------------------------------------------------------------------------------------------- overhead
def bare_step_fn(cfg, device: torch.device, **adam: bool):
    """One step of the plain PyTorch DCGAN loop (benchmarks/bench_overhead.py) on ``device`` as a
    function of no argument: the batch (uint8 on the device, as normgan's EpochBatches), then
    :func:`plain_gan_step`. ``adam``: Adam's implementation flags (default: the device's default)."""
    torch.manual_seed(cfg.train.seed)
    data = load_dataset(name=cfg.data.name, resolution=cfg.data.resolution, split="train", holdout=cfg.data.holdout)
    images = data.images.to(device)  # uint8, moved once (as normgan's EpochBatches)
    G = build_generator(cfg.model.generator, resolution=data.resolution, channels=data.channels).to(device)
    D = build_discriminator(cfg.model.discriminator, resolution=data.resolution, channels=data.channels).to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.optim.g.lr, betas=tuple(cfg.optim.g.betas), **adam)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.optim.d.lr, betas=tuple(cfg.optim.d.betas), **adam)
    B, zdim = cfg.data.batch_size, cfg.model.generator.z_dim
    state = {"perm": torch.randperm(len(images), device=device), "pos": 0}

    def step() -> None:
        if state["pos"] + B > len(state["perm"]):
            state["perm"], state["pos"] = torch.randperm(len(images), device=device), 0
        real = batch_to_float(images[state["perm"][state["pos"] : state["pos"] + B]])
        state["pos"] += B
        plain_gan_step(G, D, opt_g, opt_d, real, torch.randn(B, zdim, device=device))

    return step


def bare_loop(cfg, device: torch.device, steps: int, warmup: int) -> float:
    """The plain PyTorch DCGAN loop on ``device``; images/s of the timed steps."""
    step = bare_step_fn(cfg, device)
    start = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        step()
    sync(device)
    return steps * cfg.data.batch_size / (time.perf_counter() - start)


def normgan_loop(cfg, device: torch.device, steps: int, warmup: int, progress: bool) -> tuple:
    """normgan's whole ``fit()`` for ``steps`` steps after ``warmup`` steps of ``train_step``: images/s
    of the whole call, and the steady-state images/s its metrics.jsonl logs (the intervals between
    log rows after the first: the steps with their logging, without the run's start and end)."""
    cfg.train.steps = warmup + steps
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, runs_dir=tmp, name="bench", progress=progress)
        for s in range(warmup):
            trainer.train_step(s)
        trainer.step = warmup  # fit() continues from here: the warm-up is not timed
        sync(device)
        start = time.perf_counter()
        trainer.fit()
        sync(device)
        elapsed = time.perf_counter() - start
        steady = steady_images_per_s(trainer.run_dir / "metrics.jsonl")
    return steps * cfg.data.batch_size * cfg.optim.d_steps / elapsed, steady


def bench_overhead(
    device: torch.device, batches: List[int], steps: int, warmup: int, repeats: int, progress: bool
) -> dict:
    """``ratio``: normgan's whole fit() (its end-of-run sample grid and checkpoint included) ÷ the bare
    loop; ``ratio_steady``: normgan's logged steady-state images/s ÷ the bare loop, the per-step
    overhead (on a fast GPU a few hundred steps take under a second, and the run's fixed end costs,
    ~0.1 s of PNG encoding and checkpoint writing, weigh on ``ratio`` alone)."""
    name, out = device_name(device), {}
    # one-time process costs (CUDA context, kernels, TensorBoard import, the first PNG and checkpoint
    # writes) are not framework overhead per run: one short untimed run of each loop first
    warm = load_config(CONFIG, overrides=base_overrides(device, batches[0]))
    bare_loop(warm, device, 2, 1)
    normgan_loop(warm, device, 2, 1, progress=False)
    for B in batches:
        cfg = load_config(CONFIG, overrides=base_overrides(device, B))
        bare, ours, steady = [], [], []
        for _ in range(repeats):  # alternate, so that slow phases of the machine hit both
            bare.append(bare_loop(cfg, device, steps, warmup))
            whole, st = normgan_loop(
                load_config(CONFIG, overrides=base_overrides(device, B)), device, steps, warmup, progress
            )
            ours.append(whole)
            if st:
                steady.append(st)
        out[str(B)] = {
            "device": name,
            "batch_size": B,
            "normgan": rnd(max(ours)),
            "bare": rnd(max(bare)),
            "ratio": round(max(ours) / max(bare), 3),
            "all_normgan": [rnd(x) for x in ours],
            "all_bare": [rnd(x) for x in bare],
            "normgan_steady": rnd(max(steady)) if steady else None,
            "ratio_steady": round(max(steady) / max(bare), 3) if steady else None,
        }
    return out


# ---------------------------------------------------------------------------------------------- interleaved train_step timing
def time_interleaved(
    trainers: Dict[str, Trainer], device: torch.device, steps: int, warmup: int, repeats: int, chunk: int
) -> Dict[str, List[float]]:
    """images/s of each trainer per repeat: ``warmup`` untimed steps, then ``steps`` timed steps in
    chunks of ``chunk`` steps taken in turn by every trainer, each repeat starting at a multiple of
    ``chunk`` (so that every chunk holds the same lazy phases)."""
    pos = {}
    for name, tr in trainers.items():
        for s in range(warmup):
            tr.train_step(s)
        pos[name] = warmup
    sync(device)
    ips: Dict[str, List[float]] = {name: [] for name in trainers}
    for _ in range(repeats):
        for name in trainers:
            pos[name] = -(-pos[name] // chunk) * chunk
        elapsed = dict.fromkeys(trainers, 0.0)
        done = 0
        while done < steps:
            n = min(chunk, steps - done)
            for name, tr in trainers.items():
                sync(device)
                t0 = time.perf_counter()
                for _ in range(n):
                    tr.train_step(pos[name])
                    pos[name] += 1
                sync(device)
                elapsed[name] += time.perf_counter() - t0
            done += n
        for name, tr in trainers.items():
            ips[name].append(steps * tr.cfg.data.batch_size * tr.cfg.optim.d_steps / elapsed[name])
    return ips


def bench_regularizers(device: torch.device, batch: int, steps: int, warmup: int, repeats: int, chunk: int) -> dict:
    name = device_name(device)
    # D without BatchNorm in every configuration: per-sample gradient penalties need it (docs/decisions.md)
    overrides = base_overrides(device, batch, "train.tensorboard=false", "model.discriminator.norm=none")
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {}
        for key, (regs, cons) in REGULARIZERS.items():
            cfg = load_config(CONFIG, overrides=overrides)
            cfg.regularizers, cfg.constraints = regs, cons
            validate(cfg)
            trainers[key] = Trainer(cfg, runs_dir=tmp, progress=False)
        ips = time_interleaved(trainers, device, steps, warmup, repeats, chunk)
    base = max(ips["none"])
    return {
        key: {
            "device": name,
            "batch_size": batch,
            "ratio": round(max(v) / base, 3),
            "images_per_s": rnd(max(v)),
            "all_images_per_s": [rnd(x) for x in v],
            "spec": {"regularizers": REGULARIZERS[key][0], "constraints": REGULARIZERS[key][1]},
        }
        for key, v in ips.items()
    }


def bench_precision(
    device: torch.device, batches: List[int], precisions: List[str], steps: int, warmup: int, repeats: int, chunk: int
) -> dict:
    """fp32 and each of ``precisions`` (``train.precision``) at each batch; a precision the config
    refuses (ConfigError) or the device cannot run is reported as not supported, with the message."""
    name, out = device_name(device), {}
    for B in batches:
        entry: dict = {}
        with tempfile.TemporaryDirectory() as tmp:
            trainers = {}
            for prec in PRECISIONS:
                fig = {"device": name, "batch_size": B}
                try:
                    cfg = load_config(
                        CONFIG,
                        overrides=base_overrides(device, B, "train.tensorboard=false", f"train.precision={prec}"),
                    )
                except ConfigError as e:
                    if prec == "fp32":
                        raise
                    entry[prec] = {**fig, "supported": False, "reason": f"not supported: {e}"}
                    continue
                if prec != "fp32" and prec not in precisions:
                    entry[prec] = {
                        **fig,
                        "supported": True,
                        "skipped": f"accepted by the config, not timed in this run (timed: fp32,{','.join(precisions)}; choose with --precisions)",
                    }
                    continue
                tr = Trainer(cfg, runs_dir=tmp, progress=False)
                if prec == "fp16":  # accepted by the config; the device may still lack fp16 kernels
                    try:
                        tr.train_step(0)
                    except (RuntimeError, NotImplementedError) as e:
                        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                        entry[prec] = {**fig, "supported": False, "reason": f"not supported at run time: {first}"}
                        continue
                trainers[prec] = tr
            ips = time_interleaved(trainers, device, steps, warmup, repeats, chunk)
        fp32 = max(ips["fp32"])
        for prec, v in ips.items():
            entry[prec] = {
                "device": name,
                "batch_size": B,
                "supported": True,
                "images_per_s": rnd(max(v)),
                "speedup_vs_fp32": round(max(v) / fp32, 3),
                "all_images_per_s": [rnd(x) for x in v],
            }
        out[str(B)] = {p: entry[p] for p in PRECISIONS if p in entry}
    return out


# ---------------------------------------------------------------------------------------------- DDP scaling
def steady_images_per_s(metrics: Path) -> Optional[float]:
    """Images/s over the logged intervals after the first (warm-up) one, from the main rank's metrics.jsonl."""
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "images_per_s" in r and "step" in r]
    if len(rows) < 2:
        return None
    steps = [rows[0]["step"]] + [r["step"] for r in rows[1:]]
    intervals = [(b - a, r["images_per_s"]) for a, b, r in zip(steps, steps[1:], rows[1:])]
    # equal images per step: the total over the intervals is Σ n / Σ (n / ips)
    total = sum(n for n, _ in intervals)
    return total / sum(n / ips for n, ips in intervals)


def launch(
    nproc: int,
    device: torch.device,
    batch: int,
    steps: int,
    log_every: int,
    threads: Optional[int],
    tmp: Path,
    timeout: int,
) -> dict:
    name = f"procs{nproc}"
    overrides = base_overrides(
        device,
        batch,
        f"train.steps={steps}",
        f"train.log_every={log_every}",
        f"train.sample_every={steps + 1}",
        f"train.checkpoint_every={steps + 1}",
        "train.tensorboard=false",
    )
    if threads:
        overrides.append(f"train.threads={threads}")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "normgan",
        "train",
        str(CONFIG),
        *overrides,
        "--runs-dir",
        str(tmp),
        "--name",
        name,
        "--no-progress",
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
        return {
            "ok": False,
            "returncode": proc.returncode,
            "wall_s": round(wall, 2),
            "stderr_tail": tail,
            "command": cmd,
        }
    return {
        "ok": True,
        "wall_s": round(wall, 2),
        "steady_images_per_s": steady_images_per_s(tmp / name / "metrics.jsonl"),
        "command": cmd,
    }


def bench_ddp(
    device: torch.device, procs: int, batch: int, steps: int, log_every: int, repeats: int, timeout: int
) -> dict:
    if device.type == "cuda":
        name = f"{procs} x {torch.cuda.get_device_name(0)}"
        backend, threads1, threadsN = "nccl", None, None
    else:
        name = device_name(device)
        backend = "gloo"
        # the same threads in all: one process uses them all, N processes share them (at least 1 each)
        threads1 = torch.get_num_threads()
        threadsN = max(1, threads1 // procs)
    out = {
        "device": name,
        "device_1_process": device_name(torch.device("cuda", 0)) if device.type == "cuda" else name,
        "backend": backend,
        "procs": procs,
        "global_batch": batch,
        "steps": steps,
        "log_every": log_every,
        "threads_per_process": {"1": threads1, str(procs): threadsN} if device.type == "cpu" else None,
    }
    if batch % procs:
        out["skipped"] = f"global batch {batch} does not split over {procs} processes (--ddp-batch)"
        return out
    runs: Dict[str, List[dict]] = {"1": [], str(procs): []}
    with tempfile.TemporaryDirectory() as td:
        for r in range(repeats):
            for n, threads in ((1, threads1), (procs, threadsN)):
                tmp = Path(td) / f"r{r}n{n}"
                tmp.mkdir()
                res = launch(n, device, batch, steps, log_every, threads, tmp, timeout)
                if not res["ok"]:
                    out.update(error=f"the {n}-process run failed (exit {res['returncode']})", failed_run=res)
                    return out
                runs[str(n)].append(res)
    t1, tN = min(r["wall_s"] for r in runs["1"]), min(r["wall_s"] for r in runs[str(procs)])
    out["wall_s"] = {"1": t1, str(procs): tN}
    out["all_wall_s"] = {k: [r["wall_s"] for r in v] for k, v in runs.items()}
    out["efficiency"] = round((t1 / tN) / procs, 3)
    s1 = [r["steady_images_per_s"] for r in runs["1"] if r["steady_images_per_s"]]
    sN = [r["steady_images_per_s"] for r in runs[str(procs)] if r["steady_images_per_s"]]
    if s1 and sN:
        out["steady_images_per_s"] = {"1": rnd(max(s1)), str(procs): rnd(max(sN))}
        out["efficiency_steady_state"] = round((max(sN) / max(s1)) / procs, 3)
    out["command"] = " ".join(runs[str(procs)][0]["command"])
    return out


# ---------------------------------------------------------------------------------------------- main
def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cuda, cuda:N or cpu")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per measurement (default 300; --quick: 20)")
    ap.add_argument(
        "--warmup", type=int, default=None, help="untimed steps before each measurement (default 30; --quick: 3)"
    )
    ap.add_argument(
        "--repeats", type=int, default=None, help="measurements per figure, the best counts (default 3; --quick: 1)"
    )
    ap.add_argument(
        "--batches", default="64,256", help="batch sizes of the overhead and precision sections (default 64,256)"
    )
    ap.add_argument("--reg-batch", type=int, default=64, help="batch size of the regularizers section (default 64)")
    ap.add_argument(
        "--chunk", type=int, default=16, help="steps per configuration in turn in interleaved timings (default 16)"
    )
    ap.add_argument(
        "--precisions",
        default=None,
        help="precisions timed besides fp32 (default bf16,fp16; --quick on CPU: bf16, as CPU fp16 is emulated, ~20x slower)",
    )
    ap.add_argument(
        "--compile-cases",
        default=",".join(COMPILE_CASES),
        help=f"configurations of the compile section (default {','.join(COMPILE_CASES)}; any of the regularizers section's)",
    )
    ap.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run (default all: {','.join(SECTIONS)})",
    )
    ap.add_argument(
        "--ddp-procs",
        type=int,
        default=0,
        help="processes of the DDP section (default: the number of CUDA GPUs when >= 2; on CPU it runs only when given)",
    )
    ap.add_argument("--ddp-batch", type=int, default=256, help="global batch of the DDP runs (default 256)")
    ap.add_argument("--ddp-steps", type=int, default=None, help="steps of each DDP run (default 1000; --quick: 20)")
    ap.add_argument(
        "--ddp-timeout", type=int, default=600, help="seconds before a DDP run counts as failed (default 600)"
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (0: torch's default; default 0, --quick on CPU: 1, robust on a busy machine)",
    )
    ap.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar in the overhead section's fit() (it is on by default, as in training)",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke-test sizes: 20 steps, 3 warm-up steps, 1 repeat, 20 DDP steps, 1 CPU thread (explicit flags win)",
    )
    args = ap.parse_args(argv)
    q = args.quick
    args.steps = args.steps if args.steps is not None else (20 if q else 300)
    args.warmup = args.warmup if args.warmup is not None else (3 if q else 30)
    args.repeats = args.repeats if args.repeats is not None else (1 if q else 3)
    args.ddp_steps = args.ddp_steps if args.ddp_steps is not None else (20 if q else 1000)
    args.precision_list = (
        None if args.precisions is None else [p.strip() for p in args.precisions.split(",") if p.strip()]
    )
    args.batch_list = [int(b) for b in args.batches.split(",") if b.strip()]
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    args.compile_list = [c.strip() for c in args.compile_cases.split(",") if c.strip()]
    bad = (
        [s for s in args.sections if s not in SECTIONS]
        + [p for p in args.precision_list or [] if p not in PRECISIONS]
        + [c for c in args.compile_list if c not in REGULARIZERS]
    )
    if (
        bad
        or not args.batch_list
        or min(args.batch_list) < 1
        or args.steps < 1
        or args.warmup < 0
        or args.repeats < 1
        or args.chunk < 1
    ):
        ap.error(
            f"bad arguments: sections must be among {','.join(SECTIONS)}, precisions among {','.join(PRECISIONS)} and "
            f"compile cases among {','.join(REGULARIZERS)} (bad: {bad}); "
            "batches, steps, repeats and chunk must be positive, warmup >= 0"
        )
    return args


def bench_compile(
    device: torch.device, batch: int, steps: int, warmup: int, repeats: int, chunk: int, cases=COMPILE_CASES
) -> dict:
    """Eager vs ``train.compile`` for each of ``cases``; the first step of each timed apart."""
    name = device_name(device)
    overrides = base_overrides(device, batch, "train.tensorboard=false", "model.discriminator.norm=none")
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key in cases:
            regs, cons = REGULARIZERS[key]
            trainers, first = {}, {}
            for mode in ("eager", "compiled"):
                cfg = load_config(CONFIG, overrides=[*overrides, f"train.compile={mode == 'compiled'}"])
                cfg.regularizers, cfg.constraints = regs, cons
                validate(cfg)
                tr = Trainer(cfg, runs_dir=tmp, progress=False)
                sync(device)
                t0 = time.perf_counter()
                tr.train_step(0)
                sync(device)
                first[mode] = time.perf_counter() - t0
                trainers[mode] = tr
            ips = time_interleaved(trainers, device, steps, warmup, repeats, chunk)
            eager, compiled = max(ips["eager"]), max(ips["compiled"])
            out[key] = {
                "device": name,
                "batch_size": batch,
                "speedup": round(compiled / eager, 3),
                "eager_images_per_s": rnd(eager),
                "compiled_images_per_s": rnd(compiled),
                "first_step_s": {m: round(v, 2) for m, v in first.items()},
                "spec": {"regularizers": regs, "constraints": cons},
            }
    return out


def bench_ops(device: torch.device, batch: int, reg_batch: int, chunk: int, cases=tuple(REGULARIZERS)) -> dict:
    """Kernels and host reads per step (benchmarks/op_count.py), which do not depend on the clock: the
    bare loop (Adam ``foreach``, CUDA's default) vs normgan's ``train_step`` at the default
    architecture and ``batch``, and each of ``cases`` (regularizers section keys) vs no term at
    ``reg_batch`` (D without normalization, as the regularizers section). normgan's counts are the
    mean over steps 1 … ``chunk`` (step 0, which makes the optimizer state, is not counted; 16 steps
    hold one lazy phase of R1/16)."""
    name = device_name(device)

    def trainer_counts(cfg, tmp) -> dict:
        tr = Trainer(cfg, runs_dir=tmp, progress=False)
        step = iter(range(10**9))
        return op_count.count(lambda: tr.train_step(next(step)), repeats=chunk)

    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(CONFIG, overrides=base_overrides(device, batch, "train.tensorboard=false"))
        bare = op_count.count(bare_step_fn(cfg, device, foreach=True), repeats=chunk)
        ours = trainer_counts(cfg, tmp)
        out["step"] = {
            "device": name,
            "batch_size": batch,
            "bare_kernels": bare["kernels"],
            "normgan_kernels": ours["kernels"],
            "bare_host_reads": bare["host_reads"],
            "normgan_host_reads": ours["host_reads"],
            "launch_bound_ratio": round(bare["kernels"] / ours["kernels"], 3),
        }
        overrides = base_overrides(device, reg_batch, "train.tensorboard=false", "model.discriminator.norm=none")
        regs_out, base = {}, None
        for key in ("none", *(c for c in cases if c != "none")):
            regs, cons = REGULARIZERS[key]
            cfg = load_config(CONFIG, overrides=overrides)
            cfg.regularizers, cfg.constraints = regs, cons
            validate(cfg)
            c = trainer_counts(cfg, tmp)
            base = c["kernels"] if key == "none" else base
            regs_out[key] = {
                "device": name,
                "batch_size": reg_batch,
                "kernels": c["kernels"],
                "host_reads": c["host_reads"],
                "launch_bound_ratio": round(base / c["kernels"], 3),
            }
        out["regularizers"] = regs_out
    return out


def main(argv=None) -> None:
    args = parse_args(argv)
    device = (
        torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if args.device == "auto"
        else torch.device(args.device)
    )
    if device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("bench_gpu.py: --device cuda but torch finds no CUDA GPU; use --device cpu")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
    threads = args.threads if args.threads is not None else (1 if args.quick and device.type == "cpu" else 0)
    if threads:
        torch.set_num_threads(threads)  # a bound no Trainer raises (train.threads = 0 may lower it on a busy machine)
    name = device_name(device)
    result: dict = {
        "benchmark": "gpu",
        "device": name,
        "device_type": device.type,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "normgan": normgan.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "model": "configs/mnist.yaml (DCGAN 32 px, width 32, z 64), regularizers={}",
        "settings": {
            "steps": args.steps,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "batches": args.batch_list,
            "reg_batch": args.reg_batch,
            "chunk": args.chunk,
            "quick": args.quick,
            "sections": args.sections,
        },
    }
    if device.type == "cuda":
        result["settings"].update(
            gpu_count=torch.cuda.device_count(),
            tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
            tf32_cudnn=torch.backends.cudnn.allow_tf32,
            cudnn_benchmark=torch.backends.cudnn.benchmark,
            bf16_supported=torch.cuda.is_bf16_supported(),
        )
    started = time.perf_counter()
    skipped = {"device": name, "skipped": f"not selected (--only {args.only})"}
    result["overhead"] = (
        bench_overhead(device, args.batch_list, args.steps, args.warmup, args.repeats, not args.no_progress)
        if "overhead" in args.sections
        else dict(skipped)
    )
    result["regularizers"] = (
        bench_regularizers(device, args.reg_batch, args.steps, args.warmup, args.repeats, args.chunk)
        if "regularizers" in args.sections
        else dict(skipped)
    )
    precisions = (
        args.precision_list
        if args.precision_list is not None
        else (["bf16"] if args.quick and device.type == "cpu" else ["bf16", "fp16"])
    )
    result["settings"]["precisions"] = ["fp32", *[p for p in precisions if p != "fp32"]]
    result["precision"] = (
        bench_precision(device, args.batch_list, precisions, args.steps, args.warmup, args.repeats, args.chunk)
        if "precision" in args.sections
        else dict(skipped)
    )
    result["compile"] = (
        bench_compile(device, args.reg_batch, args.steps, args.warmup, args.repeats, args.chunk, args.compile_list)
        if "compile" in args.sections
        else dict(skipped)
    )
    if "ddp" not in args.sections:
        result["ddp"] = dict(skipped)
    else:
        gpus = torch.cuda.device_count() if device.type == "cuda" else 0
        procs = args.ddp_procs or (gpus if gpus >= 2 else 0)
        if device.type == "cuda" and procs > gpus:
            result["ddp"] = {"device": name, "skipped": f"--ddp-procs {procs} needs {procs} GPUs; torch sees {gpus}"}
        elif procs >= 2:
            result["ddp"] = bench_ddp(
                device,
                procs,
                args.ddp_batch,
                args.ddp_steps,
                max(1, args.ddp_steps // 10),
                args.repeats,
                args.ddp_timeout,
            )
        else:
            why = (
                f"{gpus} CUDA GPU(s): DDP scaling needs >= 2"
                if device.type == "cuda"
                else "CPU without --ddp-procs N (N >= 2)"
            ) + "; pass --ddp-procs N to run N processes"
            result["ddp"] = {"device": name, "skipped": why}
    result["ops"] = (
        bench_ops(device, args.batch_list[0], args.reg_batch, args.chunk) if "ops" in args.sections else dict(skipped)
    )
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
