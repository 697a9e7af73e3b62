"""Reusable per-thread scratch buffers for the big temporaries of one score_image call.

A fresh 4-8 MB array per temporary costs page faults on every call (about a fifth of the
suite's time at 1024^2). Named buffers are kept per thread and reused while they are big
enough. Only temporaries that never leave a call may use them. Buffers are 64-byte
aligned (OpenCV's SIMD paths then round the same way on every call).
"""

from __future__ import annotations

import threading

import numpy as np

# Buffers above this are not kept (a 50 MP image would otherwise pin gigabytes).
MAX_KEPT_BYTES = 64 << 20
_local = threading.local()


def _aligned(nbytes: int) -> np.ndarray:
    raw = np.empty(nbytes + 64, np.uint8)
    off = (-raw.ctypes.data) % 64
    return raw[off:off + nbytes]


def scratch(tag: str, shape: tuple[int, ...], dtype: type | np.dtype) -> np.ndarray:
    """An uninitialised, 64-byte aligned, C-contiguous array, reused per (thread, tag)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if nbytes > MAX_KEPT_BYTES:
        return _aligned(nbytes).view(dtype).reshape(shape)
    bufs = getattr(_local, "bufs", None)
    if bufs is None:
        bufs = _local.bufs = {}
    buf = bufs.get(tag)
    if buf is None or buf.nbytes < nbytes:
        buf = bufs[tag] = _aligned(max(nbytes, 1))
    return buf[:nbytes].view(dtype).reshape(shape)


def release() -> None:
    """Drop this thread's buffers."""
    _local.bufs = {}
