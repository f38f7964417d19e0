"""Shuffled mini-batches from an in-memory image tensor, with a checkpointable position."""

from __future__ import annotations

import torch

from normgan.data import batch_to_float
from normgan.errors import ConfigError


class EpochBatches:
    """Draws batches of ``batch_size`` from shuffled epochs; the last incomplete batch is dropped.

    The images stay uint8 on ``device`` (moved once) and are converted to [-1, 1] per batch. The
    permutation, position and generator state are part of the checkpoint, so a resumed run sees
    exactly the batches an uninterrupted run would.
    """

    def __init__(self, images: torch.Tensor, *, batch_size: int, seed: int, device: torch.device) -> None:
        n = images.shape[0]
        if batch_size > n:
            raise ConfigError(f"data.batch_size: bad value {batch_size}; the training split has only {n} images, use a batch size <= {n}")
        self.images = images.to(device)
        self.batch_size, self.device = batch_size, device
        self.generator = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(n, generator=self.generator)
        self.pos = 0

    def next_indices(self) -> torch.Tensor:
        """The indices of the next batch (on ``device``); a new epoch reshuffles first."""
        if self.pos + self.batch_size > self.perm.numel():
            self.perm = torch.randperm(self.perm.numel(), generator=self.generator)
            self.pos = 0
        idx = self.perm[self.pos : self.pos + self.batch_size].to(self.device, non_blocking=True)
        self.pos += self.batch_size
        return idx

    def next(self) -> torch.Tensor:
        """The next batch of images as float32 in [-1, 1]."""
        return batch_to_float(self.images.index_select(0, self.next_indices()))

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "perm": self.perm.clone(), "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.perm = state["perm"].clone()
        self.pos = int(state["pos"])
