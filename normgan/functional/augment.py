r"""Differentiable augmentations of D's inputs: DiffAugment and an ADA pipeline (pure tensor functions).

Every augmentation is split in two: *drawing* its random parameters for ``n`` images
(``*_params(n, ...)``, a dict of tensors whose first dimension is ``n``) and *applying* them
(``*_apply(x, params)``), differentiable w.r.t. the images ``x`` (B, C, H, W) in [-1, 1] (twice:
gradient penalties differentiate through them). The split lets a distributed run draw the parameters
of the global batch and keep its rows, and lets tests apply known parameters.

**DiffAugment** (Zhao et al. 2020, ``DiffAugment_pytorch.py`` of mit-han-lab/data-efficient-gans),
each op on every image (with probability ``p`` per op and image; DiffAugment's own p = 1):

* ``color``: brightness x + (u − 0.5), then saturation m_c + (x − m_c)·2u with m_c the mean over
  channels at each pixel, then contrast m + (x − m)·(u + 0.5) with m the image's mean over C, H, W;
  each u ~ U[0, 1) per image;
* ``translation``: an integer shift (s_h, s_w) ~ U{−⌊R/8 + ½⌋, …, ⌊R/8 + ½⌋}² per image,
  out[i, j] = x[i + s_h, j + s_w], zero outside the image;
* ``cutout``: a square of side ⌊R/2 + ½⌋ set to 0, its centre (c_h, c_w) uniform on the image
  (DiffAugment's offsets, the square clipped at the border);
* ``xflip`` (normgan's, for bCR's flip + translation): a horizontal flip with probability ½.

**ADA** (Karras et al. 2020, ``training/augment.py`` of NVlabs/stylegan2-ada-pytorch), a subset of
its ``bgc`` pipeline, each op applied to an image with probability ``p`` (in this order):

* geometric, composed into one inverse 3 × 3 matrix per image and sampled once (bilinear,
  reflection padding about the border, normalized coordinates; images are square):
  ``xflip`` (flip with probability ½), ``rotate90`` (k·90°, k ~ U{0..3}), ``xint`` (integer
  translation round(t·R) px, t ~ U[−⅛, ⅛] per axis), ``scale`` (isotropic, s = 2^N(0, 0.2²)),
  ``rotate`` (θ ~ U[−π, π), drawn twice, before and after ``aniso``, each with probability
  1 − √(1 − p) so that a rotation happens with probability p), ``aniso`` (s, 1/s with
  s = 2^N(0, 0.2²)), ``xfrac`` (translation t·R px, t ~ N(0, ⅛²) per axis);
* colour, on the values (ADA's colour matrix for images in [-1, 1]): ``brightness`` x + b,
  b ~ N(0, 0.2²); ``contrast`` x·c, c = 2^N(0, 0.5²); ``saturation`` m_c + (x − m_c)·s,
  s = 2^N(0, 1) (identity on 1-channel images).

Not in the subset: ADA's luma flip, hue rotation, image-space filtering, noise and cutout. Integer
ops (flips, 90° rotations, integer translations) land on pixel centres exactly, so they reproduce the
image's pixels (up to float rounding); ADA pads by reflection without repeating the border pixel and
upsamples before warping, normgan samples the image directly.

**Adaptive p** (ADA): r_t = E[sign D(x_real)] over ``interval`` steps;
p ← clamp(p + sign(r_t − target)·B·interval / speed, 0, 1) (B the global batch, ``speed`` the
images for p to move by 1; ADA: target 0.6, interval 4, speed 500,000).
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from normgan.functional.weighting import rt_controller_update

DIFFAUGMENT_OPS = ("color", "translation", "cutout", "xflip")
ADA_GEOMETRIC = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
ADA_COLOUR = ("brightness", "contrast", "saturation")
ADA_OPS = ADA_GEOMETRIC + ADA_COLOUR

#: DiffAugment's ratios: translation R/8, cutout R/2
TRANSLATION_RATIO, CUTOUT_RATIO = 0.125, 0.5
#: ADA's strengths (``AugmentPipe`` defaults)
XINT_MAX, SCALE_STD, ROTATE_MAX, ANISO_STD, XFRAC_STD = 0.125, 0.2, 1.0, 0.2, 0.125
BRIGHTNESS_STD, CONTRAST_STD, SATURATION_STD = 0.2, 0.5, 1.0

Params = Dict[str, Tensor]


def check_ops(ops: Sequence[str], allowed: Sequence[str], *, kind: str) -> tuple:
    """``ops`` as a tuple; ValueError naming the first unknown op and the allowed ones."""
    ops = tuple(ops)
    for op in ops:
        if op not in allowed:
            raise ValueError(f"unknown {kind} op {op!r}; choose among: {', '.join(allowed)}")
    return ops


def _u(n: int, device, generator) -> Tensor:
    return torch.rand(n, device=device, generator=generator)


def _coin(n: int, p: float, device, generator) -> Tensor:
    """Per image: True with probability ``p`` (always True for p ≥ 1, no draw)."""
    if p >= 1.0:
        return torch.ones(n, dtype=torch.bool, device=device)
    return _u(n, device, generator) < p


# ----------------------------------------------------------------------------- DiffAugment ops


def brightness(x: Tensor, shift: Tensor) -> Tensor:
    """x + shift per image (``shift`` of shape (B,))."""
    return x + shift.to(x.dtype).view(-1, 1, 1, 1)


def saturation(x: Tensor, factor: Tensor) -> Tensor:
    """m + (x − m)·factor per image, m the mean over the channels at each pixel."""
    m = x.mean(dim=1, keepdim=True)
    return (x - m) * factor.to(x.dtype).view(-1, 1, 1, 1) + m


def contrast(x: Tensor, factor: Tensor) -> Tensor:
    """m + (x − m)·factor per image, m the image's mean over C, H and W."""
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - m) * factor.to(x.dtype).view(-1, 1, 1, 1) + m


