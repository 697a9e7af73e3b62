"""The one path from an image to a Matte, used by the CLI, the benchmark, the arena and the app.

    image -> load_image -> Variant -> Runner (pooled) -> Matte

Also what the fronts may know and decide about the shared pool (`loaded_models`, `is_loaded`,
`unload`, `set_pool_budget`, `pool_usage`), so none of them reaches into `studio.pool`; and
`cutout`, a matte through the prediction cache the benchmark fills (the arena's cut-outs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studio import artifacts, inventory
from studio.backends import create_runner, run_checked
from studio.backends.base import Runner
from studio.imageio import ImageSource, load_image
from studio.matte import Matte
from studio.memory import release_freed_memory
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


# --- timed inference through the pool (the app's path) ------------------------------------------

Infer = Callable[[str, np.ndarray], tuple[Matte, float, bool]]


def infer(variant_id: str, image: np.ndarray, device: str = "cpu",
          pool: RunnerPool = DEFAULT_POOL) -> tuple[Matte, float, bool]:
    """(matte, seconds spent getting the runner, whether it was loaded for this call) on an RGB
    uint8 image, through the shared pool. "Cold" means no runner of the variant on this device
    was loaded before (any thread count): the first call after a load is not a warm timing."""
    v = load_zoo().get(variant_id)
    cold = not is_loaded(v.id, device, pool=pool)
    t0 = time.perf_counter()
    runner = get_runner(v, device=device, pool=pool)
    load_s = time.perf_counter() - t0
    return run_runner(runner, image), load_s, cold


def cutout(variant: Variant, image: np.ndarray, content_hash: str, device: str = "cpu",
           infer_fn: Infer | None = None) -> tuple[np.ndarray, bool]:
    """(alpha, whether it came from the cache) of one image, through the prediction cache the
    benchmark fills (keyed as the suite keys it: the variant's artifact, device, threads 0).
    A miss runs the variant once (`infer_fn`, default `infer` on `device`; the app passes its
    GPU-aware wrapper) and stores the result, so the benchmark and the arena share predictions."""
    from studio.prediction_cache import PredictionCache, variant_fingerprint

    rec = artifacts.installed(variant)
    cache = PredictionCache(variant_fingerprint(variant, rec.sha256 if rec else None, device, 0))
    hit = cache.get(content_hash)
    if hit is not None:
        return hit.alpha, True
    run = infer_fn or (lambda vid, rgb: infer(vid, rgb, device))
    matte, _, cold = run(variant.id, image)
    if cold:  # the first call after loading is not a warm timing: time a second one for the cache
        matte, _, _ = run(variant.id, image)
    return cache.put(content_hash, matte.alpha, [matte.timings]).alpha, False


# --- the shared pool, as the fronts may see and steer it ----------------------------------------

def loaded_models(pool: RunnerPool = DEFAULT_POOL) -> list[tuple[str, str, int]]:
    """(variant id, device, threads) of every loaded runner, least recently used first."""
    return pool.keys()


def is_loaded(variant_id: str, device: str | None = None, threads: int | None = None,
              pool: RunnerPool = DEFAULT_POOL) -> bool:
    """Whether a runner of the variant is loaded (on `device` and with `threads` when given)."""
    return any(k[0] == variant_id and device in (None, k[1]) and threads in (None, k[2])
               for k in loaded_models(pool))


def unload(variant_id: str | None = None, pool: RunnerPool = DEFAULT_POOL) -> None:
    """Close the variant's runners (None: every runner) and give the freed memory back."""
    pool.drop(variant_id)
    release_freed_memory()


def set_pool_budget(mb: float, pool: RunnerPool = DEFAULT_POOL) -> None:
    """The memory the pool may hold (MB); the next load evicts down to it."""
    pool.budget_mb = float(mb)


def pool_usage(pool: RunnerPool = DEFAULT_POOL) -> tuple[float, float]:
    """(MB the loaded runners hold, the pool's budget in MB)."""
    return pool.used_mb(), pool.budget_mb
