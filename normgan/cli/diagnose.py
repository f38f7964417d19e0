"""``normgan diagnose``: training-stability diagnostics from a run's metrics.jsonl."""

from __future__ import annotations

import json

from normgan.errors import UserError
from normgan.runtime.paths import expand_path as _path


def cmd_diagnose(args) -> int:
    from normgan.eval.diagnostics import format_summary, summarize_run

    if getattr(args, "window", 10) < 2:
        raise UserError(f"--window: {args.window} is too small; use at least 2 logged rows")
    s = summarize_run(
        _path(args.run), window=getattr(args, "window", 10), skip_bad=getattr(args, "skip_bad_lines", False)
    )
    bad = s.get("skipped_lines") or []
    if bad:
        import sys

        print(
            f"normgan: warning: skipped {len(bad)} damaged line{'s' if len(bad) != 1 else ''} of "
            f"'{_path(args.run)}/metrics.jsonl' (line {', '.join(str(b['line']) for b in bad[:8])}"
            f"{' …' if len(bad) > 8 else ''}: {bad[0]['reason']})",
            file=sys.stderr,
        )
    print(json.dumps(s, indent=2, sort_keys=True) if getattr(args, "json", False) else format_summary(s))
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("diagnose", help="training-stability diagnostics from a run's metrics.jsonl")
    p.add_argument("run", help="run folder")
    p.add_argument(
        "--window", type=int, default=10, help="rolling window of logged rows for the loss variance (default 10)"
    )
    p.add_argument("--json", action="store_true", help="print the diagnostics as JSON")
    p.add_argument(
        "--skip-bad-lines",
        action="store_true",
        help="leave out damaged lines of metrics.jsonl (not JSON, "
        "not UTF-8, no integer step) with one warning, instead of refusing",
    )
    p.set_defaults(func=cmd_diagnose)
