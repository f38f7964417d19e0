"""``folder``: every image file below a folder, decoded with PIL.

Files are found by a recursive walk, filtered by extension (case-insensitive)
and sorted by relative path.  Grey modes ("1", "L", "LA", "I;16", "I", "F")
decode to one channel, everything else (RGB, RGBA, palette, CMYK...) to RGB.
With ``channels`` unset the result is 1-channel only when every image is grey;
otherwise grey images are repeated to 3 channels.  When every image sits
exactly one level down in a sub-folder, labels are the index of that
sub-folder's name in the sorted list of sub-folder names.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from normgan.data.dataset import DATASETS, Source
from normgan.data.transforms import center_crop_resize
from normgan.errors import ConfigError, DataError

EXTENSIONS = ("png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "webp")
_GREY_MODES = ("1", "L", "LA")
# Exceptions PIL raises for unreadable, truncated or hostile files.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def find_images(root: Path) -> list[Path]:
    """Image files below ``root`` (recursive), sorted by relative POSIX path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in filenames:
            if fn.rsplit(".", 1)[-1].lower() in EXTENSIONS and "." in fn:
                found.append(Path(dirpath) / fn)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def is_grey_mode(mode: str) -> bool:
    """Whether :func:`decode_image` decodes a file of PIL ``mode`` to one channel (known from the header alone)."""
    return mode in _GREY_MODES or mode.startswith("I") or mode == "F"


def decode_image(path: Path) -> np.ndarray:
    """Decode ``path`` to uint8 ``(H, W)`` (grey) or ``(H, W, 3)`` (colour).

    16-bit grey is scaled by 1/257; 32-bit int / float grey is clipped to 0..255
    (or scaled by 1/257 when its maximum exceeds 255).
    """
    with Image.open(path) as im:
        mode = im.mode
        if mode in _GREY_MODES:
            return np.array(im.convert("L"), dtype=np.uint8)
        if is_grey_mode(mode):
            a = np.asarray(im, dtype=np.float64)
            if mode.startswith("I;16") or (a.size and a.max() > 255):
                a = a / 257.0
            return np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.array(im.convert("RGB"), dtype=np.uint8)


def _load_one(path: Path, resolution: int) -> torch.Tensor | tuple[Path, BaseException]:
    """Decode and resize one file to uint8 ``(C, R, R)``; a decode error is returned as ``(path, error)``."""
    try:
        arr = decode_image(path)
    except DECODE_ERRORS as exc:
        return path, exc
    x = torch.from_numpy(arr)
    x = x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)
    return center_crop_resize(x.unsqueeze(0), resolution)[0]


def read_all(items: list, read: Callable, *, strict: bool, what: str) -> tuple[list, list[int]]:
    """``read(item)`` for every item in a thread pool; returns the results and the indices kept.

    ``read`` returns a result, or the decode error of the file it names as ``(path, exc)``; errors
    raise a DataError when ``strict``, else the item is skipped with one warning. ``what`` names the
    items in messages ("image files in 'DIR'", "pairs").
    """
    out, keep, bad = [], [], []
    pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1, max(1, len(items))))
    try:
        for i, result in enumerate(pool.map(read, items)):
            if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], BaseException):
                path, exc = result
                if strict:
                    why = " ".join(f"{type(exc).__name__}: {exc}".split())
                    raise DataError(
                        f"data.root: cannot read image file '{path}' ({why}); "
                        "fix or delete it, or set data.strict: false to skip unreadable files"
                    )
                bad.append(path)
                continue
            out.append(result)
            keep.append(i)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if not out:
        raise DataError(
            f"data.root: none of the {len(items)} {what} could be read (first: {bad[0]}); add readable images"
        )
    if bad:
        warnings.warn(
            f"data.root: skipped {len(bad)} unreadable {what} (first: {bad[0]}); "
            "set data.strict: true to make this an error",
            UserWarning,
            stacklevel=4,
        )
    return out, keep


def stack_images(images: list[torch.Tensor]) -> torch.Tensor:
    """Stack ``(C, S, S)`` images: 1 channel when all are grey, else grey ones repeated to 3."""
    c = 1 if all(x.shape[0] == 1 for x in images) else 3
    return torch.stack([x.expand(c, -1, -1) for x in images])


def _class_labels(root: Path, files: list[Path]) -> list[int] | None:
    """Index of each file's sorted class sub-folder, or None unless every file is ``root/<class>/<file>``."""
    parts = [f.relative_to(root).parts for f in files]
    if not parts or any(len(p) != 2 for p in parts):
        return None
    classes = {name: i for i, name in enumerate(sorted({p[0] for p in parts}))}
    return [classes[p[0]] for p in parts]


def list_folder(root) -> tuple[Path, list[Path]]:
    """``(Path(root), find_images(root))``; a one-line error when ``root`` is unset, missing, not a folder or holds no image."""
    if root is None:
        raise ConfigError("data.root: not set; set data.root to a folder of images when data.name is 'folder'")
    folder = Path(root)
    if not folder.exists():
        raise DataError(f"data.root: folder '{root}' does not exist; set data.root to a folder of images")
    if not folder.is_dir():
        raise DataError(f"data.root: '{root}' is not a folder; set data.root to a folder of images")
    files = find_images(folder)
    if not files:
        raise DataError(
            f"data.root: folder '{root}' contains no image files ({', '.join(EXTENSIONS)}); "
            "set data.root to a folder of images"
        )
    return folder, files


@DATASETS.register("folder")
def load_folder(*, root, resolution: int, strict: bool = False, **_) -> Source:
    """Load every readable image below ``root``; skip unreadable ones with one warning (or raise if ``strict``)."""
    folder, files = list_folder(root)
    labels = _class_labels(folder, files)

    images, keep = read_all(files, lambda p: _load_one(p, resolution), strict=strict, what=f"image files in '{root}'")
    batch = stack_images(images)
    label_tensor = torch.tensor([labels[i] for i in keep], dtype=torch.int64) if labels is not None else None
    identity = {
        "root": os.path.abspath(folder),
        "files": [[f.relative_to(folder).as_posix(), st.st_size, st.st_mtime_ns] for f in files for st in [f.stat()]],
    }
    return Source(images=batch, labels=label_tensor, name=os.fspath(root), identity=identity)