def translate(x: Tensor, shift_h: Tensor, shift_w: Tensor) -> Tensor:
    """out[b, :, i, j] = x[b, :, i + shift_h[b], j + shift_w[b]], 0 where that is outside the image
    (integer shifts of shape (B,); DiffAugment's ``rand_translation`` with the shifts given)."""
    b, _, h, w = x.shape
    rows = torch.arange(h, device=x.device).view(1, h, 1) + shift_h.long().view(-1, 1, 1) + 1
    cols = torch.arange(w, device=x.device).view(1, 1, w) + shift_w.long().view(-1, 1, 1) + 1
    rows, cols = rows.clamp(0, h + 1), cols.clamp(0, w + 1)  # index 0 and h + 1 are the zero padding
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)
    batch = torch.arange(b, device=x.device).view(-1, 1, 1)
    return padded[batch, rows.expand(b, h, w), cols.expand(b, h, w)].permute(0, 3, 1, 2)


def cutout(x: Tensor, centre_h: Tensor, centre_w: Tensor, *, size: int) -> Tensor:
    """x with the square rows [c_h − ⌊size/2⌋, c_h − ⌊size/2⌋ + size) × the same columns around
    c_w set to 0 (clipped at the border), per image."""
    _, _, h, w = x.shape
    top = centre_h.long().view(-1, 1) - size // 2
    left = centre_w.long().view(-1, 1) - size // 2
    r, c = torch.arange(h, device=x.device).view(1, h), torch.arange(w, device=x.device).view(1, w)
    in_rows = (r >= top) & (r < top + size)  # (B, H)
    in_cols = (c >= left) & (c < left + size)  # (B, W)
    keep = ~(in_rows.unsqueeze(2) & in_cols.unsqueeze(1))
    return x * keep.unsqueeze(1).to(x.dtype)


def hflip(x: Tensor, flip: Tensor) -> Tensor:
    """x mirrored left–right where ``flip`` (bool, (B,)) is set."""
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


