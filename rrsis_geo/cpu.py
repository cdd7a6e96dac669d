"""What the processor can do natively and how many of its cores this process may use, read
without importing torch.

bf16 autocast only pays on a CPU that has bf16 arithmetic in hardware (AVX512-BF16 or AMX-BF16):
there the default model's forward runs about 1.6x faster than float32; elsewhere torch emulates it,
slower than float32. Linux reports the instruction sets in ``/proc/cpuinfo``; other systems are
treated as not having them (float32 is always correct).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import FrozenSet

#: ``/proc/cpuinfo`` flags of native bf16 arithmetic
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.lru_cache(maxsize=1)
def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> FrozenSet[str]:
    """The first processor's feature flags (empty where the file is not there)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def native_bf16(flags: FrozenSet[str] | None = None) -> bool:
    """True when the CPU computes in bf16 natively (``flags``: as :func:`cpu_flags` gives them)."""
    return bool(BF16_FLAGS & (cpu_flags() if flags is None else flags))


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the system has one (``taskset``,
    cpusets as Slurm or ``docker --cpuset-cpus`` set them), else every core of the machine. A CPU
    quota (``docker --cpus``, Kubernetes limits) is not an affinity and is not read."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on macOS and Windows
        return max(1, os.cpu_count() or 1)
