"""Generate images from a trained run: ``normgan sample runs/NAME --n 1000 --out DIR``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Tuple

import torch
from torchvision.utils import make_grid, save_image

from normgan.config import load_config
from normgan.errors import UserError
from normgan.models.build import build_generator_for
from normgan.models.checkpoint import find_checkpoint, load_checkpoint, load_module_state, require_keys
from normgan.runtime.device import resolve_device
from normgan.runtime.paths import write_error
from normgan.runtime.resources import format_bytes


@dataclass
class LoadedGenerator:
    """A run's generator as :func:`load_generator_checkpoint` loads it, with what the checkpoint says of it.

    ``G`` (in eval mode, on the device asked for), ``cfg`` (the run's config), ``path`` (the
    checkpoint file), ``step`` (the training step it was written at; None in a checkpoint without
    one), ``image_shape`` (C, H, W of G's output) and ``in_channels`` (G's input image channels,
    None when G maps noise).
    """

    G: torch.nn.Module
    cfg: Any
    path: Path
    step: Optional[int]
    image_shape: Tuple[int, int, int]
    in_channels: Optional[int]


def load_generator(run: str | Path, *, ema: bool = True, device: str = "cpu", checkpoint: str = "last.pt"):
    """The (EMA by default) generator of a run, in eval mode, and the run's config: ``(G, cfg)`` of
    :func:`load_generator_checkpoint`."""
    loaded = load_generator_checkpoint(run, ema=ema, device=device, checkpoint=checkpoint)
    return loaded.G, loaded.cfg


def load_generator_checkpoint(
    run: str | Path, *, ema: bool = True, device: str = "cpu", checkpoint: str = "last.pt"
) -> LoadedGenerator:
    """The (EMA by default) generator of a run (a run folder, its ``checkpoints/<checkpoint>``, or a
    .pt file), in eval mode, with its config, step and shapes (:class:`LoadedGenerator`).

    The checkpoint (loaded with ``weights_only=True``) must hold ``config``, ``image_shape``
    ``[C, H, W]`` and ``generator_ema`` (``generator`` with ``ema=False``) whose shapes match the
    generator built from that config; otherwise a one-line :class:`UserError` names the missing
    entry or the first mismatching key with both shapes. Each call builds a new generator.
    """
    path = find_checkpoint(run, checkpoint)
    state = load_checkpoint(path, map_location="cpu")
    key = "generator_ema" if ema else "generator"
    require_keys(state, ("config", "image_shape", key), path=path)
    if not isinstance(state["config"], dict):
        raise UserError(
            f"checkpoint '{path}' has a damaged 'config' entry ({type(state['config']).__name__}, "
            "not a mapping); it is not a normgan training checkpoint"
        )
    cfg = load_config(base=state["config"])
    shape = state["image_shape"]
    try:
        channels, resolution, width = (int(v) for v in shape)
        if channels < 1 or resolution < 1 or width != resolution:
            raise ValueError
    except (TypeError, ValueError):
        raise UserError(
            f"checkpoint '{path}' has a damaged 'image_shape' entry {shape!r}; "
            "expected [channels, resolution, resolution]"
        ) from None
    from normgan.tasks.info import TASK_INFO

    info = TASK_INFO.get(cfg.task)
    in_channels, classes = info.checkpoint_in_channels(state, path=path), info.checkpoint_classes(state, path=path)
    G = build_generator_for(cfg, resolution=resolution, channels=channels, in_channels=in_channels, classes=classes)
    fix = (
        "the weights were not written with the checkpoint's own config; use a checkpoint written by "
        "'normgan train' (or --no-ema / --checkpoint for another file)"
    )
    load_module_state(G, state[key], what="EMA generator" if ema else "generator", path=path, fix=fix)
    step = state.get("step")
    return LoadedGenerator(
        G=G.to(resolve_device(device)).eval(),
        cfg=cfg,
        path=path,
        step=int(step) if isinstance(step, int) else None,
        image_shape=(channels, resolution, resolution),
        in_channels=in_channels,
    )


@torch.no_grad()
def sample_batches(G, *, n: int, seed: int = 0, batch_size: int = 500, device: Optional[torch.device] = None):
    """``n`` images in [-1, 1], yielded ``batch_size`` at a time (float, on the CPU), from noise drawn
    with a generator seeded by ``seed`` (CPU draw: reproducible across devices)."""
    device = device or next(G.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        z = torch.randn(b, G.z_dim, generator=gen).to(device)
        yield G(z).float().cpu()


def sample_images(
    G, *, n: int, seed: int = 0, batch_size: int = 500, device: Optional[torch.device] = None
) -> torch.Tensor:
    """The ``n`` images of :func:`sample_batches` as one tensor."""
    return torch.cat(list(sample_batches(G, n=n, seed=seed, batch_size=batch_size, device=device)))


def _make_dir(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(
            f"cannot create output folder '{out}': {e.strerror or e}; choose another --out (a writable folder, "
            "not a file)"
        ) from None
    return out


def paired_triplets(G, cfg, *, n: int, seed: int = 0, split: str = "test") -> torch.Tensor:
    """(n, 3, C, H, W) [-1, 1] triplets input | output | target for the first ``n`` pairs of ``split``
    (grey shown as 3 channels when the two sides differ); G's dropout RNG is seeded by ``seed``."""
    from normgan.data import batch_to_float, load_paired
    from normgan.tasks.builtin import to_channels

    d = cfg.data
    data = load_paired(
        name=d.name,
        root=d.root,
        resolution=d.resolution,
        split=split,
        direction=d.direction,
        strict=d.strict,
        seed=cfg.train.seed,
    )
    x, y = batch_to_float(data.inputs[:n]), batch_to_float(data.targets[:n])
    device = next(G.parameters()).device
    with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        out = torch.cat([G(x[i : i + 64].to(device)).float().cpu() for i in range(0, x.shape[0], 64)])
    c = max(x.shape[1], y.shape[1])
    return torch.stack([to_channels(v, c) for v in (x, out, y)], dim=1)


