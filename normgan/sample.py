"""Generate images from a trained run: ``normgan sample runs/NAME --n 1000 --out DIR``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import torch
from torchvision.utils import make_grid, save_image

from normgan.config import load_config
from normgan.errors import UserError
from normgan.train.build import build_generator_for
from normgan.train.checkpoint import find_checkpoint, load_checkpoint, load_module_state, require_keys
from normgan.device import resolve_device


def load_generator(run: str | Path, *, ema: bool = True, device: str = "cpu", checkpoint: str = "last.pt"):
    """The (EMA by default) generator of a run, in eval mode, and the run's config.

    The checkpoint must hold ``config``, ``image_shape`` ``[C, H, W]`` and ``generator_ema``
    (``generator`` with ``ema=False``) whose shapes match the generator built from that config;
    otherwise a one-line :class:`UserError` names the missing entry or the first mismatching key
    with both shapes.
    """
    path = find_checkpoint(run, checkpoint)
    state = load_checkpoint(path, map_location="cpu")
    key = "generator_ema" if ema else "generator"
    require_keys(state, ("config", "image_shape", key), path=path)
    if not isinstance(state["config"], dict):
        raise UserError(f"checkpoint '{path}' has a damaged 'config' entry ({type(state['config']).__name__}, "
                        "not a mapping); it is not a normgan training checkpoint")
    cfg = load_config(base=state["config"])
    shape = state["image_shape"]
    try:
        channels, resolution, width = (int(v) for v in shape)
        if channels < 1 or resolution < 1 or width != resolution:
            raise ValueError
    except (TypeError, ValueError):
        raise UserError(f"checkpoint '{path}' has a damaged 'image_shape' entry {shape!r}; "
                        "expected [channels, resolution, resolution]") from None
    in_channels = None
    if cfg.paired:
        try:
            in_channels = int(state["input_shape"][0])
        except (KeyError, TypeError, ValueError, IndexError):
            raise UserError(f"checkpoint '{path}' of a paired run has no valid 'input_shape' entry; "
                            "it was not written by 'normgan train'") from None
    G = build_generator_for(cfg, resolution=resolution, channels=channels, in_channels=in_channels)
    fix = ("the weights were not written with the checkpoint's own config; use a checkpoint written by "
           "'normgan train' (or --no-ema / --checkpoint for another file)")
    load_module_state(G, state[key], what="EMA generator" if ema else "generator", path=path, fix=fix)
    return G.to(resolve_device(device)).eval(), cfg


@torch.no_grad()
def sample_images(G, *, n: int, seed: int = 0, batch_size: int = 500, device: Optional[torch.device] = None) -> torch.Tensor:
    """``n`` images in [-1, 1] from noise drawn with a generator seeded by ``seed`` (CPU draw: reproducible across devices)."""
    device = device or next(G.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        z = torch.randn(b, G.z_dim, generator=gen).to(device)
        out.append(G(z).float().cpu())
    return torch.cat(out)


def _make_dir(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create output folder '{out}': {e.strerror}") from None
    return out


def paired_triplets(G, cfg, *, n: int, seed: int = 0, split: str = "test") -> torch.Tensor:
    """(n, 3, C, H, W) [-1, 1] triplets input | output | target for the first ``n`` pairs of ``split``
    (grey shown as 3 channels when the two sides differ); G's dropout RNG is seeded by ``seed``."""
    from normgan.data import batch_to_float, load_paired
    from normgan.tasks import to_channels

    d = cfg.data
    data = load_paired(name=d.name, root=d.root, resolution=d.resolution, split=split, direction=d.direction,
                       strict=d.strict, seed=cfg.train.seed)
    x, y = batch_to_float(data.inputs[:n]), batch_to_float(data.targets[:n])
    device = next(G.parameters()).device
    with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        out = torch.cat([G(x[i : i + 64].to(device)).float().cpu() for i in range(0, x.shape[0], 64)])
    c = max(x.shape[1], y.shape[1])
    return torch.stack([to_channels(v, c) for v in (x, out, y)], dim=1)


def write_sample_files(run: str | Path, *, n: int, out: str | Path, seed: int = 0, ema: bool = True, device: str = "cpu") -> Path:
    """Write ``n`` PNG files (``000000.png`` …) at the dataset's resolution plus ``grid.png``.

    A paired run writes input | output | target triplets (one file each, side by side) for the
    first ``n`` pairs of its test split, and a grid of the first 16 (one triplet per row).
    """
    if n < 1:
        raise UserError(f"--n: bad value {n}; give a positive number of images")
    G, cfg = load_generator(run, ema=ema, device=device)
    out = Path(out)
    if cfg.paired:
        trip = (paired_triplets(G, cfg, n=n, seed=seed) + 1) / 2
        _make_dir(out)
        for i, t in enumerate(trip):
            save_image(t, out / f"{i:06d}.png", nrow=3, padding=0)
        k = min(trip.shape[0], 16)
        save_image(make_grid(trip[:k].flatten(0, 1), nrow=3, padding=2), out / "grid.png")
        return out
    imgs = sample_images(G, n=n, seed=seed)
    _make_dir(out)
    imgs01 = (imgs + 1) / 2
    for i, img in enumerate(imgs01):
        save_image(img, out / f"{i:06d}.png")
    k = min(n, 64)
    save_image(make_grid(imgs01[:k], nrow=max(1, int(math.sqrt(k)))), out / "grid.png")
    return out
