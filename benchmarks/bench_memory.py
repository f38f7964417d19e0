"""Peak resident memory of normgan's commands, each measured in its own process.

    python benchmarks/bench_memory.py [--quick] [--steps 60] [--pairs 500,5000] [--out FILE]

Prints one JSON object: for each command its ``peak_rss_mb`` (the largest resident set of the
command and every process it waited for: ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` of a fresh
parent that runs only that command), its wall ``seconds`` and exit code ``rc``.

Commands (each under an empty temporary ``HOME`` and ``NORMGAN_CACHE``, so the domain classifier
is trained where the task has labels, exactly as on a user's first day):

* ``edges2digit`` and ``blur2sharp``: ``normgan train configs/<task>.yaml train.steps=STEPS``
  (with its end-of-run evaluation of the val split), ``normgan eval RUN`` (the test split) and a
  2-fold ``normgan search`` of one trial (both folds, then the final retraining and its test
  evaluation);
* ``aligned``: a synthetic pix2pix folder (A|B files in ``train/``, ``val/``, ``test/`` at 64 px per
  half); one short training run, then ``normgan eval RUN`` with the test split holding each of
  ``--pairs`` (the same run and model; only ``test/`` is replaced), so growth with the split is
  visible.  ``decoded_mb`` is the split's decoded size (pairs × 2 × 3 × 64² bytes, uint8).

Acceptance (issue 19, 2 CPU cores): ``peak_rss_mb`` ≤ 1536 for train, eval and search on
edges2digit, ≤ 3072 on blur2sharp; the aligned eval at the largest split within
1.25 × (its peak at the smallest) + the largest split's decoded data.  ``checks`` states each.

``--quick`` (the test suite): only the aligned part, with splits of 16 and 64 pairs at 32 px, and
its 2-step training run made in this process (unmeasured: ``"in_process": true``); the same JSON
keys otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MB = 1024 * 1024
TARGET_MB = {"edges2digit": 1536, "blur2sharp": 3072}


def _measure_child(argv: list[str]) -> None:
    """Run ``argv`` and print ``{"rc", "peak_rss_mb", "seconds"}`` (this process runs nothing else)."""
    import resource

    t0 = time.perf_counter()
    rc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    tail = (rc.stderr or "").strip().splitlines()[-3:]
    print(
        json.dumps(
            {
                "rc": rc.returncode,
                "peak_rss_mb": round(kb / 1024, 1),
                "seconds": round(seconds, 1),
                "stderr_tail": tail if rc.returncode else [],
            }
        )
    )


def measure(args: list[str], *, env: dict, cwd: Path) -> dict:
    """Peak RSS of ``python -m normgan ARGS`` in a fresh parent process."""
    argv = [sys.executable, os.path.abspath(__file__), "--measure", "--", sys.executable, "-m", "normgan", *args]
    out = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["command"] = "normgan " + " ".join(args)
    return res


def _run_folder(runs: Path, train: dict) -> str:
    found = sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []
    if train["rc"] != 0 or not found:
        raise SystemExit(
            f"{train.get('command', 'training')} failed (exit {train['rc']}): "
            + " | ".join(train.get("stderr_tail", []))
        )
    return str(found[-1])


def write_aligned_split(folder: Path, pairs: int, *, size: int, seed: int) -> None:
    """``pairs`` synthetic A|B files (PNG, ``2·size`` × ``size``): B a smooth random colour image,
    A its grey version with a little noise (a colourization task)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    coarse = max(2, size // 8)
    for i in range(pairs):
        low = rng.random((coarse, coarse, 3))
        b = np.kron(low, np.ones((size // coarse + 1, size // coarse + 1, 1)))[:size, :size]
        b = (255 * b).astype(np.uint8)
        grey = b @ np.array([0.299, 0.587, 0.114])
        a = np.clip(grey + rng.normal(0, 4, grey.shape), 0, 255).astype(np.uint8)
        pair = np.concatenate([np.repeat(a[:, :, None], 3, axis=2), b], axis=1)
        Image.fromarray(pair).save(folder / f"{i:06d}.png")


def bench_task(task: str, *, steps: int, env: dict, work: Path) -> dict:
    runs, searches = work / f"runs-{task}", work / f"searches-{task}"
    cfg = f"configs/{task}.yaml"
    short = [
        f"train.steps={steps}",
        f"train.log_every={max(1, steps // 3)}",
        f"train.sample_every={steps}",
        f"train.checkpoint_every={steps}",
    ]
    out = {"train": measure(["train", cfg, *short, "--runs-dir", str(runs), "--no-progress"], env=env, cwd=work)}
    run = _run_folder(runs, out["train"])
    out["eval"] = measure(["eval", run], env=env, cwd=work)
    out["search_2fold"] = measure(
        [
            "search",
            cfg,
            *short,
            "--param",
            "regularizers.l1.weight=[100]",
            "--folds",
            "2",
            "--searches-dir",
            str(searches),
            "--name",
            f"mem-{task}",
            "--no-progress",
        ],
        env=env,
        cwd=work,
    )
    return out


def bench_aligned(*, pairs: list[int], size: int, steps: int, env: dict, work: Path, in_process: bool = False) -> dict:
    root = work / "aligned"
    write_aligned_split(root / "train", 200 if size >= 32 else 40, size=size, seed=0)
    write_aligned_split(root / "val", 50 if size >= 32 else 16, size=size, seed=1)
    write_aligned_split(root / "test", min(pairs), size=size, seed=2)
    runs = work / "runs-aligned"
    overrides = [
        "data.name=aligned",
        f"data.root={root}",
        f"data.resolution={size}",
        "data.batch_size=16",
        "model.generator.width=16",
        "model.discriminator.width=16",
        f"train.steps={steps}",
        f"train.log_every={max(1, steps // 2)}",
        f"train.sample_every={steps}",
        f"train.checkpoint_every={steps}",
        "eval.metrics=[psnr,ssim,l1]",
    ]
    if in_process:  # --quick: the run is only a means to the evaluations; train it here, unmeasured
        from normgan.config import load_config
        from normgan.train import Trainer

        t0 = time.perf_counter()
        Trainer(
            load_config("configs/blur2sharp.yaml", overrides=overrides + ["train.threads=1"]),
            runs_dir=runs,
            progress=False,
        ).fit()
        out = {"train": {"rc": 0, "in_process": True, "seconds": round(time.perf_counter() - t0, 1)}}
    else:
        out = {
            "train": measure(
                ["train", "configs/blur2sharp.yaml", *overrides, "--runs-dir", str(runs), "--no-progress"],
                env=env,
                cwd=work,
            )
        }
    run = _run_folder(runs, out["train"])
    for k, n in enumerate(sorted(pairs)):
        if k:  # the same run and model: only the test split grows
            shutil.rmtree(root / "test")
            write_aligned_split(root / "test", n, size=size, seed=2)
        res = measure(["eval", run], env=env, cwd=work)
        res["pairs"] = n
        res["decoded_mb"] = round(n * 2 * 3 * size * size / MB, 1)
        out[f"eval_{n}"] = res
    return out


def checks(results: dict, pairs: list[int]) -> dict:
    out = {}
    for task, limit in TARGET_MB.items():
        for cmd, r in results.get(task, {}).items():
            out[f"{task}/{cmd} <= {limit} MB"] = r["rc"] == 0 and r["peak_rss_mb"] <= limit
    al = results.get("aligned", {})
    small, large = al.get(f"eval_{min(pairs)}"), al.get(f"eval_{max(pairs)}")
    if small and large:
        bound = 1.25 * small["peak_rss_mb"] + large["decoded_mb"]
        out[f"aligned/eval_{max(pairs)} <= 1.25 x eval_{min(pairs)} + decoded ({bound:.0f} MB)"] = (
            small["rc"] == 0 and large["rc"] == 0 and large["peak_rss_mb"] <= bound
        )
    return out


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) > 1 and argv[0] == "--measure":
        _measure_child(argv[2:] if argv[1] == "--" else argv[1:])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only the aligned part, tiny (a smoke test, seconds)")
    ap.add_argument("--steps", type=int, default=60, help="training steps of each train/search run (default 60)")
    ap.add_argument("--pairs", default="500,5000", help="test-split sizes of the aligned folder (default 500,5000)")
    ap.add_argument("--tasks", default="edges2digit,blur2sharp", help="built-in tasks to measure (default both)")
    ap.add_argument("--out", default=None, help="also write the JSON to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is in the JSON)")
    args = ap.parse_args(argv)
    pairs = [int(p) for p in args.pairs.split(",")]
    if args.quick:
        pairs, size, steps, tasks = [16, 64], 32, 2, []
    else:
        size, steps, tasks = 64, args.steps, [t for t in args.tasks.split(",") if t]

    work = Path(tempfile.mkdtemp(prefix="normgan-bench-memory-"))
    env = dict(os.environ, HOME=str(work / "home"), NORMGAN_CACHE=str(work / "cache"), PYTHONWARNINGS="ignore")
    (work / "home").mkdir()
    t0 = time.perf_counter()
    results: dict = {}
    try:
        for task in tasks:
            results[task] = bench_task(task, steps=steps, env=env, work=work)
        results["aligned"] = bench_aligned(
            pairs=pairs, size=size, steps=steps, env=env, work=work, in_process=args.quick
        )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report = {
        "benchmark": "peak RSS per command (MB)",
        "quick": bool(args.quick),
        "steps": steps,
        "cpu_count": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "python": platform.python_version(),
        "results": results,
        "checks": checks(results, pairs),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if args.keep:
        report["folder"] = str(work)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
