"""``normgan study``: train a study's variants × seeds and write its table and report.

    normgan study NAME|STUDY.yaml [key=value ...] [--seeds N] [--workers N] [--name NAME]
                  [--studies-dir DIR] [--storage URL] [--no-progress]

Re-running the command continues an interrupted study; running it in several terminals (or on
several machines with ``--storage`` on one database) shares the runs between the processes.
"""

from __future__ import annotations

from pathlib import Path

from normgan.runtime.paths import expand_path


def cmd_study(args) -> int:
    from normgan.study import run_study

    # the copies started by --workers run the same study with the same options
    argv = [args.study, *args.overrides] + (["--seeds", str(args.seeds)] if args.seeds is not None else [])
    argv += (["--name", args.name] if args.name else []) + ["--studies-dir", str(expand_path(args.studies_dir))]
    argv += (["--storage", args.storage] if args.storage else []) + ["--heartbeat", str(args.heartbeat)]
    result = run_study(
        study=args.study,
        overrides=args.overrides,
        seeds=args.seeds,
        name=args.name,
        storage=args.storage,
        studies_dir=expand_path(args.studies_dir),
        progress=not args.no_progress,
        outputs=not args.no_outputs,
        workers=args.workers,
        argv=argv,
    )
    doc = result["document"]
    states = [r["state"] for r in doc["runs"]]
    done = sum(s in ("done", "diverged") for s in states)
    print(
        f"study {doc['name']}: {done} of {len(states)} runs finished"
        + (f" ({states.count('diverged')} diverged)" if "diverged" in states else "")
        + (f", {states.count('failed')} failed" if "failed" in states else "")
    )
    if "table" in result["paths"]:
        print(Path(result["paths"]["table"]).read_text())
    for key in ("table", "report"):
        if key in result["paths"]:
            print(f"{key} written to {result['paths'][key]}")
    return 0 if done == len(states) and "failed" not in states else 1


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "study", help="train a study (config variants x seeds) and write its table and HTML report"
    )
    p.add_argument("study", metavar="NAME|STUDY.yaml", help="a shipped study (stability-digits, …) or a study file")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides for every run (a smaller study: train.steps=300)",
    )
    p.add_argument("--seeds", type=int, default=None, help="number of seeds 0..N-1 (default: the study file's)")
    p.add_argument(
        "--workers", type=int, default=1, help="worker processes on this machine (default 1; each gets cores/N threads)"
    )
    p.add_argument("--name", default=None, help="study folder name (default: the study file's name)")
    p.add_argument("--studies-dir", default="studies", help="folder that holds study folders (default: studies)")
    p.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="Optuna storage shared by the workers "
        "(default: sqlite in the study folder; postgresql://… for several machines)",
    )
    p.add_argument("--heartbeat", type=int, default=30, help=argparse_suppress())
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-outputs", action="store_true", help=argparse_suppress())
    p.set_defaults(func=cmd_study)


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS
