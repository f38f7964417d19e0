"""``normgan translate``: apply a paired run's generator to a folder of images."""

from __future__ import annotations

from normgan.runtime.paths import expand_path


def cmd_translate(args) -> int:
    from normgan.config import check_seed
    from normgan.inference.translate import translate_folder

    check_seed(args.seed, key="--seed")

    out, n = translate_folder(
        expand_path(args.run),
        input=expand_path(args.input),
        out=expand_path(args.out),
        mode=args.mode,
        checkpoint=args.checkpoint,
        ema=not args.no_ema,
        device=args.device or "cpu",
        seed=args.seed,
        progress=not args.no_progress,
    )
    print(f"translated {n} image{'s' if n != 1 else ''} into {out}")
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "translate", help="apply a paired run's generator to a folder of images (any size, grey or colour)"
    )
    p.add_argument("run", help="run folder of a paired run (or a checkpoint .pt file)")
    p.add_argument("--input", required=True, help="folder of images (searched recursively) or one image file")
    p.add_argument("--out", required=True, help="output folder; relative paths and file names are kept")
    p.add_argument(
        "--mode",
        default="resize",
        help="resize (default: whole image at the training resolution, resized back) "
        "or tile (training-resolution tiles, full detail)",
    )
    p.add_argument("--checkpoint", default="last.pt", help="checkpoint file name in RUN/checkpoints (default last.pt)")
    p.add_argument("--no-ema", action="store_true", help="use the raw generator instead of its EMA copy")
    p.add_argument("--seed", type=int, default=0, help="seed of dropout kept on at test time (default 0)")
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_translate)
