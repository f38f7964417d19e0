"""``idx``: an MNIST-family IDX images file, plus its labels file when one sits next to it.

IDX layout: two zero bytes, a dtype code (only 0x08 = uint8 is supported), the
number of dimensions ``d``, then ``d`` big-endian int32 sizes and the
row-major data.  Files are gunzipped when named ``*.gz`` or starting with the
gzip magic ``1f 8b``.  An images file must be 3-D ``(N, H, W)``; its labels file
(1-D, length N) is found by renaming ``images-idx3`` to ``labels-idx1`` (``-`` or
``.`` separator), with or without ``.gz``, e.g. ``train-images-idx3-ubyte.gz``
-> ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte`` -> ``t10k-labels-idx1-ubyte``.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from pathlib import Path

import numpy as np
import torch

from normgan.data.dataset import DATASETS, Source
from normgan.data.transforms import fit_to_resolution
from normgan.errors import ConfigError, DataError

#: IDX files are the MNIST family (black background, 28 px): up to 32 px they are zero-padded,
#: centred, instead of resized (lossless); larger resolutions resize.
IDX_PAD_UP_TO = 32

_GZIP_MAGIC = b"\x1f\x8b"
_UINT8 = 0x08
_IMAGES_RE = re.compile(r"images([-.])idx3", re.IGNORECASE)


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (optionally gzipped) into a uint8 array; any defect raises DataError naming the file."""

    def bad(problem: str) -> DataError:
        return DataError(f"data.root: IDX file '{path}' {problem}; set data.root to a valid MNIST-style IDX file")

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise bad(f"cannot be read ({exc.strerror or exc})") from None
    if path.suffix.lower() == ".gz" or raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise bad(f"is not valid gzip ({' '.join(str(exc).split())})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise bad("has a wrong magic number (expected 00 00 <dtype> <ndim>)")
    if raw[2] != _UINT8:
        raise bad(f"has unsupported dtype code 0x{raw[2]:02x} (only 0x08 = uint8 is supported)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise bad(f"has a truncated or invalid header ({ndim} dimensions)")
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64))
    if min(shape) < 0 or len(raw) - header != expected:
        raise bad(f"is truncated or corrupt (header says {shape} = {expected} bytes, found {len(raw) - header})")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def labels_path(images: Path) -> Path | None:
    """The existing labels file matching ``images`` by the usual naming, or None."""
    new, count = _IMAGES_RE.subn(lambda m: f"labels{m.group(1)}idx1", images.name)
    if not count:
        return None
    stem = new[:-3] if new.lower().endswith(".gz") else new
    for candidate in (new, stem, stem + ".gz"):
        p = images.with_name(candidate)
        if p.is_file():
            return p
    return None


def _stat(p: Path) -> list:
    st = p.stat()
    return [os.path.abspath(p), st.st_size, st.st_mtime_ns]


@DATASETS.register("idx")
def load_idx(*, root, resolution: int, **_) -> Source:
    """Load an IDX images file (and labels when found next to it) as 1-channel images."""
    if root is None:
        raise ConfigError("data.root: not set; set data.root to an IDX images file when data.name is 'idx'")
    path = Path(root)
    if not path.exists():
        raise DataError(
            f"data.root: IDX file '{root}' does not exist; set data.root to e.g. train-images-idx3-ubyte.gz"
        )
    if not path.is_file():
        raise DataError(
            f"data.root: '{root}' is not a file; set data.root to an IDX images file such as train-images-idx3-ubyte.gz"
        )
    images = read_idx(path)
    if images.ndim != 3:
        raise DataError(
            f"data.root: IDX file '{root}' holds a {images.ndim}-D array {images.shape}, not images (N, H, W); "
            "set data.root to an images file (idx3)"
        )
    if images.shape[0] == 0:
        raise DataError(f"data.root: IDX file '{root}' holds no images; set data.root to a non-empty IDX images file")
    identity = {"images": _stat(path)}
    labels = None
    lpath = labels_path(path)
    if lpath is not None:
        raw = read_idx(lpath)
        if raw.shape != (images.shape[0],):
            raise DataError(
                f"data.root: labels file '{lpath}' has shape {raw.shape} but '{root}' has {images.shape[0]} images; "
                "fix or remove the labels file"
            )
        labels = torch.from_numpy(raw.astype(np.int64))
        identity["labels"] = _stat(lpath)
    x = torch.from_numpy(images.copy()).unsqueeze(1)
    out, mode = fit_to_resolution(x, resolution, pad_up_to=IDX_PAD_UP_TO)
    if mode == "pad":
        identity["fit"] = "pad"
    return Source(images=out, labels=labels, name=os.fspath(root), identity=identity)
