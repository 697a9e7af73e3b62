"""The runner contract: one small class per backend, one output (a Matte)."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from studio.matte import Matte
from studio.prepost import levels_to_alpha, postprocess, preprocess
from studio.zoo import Variant


class Runner(ABC):
    """A loaded model. `predict` takes RGB uint8 (H, W, 3) and returns a Matte at (H, W).

    Every runner takes the same arguments, so `create_runner` needs to know none of them:
    the variant, its artifact (None for GrabCut), the device, the intra-op threads (0: the
    runtime's default), and the artifact's sha256 where it is known (a runner may key caches
    by it, as InSPyReNet's TorchScript folder does)."""

    def __init__(self, variant: Variant, weights: Path | None, device: str = "cpu", threads: int = 0,
                 weights_sha256: str | None = None):
        self.variant = variant
        self.weights = weights
        self.device = device
        self.threads = threads
        self.weights_sha256 = weights_sha256

    @abstractmethod
    def predict(self, image: np.ndarray) -> Matte: ...

    def close(self) -> None:
        """Release what the runner holds (sessions, GPU memory)."""
        return None


class Stopwatch:
    """Collects named phase durations: `with sw("inference"): ...`."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[phase] = self.timings.get(phase, 0.0) + time.perf_counter() - t0


def predict_fixed_size(variant: Variant, image: np.ndarray, infer: Callable[[np.ndarray], np.ndarray]) -> Matte:
    """The onnx and openvino runners' one path: the shared pre-processing to the variant's fixed
    input, `infer` (NCHW in, the first output out), the shared post-processing, timed by stage."""
    sw = Stopwatch()
    h, w = image.shape[:2]
    with sw("preprocess"):
        x = preprocess(image, variant.input_size, variant.preprocess)
    with sw("inference"):
        pred = infer(x)
    with sw("postprocess"):
        alpha = levels_to_alpha(postprocess(pred[0, 0], (w, h), variant.postprocess))
    return Matte(alpha=alpha, variant=variant.id, timings=sw.timings)
