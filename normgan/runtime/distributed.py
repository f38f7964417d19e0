"""Several processes training one run: torchrun's environment, gradient averaging, agreement.

    torchrun --nproc_per_node=4 -m normgan train configs/mnist.yaml

Every rank runs the same program on the same random streams: the same data permutation, the
same noise and jitter for the whole global batch (``data.batch_size``), of which it computes only
its own contiguous shard. After each backward the gradients are averaged over the ranks (one
all-reduce of a flat buffer), so every rank takes the same optimizer step and holds the same
weights; a step on R shards of size B/R equals a single-process step on the batch of B whenever
the losses are batch means and no layer mixes samples (BatchNorm does: see docs/scaling.md).
The state of terms and weight rules (EMAs, anchors, controllers) and the modules' buffers are
averaged after each step. Only the main rank writes (logs, samples, evaluations, checkpoints).

We average gradients ourselves instead of wrapping G and D in DistributedDataParallel, as
StyleGAN2-ADA does: DDP's reducer assumes one backward per forward, and GAN steps have several
forwards per backward, double backward for gradient penalties, lazy phases and G steps that
backpropagate through a frozen D (docs/decisions.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, List, Optional

import torch
from torch import Tensor, nn

from normgan.errors import ConfigError


@dataclass
class Dist:
    """Rank, world size and the process group of a run (world 1: everything is a no-op)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"  # where reduction tensors live (nccl reduces CUDA tensors only)

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, *, device_type: str = "cpu") -> "Dist":
        """torchrun's RANK/WORLD_SIZE/LOCAL_RANK; initializes the default process group (gloo on
        CPU, nccl on CUDA) when the world has more than one process and none exists yet."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch.distributed as td

        rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
        device = f"cuda:{local}" if device_type == "cuda" else "cpu"
        if device_type == "cuda":
            torch.cuda.set_device(device)
        if not td.is_initialized():
            td.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        return cls(rank=rank, world=world, local_rank=local, device=device)

    # ---------------------------------------------------------------- batches
    def check_batch(self, batch_size: int) -> int:
        """The per-rank batch; the global ``data.batch_size`` must split evenly."""
        if batch_size % self.world:
            raise ConfigError(
                f"data.batch_size: {batch_size} does not split over {self.world} processes; "
                f"use a multiple of {self.world} (it is the global batch)"
            )
        return batch_size // self.world

    def shard(self, x: Optional[Tensor]) -> Optional[Tensor]:
        """This rank's contiguous part of a global batch tensor (dim 0)."""
        if x is None or not self.enabled:
            return x
        n = x.shape[0] // self.world
        return x[self.rank * n : (self.rank + 1) * n]

    # ---------------------------------------------------------------- reductions
    def average_gradients(self, params: Iterable[nn.Parameter]) -> None:
        """Replace each gradient by its mean over the ranks (one all-reduce of a flat buffer)."""
        if not self.enabled:
            return
        import torch.distributed as td

        # the same graph on every rank: the same parameters have gradients (a None stays None, so
        # Adam skips it as in one process: an R1 phase gives D's last bias no gradient)
        params = [p for p in params if p.grad is not None]
        if not params:
            return
        grads = [p.grad for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        td.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset : offset + n].view_as(g))
            offset += n

    def average_(self, tensors: List[Tensor]) -> None:
        """Average floating tensors over the ranks, in place (module buffers, term states)."""
        if not self.enabled:
            return
        import torch.distributed as td

        ts = [t for t in tensors if t.is_floating_point()]
        if not ts:
            return
        flat = torch.cat([t.detach().reshape(-1).to(torch.float64) for t in ts])
        td.all_reduce(flat)
        flat /= self.world
        offset = 0
        for t in ts:
            n = t.numel()
            t.data.copy_(flat[offset : offset + n].view_as(t))
            offset += n

    def sum(self, value: Tensor) -> Tensor:
        """The sum over the ranks of a tensor (a NaN anywhere makes every rank's sum NaN)."""
        if not self.enabled:
            return value
        import torch.distributed as td

        out = value.detach().clone()
        td.all_reduce(out)
        return out

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on any (stop requests)."""
        if not self.enabled:
            return bool(flag)
        import torch.distributed as td

        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        td.all_reduce(t, op=td.ReduceOp.MAX)
        return bool(t.item() > 0)

    def broadcast_object(self, obj):
        """The main rank's ``obj`` on every rank (a run folder path)."""
        if not self.enabled:
            return obj
        import torch.distributed as td

        box = [obj]
        td.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as td

            td.barrier()
