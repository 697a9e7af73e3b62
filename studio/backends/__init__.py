"""Backends: one small Runner class per kind, created by name. Heavy imports stay lazy.

Which class runs which backend is a row of the zoo's backend table (`studio.zoo.BACKENDS`),
with the runtime it uses and its options class; adding a backend is adding a row there."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from studio.backends.base import Runner
from studio.errors import ModelError, ModelLoadError, StudioError
from studio.matte import Matte
from studio.zoo import BACKENDS, Variant


def runner_class(backend: str) -> type[Runner]:
    """The runner class of a backend, from the zoo's backend table (imported on first use)."""
    module, _, name = BACKENDS[backend].runner.partition(":")
    return getattr(importlib.import_module(module), name)


def create_runner(variant: Variant, weights: Path | None, device: str = "cpu", threads: int = 0,
                  weights_sha256: str | None = None) -> Runner:
    """A loaded runner; any failure to load becomes one ModelLoadError line."""
    try:
        return runner_class(variant.backend)(variant, weights, device, threads, weights_sha256=weights_sha256)
    except ModelLoadError:
        raise
    except StudioError as exc:
        raise ModelLoadError(str(exc)) from exc
    except Exception as exc:
        raise ModelLoadError(f"{variant.id}: failed to load: {type(exc).__name__}: {exc}") from exc


def run_checked(runner: Runner, image: np.ndarray) -> Matte:
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
