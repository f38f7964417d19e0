"""The ``normgan`` command: a thin layer over the Python API.

    normgan train [CONFIG] [key=value ...] [--dry-run] [--runs-dir DIR] [--name NAME] [--resume RUN]
    normgan sample RUN --n 1000 --out DIR [--seed S]
    normgan eval RUN [--n 5000] [--features domain|inception|pkg.mod:Class]
    normgan compare RUN [RUN ...] [--out DIR]
    normgan diagnose RUN

User errors print one line ``normgan: error: ...`` and exit with code 2 (3 for a diverged run,
130 after Ctrl-C, which saves a checkpoint first).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import List, Optional

from normgan.errors import UserError


def _split_config_and_overrides(items: List[str]) -> tuple[Optional[str], List[str]]:
    config, overrides = None, []
    for item in items:
        if "=" in item:
            overrides.append(item)
        elif config is None:
            config = item
        else:
            raise UserError(f"unexpected argument '{item}'; give one config file and key=value overrides")
    return config, overrides


def cmd_train(args) -> int:
    from normgan.config import load_config, to_yaml
    from normgan.train import Trainer

    config, overrides = _split_config_and_overrides(args.args)
    if args.resume:
        if config is not None:
            raise UserError("--resume takes its config from the run folder; give only key=value overrides (e.g. train.steps=6000)")
        trainer = Trainer.resume(args.resume, overrides=overrides, device=args.device, progress=not args.no_progress)
        if args.dry_run:
            print(to_yaml(trainer.cfg), end="")
            return 0
    else:
        cfg = load_config(config, overrides=overrides)
        if args.dry_run:
            print(to_yaml(cfg), end="")
            return 0
        label = None
        if config is not None:
            from pathlib import Path

            label = f"{Path(config).stem}-{cfg.loss}"
        trainer = Trainer(cfg, runs_dir=args.runs_dir, name=args.name, device=args.device, progress=not args.no_progress, label=label)
    run_dir = trainer.fit()
    print(run_dir)
    return 0


def cmd_sample(args) -> int:
    from normgan.sample import write_sample_files

    out = write_sample_files(args.run, n=args.n, out=args.out, seed=args.seed, ema=not args.no_ema, device=args.device or "cpu")
    print(out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="normgan", description="Train GANs with composable norm regularization.")
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

    from normgan.cli_eval import add_eval_parsers

    add_eval_parsers(sub)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"normgan: warning: {message}\n"


def main(argv: Optional[List[str]] = None) -> int:
    warnings.formatwarning = _one_line_warning  # user-facing warnings are one line, without source lines
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            return args.func(args)
    except UserError as e:
        print(f"normgan: error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    except Exception as e:
        from normgan.train.loop import Interrupted

        if isinstance(e, Interrupted):
            print(f"normgan: {e}", file=sys.stderr)
            return e.exit_code
        raise


if __name__ == "__main__":
    sys.exit(main())
