"""Shuffled mini-batches from an in-memory image tensor, with a checkpointable position."""

from __future__ import annotations

import torch

from normgan.data import batch_to_float
from normgan.data.stream import ShuffledEpochs


class EpochBatches(ShuffledEpochs):
    """Draws batches of ``batch_size`` from shuffled epochs; the last incomplete batch is dropped.

    The images stay uint8 on ``device`` (moved once) and are converted to [-1, 1] per batch. The
    permutation, position and generator state are part of the checkpoint, so a resumed run sees
    exactly the batches an uninterrupted run would. The index stream is :class:`ShuffledEpochs`,
    shared with :class:`normgan.data.stream.StreamBatches` (the same batches, decoded from disk).
    """

    def __init__(self, images: torch.Tensor, *, batch_size: int, seed: int, device: torch.device) -> None:
        super().__init__(images.shape[0], batch_size=batch_size, seed=seed)
        self.images = images.to(device)
        self.device = device

    def next_indices(self) -> torch.Tensor:
        """The indices of the next batch (on ``device``); a new epoch reshuffles first."""
        return self.draw().to(self.device, non_blocking=True)

    def next(self) -> torch.Tensor:
        """The next batch of images as float32 in [-1, 1]."""
        return batch_to_float(self.images.index_select(0, self.next_indices()))
