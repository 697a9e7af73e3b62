"""ONNX Runtime runner, driven entirely by the variant's preprocessing config."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from PIL import Image

from studio.backends.base import Runner, Stopwatch
from studio.errors import ModelError
from studio.imageio import alpha_to_uint8
from studio.matte import Matte

RESAMPLE = {"lanczos": Image.Resampling.LANCZOS, "bilinear": Image.Resampling.BILINEAR,
            "bicubic": Image.Resampling.BICUBIC}
PROVIDERS = {"cpu": ["CPUExecutionProvider"],
             "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}


def session_options(threads: int) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads > 0:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return opts


def create_session(path: str, device: str = "cpu", threads: int = 0) -> ort.InferenceSession:
    """An ORT session on the asked device; refuse a silent fall-back from CUDA to CPU."""
    kind = device.split(":")[0]
    if kind not in PROVIDERS:
        raise ModelError(f"device {device!r} is not supported by the onnx backend (cpu, cuda)")
    wanted = PROVIDERS[kind]
    if wanted[0] not in ort.get_available_providers():
        raise ModelError(f"{wanted[0]} is not available in this onnxruntime build "
                         f"(available: {', '.join(ort.get_available_providers())})")
    sess = ort.InferenceSession(path, sess_options=session_options(threads), providers=wanted)
    if kind == "cuda" and "CUDAExecutionProvider" not in sess.get_providers():
        raise ModelError("CUDA was asked for but onnxruntime fell back to CPU (CUDA/cuDNN libraries missing?)")
    return sess


def preprocess(image: np.ndarray, size: tuple[int, int], cfg: dict) -> np.ndarray:
    """RGB uint8 -> NCHW float32, as rembg does it: resize, scale, normalise.

    Fused into one multiply-add per channel written straight into the NCHW buffer: this
    runs on every request, so it must cost less than rembg's own float64 version."""
    resized = np.asarray(Image.fromarray(image).resize(size, RESAMPLE[cfg.get("resize", "lanczos")]))
    scale = cfg.get("scale", "max")
    # rembg divides by the resized image's own max pixel
    top = max(float(resized.max()), 1e-6) if scale == "max" else 255.0 if scale == "255" else 1.0
    mean = np.asarray(cfg.get("mean", (0.0, 0.0, 0.0)), dtype=np.float32)
    std = np.asarray(cfg.get("std", (1.0, 1.0, 1.0)), dtype=np.float32)
    gain = (1.0 / (top * std)).astype(np.float32)[:, None, None]
    offset = (-mean / std).astype(np.float32)[:, None, None]
    x = np.empty((1, 3, size[1], size[0]), dtype=np.float32)
    np.multiply(resized.transpose(2, 0, 1), gain, out=x[0])
    x[0] += offset
    return x


def postprocess(pred: np.ndarray, out_size: tuple[int, int], cfg: dict) -> np.ndarray:
    """Raw first-channel output -> alpha in [0, 1] at (width, height) `out_size`.

    The matte is rounded to 8 bits before the resize, as rembg does: every consumer (PNG
    files, the cache, the metrics) keeps 8 bits, and an 8-bit resize is the cheaper one."""
    pred = pred.astype(np.float32, copy=False)
    if cfg.get("activation") == "sigmoid":
        pred = 1.0 / (1.0 + np.exp(-pred))
    lo, hi = float(pred.min()), float(pred.max())
    if cfg.get("normalize", "minmax") == "minmax" and hi > lo:
        q = pred - lo
        q *= 255.0 / (hi - lo)
        q += 0.5
        quantised = q.astype(np.uint8)
    else:  # a constant output has no range to stretch: keep its value rather than divide by 0
        quantised = alpha_to_uint8(pred)
    small = Image.fromarray(quantised, mode="L")
    out = small.resize(out_size, RESAMPLE[cfg.get("resize", "lanczos")])
    return np.asarray(out, dtype=np.float32) * (1.0 / 255.0)


class OnnxRunner(Runner):
    def __init__(self, variant, weights, device="cpu", threads=0):
        super().__init__(variant, weights, device, threads)
        if not isinstance(variant.input_size, tuple):
            raise ModelError(f"{variant.id}: the onnx backend needs a fixed input_size")
        self.session = create_session(str(weights), device, threads)
        self.input_name = self.session.get_inputs()[0].name

    def predict(self, image: np.ndarray) -> Matte:
        sw = Stopwatch()
        h, w = image.shape[:2]
        with sw("preprocess"):
            x = preprocess(image, self.variant.input_size, self.variant.preprocess)
        with sw("inference"):
            pred = self.session.run(None, {self.input_name: x})[0]
        with sw("postprocess"):
            alpha = postprocess(pred[0, 0], (w, h), self.variant.postprocess)
        return Matte(alpha=alpha, variant=self.variant.id, timings=sw.timings)

    def close(self) -> None:
        self.session = None
