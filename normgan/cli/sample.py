"""``normgan sample``: write N generated images as PNG files plus a grid."""

from __future__ import annotations

from normgan.runtime.paths import expand_path


def cmd_sample(args) -> int:
    from normgan.config import check_seed
    from normgan.inference.sample import write_sample_files

    check_seed(args.seed, key="--seed")

    out = write_sample_files(
        expand_path(args.run),
        n=args.n,
        out=expand_path(args.out),
        seed=args.seed,
        ema=not args.no_ema,
        device=args.device or "cpu",
    )
    print(out)
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("sample", help="write N generated images as PNG files plus a grid")
    p.add_argument("run", help="run folder (or a checkpoint .pt file)")
    p.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-ema", action="store_true", help="use the raw generator instead of its EMA copy")
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_sample)