def diffaugment_params(
    n: int, ops: Sequence[str], *, size: int, p: float = 1.0, device=None, generator: Optional[torch.Generator] = None
) -> Params:
    """DiffAugment's random parameters for ``n`` images of ``size`` px (see the module docstring).

    An op is applied to an image with probability ``p``: where it is not, its parameters are the
    identity (shift 0, factor 1, no cutout, no flip). Keys: ``brightness``, ``saturation``,
    ``contrast`` (color), ``shift_h``, ``shift_w`` (translation), ``cut``, ``centre_h``,
    ``centre_w`` (cutout), ``flip`` (xflip)."""
    ops = check_ops(ops, DIFFAUGMENT_OPS, kind="diffaugment")
    out: Params = {}
    for op in ops:
        on = _coin(n, p, device, generator) if p < 1.0 else None
        if op == "color":
            vals = {"brightness": _u(n, device, generator) - 0.5, "saturation": _u(n, device, generator) * 2}
            vals["contrast"] = _u(n, device, generator) + 0.5
            ident = {"brightness": 0.0, "saturation": 1.0, "contrast": 1.0}
            for k, v in vals.items():
                out[k] = v if on is None else torch.where(on, v, torch.full_like(v, ident[k]))
        elif op == "translation":
            s = int(size * TRANSLATION_RATIO + 0.5)
            for k in ("shift_h", "shift_w"):
                v = torch.randint(-s, s + 1, (n,), device=device, generator=generator)
                out[k] = v if on is None else torch.where(on, v, torch.zeros_like(v))
        elif op == "cutout":
            cut = int(size * CUTOUT_RATIO + 0.5)
            hi = size + (1 - cut % 2)
            out["centre_h"] = torch.randint(0, hi, (n,), device=device, generator=generator)
            out["centre_w"] = torch.randint(0, hi, (n,), device=device, generator=generator)
            out["cut"] = torch.ones(n, dtype=torch.bool, device=device) if on is None else on
        else:  # xflip
            flip = _u(n, device, generator) < 0.5
            out["flip"] = flip if on is None else flip & on
    return out


def diffaugment_apply(x: Tensor, params: Params) -> Tensor:
    """Apply DiffAugment parameters (from :func:`diffaugment_params`) in DiffAugment's order."""
    if "brightness" in params:
        x = brightness(x, params["brightness"])
        x = saturation(x, params["saturation"])
        x = contrast(x, params["contrast"])
    if "shift_h" in params:
        x = translate(x, params["shift_h"], params["shift_w"])
    if "cut" in params:
        size = int(x.shape[2] * CUTOUT_RATIO + 0.5)
        x = torch.where(
            params["cut"].view(-1, 1, 1, 1), cutout(x, params["centre_h"], params["centre_w"], size=size), x
        )
    if "flip" in params:
        x = hflip(x, params["flip"])
    return x


def diffaugment(
    x: Tensor, ops: Sequence[str], *, p: float = 1.0, generator: Optional[torch.Generator] = None
) -> Tensor:
    """DiffAugment ``ops`` on ``x`` with parameters drawn for its ``B`` images."""
    params = diffaugment_params(x.shape[0], ops, size=x.shape[2], p=p, device=x.device, generator=generator)
    return diffaugment_apply(x, params)


# ----------------------------------------------------------------------------- ADA ops


def _eye(n: int, device) -> Tensor:
    return torch.eye(3, device=device).expand(n, 3, 3).clone()


def translate2d(tx: Tensor, ty: Tensor) -> Tensor:
    """(N, 3, 3) translations by (tx, ty)."""
    m = _eye(tx.shape[0], tx.device)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def scale2d(sx: Tensor, sy: Tensor) -> Tensor:
    """(N, 3, 3) scalings diag(sx, sy, 1)."""
    m = _eye(sx.shape[0], sx.device)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def rotate2d(theta: Tensor) -> Tensor:
    """(N, 3, 3) rotations [[cos θ, −sin θ, 0], [sin θ, cos θ, 0], [0, 0, 1]]."""
    m = _eye(theta.shape[0], theta.device)
    c, s = torch.cos(theta), torch.sin(theta)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, -s, s, c
    return m


def _geometric_inverse(n: int, ops: tuple, *, p: float, size: int, device, generator) -> Tensor:
    """ADA's G_inv (N, 3, 3) in normalized coordinates ([-1, 1] across the image; 1 px = 2/size):
    the product, in ADA's order, of each applied op's inverse; the identity where none applies."""
    g = _eye(n, device)
    px = 2.0 / size
    p_rot = 1 - math.sqrt(max(1 - p, 0.0))

    def where(on: Tensor, m: Tensor) -> Tensor:
        return torch.where(on.view(-1, 1, 1), m, _eye(n, device))

    for op in ADA_GEOMETRIC:
        if op not in ops:
            continue
        if op == "xflip":
            i = torch.floor(_u(n, device, generator) * 2)
            g = g @ where(_coin(n, p, device, generator), scale2d(1 - 2 * i, torch.ones_like(i)))
        elif op == "rotate90":
            i = torch.floor(_u(n, device, generator) * 4)
            g = g @ where(_coin(n, p, device, generator), rotate2d(math.pi / 2 * i))
        elif op == "xint":
            t = (torch.rand(n, 2, device=device, generator=generator) * 2 - 1) * XINT_MAX
            t = torch.round(t * size) * px  # whole pixels
            g = g @ where(_coin(n, p, device, generator), translate2d(-t[:, 0], -t[:, 1]))
        elif op == "scale":
            s = torch.exp2(torch.randn(n, device=device, generator=generator) * SCALE_STD)
            g = g @ where(_coin(n, p, device, generator), scale2d(1 / s, 1 / s))
        elif op == "rotate":
            g = g @ _rotation(n, p_rot, device, generator, where)
            if "aniso" in ops:  # ADA's order: rotation, anisotropic scaling, rotation
                g = g @ _aniso(n, p, device, generator, where)
            g = g @ _rotation(n, p_rot, device, generator, where)
        elif op == "aniso" and "rotate" not in ops:
            g = g @ _aniso(n, p, device, generator, where)
        elif op == "xfrac":
            t = torch.randn(n, 2, device=device, generator=generator) * XFRAC_STD * size * px
            g = g @ where(_coin(n, p, device, generator), translate2d(-t[:, 0], -t[:, 1]))
    return g


