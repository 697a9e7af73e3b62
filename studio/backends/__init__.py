"""Backends: one small Runner class per kind, created by name. Heavy imports stay lazy."""

from __future__ import annotations

import importlib
from pathlib import Path

from studio.backends.base import Runner
from studio.zoo import Variant

RUNNERS = {
    "onnx": "studio.backends.onnx:OnnxRunner",
    "rembg": "studio.backends.rembg:RembgRunner",
    "inspyrenet": "studio.backends.inspyrenet:InSPyReNetRunner",
    "opencv": "studio.backends.opencv:GrabCutRunner",
}


def runner_class(backend: str) -> type[Runner]:
    module, _, name = RUNNERS[backend].partition(":")
    return getattr(importlib.import_module(module), name)


def create_runner(variant: Variant, weights: Path | None, device: str = "cpu", threads: int = 0,
                  weights_sha256: str | None = None) -> Runner:
    cls = runner_class(variant.backend)
    if variant.backend == "inspyrenet":
        return cls(variant, weights, device, threads, weights_sha256=weights_sha256)
    return cls(variant, weights, device, threads)
