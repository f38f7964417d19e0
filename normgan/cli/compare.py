"""``normgan compare``: evaluate runs at the same N and aggregate over seeds (options as ``normgan eval``)."""

from __future__ import annotations

from normgan.cli.eval import add_eval_options
from normgan.runtime.paths import expand_path as _path


def cmd_compare(args) -> int:
    from normgan.eval.compare import compare_runs, format_table
    from normgan.eval.evaluation import check_eval_args
    from normgan.eval.metric_info import check_eval_memory

    metrics = check_eval_args(
        n=args.n, features=args.features, metrics=args.metrics or "fid,kid,pr,is", reference=args.reference
    )
    check_eval_memory(args.n, features=args.features, metrics=metrics)
    table = compare_runs(
        [_path(r) for r in args.runs],
        n=args.n,
        features=args.features,
        metrics=metrics,
        reference=args.reference,
        checkpoint=getattr(args, "checkpoint", "last.pt"),
        ema=not getattr(args, "no_ema", False),
        device=args.device or "cpu",
        seed=args.seed,
        cache_dir=_path(getattr(args, "cache_dir", None)),
        out=_path(args.out),
        progress=not args.no_progress,
    )
    print(
        f"N={table['n']} samples per run, features={table['features']}, reference={table['reference']} split; "
        "mean ± std (ddof=1) over the seeds of each group (one config, one checkpoint step, distinct seeds)"
    )
    floors = {
        (r.get("fid_floor_n"), r.get("n_reference"), r.get("reference"))
        for r in table["runs"].values()
        if r.get("fid_floor_n") is not None
    }
    if len(floors) == 1:
        fn, total, ref = floors.pop()
        if fn != table["n"]:
            print(
                f"FID floor at N={fn}: the {'held-out' if ref == 'test' else ref} split has {total} images, "
                f"too few for two disjoint sets of {table['n']}"
            )
    print(format_table(table["groups"]))
    if table.get("out"):
        print(f"written to {table['out']}/compare.md and compare.json")
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("compare", help="evaluate runs at the same N and aggregate over seeds")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders")
    add_eval_options(p)
    p.add_argument("--out", default=None, help="folder for compare.md and compare.json")
    p.set_defaults(func=cmd_compare)
