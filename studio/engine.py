"""The one path from an image to a Matte, used by the CLI, the benchmark and the app.

    image -> load_image -> Variant -> Runner (pooled) -> Matte
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studio import artifacts, inventory
from studio.backends import create_runner, run_checked
from studio.backends.base import Runner
from studio.imageio import ImageSource, load_image
from studio.matte import Matte
from studio.pool import DEFAULT_POOL, RunnerPool
from studio.zoo import Variant, load_zoo


@dataclass
class LoadReport:
    """Where the time of loading a runner went (the cold-start split, less import)."""

    weights_s: float
    init_s: float


def load_runner(variant: Variant, device: str = "cpu", threads: int = 0, verify: bool = True) -> tuple[Runner, LoadReport]:
    """Create a fresh runner (not pooled): weights lookup and hash check, then session init."""
    t0 = time.perf_counter()
    rec = artifacts.require(variant, verify=verify)
    t1 = time.perf_counter()
    runner = create_runner(variant, Path(rec.path) if rec else None, device, threads,
                           weights_sha256=rec.sha256 if rec else None)
    return runner, LoadReport(weights_s=t1 - t0, init_s=time.perf_counter() - t1)


def get_runner(variant: Variant | str, device: str = "cpu", threads: int = 0,
               pool: RunnerPool = DEFAULT_POOL) -> Runner:
    v = load_zoo().get(variant) if isinstance(variant, str) else variant
    info = inventory.describe(v)
    return pool.get((v.id, device, threads), lambda: load_runner(v, device, threads)[0],
                    cost_mb=info.size_mb or 0.0)


run_runner = run_checked  # a loaded runner on one image; crashes become one ModelError line


def predict(variant: Variant | str, image: ImageSource, device: str = "cpu", threads: int = 0,
            pool: RunnerPool = DEFAULT_POOL) -> Matte:
    """Remove the background of one image with one variant."""
    rgb = image if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 \
        and image.shape[2] == 3 else load_image(image)
    return run_runner(get_runner(variant, device, threads, pool), rgb)
