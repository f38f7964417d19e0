"""``normgan translate RUN --input DIR --out DIR``: apply a paired run's generator to the user's images.

Images of any size, grey or colour (16-bit PNG and TIFF included), keep their relative paths and
file names. Two ways to meet the training resolution R:

* ``resize`` (default): the image is resized to R×R (antialiased bilinear), translated, and the
  output resized back to the image's own size (bicubic) — the whole image at once, at R's detail;
* ``tile``: the image is reflect-padded to a multiple of R, cut into R×R tiles, each tile
  translated, and the result cropped back — full detail for images larger than R.

The input is converted to the generator's input channels (grey repeated to RGB, RGB to BT.601 luma).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from normgan.data import batch_to_float, convert_channels
from normgan.data.folder import DECODE_ERRORS, decode_image, find_images
from normgan.errors import UserError
from normgan.inference.sample import load_generator
from normgan.runtime.paths import check_writable_dir, write_error

MODES = ("resize", "tile")


def _resize(x: torch.Tensor, size: tuple[int, int], *, mode: str) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    kwargs = {"antialias": True} if mode == "bilinear" else {}
    return F.interpolate(x, size=size, mode=mode, align_corners=False, **kwargs)


def translate_image(G, x: torch.Tensor, *, resolution: int, mode: str = "resize", batch_size: int = 16) -> torch.Tensor:
    """G applied to one [-1, 1] image ``x`` (1, C, H, W) of any size; returns (1, C_out, H, W) in [-1, 1]."""
    h, w = x.shape[-2:]
    device = next(G.parameters()).device
    if mode == "resize":
        y = G(_resize(x, (resolution, resolution), mode="bilinear").to(device)).float().cpu()
        return _resize(y, (h, w), mode="bicubic").clamp(-1, 1)
    r = resolution
    ph, pw = math.ceil(h / r) * r - h, math.ceil(w / r) * r - w
    pad_mode = "reflect" if ph < h and pw < w else "replicate"  # reflect needs pad < size
    xp = F.pad(x, (0, pw, 0, ph), mode=pad_mode) if ph or pw else x
    rows, cols = xp.shape[-2] // r, xp.shape[-1] // r
    tiles = xp.unfold(2, r, r).unfold(3, r, r)  # (1, C, rows, cols, r, r)
    tiles = tiles.permute(0, 2, 3, 1, 4, 5).reshape(rows * cols, x.shape[1], r, r)
    out = torch.cat(
        [G(tiles[i : i + batch_size].to(device)).float().cpu() for i in range(0, tiles.shape[0], batch_size)]
    )
    c = out.shape[1]
    out = out.reshape(rows, cols, c, r, r).permute(2, 0, 3, 1, 4).reshape(1, c, rows * r, cols * r)
    return out[..., :h, :w]


def _save(img01: torch.Tensor, path: Path) -> None:
    arr = (img01.clamp(0, 1) * 255).round().to(torch.uint8)[0]
    arr = arr[0].numpy() if arr.shape[0] == 1 else arr.permute(1, 2, 0).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(arr)).save(path)


def translate_folder(
    run,
    *,
    input,
    out,
    mode: str = "resize",
    checkpoint: str = "last.pt",
    ema: bool = True,
    device: str = "cpu",
    seed: int = 0,
    progress: bool = True,
) -> tuple[Path, int]:
    """Translate every image below ``input`` (a folder, or one image file) into ``out``, keeping
    relative paths and file names; returns (out, number of images written).

    Refuses an unconditional run, a missing or empty input, and an unknown ``mode`` with one-line
    :class:`UserError` messages; unreadable files are skipped with a warning.
    """
    if mode not in MODES:
        raise UserError(f"--mode: unknown mode {mode!r}; use resize or tile")
    G, cfg = load_generator(run, ema=ema, device=device, checkpoint=checkpoint)
    _require_paired(run, cfg)
    src, out = Path(input), Path(out)
    root, files = _input_files(src, out=out)
    in_channels, resolution = G.in_channels, cfg.data.resolution
    check_writable_dir(out, what="--out", fix="give a writable folder (it is created when missing)")
    torch.manual_seed(seed)  # dropout kept on at test time draws from here
    try:
        written = _translate_files(
            G, files, root=root, out=out, in_channels=in_channels, resolution=resolution, mode=mode, progress=progress
        )
    except _WriteFailed as e:
        target, written, err = e.args
        raise _write_failure(err, target=target, written=written) from None
    if not written:
        raise UserError(f"no image below '{src}' could be read; check the files")
    return out, written


def _require_paired(run, cfg) -> None:
    """A UserError unless the run's task maps input images (a paired run)."""
    from normgan.tasks.info import TASK_INFO

    task = TASK_INFO.get(cfg.task)
    if not task.image_input:
        raise UserError(
            f"run '{run}' is {task.run_kind}; "
            "translate needs a paired run (e.g. data.name=gray2color); use 'normgan sample' for this one"
        )


def _input_files(src: Path, *, out: Path) -> tuple[Path, list]:
    """``(root, files)``: the images to translate (``src`` itself when it is a file) and the folder their
    relative paths start from; a UserError when there are none or ``out`` is that folder."""
    if src.is_file():
        root, files = src.parent, [src]
    elif src.is_dir():
        root, files = src, find_images(src)
    else:
        raise UserError(f"--input '{src}' does not exist; give a folder of images or one image file")
    if not files:
        raise UserError(f"--input '{src}' holds no image files (png, jpg, bmp, gif, tif, webp)")
    if out.resolve() == root.resolve():
        raise UserError(f"--out '{out}' is the input folder; give another folder so that no input is overwritten")
    return root, files


def _write_failure(err: OSError, *, target: Path, written: int) -> Exception:
    """The one-line error for a failed write of ``target``; deletes that partial file (those before it are whole)."""
    if target.is_file():  # a partial file; those written before it are whole
        try:
            target.unlink()
        except OSError:
            pass
    return write_error(
        err,
        target,
        fix="choose another --out (a writable folder)",
        full_fix=f"the {written} images translated before are intact; free some space or choose another --out",
    )


class _WriteFailed(Exception):
    """(path, images written before it, the OSError) of a failed output write."""


def _translate_files(G, files, *, root, out, in_channels, resolution, mode, progress) -> int:
    written = 0
    with torch.no_grad():
        for path in tqdm(files, disable=not progress, desc="translate", unit="image"):
            try:
                arr = decode_image(path)
            except DECODE_ERRORS as e:
                warnings.warn(f"skipped unreadable image '{path}' ({type(e).__name__})")
                continue
            x = torch.from_numpy(arr)
            x = x[None, None] if x.dim() == 2 else x.permute(2, 0, 1)[None]
            x = batch_to_float(convert_channels(x.contiguous(), in_channels))
            y = translate_image(G, x, resolution=resolution, mode=mode)
            target = out / path.relative_to(root)
            try:
                _save((y + 1) / 2, target)
            except OSError as e:
                raise _WriteFailed(target, written, e) from None
            written += 1
    return written
