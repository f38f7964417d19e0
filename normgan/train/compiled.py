"""``train.compile``: the adversarial forwards of G and D through :func:`torch.compile`.

    G_fwd = compile_module(G, device_type="cuda")   # shares G's parameters; G itself stays eager

Only the forwards whose graphs are differentiated once go through the compiled module: G(z) and
D(real), D(fake) of the adversarial losses. Gradient penalties (R1, R2, WGAN-GP, DRAGAN) and path
length differentiate the gradient itself (double backward), which AOTAutograd does not support, so
terms run their own forwards on the eager modules (R1 then no longer reuses D's forward on the real
batch: one extra D forward per step). EMA, weight rules, samples, evaluation and checkpoints see the
eager modules too; a checkpoint never holds a compiled module's ``_orig_mod.`` keys.

Inductor needs a C++ compiler on CPU and Triton on CUDA; a missing one is a :class:`ConfigError`
at construction, a failed compilation a :class:`UserError` at the first step, both naming
``train.compile: false`` as the fix.
"""

from __future__ import annotations

import os
import shutil
from typing import Callable, Optional

import torch
from torch import Tensor, nn

from normgan.errors import ConfigError, UserError

__all__ = ["compile_module", "compiler_missing"]

_CXX = ("g++", "c++", "clang++")


def compiler_missing(device_type: str) -> Optional[str]:
    """Why inductor cannot compile for ``device_type`` here (a C++ compiler on CPU, Triton on CUDA), or None."""
    if device_type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "Triton is not installed (torch.compile's CUDA backend needs it)"
    names = [os.environ["CXX"]] if os.environ.get("CXX") else list(_CXX)
    if any(shutil.which(n) for n in names):
        return None
    return f"no C++ compiler found ({', '.join(names)}; torch.compile on CPU needs one, e.g. the g++ package)"


def compile_module(module: nn.Module, *, device_type: str) -> Callable[..., Tensor]:
    """``module``'s forward compiled by :func:`torch.compile` (default inductor backend, static shapes),
    as a function that shares its parameters; a backend failure becomes a one-line :class:`UserError`."""
    why = compiler_missing(device_type)
    if why is not None:
        raise ConfigError(f"train.compile: {why}; install it or set train.compile: false")
    compiled = torch.compile(module, dynamic=False)

    def forward(*args, **kwargs) -> Tensor:
        try:
            return compiled(*args, **kwargs)
        except torch._dynamo.exc.BackendCompilerFailed as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise UserError(
                f"train.compile: torch.compile failed for {type(module).__name__} ({first}); set train.compile: false"
            ) from None

    forward.compiled = compiled  # type: ignore[attr-defined]
    return forward
