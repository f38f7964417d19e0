"""``train.threads: 0`` (the default): as many torch threads as there are cores free when a run starts.

Why not torch's default (one thread per core): a CPU-bound process beside the run turns every
parallel kernel into a wait for the thread that shares its core, and OpenMP's waiting threads spin
on their own cores meanwhile. On 2 cores with one busy process beside it, the 200-step MNIST run took
126 s at 2 threads and 26 s at 1 (issue 19; figures in docs/decisions.md). One thread per core stays
best on a quiet machine, so the count is read off the machine: the cores this process may run on
(affinity, and a cgroup CPU quota where one is set) minus the cores that other processes keep busy,
measured from ``/proc/stat`` over a short window, at least 1.

An explicit ``OMP_NUM_THREADS`` or an earlier ``torch.set_num_threads`` (``pytest -n``, study
workers, torchrun) is an upper bound that is never raised.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Dict, Optional, Sequence, Tuple

SAMPLE_S = 0.25  # window over which other processes' CPU use is measured
MARGIN = 0.3  # a core counts as free when at most 1 - MARGIN of it is busy: free = floor(cores - busy + MARGIN)


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup v2 CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def _cpu_ticks(cpus: Optional[Sequence[int]]) -> Optional[Dict[int, Tuple[int, int]]]:
    """``{cpu: (busy, total)}`` jiffies from /proc/stat for the given CPUs (all when None)."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    out = {}
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        cpu = int(name[3:])
        if cpus is not None and cpu not in cpus:
            continue
        v = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
        idle = v[3] + v[4]
        total = sum(v)
        out[cpu] = (total - idle, total)
    return out or None


def busy_cores(window_s: float = SAMPLE_S) -> Optional[float]:
    """Cores (of this process's affinity set) that other processes kept busy over ``window_s``
    seconds while this one slept; None where /proc/stat cannot be read (not Linux)."""
    try:
        cpus: Optional[set] = set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = None
    a = _cpu_ticks(cpus)
    if a is None:
        return None
    time.sleep(window_s)
    b = _cpu_ticks(cpus)
    if b is None:
        return None
    busy = 0.0
    for cpu, (busy0, total0) in a.items():
        if cpu in b and b[cpu][1] > total0:
            busy += (b[cpu][0] - busy0) / (b[cpu][1] - total0)
    return busy


def auto_threads(current: Optional[int] = None, *, window_s: float = SAMPLE_S) -> Optional[int]:
    """The thread count for ``train.threads = 0``: ``floor(usable cores − busy cores + 0.3)``, at least
    1 and at most ``current`` (torch's count now, and the usable cores). None keeps torch's count: ``OMP_NUM_THREADS``
    is set, torch already runs one thread, or the machine's load cannot be read."""
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    if current is None:
        import torch

        current = torch.get_num_threads()
    cores = usable_cores()
    cap = min(current, cores)
    busy = busy_cores(window_s) if cap > 1 else None
    n = cap if busy is None else max(1, min(cap, math.floor(cores - busy + MARGIN)))
    return n if n != current else None


_ours: Optional[Tuple[int, int]] = None  # (torch's count before the first change made here, the count set here)


def apply_auto_threads() -> int:
    """Set torch's intra-op threads to :func:`auto_threads` and return the count in use. A count set
    here before (an earlier run in this process, such as a search's previous trial) does not cap the
    next one: the bound is the count torch had before this module first changed it."""
    global _ours
    import torch

    current = torch.get_num_threads()
    bound = _ours[0] if _ours is not None and current == _ours[1] else current
    n = auto_threads(bound)
    if n is None:
        n = bound
    if n != current:
        torch.set_num_threads(n)
        _ours = (bound, n)
    return n


#: busy-wait iterations of a waiting OpenMP thread before it sleeps (libgomp's default: 300,000)
SPIN_COUNT = 3000


def short_openmp_spins() -> bool:
    """For the command line, before torch loads: ``GOMP_SPINCOUNT`` = :data:`SPIN_COUNT`, so that a
    torch thread waiting for the others spins briefly, then sleeps, instead of spinning for
    libgomp's default 300,000 iterations on a core that another process needs (libgomp reads it
    once, when torch loads it). A short spin keeps most of the quiet machine's speed, which sleeping
    at once (``OMP_WAIT_POLICY=PASSIVE``) loses (docs/decisions.md). Not set when the user set
    ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``, or when torch is already loaded; returns whether it
    was set. Child processes (search and study workers) inherit it."""
    if "torch" in sys.modules or "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return False
    os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
    return True
