"""The ``normgan`` command: a thin layer over the Python API.

    normgan train [CONFIG] [key=value ...] [--dry-run] [--runs-dir DIR] [--name NAME] [--resume RUN]
    normgan sample RUN --n 1000 --out DIR [--seed S]
    normgan translate RUN --input DIR --out DIR [--mode resize|tile]
    normgan eval RUN [--n 5000] [--features domain|inception|pkg.mod:Class]
    normgan compare RUN [RUN ...] [--out DIR]
    normgan diagnose RUN
    normgan search CONFIG --param KEY=SPEC ... --folds K --metric NAME (see normgan.cli_search)
    normgan study NAME|STUDY.yaml [key=value ...] [--workers N] (see normgan.cli_study)
    normgan report RUN|SEARCH|STUDY|COMPARE [--out FILE]
    normgan --version

User errors print one line ``normgan: error: ...`` and exit with code 2 (3 for a diverged run,
130 after Ctrl-C, which saves a checkpoint first).
"""

from __future__ import annotations

import argparse
import errno
import signal
import sys
import warnings
from typing import List, Optional

from normgan.config import split_config_and_overrides
from normgan.errors import Interrupted, SignalExit, UserError
from normgan.paths import expand_path


def cmd_train(args) -> int:
    from normgan.config import check_data_source, load_config, to_yaml
    from normgan.train import Trainer
    from normgan.models.build import check_memory

    config, overrides = split_config_and_overrides(args.args)
    if args.resume:
        if config is not None:
            raise UserError("--resume takes its config from the run folder; give only key=value overrides (e.g. train.steps=6000)")
        if args.name is not None:
            raise UserError("--resume continues the run in its own folder; drop --name")
        trainer = Trainer.resume(expand_path(args.resume), overrides=overrides, device=args.device, progress=not args.no_progress)
        if args.dry_run:
            check_data_source(trainer.cfg)
            print(to_yaml(trainer.cfg), end="")
            return 0
    else:
        cfg = load_config(expand_path(config), overrides=overrides)
        if args.dry_run:  # what a start would refuse before its first step, without loading data
            check_data_source(cfg)
            check_memory(cfg, device=args.device or cfg.train.device)
            print(to_yaml(cfg), end="")
            return 0
        # one naming rule for the CLI and the Python API: runs/NNNNN-<dataset>-<loss> unless --name
        trainer = Trainer(cfg, runs_dir=expand_path(args.runs_dir), name=args.name, device=args.device, progress=not args.no_progress)
    run_dir = trainer.fit()
    print(run_dir)
    return 0


def cmd_sample(args) -> int:
    from normgan.config import check_seed
    from normgan.sample import write_sample_files

    check_seed(args.seed, key="--seed")

    out = write_sample_files(expand_path(args.run), n=args.n, out=expand_path(args.out), seed=args.seed, ema=not args.no_ema, device=args.device or "cpu")
    print(out)
    return 0


def cmd_translate(args) -> int:
    from normgan.config import check_seed
    from normgan.translate import translate_folder

    check_seed(args.seed, key="--seed")

    out, n = translate_folder(expand_path(args.run), input=expand_path(args.input), out=expand_path(args.out), mode=args.mode,
                              checkpoint=args.checkpoint, ema=not args.no_ema, device=args.device or "cpu", seed=args.seed,
                              progress=not args.no_progress)
    print(f"translated {n} image{'s' if n != 1 else ''} into {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="normgan", description="Train GANs with composable norm regularization.")
    parser.add_argument("--version", action="version", version=version_line(), help="print normgan's and torch's versions and exit")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a GAN (default: the built-in mnist5k config)")
    p.add_argument("args", nargs="*", metavar="CONFIG|key=value", help="an optional YAML config (or a shipped one, e.g. configs/mnist.yaml) and dotted overrides")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("--runs-dir", default="runs", help="folder that holds run folders (default: runs)")
    p.add_argument("--name", default=None, help="run folder name (default: a numbered name)")
    p.add_argument("--resume", default=None, metavar="RUN", help="continue the run in this folder from its last checkpoint")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (overrides train.device)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="write N generated images as PNG files plus a grid")
    p.add_argument("run", help="run folder (or a checkpoint .pt file)")
    p.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-ema", action="store_true", help="use the raw generator instead of its EMA copy")
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("translate", help="apply a paired run's generator to a folder of images (any size, grey or colour)")
    p.add_argument("run", help="run folder of a paired run (or a checkpoint .pt file)")
    p.add_argument("--input", required=True, help="folder of images (searched recursively) or one image file")
    p.add_argument("--out", required=True, help="output folder; relative paths and file names are kept")
    p.add_argument("--mode", default="resize", help="resize (default: whole image at the training resolution, resized back) "
                   "or tile (training-resolution tiles, full detail)")
    p.add_argument("--checkpoint", default="last.pt", help="checkpoint file name in RUN/checkpoints (default last.pt)")
    p.add_argument("--no-ema", action="store_true", help="use the raw generator instead of its EMA copy")
    p.add_argument("--seed", type=int, default=0, help="seed of dropout kept on at test time (default 0)")
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_translate)

    from normgan.cli_eval import add_eval_parsers

    add_eval_parsers(sub)
    from normgan.cli_search import add_search_parser

    add_search_parser(sub)
    from normgan.cli_report import add_report_parser

    add_report_parser(sub)
    from normgan.cli_study import add_study_parser

    add_study_parser(sub)
    return parser


def version_line() -> str:
    """``normgan X.Y.Z (torch A.B.C, python D.E.F)``, read without importing torch (a second)."""
    import platform
    from importlib import metadata

    from normgan._version import __version__

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
TORCH_COMMANDS = ("train", "sample", "translate", "eval", "compare", "search", "study")


def _import_holding_signals() -> None:
    """Import torch, torchvision and the training loop with SIGINT/SIGTERM recorded, not raised.

    A KeyboardInterrupt raised inside a third-party import can be swallowed by a bare ``except:``
    there, or leave a half-initialised package behind (seen: a RecursionError in torchvision.models,
    and a run that went on training after Ctrl-C). The signal is acted on once the imports are done:
    one line, exit 130 (143 for SIGTERM), nothing written.
    """
    pending: list[int] = []
    old = {sig: signal.signal(sig, lambda signum, frame: pending.append(signum)) for sig in (signal.SIGINT, signal.SIGTERM)}
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
    from normgan.threads import short_openmp_spins

    short_openmp_spins()  # before torch loads: waiting OpenMP threads spin briefly, then sleep (normgan/threads.py, train.threads)
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
