"""Take a trained generator out of normgan: ``normgan export RUN --format torchscript|onnx --out FILE``.

The EMA generator of a run's checkpoint (``generator_ema``) is written as a file that runs without
normgan -- TorchScript (``torch.jit.trace``, saved with ``torch.jit.save``; load it with
``torch.jit.load``) or ONNX (``torch.onnx.export(..., dynamo=False)``, torch's TorchScript-based
exporter, opset :data:`ONNX_OPSET`; it needs the ``onnx`` package at export time, not
``onnxscript``) -- with its input contract beside it as JSON, in ``FILE.json`` (:func:`contract_path`):
the task, the inputs (names, shapes with a dynamic batch dimension, dtype, values: z ~ N(0, I) of
``z_dim``, images in [-1, 1]), the output, the image shape, the checkpoint and its step, versions.

What is exported is G as ``normgan sample`` runs it: eval mode (batch norm with its running
statistics, hard-concrete gates at their test-time values), parametrizations such as spectral
normalization baked into plain weights (W/σ(W) with the checkpoint's u, v), and no gradients. One
difference: dropout kept on at test time (pix2pix's ``test_dropout: true``) is switched off, so the
file is deterministic (``normgan translate`` draws that dropout; the contract records the run's
setting). The file is traced on the CPU; the inputs are those the task declares
(:meth:`normgan.tasks.info.TaskInfo.generator_inputs`), called as ``G(*inputs)``.

Before anything is written the exported file is run at two batch sizes and compared with G (ONNX:
when onnxruntime is installed; the contract's ``check`` says what was compared). Both files are
written atomically (temporary files in the same folder, fsynced, then ``os.replace``).
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from normgan.errors import UserError
from normgan.inference.sample import LoadedGenerator, load_generator_checkpoint
from normgan.models.layers import KeepDropout
from normgan.runtime.paths import check_writable_dir, write_error
from normgan.runtime.version import __version__
from normgan.tasks.info import IMAGE_RANGE, TASK_INFO, image_spec

FORMATS = ("torchscript", "onnx")
#: the ONNX opset the files are written with (onnxruntime 1.17 and later run it)
ONNX_OPSET = 17
#: the version of the contract's layout (its keys), raised when a key changes meaning
CONTRACT_VERSION = 1
#: batch sizes the exported file is checked at (neither is the batch size it is traced at)
CHECK_BATCH_SIZES = (1, 3)
TRACE_BATCH_SIZE = 2
#: the largest difference from G the check accepts (float32 arithmetic in another order)
CHECK_TOLERANCE = 1e-4


def contract_path(out: str | os.PathLike) -> Path:
    """The contract written beside the exported file ``out``: ``out`` + ``.json`` (``g.onnx.json``)."""
    return Path(f"{out}.json")


def check_format(fmt: str) -> str:
    """``fmt`` when it is one of :data:`FORMATS`, else a one-line UserError."""
    if fmt not in FORMATS:
        raise UserError(f"--format: unknown format {fmt!r}; use torchscript or onnx")
    return fmt


def require_onnx_exporter() -> None:
    """A one-line UserError unless the ``onnx`` package torch's ONNX exporter writes with is installed."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise UserError(
            "--format onnx needs the 'onnx' package, which is not installed; install it with "
            "pip install 'normgan[export]' (or pip install onnx), or use --format torchscript"
        ) from None


def check_out(out: str | os.PathLike) -> Path:
    """``out`` as a Path when a file can be written there (its folder is created when missing), else
    a one-line UserError: ``out`` or its contract is a folder, or the folder cannot be written."""
    out = Path(out)
    for path in (out, contract_path(out)):
        if path.is_dir():
            raise UserError(f"--out '{out}': '{path}' is a folder; give a file name, e.g. '{out / 'generator.pt'}'")
    check_writable_dir(out.parent, what="the folder of --out", fix="give --out a file in a writable folder")
    return out


def disable_test_dropout(G: nn.Module) -> bool:
    """Switch off dropout kept on in eval mode (:class:`KeepDropout` ``keep=True``) in ``G``, in
    place; True when there was any (the generator was stochastic at test time)."""
    kept = [m for m in G.modules() if isinstance(m, KeepDropout) and m.keep]
    for m in kept:
        m.keep = False
    return bool(kept)


