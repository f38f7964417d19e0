"""``normgan report``: one self-contained HTML page of a run, study or comparison folder.

    normgan report PATH [--out FILE] [--no-progress]

PATH is a run folder (``normgan train``), a study folder (``normgan study``: its table.md,
results.csv and plots are rewritten too) or a comparison folder (``normgan compare ... --out DIR``);
the page goes to ``PATH/report.html`` unless ``--out``. A search folder (``normgan search``)
already has its report.html: its path is printed.
"""

from __future__ import annotations

from normgan.errors import UserError
from normgan.runtime.paths import expand_path


def cmd_report(args) -> int:
    from normgan.report.folders import classify

    kind, path = classify(expand_path(args.path))
    if kind == "search":
        report = path / "report.html"
        if not report.is_file():
            raise UserError(
                f"search folder '{path}' has no report.html yet; 'normgan search' writes it after each "
                "finished trial: run (or continue) the search first"
            )
        print(f"'{path}' is a search folder: its report is {report} (already written by 'normgan search')")
        return 0
    if kind == "study":
        from normgan.report.study import write_study_outputs

        out = write_study_outputs(path, out=expand_path(args.out), progress=not args.no_progress)["report"]
    elif kind == "compare":
        from normgan.report.compare import write_compare_report

        out = write_compare_report(path, out=expand_path(args.out))
        print(f"report written to {out}")
        return 0
    else:
        from normgan.report import write_run_report

        out = write_run_report(path, out=expand_path(args.out), progress=not args.no_progress)
    if args.no_progress:
        print(f"report written to {out}")
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="write one self-contained HTML page of a run (config, curves, evaluation, "
        "samples over time, diagnostics), a study (table, curves over seeds, samples per "
        "variant) or a comparison",
    )
    p.add_argument(
        "path",
        metavar="PATH",
        help="run folder made by 'normgan train', study folder made by 'normgan "
        "study', or comparison folder made by 'normgan compare ... --out DIR' (a search folder: its "
        "report.html is printed)",
    )
    p.add_argument("--out", default=None, metavar="FILE", help="where to write the page (default PATH/report.html)")
    p.add_argument("--no-progress", action="store_true", help="print only the final line")
    p.set_defaults(func=cmd_report)
