"""Where the app runs: local or a Hugging Face Space, CPU or ZeroGPU, and its limits.

Everything here is cheap to import: no torch, no model packages.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from studio import settings

F = TypeVar("F", bound=Callable[..., Any])

def zerogpu_available() -> bool:
    """Whether the `spaces` package (ZeroGPU) can be imported here; checked without importing it."""
    if sys.modules.get("spaces") is not None:
        return True
    try:
        return importlib.util.find_spec("spaces") is not None
    except (ImportError, ValueError):
        return False


def gpu(duration: int = 120) -> Callable[[F], F]:
    """`spaces.GPU(duration=...)` when the `spaces` package is importable, else a no-op.

    ZeroGPU attaches a GPU only inside functions so decorated; elsewhere the function is
    returned untouched, so local runs and tests see a plain function.
    """

    def wrap(fn: F) -> F:
        if not zerogpu_available():
            return fn
        try:
            import spaces  # type: ignore[import-not-found]
        except Exception:  # a broken install must not stop the app
            return fn
        return spaces.GPU(duration=duration)(fn)

    return wrap


def device_for(backend: str) -> str:
    """The device a backend runs on in the app. STUDIO_DEVICE overrides; on ZeroGPU the torch
    backend (InSPyReNet) takes the GPU, while ONNX Runtime's CPU wheel (what requirements.txt
    installs) stays on CPU."""
    forced = settings.forced_device()
    if forced:
        return forced
    if zerogpu_available() and settings.on_spaces() and backend == "inspyrenet":
        return "cuda"
    return "cpu"