def _aniso(n: int, p: float, device, generator, where) -> Tensor:
    s = torch.exp2(torch.randn(n, device=device, generator=generator) * ANISO_STD)
    return where(_coin(n, p, device, generator), scale2d(1 / s, s))


def _rotation(n: int, p_rot: float, device, generator, where) -> Tensor:
    theta = (_u(n, device, generator) * 2 - 1) * math.pi * ROTATE_MAX
    return where(_coin(n, p_rot, device, generator), rotate2d(theta))


def ada_params(
    n: int,
    ops: Sequence[str],
    *,
    p: float,
    size: int,
    channels: int = 3,
    device=None,
    generator: Optional[torch.Generator] = None,
) -> Params:
    """ADA's random parameters for ``n`` square images of ``size`` px, each op applied with
    probability ``p``: ``theta`` (N, 2, 3), the sampling matrix of :func:`torch.nn.functional.affine_grid`
    (G_inv's top rows; only with a geometric op), and ``brightness`` (added, 0 = off), ``contrast``,
    ``saturation`` (factors, 1 = off) for the colour ops present (saturation only with 3 channels)."""
    ops = check_ops(ops, ADA_OPS, kind="ada")
    out: Params = {}
    if any(op in ADA_GEOMETRIC for op in ops):
        out["theta"] = _geometric_inverse(n, ops, p=p, size=size, device=device, generator=generator)[:, :2, :]
    for op, ident, draw in (
        ("brightness", 0.0, lambda v: v * BRIGHTNESS_STD),
        ("contrast", 1.0, lambda v: torch.exp2(v * CONTRAST_STD)),
        ("saturation", 1.0, lambda v: torch.exp2(v * SATURATION_STD)),
    ):
        if op not in ops or (op == "saturation" and channels == 1):
            continue
        v = draw(torch.randn(n, device=device, generator=generator))
        out[op] = torch.where(_coin(n, p, device, generator), v, torch.full_like(v, ident))
    return out


def ada_apply(x: Tensor, params: Params) -> Tensor:
    """Apply ADA parameters (from :func:`ada_params`): the geometric warp (one bilinear
    ``grid_sample``, reflection padding), then brightness, contrast, saturation."""
    if "theta" in params:
        grid = F.affine_grid(params["theta"].to(x.dtype), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if "brightness" in params:
        x = brightness(x, params["brightness"])
    if "contrast" in params:
        x = x * params["contrast"].to(x.dtype).view(-1, 1, 1, 1)
    if "saturation" in params and x.shape[1] > 1:
        x = saturation(x, params["saturation"])
    return x


def ada_augment(x: Tensor, ops: Sequence[str], *, p: float, generator: Optional[torch.Generator] = None) -> Tensor:
    """ADA ``ops`` on ``x`` with probability ``p`` each, parameters drawn for its ``B`` images."""
    params = ada_params(
        x.shape[0], ops, p=p, size=x.shape[2], channels=x.shape[1], device=x.device, generator=generator
    )
    return ada_apply(x, params)


def ada_p_update(p: float, rt: float, *, target: float, batch_size: int, interval: int, speed: float) -> float:
    """ADA's adjustment: clamp(p + sign(r_t − target)·batch_size·interval/speed, 0, 1)."""
    return rt_controller_update(
        p, rt, target=target, step_size=batch_size * interval / speed, mode="additive", min_value=0.0, max_value=1.0
    )
