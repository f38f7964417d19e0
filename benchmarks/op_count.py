"""Kernels per training step, counted on any device: a device-independent figure for the regime in
which a small model on a GPU is bound by kernel launches, not by arithmetic.

:class:`OpCounter` is a ``TorchDispatchMode`` that sees every ATen operator a block of code runs,
forward and backward. An operator that only makes a view or allocates (``view``, ``t``, ``expand``,
``detach``, ``empty``…) launches no kernel and is not counted as one; every other operator is one
kernel (or one host loop on CPU). Reads of a tensor's value on the host (``.item()``, ``float(t)``,
``if t:``) are counted apart as ``host_reads``: on CUDA, a read of a CUDA tensor waits for the queue
to drain (a read of a CPU tensor, such as Adam's ``foreach`` step counters, does not; on a CPU run
both count).

When a step is launch-bound, its time is about proportional to its kernels, so
``kernels(A) ÷ kernels(B)`` predicts ``images/s(B) ÷ images/s(A)``; when it is arithmetic-bound the
prediction is too pessimistic for a term that adds many small kernels.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable

from torch.utils._python_dispatch import TorchDispatchMode

#: operators that allocate or alias without a kernel of their own
FREE = frozenset(
    {
        "empty",
        "empty_strided",
        "empty_like",
        "detach",
        "lift_fresh",
        "alias",
        "set_",
        "resize_",
        "_record_function_enter_new",
        "_record_function_exit",
    }
)
#: operators that copy a device value to the host (a synchronization on CUDA)
HOST_READS = frozenset({"_local_scalar_dense", "is_nonzero", "equal"})


class OpCounter(TorchDispatchMode):
    """Counts the operators dispatched inside ``with OpCounter() as c:``: ``c.ops`` (all, by name),
    ``c.kernels`` (those that launch work) and ``c.host_reads`` (reads of tensor values on the host)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter = Counter()
        self.kernels = 0
        self.host_reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        self.ops[name] += 1
        if name in HOST_READS:
            self.host_reads += 1
        elif not (func.is_view or name in FREE):
            self.kernels += 1
        return func(*args, **(kwargs or {}))


def count(fn: Callable[[], object], *, repeats: int = 1) -> dict:
    """Kernels and host reads per call of ``fn`` over ``repeats`` calls (``fn`` is called once more first,
    uncounted, so that lazily created state such as optimizer moments is not counted)."""
    fn()
    with OpCounter() as c:
        for _ in range(repeats):
            fn()
    return {"kernels": c.kernels / repeats, "host_reads": c.host_reads / repeats}
