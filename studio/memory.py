"""This process's memory, read from /proc (Linux): what the benchmark and the runner pool
measure a model's resident memory with."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
from typing import Any


def status_mb(field_name: str, pid: int | str = "self") -> float | None:
    """A memory line of /proc/PID/status (VmRSS, VmHWM) in MB, this process's by default;
    None where there is none."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(f"{field_name}:"):
                    return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux 4.0+)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def release_freed_memory() -> None:
    """Return freed heap pages to the OS (glibc's malloc_trim; a no-op elsewhere). Without it a
    model loaded after a bigger one was freed reuses those pages and reads as growing by 0 MB."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


class PeakGrowth:
    """Peak RSS growth over a block: VmHWM after, less VmRSS before (freed pages returned and the
    peak reset at the start). `mb` is None where /proc cannot tell."""

    def __enter__(self) -> PeakGrowth:
        release_freed_memory()
        self.ok = reset_peak()
        self.before = status_mb("VmRSS")
        self.mb: float | None = None
        return self

    def __exit__(self, *exc: Any) -> None:
        peak = status_mb("VmHWM")
        if self.ok and peak is not None and self.before is not None:
            self.mb = max(0.0, peak - self.before)
