"""The device helper: a leaf module (imports torch and normgan.errors only)."""

from __future__ import annotations

import torch

from normgan.errors import UserError


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` → CUDA when present, else CPU; an unavailable CUDA device is a user error."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{name}' is not available (no CUDA GPU found); use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"device '{name}' is not a valid device; use auto, cpu, cuda or cuda:N") from None
