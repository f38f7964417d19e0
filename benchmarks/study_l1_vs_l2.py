"""The L1 vs L2 study (pix2pix's Table 1 on built-in data): which reconstruction norm, with or without
the conditional GAN, gives sharper, more faithful, more diverse outputs?

Six variants × seeds × two tasks (a photo task and a digit task), each trained with ``normgan train``
and scored with ``normgan eval`` on the TEST split (never used to choose anything):

    python benchmarks/study_l1_vs_l2.py --out docs/studies/l1-vs-l2 --seeds 0 1 2 --jobs 2

Resumable: a run whose evaluation JSON exists is not trained again. Prints the results as JSON and
writes ``OUT/results.json`` and ``OUT/table.md`` (mean ± std over seeds, ddof=1).

Variants (λ = 100 for every reconstruction term, as pix2pix's λ for L1; L2 is the mean squared
error ``sql2_mean``, the same element-mean reduction as ``l1``):
``l1``, ``l2`` (no GAN: ``loss: none``), ``cgan`` (no reconstruction), ``l1+cgan``, ``l2+cgan``,
``l1+l2+cgan``. Every G keeps dropout on at test time (``test_dropout``), so diversity is the
pixel std across 4 dropout draws for the same input.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

L1 = "+regularizers.l1={term: recon, net: G, norm: l1, weight: 100.0}"
L2 = "+regularizers.l2={term: recon, net: G, norm: sql2_mean, weight: 100.0}"
VARIANTS = {
    "l1": ["loss=none", L1],
    "l2": ["loss=none", L2],
    "cgan": ["loss=bce"],
    "l1+cgan": ["loss=bce", L1],
    "l2+cgan": ["loss=bce", L2],
    "l1+l2+cgan": ["loss=bce", L1, L2],
}
COMMON = [
    "regularizers={}",
    "+model.generator.options.test_dropout=true",
    "eval.every=0",
    "train.tensorboard=false",
    "train.threads=1",
    "train.checkpoint_every=100000",
    "train.sample_every=100000",
]
TASKS = {
    "blur2sharp": ["model.generator.width=16", "model.discriminator.width=16", "train.steps=1500"],
    "edges2digit": ["train.steps=1200"],
}
METRICS = ("psnr", "ssim", "l1", "sharpness_ratio", "dropout_diversity", "classifier_score")


def run_one(task: str, variant: str, seed: int, out: Path, runs: Path) -> dict:
    name = f"{task}-{variant.replace('+', '_')}-s{seed}"  # run names are plain folder names
    result = out / "evals" / f"{name}.json"
    if result.is_file():
        return json.loads(result.read_text())
    t0 = time.perf_counter()
    if not (runs / name / "checkpoints" / "last.pt").is_file() or not _finished(runs / name):
        cmd = [
            sys.executable,
            "-m",
            "normgan",
            "train",
            task,
            *COMMON,
            *TASKS[task],
            *VARIANTS[variant],
            f"train.seed={seed}",
            "--runs-dir",
            str(runs),
            "--name",
            name,
            "--no-progress",
        ]
        if (runs / name).exists():
            cmd = [sys.executable, "-m", "normgan", "train", "--resume", str(runs / name), "--no-progress"]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
    train_s = time.perf_counter() - t0
    ev = subprocess.run(
        [
            sys.executable,
            "-m",
            "normgan",
            "eval",
            str(runs / name),
            "--json",
            "--metrics",
            "psnr,ssim,l1,classifier_score",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    res = json.loads(ev.stdout)
    row = {"task": task, "variant": variant, "seed": seed, "train_seconds": train_s, **{m: res.get(m) for m in METRICS}}
    result.parent.mkdir(parents=True, exist_ok=True)
    result.write_text(json.dumps(row, indent=2) + "\n")
    return row


def _finished(run: Path) -> bool:
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    rows = (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").is_file() else []
    return bool(rows) and json.loads(rows[-1]).get("step") == cfg["train"]["steps"]


def _fmt(values, digits: int) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def table(rows: list[dict]) -> str:
    lines = []
    for task in TASKS:
        cls = task == "edges2digit"
        head = "| variant | PSNR (dB) ↑ | SSIM ↑ | L1 ↓ | sharpness ratio (→ 1) | diversity | " + (
            "classifier score ↑ |" if cls else ""
        )
        lines += [
            f"### {task} (test split, {len({r['seed'] for r in rows if r['task'] == task})} seeds)",
            "",
            head,
            "|" + "---|" * (head.count("|") - 1),
        ]
        for variant in VARIANTS:
            rs = [r for r in rows if r["task"] == task and r["variant"] == variant]
            if not rs:
                continue
            cells = [
                _fmt([r["psnr"] for r in rs], 2),
                _fmt([r["ssim"] for r in rs], 3),
                _fmt([r["l1"] for r in rs], 3),
                _fmt([r["sharpness_ratio"] for r in rs], 3),
                _fmt([r["dropout_diversity"] for r in rs], 4),
            ]
            if cls:
                cells.append(_fmt([r["classifier_score"] for r in rs], 3))
            lines.append(f"| {variant} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def figure(task: str, runs: Path, out: Path, *, seed: int = 0, n: int = 6) -> Path:
    """One row per test input: input | each variant's output (seed ``seed`` runs) | target."""
    import torch
    from torchvision.utils import save_image

    from normgan.inference.sample import load_generator, paired_triplets

    cols = []
    for variant in VARIANTS:
        G, cfg = load_generator(runs / f"{task}-{variant.replace('+', '_')}-s{seed}")
        trip = paired_triplets(G, cfg, n=n, seed=0)  # (n, 3, C, H, W): input, output, target
        cols.append(trip[:, 1])
    grid = torch.stack([trip[:, 0], *cols, trip[:, 2]], dim=1).flatten(0, 1)
    path = out / f"{task}-samples.png"
    save_image((grid + 1) / 2, path, nrow=len(VARIANTS) + 2, padding=2)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/studies/l1-vs-l2", help="results, table and per-run evaluations")
    p.add_argument("--runs-dir", default="runs/study-l1-vs-l2", help="run folders (checkpoints; not committed)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--tasks", nargs="+", default=list(TASKS))
    p.add_argument("--jobs", type=int, default=2, help="runs trained at once (one thread each)")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(t, v, s) for t in args.tasks for s in args.seeds for v in VARIANTS]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(lambda j: run_one(*j, out, Path(args.runs_dir)), jobs))
    (out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / "table.md").write_text(table(rows))
    for task in args.tasks:
        figure(task, Path(args.runs_dir), out, seed=args.seeds[0])
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
