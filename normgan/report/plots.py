"""Figures of a run report, as PNG bytes.

Figures are :class:`matplotlib.figure.Figure` objects drawn on the Agg canvas directly (no pyplot,
no global figure registry, no backend switch) and cleared after rendering, so nothing accumulates
when many reports are written in one process. :func:`png_bytes`, :func:`axes_figure` and
:func:`render` serve the search and study pages too.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

from matplotlib.figure import Figure

#: widest sample grid kept in the report (pixels); wider grids are downscaled
MAX_SAMPLE_WIDTH = 256
#: smallest width a sample grid is shown at (small grids are enlarged by the browser, pixelated)
MIN_SAMPLE_DISPLAY = 128


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def axes_figure(width: float = 6.4, height: float = 4.2):
    """A pyplot-free figure and its single Axes (garbage-collected, never registered)."""
    fig = Figure(figsize=(width, height))
    ax = fig.subplots()
    return fig, ax


def render(draw, **kw) -> bytes:
    """PNG bytes of a fresh figure drawn by ``draw(ax, **kw)``."""
    height = kw.pop("_height", 4.2)
    fig, ax = axes_figure(height=height)
    try:
        draw(ax, **kw)
        fig.tight_layout()
        return png_bytes(fig)
    finally:
        fig.clear()


@dataclass
class Marker:
    """A vertical line at ``x`` (or a shaded span ``x``..``x1``) drawn on every panel of a figure."""

    x: float
    label: str
    color: str = "C3"
    style: str = "-"
    x1: Optional[float] = None
    note: Optional[str] = None  # text written along the line


@dataclass
class Panel:
    """One Axes: line series, horizontal reference lines, ± bands and an optional best point."""

    title: str
    lines: List[Tuple[str, Sequence[float], Sequence[float]]] = field(default_factory=list)
    hlines: List[Tuple[float, str]] = field(default_factory=list)
    references: List[Tuple[str, Sequence[float], Sequence[float]]] = field(default_factory=list)  # dashed series
    bands: List[Tuple[str, Sequence[float], Sequence[float], Sequence[float]]] = field(default_factory=list)
    best: Optional[Tuple[float, float, str]] = None
    ylabel: str = ""
    markers: bool = True  # draw the figure's markers here


def _wide_range(values: Sequence[float]) -> bool:
    """Values spanning more than 4 decades around their median magnitude (an exploding loss)."""
    mags = sorted(abs(v) for v in values if math.isfinite(v))
    if len(mags) < 2:
        return False
    med = mags[len(mags) // 2]
    return mags[-1] > 1e4 * max(med, 1e-12)


def _draw(ax, panel: Panel, markers: Sequence[Marker]) -> None:
    values: List[float] = []
    for i, (label, xs, ys) in enumerate(panel.lines):
        ax.plot(
            list(xs),
            list(ys),
            marker="o" if len(xs) <= 30 else None,
            markersize=3,
            linewidth=1.2,
            color=f"C{i}",
            label=label,
        )
        values += list(ys)
    for label, xs, lo, hi in panel.bands:
        ax.fill_between(list(xs), list(lo), list(hi), alpha=0.2, color="C0", label=label)
    for label, xs, ys in panel.references:
        ax.plot(list(xs), list(ys), linestyle="--", color="0.35", linewidth=1.2, label=label)
        values += list(ys)
    for y, label in panel.hlines:
        ax.axhline(y, linestyle="--", color="0.35", linewidth=1.2, label=label)
        values.append(y)
    if panel.best is not None:
        x, y, label = panel.best
        ax.plot([x], [y], linestyle="none", marker="*", markersize=12, color="C3", label=label)
    if panel.markers:
        seen = set()
        for m in markers:
            label = None if m.label in seen else m.label
            seen.add(m.label)
            if m.x1 is not None:
                ax.axvspan(m.x, m.x1, color=m.color, alpha=0.15, linewidth=0, label=label)
            else:
                ax.axvline(m.x, color=m.color, linestyle=m.style, linewidth=1.2, label=label)
                if m.note:
                    ax.annotate(
                        m.note,
                        xy=(m.x, 0.98),
                        xycoords=("data", "axes fraction"),
                        rotation=90,
                        va="top",
                        ha="right",
                        fontsize=7,
                        color=m.color,
                    )
    if not panel.lines and not panel.references:
        ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="0.4")
    elif _wide_range(values):
        ax.set_yscale("symlog", linthresh=1.0)
    ax.set_title(panel.title, fontsize="medium")
    ax.set_xlabel("step")
    if panel.ylabel:
        ax.set_ylabel(panel.ylabel)
    ax.grid(True, alpha=0.3)
    if len(ax.get_legend_handles_labels()[0]) > 1:  # a single series is named by the title
        ax.legend(loc="best", fontsize="x-small")


def figure_png(
    panels: Sequence[Panel],
    *,
    markers: Sequence[Marker] = (),
    ncols: Optional[int] = None,
    width: float = 6.4,
    height: float = 3.4,
) -> bytes:
    """PNG bytes of ``panels`` side by side (``ncols`` per row, default all in one row)."""
    ncols = max(1, min(ncols or len(panels), len(panels)))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(width if ncols == 1 else 3.6 * ncols, height * nrows))
    try:
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, panel in zip(axes, panels):
            _draw(ax, panel, markers)
        for ax in axes[len(panels) :]:
            ax.set_visible(False)
        fig.tight_layout()
        return png_bytes(fig)
    finally:
        fig.clear()


def sample_png(path, *, max_width: int = MAX_SAMPLE_WIDTH) -> Tuple[bytes, int, int]:
    """A sample grid as PNG bytes, downscaled to ``max_width`` pixels when wider, with its size.

    Raises ``OSError``/``ValueError`` for a file PIL cannot read."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if im.mode not in ("L", "RGB", "RGBA", "LA"):
            im = im.convert("RGB")
        if im.width > max_width:
            h = max(1, round(im.height * max_width / im.width))
            im = im.resize((max_width, h), Image.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="PNG", optimize=True)
        return buf.getvalue(), im.width, im.height


def display_size(width: int, height: int, *, minimum: int = MIN_SAMPLE_DISPLAY) -> Tuple[int, int]:
    """The on-page size of a grid: small grids enlarged by a whole factor to at least ``minimum`` wide."""
    k = max(1, math.ceil(minimum / max(width, 1)))
    return width * k, height * k
