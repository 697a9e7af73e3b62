"""The one path from an image to a Matte, used by the CLI, the benchmark and the app.

    image -> load_image -> Variant -> Runner (pooled) -> Matte
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from studio import weights
from studio.backends import create_runner
from studio.backends.base import Runner
from studio.errors import ModelError, StudioError
from studio.imageio import ImageSource, load_image
from studio.matte import Matte
from studio.pool import DEFAULT_POOL, RunnerPool
from studio.zoo import Variant, load_zoo

UNTRAINED_LABEL = "untrained — latency only"


@dataclass
class VariantInfo:
    """What every front shows about a variant: its zoo row plus what is on this machine."""

    variant: Variant
    installed: bool
    path: str | None
    size_mb: float | None
    untrained: bool
    flags: list[str] = field(default_factory=list)
    pull_command: str | None = None


def describe(variant: Variant | str) -> VariantInfo:
    zoo = load_zoo()
    v = zoo.get(variant) if isinstance(variant, str) else variant
    rec = weights.installed_for(v)
    needs_weights = bool(v.file)
    flags = []
    untrained = bool(rec and rec.untrained)
    if untrained:
        flags.append(UNTRAINED_LABEL)
    if v.non_commercial:
        flags.append("non-commercial licence")
    if v.requires:
        flags.append(f"needs {v.requires}")
    wf = zoo.file_of(v)
    size = rec.size / 1e6 if rec else (wf.expected_mb if wf else 0.0)
    return VariantInfo(
        variant=v,
        installed=(rec is not None) or not needs_weights,
        path=rec.path if rec else None,
        size_mb=size,
        untrained=untrained,
        flags=flags,
        pull_command=None if (rec or not needs_weights) else weights.pull_command(v),
    )


def installed_variants(include_references: bool = False) -> list[Variant]:
    """Every variant that can run here now (weights present, or none needed). Parity
    references (the same weights through rembg's session) only when asked for."""
    return [v for v in load_zoo().variants.values()
            if describe(v).installed and not v.requires and (v.default or include_references)]


@dataclass
class LoadReport:
    """Where the time of loading a runner went (the cold-start split, less import)."""

    weights_s: float
    init_s: float


def load_runner(variant: Variant, device: str = "cpu", threads: int = 0, verify: bool = True) -> tuple[Runner, LoadReport]:
    """Create a fresh runner (not pooled): weights lookup and hash check, then session init."""
    t0 = time.perf_counter()
    rec = weights.require(variant, verify=verify)
    t1 = time.perf_counter()
    try:
        runner = create_runner(variant, Path(rec.path) if rec else None, device, threads,
                               weights_sha256=rec.sha256 if rec else None)
    except StudioError:
        raise
    except Exception as exc:
        raise ModelError(f"{variant.id}: failed to load: {type(exc).__name__}: {exc}") from exc
    return runner, LoadReport(weights_s=t1 - t0, init_s=time.perf_counter() - t1)


def get_runner(variant: Variant | str, device: str = "cpu", threads: int = 0,
               pool: RunnerPool = DEFAULT_POOL) -> Runner:
    v = load_zoo().get(variant) if isinstance(variant, str) else variant
    info = describe(v)
    return pool.get((v.id, device, threads), lambda: load_runner(v, device, threads)[0],
                    cost_mb=info.size_mb or 0.0)


def run_runner(runner: Runner, image: np.ndarray) -> Matte:
    """Run a loaded runner, turning any crash into one ModelError line."""
    try:
        matte = runner.predict(image)
    except StudioError:
        raise
    except MemoryError as exc:
        raise ModelError(f"{runner.variant.id}: out of memory ({exc})") from exc
    except Exception as exc:
        raise ModelError(f"{runner.variant.id}: failed: {type(exc).__name__}: {exc}") from exc
    if matte.alpha.shape != image.shape[:2]:
        raise ModelError(f"{runner.variant.id}: returned a {matte.alpha.shape} matte for a "
                         f"{image.shape[:2]} image")
    return matte


def predict(variant: Variant | str, image: ImageSource, device: str = "cpu", threads: int = 0,
            pool: RunnerPool = DEFAULT_POOL) -> Matte:
    """Remove the background of one image with one variant."""
    rgb = image if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 \
        and image.shape[2] == 3 else load_image(image)
    return run_runner(get_runner(variant, device, threads, pool), rgb)
