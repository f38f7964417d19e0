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
from normgan.train.checkpoint import find_checkpoint, load_checkpoint
from normgan.device import resolve_device


def load_generator(run: str | Path, *, ema: bool = True, device: str = "cpu", checkpoint: str = "last.pt"):
    """The (EMA by default) generator of a run, in eval mode, and the run's config."""
    state = load_checkpoint(find_checkpoint(run, checkpoint), map_location="cpu")
    cfg = load_config(base=state["config"])
    channels, resolution, _ = state["image_shape"]
    G = build_generator_for(cfg, resolution=int(resolution), channels=int(channels))
    G.load_state_dict(state["generator_ema" if ema else "generator"])
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


def write_sample_files(run: str | Path, *, n: int, out: str | Path, seed: int = 0, ema: bool = True, device: str = "cpu") -> Path:
    """Write ``n`` PNG files (``000000.png`` …) at the dataset's resolution plus ``grid.png``."""
    if n < 1:
        raise UserError(f"--n: bad value {n}; give a positive number of images")
    G, _ = load_generator(run, ema=ema, device=device)
    imgs = sample_images(G, n=n, seed=seed)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create output folder '{out}': {e.strerror}") from None
    imgs01 = (imgs + 1) / 2
    for i, img in enumerate(imgs01):
        save_image(img, out / f"{i:06d}.png")
    k = min(n, 64)
    save_image(make_grid(imgs01[:k], nrow=max(1, int(math.sqrt(k)))), out / "grid.png")
    return out