def bake_parametrizations(G: nn.Module) -> nn.Module:
    """``G`` in place with every parametrization (spectral norm) replaced by the plain weight it
    computes now (``remove_parametrizations(..., leave_parametrized=True)``), gradients off, eval mode.

    In place, never on a ``copy.deepcopy``: a parametrized module's class is made for it and shared
    by its deep copies, so removing the copy's parametrization would break the original.
    """
    for m in list(G.modules()):
        if parametrize.is_parametrized(m):
            for name in list(m.parametrizations.keys()):
                parametrize.remove_parametrizations(m, name, leave_parametrized=True)
    return G.eval().requires_grad_(False)


def example_inputs(specs: Sequence[dict], *, batch: int, seed: int = 0) -> tuple:
    """One tensor per input spec (:meth:`~normgan.tasks.info.TaskInfo.generator_inputs`), ``batch``
    rows, drawn on the CPU with ``seed``: integers uniform in their inclusive ``range``, floats
    uniform in their ``range``, else standard normal (noise)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for spec in specs:
        shape = (batch, *spec["shape"][1:])
        dtype = getattr(torch, spec["dtype"])
        low, high = spec.get("range", (None, None))
        if not dtype.is_floating_point:
            out.append(torch.randint(int(low), int(high) + 1, shape, generator=gen, dtype=dtype))
        elif low is not None:
            out.append(torch.rand(shape, generator=gen, dtype=dtype) * (high - low) + low)
        else:
            out.append(torch.randn(shape, generator=gen, dtype=dtype))
    return tuple(out)


def export_bytes(G: nn.Module, *, fmt: str, specs: Sequence[dict], output: dict) -> bytes:
    """``G`` (ready: :func:`bake_parametrizations`) as the bytes of a TorchScript or ONNX file whose
    inputs are ``specs`` (in order, batch dimension dynamic) and whose output is ``output``."""
    inputs = example_inputs(specs, batch=TRACE_BATCH_SIZE, seed=1)
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # torch.jit's deprecation notices and the tracer's notes on shape checks turned constant
        warnings.simplefilter("ignore")
        if fmt == "torchscript":
            torch.jit.save(torch.jit.trace(G, inputs, check_trace=False), buf)
        else:
            names = [s["name"] for s in specs] + [output["name"]]
            torch.onnx.export(
                G,
                inputs,
                buf,
                dynamo=False,
                input_names=names[:-1],
                output_names=names[-1:],
                dynamic_axes={name: {0: "batch"} for name in names},
                opset_version=ONNX_OPSET,
                do_constant_folding=True,
            )
    return buf.getvalue()


def run_exported(data: bytes, *, fmt: str, inputs: tuple, names: Sequence[str]) -> Optional[torch.Tensor]:
    """The exported file ``data`` run on ``inputs`` (torch.jit, or onnxruntime on the CPU); None
    for ONNX when onnxruntime is not installed."""
    if fmt == "torchscript":
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.load(io.BytesIO(data))(*inputs)
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {n: x.numpy() for n, x in zip(names, inputs)})[0])


def check_export(data: bytes, *, fmt: str, specs: Sequence[dict], references: dict) -> dict:
    """Run ``data`` on the inputs of ``references`` (batch size -> (inputs, G's output)); the
    ``check`` entry of the contract. A difference above :data:`CHECK_TOLERANCE` is an error."""
    names = [s["name"] for s in specs]
    diffs = []
    for batch, (inputs, expected) in references.items():
        got = run_exported(data, fmt=fmt, inputs=inputs, names=names)
        if got is None:
            return {"skipped": "onnxruntime is not installed (pip install onnxruntime)"}
        if tuple(got.shape) != tuple(expected.shape):
            raise UserError(
                f"the exported {fmt} file gives shape {tuple(got.shape)} at batch {batch}, G {tuple(expected.shape)}; "
                "nothing was written (a normgan bug: please report it)"
            )
        diffs.append(float((got.float() - expected).abs().max()))
    if max(diffs) > CHECK_TOLERANCE:
        raise UserError(
            f"the exported {fmt} file differs from G by {max(diffs):.3g} (more than {CHECK_TOLERANCE:g}); "
            "nothing was written (a normgan bug: please report it)"
        )
    runtime = "torch.jit" if fmt == "torchscript" else f"onnxruntime {_version('onnxruntime')}"
    return {"batch_sizes": list(references), "max_abs_diff": max(diffs), "runtime": runtime}


def _version(package: str) -> Optional[str]:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def build_contract(
    loaded: LoadedGenerator, *, fmt: str, out: Path, specs: Sequence[dict], output: dict, extra: dict
) -> dict:
    """The input contract of the file ``out`` exported from ``loaded`` (the keys docs/export.md lists);
    ``extra``: the ``generator`` entries found while exporting (``test_dropout``) and ``check``."""
    channels, resolution, _ = loaded.image_shape
    cfg = loaded.cfg
    exporter = "torch.jit.trace" if fmt == "torchscript" else f"torch.onnx.export (dynamo=False), opset {ONNX_OPSET}"
    versions = {"normgan": __version__, "torch": str(torch.__version__)}
    if fmt == "onnx":
        versions["onnx"] = _version("onnx")
    return {
        "contract": CONTRACT_VERSION,
        "format": fmt,
        "file": out.name,
        "exporter": exporter,
        "task": cfg.task,
        "inputs": list(specs),
        "outputs": [output],
        "z_dim": getattr(loaded.G, "z_dim", None),
        "classes": getattr(loaded.G, "num_classes", None),
        "image": {"channels": channels, "resolution": resolution, "range": list(IMAGE_RANGE)},
        "generator": {
            "name": cfg.model.generator.name,
            "weights": "generator_ema",
            "mode": "eval",
            **extra["generator"],
        },
        "checkpoint": str(loaded.path.resolve()),
        "step": loaded.step,
        "versions": versions,
        "check": extra["check"],
    }


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_files_atomic(files: dict) -> None:
    """Write each ``{path: bytes}`` to a temporary file in its folder (fsynced), then ``os.replace``
    them all: a failure leaves no partial file and, when it comes before the first replace, the
    previous files untouched. OS errors are one-line UserErrors naming the path."""
    pending: dict = {}
    path = None
    try:
        for path, data in files.items():
            fd, pending[path] = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o666 & ~_umask())
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for path in list(pending):
            os.replace(pending[path], path)
            del pending[path]
    except OSError as e:
        raise write_error(
            e, path, fix="give --out a file in a writable folder", full_fix="free some space or choose another --out"
        ) from None
    finally:
        for tmp in pending.values():
            if os.path.exists(tmp):
                os.unlink(tmp)


def export_run(run: str | os.PathLike, *, fmt: str, out: str | os.PathLike, checkpoint: str = "last.pt") -> dict:
    """Export the EMA generator of ``run`` (a run folder or a checkpoint file; ``checkpoint``: the
    file name in ``RUN/checkpoints``) as ``fmt`` to ``out``, its contract to :func:`contract_path`;
    returns the contract.

    Bad input is a one-line UserError before anything is written: an unknown ``fmt``, ONNX without
    the ``onnx`` package, an ``out`` that cannot be written, a missing run or checkpoint.
    """
    check_format(fmt)
    if fmt == "onnx":
        require_onnx_exporter()
    out = check_out(out)
    loaded = load_generator_checkpoint(run, ema=True, device="cpu", checkpoint=checkpoint)
    if loaded.path.resolve() in (out.resolve(), contract_path(out).resolve()):
        raise UserError(f"--out '{out}' is the checkpoint being exported; give another file name")
    G = loaded.G.float()
    test_dropout = disable_test_dropout(G)
    if test_dropout:
        warnings.warn(
            f"run '{run}' keeps dropout on at test time (test_dropout: true); "
            "the exported generator is deterministic, with that dropout off"
        )
    channels, resolution, _ = loaded.image_shape
    specs = TASK_INFO.get(loaded.cfg.task).generator_inputs(
        z_dim=getattr(G, "z_dim", None),
        in_channels=loaded.in_channels,
        resolution=resolution,
        classes=getattr(G, "num_classes", None),
    )
    output = image_spec("image", channels=channels, resolution=resolution)
    with torch.no_grad():  # G's outputs before its parametrizations are baked in: the check's reference
        references = {b: (x, G(*x)) for b in CHECK_BATCH_SIZES for x in [example_inputs(specs, batch=b, seed=b)]}
    data = export_bytes(bake_parametrizations(G), fmt=fmt, specs=specs, output=output)
    check = check_export(data, fmt=fmt, specs=specs, references=references)
    extra = {"generator": {"test_dropout": test_dropout}, "check": check}
    contract = build_contract(loaded, fmt=fmt, out=out, specs=specs, output=output, extra=extra)
    write_files_atomic({out: data, contract_path(out): _json_bytes(contract)})
    return contract


def _json_bytes(contract: dict) -> bytes:
    import json

    return (json.dumps(contract, indent=2) + "\n").encode()
