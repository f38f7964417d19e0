"""``normgan export``: write a run's EMA generator as a TorchScript or ONNX file that runs without
normgan, with its input contract beside it (``FILE.json``)."""

from __future__ import annotations

import os

from normgan.runtime.paths import expand_path


def cmd_export(args) -> int:
    from normgan.inference.export import contract_path, export_run
    from normgan.runtime.resources import format_bytes

    out = expand_path(args.out)
    contract = export_run(expand_path(args.run), fmt=args.format, out=out, checkpoint=args.checkpoint)
    inputs = ", ".join(f"{s['name']} [{', '.join(map(str, s['shape']))}]" for s in contract["inputs"])
    size = format_bytes(os.path.getsize(out))
    print(f"wrote {out} ({args.format}, {size}; step {contract['step']}; inputs {inputs})")
    print(f"wrote {contract_path(out)} (its input contract)")
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="write a run's EMA generator as a TorchScript or ONNX file (runs without normgan) + FILE.json"
    )
    p.add_argument("run", help="run folder (or a checkpoint .pt file)")
    p.add_argument(
        "--format",
        required=True,
        help="torchscript (torch.jit.load) or onnx (onnxruntime; exporting needs the onnx package: "
        "pip install 'normgan[export]')",
    )
    p.add_argument("--checkpoint", default="last.pt", help="checkpoint file name in RUN/checkpoints (default last.pt)")
    p.add_argument("--out", required=True, help="the file to write; its input contract goes to FILE.json beside it")
    p.set_defaults(func=cmd_export)