#: the most PNG files one ``normgan sample`` writes (a million files is already a file-system question)
MAX_SAMPLE_FILES = 1_000_000


#: the space a small file takes at least (a page of tmpfs, a block of ext4/xfs); network file
#: systems report larger blocks that small files do not fill, so this is not read from statvfs
MIN_FILE_BYTES = 4096


def check_disk(out: Path, *, n: int, image_bytes: int) -> None:
    """A one-line UserError before the first file when ``n`` PNG files of ``image_bytes`` raw bytes
    each cannot fit in ``out``'s free space (each file takes at least 4 KiB; a PNG of a generated
    image is taken at half its raw size, which GAN outputs seldom beat)."""
    from normgan.runtime.resources import free_bytes, free_space

    free = free_bytes(out)
    if free is None:
        return
    per_file = -(-max(image_bytes // 2, 1) // MIN_FILE_BYTES) * MIN_FILE_BYTES
    need = (n + 1) * per_file  # + grid.png
    if need > free:
        raise UserError(
            f"--out '{out}': {n} PNG files need about {format_bytes(need)}, more than the {free_space(out)} "
            "free there; free some space, lower --n or choose another --out"
        )


def write_sample_files(
    run: str | Path,
    *,
    n: int,
    out: str | Path,
    seed: int = 0,
    ema: bool = True,
    device: str = "cpu",
    batch_size: int = 500,
) -> Path:
    """Write ``n`` PNG files (``000000.png`` …) at the dataset's resolution plus ``grid.png``.

    A paired run writes input | output | target triplets (one file each, side by side) for the
    first ``n`` pairs of its test split, and a grid of the first 16 (one triplet per row).
    Images are generated and written ``batch_size`` at a time (memory does not grow with ``n``);
    ``n`` above :data:`MAX_SAMPLE_FILES`, or files that cannot fit in ``out``'s free space, are
    refused before the first file. A full disk stops with one line; the files written are kept.
    """
    from normgan.config import check_seed

    if n < 1:
        raise UserError(f"--n: bad value {n}; give a positive number of images")
    if n > MAX_SAMPLE_FILES:
        raise UserError(
            f"--n: {n} images is more than normgan sample writes ({MAX_SAMPLE_FILES:,} PNG files at most); "
            "run it several times with other --seed values and --out folders"
        )
    check_seed(seed, key="--seed")
    G, cfg = load_generator(run, ema=ema, device=device)
    out = Path(out)
    progress = _WriteProgress(path=out)
    from normgan.tasks.info import TASK_INFO

    try:
        if TASK_INFO.get(cfg.task).image_input:  # G maps the split's inputs: input | output | target triplets
            _write_triplet_files(G, cfg, out=out, n=n, seed=seed, progress=progress)
            return out
        _write_generated_files(G, cfg, out=out, n=n, seed=seed, batch_size=batch_size, progress=progress)
    except OSError as e:
        raise _write_failure(e, out=out, progress=progress) from None
    return out


class _WriteProgress:
    """The file being written (``path``; ``out`` before the first) and how many were written whole."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.written = 0


def _write_triplet_files(G, cfg, *, out: Path, n: int, seed: int, progress: _WriteProgress) -> None:
    """Write the input | output | target triplets of the first ``n`` test pairs, one PNG each, and
    ``grid.png`` of the first 16 (one triplet per row)."""
    res, c = cfg.data.resolution, cfg.data.channels or 3
    trip = (paired_triplets(G, cfg, n=n, seed=seed) + 1) / 2
    check_disk(out, n=trip.shape[0], image_bytes=3 * c * res * res)
    _make_dir(out)
    for i, t in enumerate(trip):
        progress.path = out / f"{i:06d}.png"
        save_image(t, progress.path, nrow=3, padding=0)
        progress.written += 1
    k = min(trip.shape[0], 16)
    progress.path = out / "grid.png"
    save_image(make_grid(trip[:k].flatten(0, 1), nrow=3, padding=2), progress.path)


def _write_generated_files(G, cfg, *, out: Path, n: int, seed: int, batch_size: int, progress: _WriteProgress) -> None:
    """Generate ``n`` images ``batch_size`` at a time, write each as a PNG, and ``grid.png`` of the first 64."""
    res, c = cfg.data.resolution, cfg.data.channels or 3
    check_disk(out, n=n, image_bytes=c * res * res)
    _make_dir(out)
    k = min(n, 64)
    first = []
    with torch.no_grad():
        for batch in sample_batches(G, n=n, seed=seed, batch_size=batch_size):
            imgs01 = (batch + 1) / 2
            if progress.written < k:
                first.append(imgs01[: k - progress.written])
            for img in imgs01:
                progress.path = out / f"{progress.written:06d}.png"
                save_image(img, progress.path)
                progress.written += 1
    progress.path = out / "grid.png"
    save_image(make_grid(torch.cat(first)[:k], nrow=max(1, int(math.sqrt(k)))), progress.path)


def _write_failure(e: OSError, *, out: Path, progress: _WriteProgress) -> Exception:
    """The one-line error for a failed write; deletes the partial file being written (those before it are whole)."""
    path, written = progress.path, progress.written
    if path != out and path.is_file():  # the file being written is partial; those before it are whole
        try:
            path.unlink()
        except OSError:
            pass
    return write_error(
        e,
        path,
        fix="choose another --out (a writable folder)",
        full_fix=f"the {written} files written before are intact; free some space, lower --n or choose another --out",
    )
