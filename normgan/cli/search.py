"""``normgan search``: choose config values by grid/random/TPE search with k-fold cross-validation.

normgan search CONFIG --param KEY=SPEC [--param ...] [key=value ...] --folds K --metric NAME
               [--trials N] [--direction min|max] [--sampler grid|random|tpe] [--pruner none|median|halving]
               [--seeds S] [--name NAME] [--storage URL] [--searches-dir DIR] [--keep best|all]
"""

from __future__ import annotations

import argparse
import signal

from normgan.errors import Interrupted, UserError
from normgan.runtime.paths import expand_path


def search_from_args(args):
    """The :class:`~normgan.search.Search` the parsed command line describes (validated, not run)."""
    from normgan.config import split_config_and_overrides
    from normgan.search import Search

    config, overrides = split_config_and_overrides(args.args)
    return Search(
        config=expand_path(config) if config else None,
        overrides=overrides,
        params=args.param,
        trials=args.trials,
        folds=args.folds,
        metric=args.metric,
        direction=args.direction,
        sampler=args.sampler,
        pruner=args.pruner,
        seeds=args.seeds,
        name=args.name,
        storage=args.storage,
        searches_dir=expand_path(args.searches_dir),
        heartbeat=args.heartbeat,
        trainer=args.trainer,
        progress=not args.no_progress,
        final=not args.no_final,
        keep=args.keep,
    )


def cmd_search(args) -> int:
    search = search_from_args(args)
    try:
        out = search.run()
    except (Interrupted, KeyboardInterrupt) as e:
        signum = getattr(e, "signum", signal.SIGINT)
        err = UserError(
            f"search '{search.name}' stopped by {signal.Signals(signum).name}; finished trials are kept in "
            f"{search.folder}; the same command continues it (the interrupted trial runs again)"
        )
        err.exit_code = 128 + int(signum)
        raise err from None
    best, final = out["best"], out["final"]
    states = {}
    for r in out["rows"]:
        states[r["state"]] = states.get(r["state"], 0) + 1
    print(f"search '{search.name}': " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items())))
    if best is None:
        failed = [r for r in out["rows"] if r.get("error")]
        why = (
            f"trial {failed[0]['number']} failed: {' '.join(str(failed[0]['error']).split())}"
            if failed
            else "every trial was pruned or interrupted"
        )
        raise UserError(
            f"search '{search.name}': no trial completed; {why}; fix it and run the command again with "
            f"--name a new folder (details: {out['paths'].get('csv', search.folder)})"
        )
    params = ", ".join(f"{k}={v}" for k, v in best["params"].items())
    std = f" ± {best['std']:.4g}" if best.get("std") is not None else ""
    print(f"best: trial {best['number']} ({params}): {search.metric} {best['mean']:.4g}{std} on the held-out folds")
    if final is not None and final.get("value") is not None:
        print(f"retrained on the whole training split: {search.metric} {final['value']:.4g} on the test split")
    print(f"report: {out['paths'].get('report', search.folder)}")
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "search",
        help="choose config values (e.g. a term's weight) by grid/random/TPE search "
        "with k-fold cross-validation, on Optuna",
    )
    p.add_argument(
        "args", nargs="*", metavar="CONFIG|key=value", help="a YAML config (or a shipped one) and dotted overrides"
    )
    p.add_argument(
        "--param",
        action="append",
        required=True,
        metavar="KEY=SPEC",
        help="a config key and its values: [0,1,10], log:lo:hi, uniform:lo:hi, int:lo:hi or choice:a,b (repeatable)",
    )
    p.add_argument(
        "--trials", type=int, default=None, help="trials in all (random/tpe; grid: the whole grid by default)"
    )
    p.add_argument(
        "--folds", type=int, default=3, help="K folds of the training split (default 3); 1: the validation split"
    )
    p.add_argument("--metric", default=None, help="the score to optimize (default: the config's eval.best_metric)")
    p.add_argument("--direction", default=None, help="min or max (default: from the metric, e.g. FID min, PSNR max)")
    p.add_argument(
        "--sampler", default=None, help="grid, random or tpe (default: grid when every SPEC is a list, else tpe)"
    )
    p.add_argument("--pruner", default="none", help="none (default), median or halving: stop poor trials early")
    p.add_argument("--seeds", type=int, default=1, help="training seeds per fold (default 1)")
    p.add_argument("--name", default=None, help="search name: the folder SEARCHES_DIR/NAME and the Optuna study")
    p.add_argument(
        "--storage", default=None, help="Optuna storage URL shared by workers (default: SQLite in the search folder)"
    )
    p.add_argument("--searches-dir", default="searches", help="folder that holds search folders (default: searches)")
    p.add_argument(
        "--heartbeat",
        type=int,
        default=30,
        help="seconds between worker heartbeats; a trial silent for twice "
        "this is marked failed and run again (default 30)",
    )
    p.add_argument("--trainer", default="normgan", help=argparse.SUPPRESS)  # tests: a stub as package.module:function
    p.add_argument(
        "--keep",
        default="best",
        choices=("best", "all"),
        help="trial checkpoints kept: best (default: the "
        "best trial's only; every trial's metrics and samples stay) or all",
    )
    p.add_argument(
        "--no-final", action="store_true", help="do not retrain the best config and evaluate it on the test split"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar nor per-fold progress lines")
    p.set_defaults(func=cmd_search)
