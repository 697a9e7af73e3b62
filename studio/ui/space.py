"""Where the app runs: local or a Hugging Face Space, CPU or ZeroGPU, and its limits.

Everything here is cheap to import: no torch, no model packages.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_MAX_UPLOAD_MB = 25.0  # a 50 MP PNG is ~30-60 MB; photos people drop in are far smaller
DEFAULT_POOL_BUDGET_MB = 3000.0  # summed weight sizes held loaded across all users


def on_spaces() -> bool:
    """Hugging Face sets SPACE_ID in every Space's environment."""
    return bool(os.environ.get("SPACE_ID"))


def server_name() -> str:
    """0.0.0.0 on a Space (its proxy must reach us), loopback locally (no LAN exposure).
    GRADIO_SERVER_NAME still wins, as Gradio documents."""
    return os.environ.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if on_spaces() else "127.0.0.1")


def max_upload_mb() -> float:
    return float(os.environ.get("STUDIO_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB))


def max_zip_mb() -> float:
    """Uncompressed size cap of an uploaded benchmark zip."""
    return float(os.environ.get("STUDIO_MAX_ZIP_MB", 1024))


def pool_budget_mb() -> float:
    return float(os.environ.get("STUDIO_POOL_BUDGET_MB", DEFAULT_POOL_BUDGET_MB))


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
    forced = os.environ.get("STUDIO_DEVICE")
    if forced:
        return forced
    if zerogpu_available() and on_spaces() and backend == "inspyrenet":
        return "cuda"
    return "cpu"
