"""``normgan report``: one self-contained HTML page of a run folder.

    normgan report RUN [--out FILE] [--no-progress]

RUN is a folder made by ``normgan train``; the page goes to ``RUN/report.html`` unless ``--out``.
A search folder (``normgan search``) already has its report.html: its path is printed.
"""

from __future__ import annotations

from normgan.errors import UserError
from normgan.paths import expand_path


def cmd_report(args) -> int:
    from normgan.report.folders import classify

    kind, path = classify(expand_path(args.path))
    if kind == "search":
        report = path / "report.html"
        if not report.is_file():
            raise UserError(f"search folder '{path}' has no report.html yet; 'normgan search' writes it after each "
                            "finished trial: run (or continue) the search first")
        print(f"'{path}' is a search folder: its report is {report} (already written by 'normgan search')")
        return 0
    from normgan.report import write_run_report

    out = write_run_report(path, out=expand_path(args.out), progress=not args.no_progress)
    if args.no_progress:
        print(f"report written to {out}")
    return 0


def add_report_parser(subparsers) -> None:
    p = subparsers.add_parser("report", help="write one self-contained HTML page of a run: config, curves, evaluation, "
                              "samples over time, diagnostics")
    p.add_argument("path", metavar="RUN", help="run folder made by 'normgan train' (a search folder: its report.html is printed)")
    p.add_argument("--out", default=None, metavar="FILE", help="where to write the page (default RUN/report.html)")
    p.add_argument("--no-progress", action="store_true", help="print only the final line")
    p.set_defaults(func=cmd_report)
