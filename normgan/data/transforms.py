"""Pixel transforms shared by every dataset loader.

All functions take and return ``uint8`` tensors shaped ``(N, C, H, W)`` except
:func:`batch_to_float`, which produces the float range the models train on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: ITU-R BT.601 luma weights for R, G, B.
LUMA_601 = (0.299, 0.587, 0.114)

_CHUNK = 1024  # images resized per interpolate call, to bound float memory


def batch_to_float(images_uint8: torch.Tensor) -> torch.Tensor:
    """Map uint8 pixels to float32 in [-1, 1]: ``x / 127.5 - 1`` (0 -> -1, 255 -> 1 exactly)."""
    return images_uint8.to(torch.float32) / 127.5 - 1.0


def center_crop_resize(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Centre-crop ``(N, C, H, W)`` uint8 images to a square, then resize to ``resolution``.

    The crop has side ``s = min(H, W)`` and offsets ``((H - s) // 2, (W - s) // 2)``.
    Resizing uses ``interpolate(mode="bilinear", antialias=True, align_corners=False)``
    on float values, rounded to nearest and clamped to 0..255.  A crop that already
    has the target size is returned unchanged (as a contiguous tensor).
    """
    n, c, h, w = images.shape
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    crop = images[:, :, top : top + s, left : left + s]
    if s == resolution:
        return crop.contiguous()
    out = torch.empty((n, c, resolution, resolution), dtype=torch.uint8)
    for start in range(0, n, _CHUNK):
        part = crop[start : start + _CHUNK].to(torch.float32)
        part = F.interpolate(part, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
        out[start : start + _CHUNK] = part.round_().clamp_(0, 255).to(torch.uint8)
    return out


def center_pad(images: torch.Tensor, resolution: int, value: int = 0) -> torch.Tensor:
    """Zero-pad (``value``) square ``(N, C, s, s)`` uint8 images, centred, to ``resolution`` px; no resampling.

    The source lands at offset ``o = (resolution - s) // 2`` on both axes, so
    ``center_crop(center_pad(x, r), s)`` returns exactly ``x``.
    """
    h, w = images.shape[-2:]
    if h != w or h > resolution:
        raise ValueError(f"center_pad needs square images no larger than {resolution}, got {h}x{w}")
    o = (resolution - h) // 2
    return torch.nn.functional.pad(images, (o, resolution - h - o, o, resolution - h - o), value=value)


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """The centred ``size`` x ``size`` window of ``(N, C, R, R)`` images: the inverse of :func:`center_pad`.

    Works on any dtype (uint8 data or float generator output); offset ``(R - size) // 2``.
    """
    r = images.shape[-1]
    if images.shape[-2] != r or size > r:
        raise ValueError(f"center_crop needs square images of at least {size} px, got {tuple(images.shape[-2:])}")
    o = (r - size) // 2
    return images[..., o : o + size, o : o + size]


def fit_rule(size: int, resolution: int, *, pad_up_to: int = 0) -> str:
    """How a square source of side ``size`` reaches ``resolution``: ``native``, ``pad`` or ``resize``."""
    if size == resolution:
        return "native"
    return "pad" if size < resolution <= pad_up_to else "resize"


def fit_to_resolution(images: torch.Tensor, resolution: int, *, pad_up_to: int = 0) -> tuple[torch.Tensor, str]:
    """Bring ``(N, C, H, W)`` uint8 images to ``resolution`` px; returns ``(images, mode)``.

    After the centre square crop of side ``s``: ``"native"`` when ``s == resolution``; ``"pad"``
    (lossless zero-padding, :func:`center_pad`) when ``s < resolution <= pad_up_to``; otherwise
    ``"resize"`` (:func:`center_crop_resize`).  Loaders of sources with a black background (MNIST
    digits) pass ``pad_up_to``; the others keep 0 and always resize.
    """
    s = min(images.shape[-2:])
    mode = fit_rule(s, resolution, pad_up_to=pad_up_to)
    if mode == "pad":
        h, w = images.shape[-2:]
        top, left = (h - s) // 2, (w - s) // 2
        return center_pad(images[:, :, top : top + s, left : left + s], resolution), mode
    return center_crop_resize(images, resolution), mode


def convert_channels(images: torch.Tensor, channels: int | None) -> torch.Tensor:
    """Convert ``(N, C, H, W)`` uint8 images with C in {1, 3} to ``channels``.

    ``None`` keeps C; 3 from 1 repeats the grey plane; 1 from 3 takes the
    ITU-R 601 luma ``Y = 0.299 R + 0.587 G + 0.114 B``, rounded to nearest.
    """
    c = images.shape[1]
    if channels is None or channels == c:
        return images
    if c == 1 and channels == 3:
        return images.repeat(1, 3, 1, 1)
    if c == 3 and channels == 1:
        weights = torch.tensor(LUMA_601, dtype=torch.float32).view(1, 3, 1, 1)
        luma = (images.to(torch.float32) * weights).sum(dim=1, keepdim=True)
        return luma.round_().clamp_(0, 255).to(torch.uint8)
    raise ValueError(f"cannot convert {c} channels to {channels}")
