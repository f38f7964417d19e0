"""Memory a new allocation may use, and byte counts for messages: a leaf module (standard library;
torch only inside :func:`device_memory`)."""

from __future__ import annotations

import os
import shutil
from typing import Optional

__all__ = ["available_memory", "device_memory", "format_bytes", "free_bytes", "free_space"]


def available_memory() -> Optional[int]:
    """Host memory a new allocation may use, in bytes: ``MemAvailable`` of /proc/meminfo (free plus
    reclaimable cache), else the free pages of ``os.sysconf``; None where neither is known."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        pages, size = os.sysconf("SC_AVPHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    return pages * size if pages > 0 and size > 0 else None


def device_memory(device) -> tuple[Optional[int], str]:
    """(bytes a new allocation on ``device`` may use, where they are): free memory of a CUDA device,
    else :func:`available_memory` of the host; ``(None, "")`` where unknown."""
    import torch

    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(device)
        return int(free), f"free on {device}"
    avail = available_memory()
    return (avail, "of memory available") if avail is not None else (None, "")


def free_bytes(folder) -> Optional[int]:
    """Free bytes of the file system that holds ``folder`` (or its nearest existing parent); None
    where unknown."""
    p = os.path.abspath(str(folder))
    while not os.path.exists(p) and os.path.dirname(p) != p:
        p = os.path.dirname(p)
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def free_space(folder) -> str:
    """:func:`free_bytes` for a message: ``"1.2 MiB"``, or ``"unknown space"``."""
    free = free_bytes(folder)
    return "unknown space" if free is None else format_bytes(free)


def format_bytes(n: float) -> str:
    """``n`` bytes in binary units, three significant digits: ``512 bytes``, ``1.5 KiB``, ``57.3 GiB``."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"
