"""OpenVINO runner: the variant's file (ONNX, or an NNCF build's IR) compiled by OpenVINO's CPU
plugin, with the same pre- and post-processing as the onnx backend (`studio.prepost`).

Settings come from the variant's `OpenVinoOptions` (`options: {...}` in the zoo): the inference
precision of the layers left in float (`f32` unless a variant says otherwise: on CPUs with
AVX512-BF16 or AMX the plugin's own default is bf16, which would make an "fp32" variant's numbers
depend on the machine), the performance hint (latency: one request uses every thread asked for),
streams, and the compiled-model cache (`CACHE_DIR` under the models folder: a warm start imports
the compiled blob instead of compiling again).

The studio reads only a model's first output; the others (IS-Net's side maps) are removed before
compiling, so the plugin never computes them.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from studio import settings
from studio.backends.base import Runner, predict_fixed_size
from studio.errors import ModelError
from studio.matte import Matte
from studio.zoo import OpenVinoOptions

__all__ = ["OpenVinoRunner", "compile_config", "core", "load_model"]

PRECISIONS = {"f32": "f32", "bf16": "bf16", "f16": "f16"}
HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}

_CORE: ov.Core | None = None
_CORE_LOCK = threading.Lock()


def core() -> ov.Core:
    """One Core per process: it holds the loaded CPU plugin, which every runner shares."""
    global _CORE
    with _CORE_LOCK:
        if _CORE is None:
            _CORE = ov.Core()
        return _CORE


def options_of(variant: Any) -> OpenVinoOptions:
    opts = getattr(variant, "options", None)
    return opts if isinstance(opts, OpenVinoOptions) else OpenVinoOptions()


def compile_config(opts: OpenVinoOptions, threads: int = 0, cache_dir: Path | None = None) -> dict[str, Any]:
    """The CPU plugin's compile properties for a variant's options and a thread count (0: the
    plugin's default, every core)."""
    cfg: dict[str, Any] = {"PERFORMANCE_HINT": HINTS[opts.hint],
                           "INFERENCE_PRECISION_HINT": PRECISIONS[opts.precision]}
    if threads > 0:
        cfg["INFERENCE_NUM_THREADS"] = int(threads)
    if opts.streams:
        cfg["NUM_STREAMS"] = int(opts.streams)
    if opts.cache and cache_dir is not None:
        cfg["CACHE_DIR"] = str(cache_dir)
    return cfg


def load_model(path: Path) -> ov.Model:
    """The model file (ONNX or IR), keeping only its first output."""
    model = core().read_model(str(path))
    results = model.get_results()
    if len(results) > 1:
        for r in results[1:]:
            model.remove_result(r)
        model.validate_nodes_and_infer_types()
    return model


class OpenVinoRunner(Runner):
    def __init__(self, variant, weights, device="cpu", threads=0, weights_sha256=None):
        super().__init__(variant, weights, device, threads, weights_sha256)
        if device.split(":")[0] != "cpu":
            raise ModelError(f"device {device!r} is not supported by the openvino backend (cpu)")
        if not isinstance(variant.input_size, tuple):
            raise ModelError(f"{variant.id}: the openvino backend needs a fixed input_size")
        opts = options_of(variant)
        cache = settings.openvino_cache_dir() if opts.cache else None
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)
        self.config = compile_config(opts, threads, cache)
        path = Path(weights)
        # An IR build keeps only the output the studio reads; compiling it by path lets the
        # cache key on the file instead of hashing the whole graph. An ONNX file is pruned first.
        model: ov.Model | str = str(path) if path.suffix == ".xml" else load_model(path)
        self.compiled = core().compile_model(model, "CPU", self.config)
        self.request = self.compiled.create_infer_request()

    def predict(self, image: np.ndarray) -> Matte:
        return predict_fixed_size(self.variant, image, self._infer)

    def _infer(self, x: np.ndarray) -> np.ndarray:
        self.request.infer({0: x}, share_inputs=True)
        return self.request.get_output_tensor(0).data

    def close(self) -> None:
        self.request = None
        self.compiled = None

