"""``normgan train``: train a GAN from a config (or resume a run)."""

from __future__ import annotations

from normgan.config import split_config_and_overrides
from normgan.errors import UserError
from normgan.runtime.paths import expand_path


def cmd_train(args) -> int:
    from normgan.config import check_data_source, load_config, to_yaml
    from normgan.models.build import check_memory
    from normgan.train import Trainer

    config, overrides = split_config_and_overrides(args.args)
    if args.resume:
        if config is not None:
            raise UserError(
                "--resume takes its config from the run folder; give only key=value overrides (e.g. train.steps=6000)"
            )
        if args.name is not None:
            raise UserError("--resume continues the run in its own folder; drop --name")
        trainer = Trainer.resume(
            expand_path(args.resume), overrides=overrides, device=args.device, progress=not args.no_progress
        )
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
        trainer = Trainer(
            cfg, runs_dir=expand_path(args.runs_dir), name=args.name, device=args.device, progress=not args.no_progress
        )
    run_dir = trainer.fit()
    print(run_dir)
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a GAN (default: the built-in mnist5k config)")
    p.add_argument(
        "args",
        nargs="*",
        metavar="CONFIG|key=value",
        help="an optional YAML config (or a shipped one, e.g. configs/mnist.yaml) and dotted overrides",
    )
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("--runs-dir", default="runs", help="folder that holds run folders (default: runs)")
    p.add_argument("--name", default=None, help="run folder name (default: a numbered name)")
    p.add_argument(
        "--resume", default=None, metavar="RUN", help="continue the run in this folder from its last checkpoint"
    )
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (overrides train.device)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)
