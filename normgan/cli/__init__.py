"""The ``normgan`` command: a thin layer over the Python API.

    normgan train [CONFIG] [key=value ...] [--dry-run] [--runs-dir DIR] [--name NAME] [--resume RUN]
    normgan sample RUN --n 1000 --out DIR [--seed S]
    normgan translate RUN --input DIR --out DIR [--mode resize|tile]
    normgan export RUN --format torchscript|onnx --out FILE [--checkpoint best.pt]
    normgan eval RUN [--n 5000] [--features domain|domain-full|inception|pkg.mod:Class]
    normgan compare RUN [RUN ...] [--out DIR]
    normgan diagnose RUN
    normgan search CONFIG --param KEY=SPEC ... --folds K --metric NAME (see normgan.cli.search)
    normgan study NAME|STUDY.yaml [key=value ...] [--workers N] (see normgan.cli.study)
    normgan report RUN|SEARCH|STUDY|COMPARE [--out FILE]
    normgan --version

User errors print one line ``normgan: error: ...`` and exit with code 2 (3 for a diverged run,
130 after Ctrl-C, which saves a checkpoint first).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import signal
import sys
import warnings
from typing import List, Optional

from normgan.errors import Interrupted, SignalExit, UserError

#: the commands in the order ``normgan --help`` lists them; each is a module of this package whose
#: ``add_parser(subparsers)`` registers it (its ``cmd_<name>(args)`` runs it and returns the exit code)
COMMANDS = ("train", "sample", "translate", "export", "eval", "compare", "diagnose", "search", "report", "study")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="normgan", description="Train GANs with composable norm regularization.")
    parser.add_argument(
        "--version", action="version", version=version_line(), help="print normgan's and torch's versions and exit"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:  # light modules: each imports what its command needs when it runs
        importlib.import_module(f"normgan.cli.{name}").add_parser(sub)
    return parser


def version_line() -> str:
    """``normgan X.Y.Z (torch A.B.C, python D.E.F)``, read without importing torch (a second)."""
    import platform
    from importlib import metadata

    from normgan.runtime.version import __version__

    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = "not installed"
    return f"normgan {__version__} (torch {torch_version}, python {platform.python_version()})"


#: OS errors a user fixes (space, permissions, a file where a folder belongs), with the fix
OS_ERROR_FIXES = {
    errno.ENOSPC: "free some space or write elsewhere",
    errno.EDQUOT: "free some space (disk quota exceeded) or write elsewhere",
    errno.EACCES: "check its permissions or write elsewhere",
    errno.EPERM: "check its permissions or write elsewhere",
    errno.EROFS: "the file system is read-only; write elsewhere",
    errno.ENOTDIR: "a file stands where a folder is needed; remove it or choose another path",
    errno.EISDIR: "a folder stands where a file is needed; remove it or choose another path",
    errno.EEXIST: "a file of that name is in the way; remove it or choose another path",
    errno.ENAMETOOLONG: "choose a shorter path",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n)",
}


def os_error_line(e: OSError) -> str:
    """One line for an OSError that reached the CLI: the path(s), the system's reason, the fix."""
    paths = " -> ".join(f"'{p}'" for p in (e.filename, e.filename2) if p is not None)
    reason = e.strerror or str(e)
    fix = OS_ERROR_FIXES.get(e.errno, "check the path")
    return f"{paths}: {reason}; {fix}" if paths else f"{reason}; {fix}"


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"normgan: warning: {message}\n"


def parse_args(parser: argparse.ArgumentParser, argv: Optional[List[str]]) -> argparse.Namespace:
    """``parse_args``, except that ``train`` takes its config and key=value overrides anywhere on the
    line (``normgan train --name x train.steps=300``), not only before the options."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        dest = {"train": "args", "search": "args", "study": "overrides"}.get(getattr(args, "command", None))
        if dest and not any(e.startswith("-") for e in extra):
            setattr(args, dest, list(getattr(args, dest)) + extra)
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _raise_on_sigterm(signum, frame) -> None:
    raise SignalExit(signum, "stopped by SIGTERM before training started; nothing was written")


#: commands that load torch; their heavy imports run with Ctrl-C/SIGTERM held back
TORCH_COMMANDS = ("train", "sample", "translate", "export", "eval", "compare", "search", "study")


def _import_holding_signals() -> None:
    """Import torch, torchvision and the training loop with SIGINT/SIGTERM recorded, not raised.

    A KeyboardInterrupt raised inside a third-party import can be swallowed by a bare ``except:``
    there, or leave a half-initialised package behind (seen: a RecursionError in torchvision.models,
    and a run that went on training after Ctrl-C). The signal is acted on once the imports are done:
    one line, exit 130 (143 for SIGTERM), nothing written.
    """
    pending: list[int] = []
    old = {
        sig: signal.signal(sig, lambda signum, frame: pending.append(signum)) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        import torch  # noqa: F401
        import torchvision.utils  # noqa: F401

        import normgan.train.loop  # noqa: F401
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if pending:
        name = "Ctrl-C" if pending[0] == signal.SIGINT else signal.Signals(pending[0]).name
        raise SignalExit(pending[0], f"interrupted ({name}) before training started; nothing was written")


def main(argv: Optional[List[str]] = None) -> int:
    """Run one command; returns its exit code (2 bad input, 3 diverged, 130/143 after Ctrl-C/SIGTERM)."""
    from normgan.runtime.threads import short_openmp_spins

    short_openmp_spins()  # before torch loads: waiting OpenMP threads spin briefly, then sleep (normgan/runtime/threads.py, train.threads)
    warnings.formatwarning = _one_line_warning  # user-facing warnings are one line, without source lines
    old_term = signal.signal(signal.SIGTERM, _raise_on_sigterm) if _main_thread() else None
    try:
        args = parse_args(build_parser(), argv)
        if args.command in TORCH_COMMANDS and _main_thread():
            _import_holding_signals()
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            return args.func(args)
    except UserError as e:
        print(f"normgan: error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    except Interrupted as e:
        print(f"normgan: {e}", file=sys.stderr)
        return e.exit_code
    except SignalExit as e:
        print(f"normgan: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("normgan: interrupted (Ctrl-C) before training started; nothing was written", file=sys.stderr)
        return 130
    except OSError as e:
        # a backstop: the commands name their own paths; what escapes them is still one line
        if e.errno not in OS_ERROR_FIXES:
            raise
        print(f"normgan: error: {os_error_line(e)}", file=sys.stderr)
        return 1 if e.errno in (errno.ENOSPC, errno.EDQUOT) else 2
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
