import sys


def _run() -> int:
    try:  # Ctrl-C while the imports load torch: one line, exit 130
        from normgan.cli import main
    except KeyboardInterrupt:
        print("normgan: interrupted (Ctrl-C) during start-up; nothing was written", file=sys.stderr)
        return 130
    return main()


sys.exit(_run())
