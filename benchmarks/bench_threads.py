"""Wall time of `normgan train configs/mnist.yaml train.steps=200` at 1 thread, at one thread per
core and at the default `train.threads` (0: the cores free at the start, normgan/runtime/threads.py), on a
quiet machine and beside a competing CPU-bound process (a busy Python loop per --competitors).
The command line sets GOMP_SPINCOUNT=3000 (waiting threads spin briefly, then sleep); the variant
"all (N), spinning" is the behaviour before that: all cores and libgomp's own wait
(GOMP_SPINCOUNT=300000); --variant adds others (e.g. passive:train.threads=2:OMP_WAIT_POLICY=PASSIVE).

Each run is the real command in a fresh process (the `normgan` entry point, normgan.cli:main), so
start-up, logging, sample grids and checkpoints count. Runs alternate (every variant once per
repeat, quiet then contended) and the median counts. Beside each time: the process's CPU seconds,
the torch threads it ended with, and `others_cores`, the cores that processes other than this
benchmark's kept busy during the run (from /proc/stat): on a shared machine "quiet" means only
"no competitor of ours", and this column says how quiet it was. Prints JSON:

    python benchmarks/bench_threads.py [--steps 200] [--repeats 1] [--competitors 1] [--skip-spinning]
        [--variant NAME:OVERRIDE[,OVERRIDE]:ENV=VALUE[,ENV=VALUE]]   # extra variants to try
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from normgan.runtime.threads import _cpu_ticks, usable_cores  # noqa: E402

CHILD = """
import json, sys
from normgan.cli import main
rc = main(sys.argv[2:])
import torch
with open(sys.argv[1], "w") as f:
    json.dump({"rc": rc, "threads": torch.get_num_threads()}, f)
sys.exit(rc)
"""


def _busy_ticks() -> tuple[int, int]:
    ticks = _cpu_ticks(set(os.sched_getaffinity(0))) or {}
    return sum(b for b, _ in ticks.values()), sum(t for _, t in ticks.values()) // max(1, len(ticks))


def _proc_cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0


def run_once(*, steps: int, config: str, overrides: list[str], env: dict, competitors: list) -> dict:
    hz = os.sysconf("SC_CLK_TCK")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "child.json"
        argv = ["train", config, f"train.steps={steps}", *overrides, "--runs-dir", tmp, "--no-progress"]
        busy0, total0 = _busy_ticks()
        comp0 = sum(_proc_cpu_ticks(p.pid) for p in competitors)
        start = time.perf_counter()
        before = os.times()
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(out), *argv],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        wall = time.perf_counter() - start
        after = os.times()
        busy1, total1 = _busy_ticks()
        comp1 = sum(_proc_cpu_ticks(p.pid) for p in competitors)
        if proc.returncode != 0:
            raise SystemExit(f"bench_threads: {' '.join(argv)} failed:\n{proc.stderr[-2000:]}")
        child = json.loads(out.read_text())
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    span = max(1, total1 - total0)  # jiffies per CPU during the run
    all_busy = (busy1 - busy0) / span
    others = all_busy - cpu * hz / span - (comp1 - comp0) / span
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "threads": child["threads"],
        "others_cores": round(max(0.0, others), 2),
    }


def parse_variant(text: str) -> tuple[str, list[str], dict]:
    name, _, rest = text.partition(":")
    ov, _, env = rest.partition(":")
    return name, [o for o in ov.split(",") if o], dict(e.split("=", 1) for e in env.split(",") if e)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--competitors", type=int, default=1, help="busy processes beside the contended runs (default 1)"
    )
    parser.add_argument("--config", default="configs/mnist.yaml")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME:OVERRIDES:ENV, e.g. passive:train.threads=2:OMP_WAIT_POLICY=PASSIVE",
    )
    parser.add_argument("--conditions", default="quiet,contended")
    parser.add_argument("--skip-spinning", action="store_true", help="leave out the slow 'all (N), spinning' variant")
    args = parser.parse_args()
    cores = usable_cores()
    # a caller's OpenMP settings would apply to every variant; each run gets the environment a user has
    base_env = {
        k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
    }
    os.environ.clear()
    os.environ.update(base_env)
    variants = [
        ("1", ["train.threads=1"], {}),
        (f"all ({cores})", [f"train.threads={cores}"], {}),
        ("default", [], {}),
        # before this default: all cores, and libgomp's own wait (spin 300,000 times, then sleep)
        (f"all ({cores}), spinning", [f"train.threads={cores}"], {"GOMP_SPINCOUNT": "300000"}),
    ]
    if args.skip_spinning:
        variants.pop()
    variants += [parse_variant(v) for v in args.variant]
    conditions = args.conditions.split(",")
    results: dict = {c: {name: [] for name, _, _ in variants} for c in conditions}
    for _ in range(args.repeats):
        for cond in conditions:
            competitors = []
            if cond == "contended":
                competitors = [
                    subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.competitors)
                ]
                time.sleep(1.0)  # running before the run starts, as a user's other job would be
            try:
                for name, ov, env in variants:
                    r = run_once(steps=args.steps, config=args.config, overrides=ov, env=env, competitors=competitors)
                    results[cond][name].append(r)
                    print(json.dumps({"condition": cond, "variant": name, **r}), file=sys.stderr, flush=True)
            finally:
                for p in competitors:
                    p.kill()
                    p.wait()
    summary = {}
    for cond in conditions:
        med = {name: statistics.median(r["wall_s"] for r in rs) for name, rs in results[cond].items()}
        best = min(med["1"], med[f"all ({cores})"])
        summary[cond] = {
            "median_wall_s": med,
            "best_of_1_and_all_s": best,
            "default_over_best": round(med["default"] / best, 3),
        }
    out = {
        "command": f"normgan train {args.config} train.steps={args.steps}",
        "cores": cores,
        "competitors": args.competitors,
        "repeats": args.repeats,
        "summary": summary,
        "runs": results,
    }
    if "contended" in summary:
        out["acceptance_default_within_1.5x_of_best_when_contended"] = summary["contended"]["default_over_best"] <= 1.5
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
