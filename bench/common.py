"""What every benchmark prints beside its numbers: the CPU it ran on, and peak memory of a process."""

from __future__ import annotations

import platform
from pathlib import Path

FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "avx512_vnni", "avx_vnni")


def cpu_flags() -> str:
    """The vector-instruction flags of this CPU that decide how fast a network runs here."""
    try:
        flags = set(open("/proc/cpuinfo").read().split())
    except OSError:
        return platform.machine()
    return " ".join(f for f in FLAGS if f in flags)


def peak_mb(pid: int) -> int:
    """Peak resident memory (VmHWM) of a running process, in MB; -1 when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return -1
