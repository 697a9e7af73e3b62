"""ONNX Runtime runner, driven entirely by the variant's preprocessing config."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from studio import settings
from studio.backends.base import Runner, Stopwatch
from studio.errors import ModelError
from studio.imageio import alpha_to_uint8
from studio.matte import Matte

RESAMPLE = {"lanczos": Image.Resampling.LANCZOS, "bilinear": Image.Resampling.BILINEAR,
            "bicubic": Image.Resampling.BICUBIC}
PROVIDERS = {"cpu": ["CPUExecutionProvider"],
             "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
             # TensorRT builds an engine per model and shape (minutes, cached under the studio's
             # cache); nodes it cannot take fall back to CUDA.
             "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]}


# ONNX Runtime session settings a variant may carry as `options: {ort: {...}}` (measured by
# eval/quant/runtime_settings.py). Absent keys keep ONNX Runtime's defaults, as before.
OPT_LEVELS = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
EXEC_MODES = {"sequential": ort.ExecutionMode.ORT_SEQUENTIAL, "parallel": ort.ExecutionMode.ORT_PARALLEL}
ORT_KEYS = {
    "graph_optimization": "disable | basic | extended | all (default all)",
    "optimized_model": "true: optimise once, save the optimised graph in the cache, load that afterwards",
    "execution_mode": "sequential | parallel",
    "inter_op_threads": "threads running independent nodes at once (parallel mode)",
    "allow_spinning": "false: intra-op threads sleep instead of spinning between tasks",
    "cpu_mem_arena": "false: no CPU memory arena",
    "mem_pattern": "false: no memory pattern planning",
    "dynamic_block_base": "intra-op work split into dynamically sized blocks (ORT's session.dynamic_block_base)",
    "denormal_as_zero": "true: flush denormal floats to zero (ORT's session.set_denormal_as_zero)",
    "trt_fp16": "device tensorrt: build the TensorRT engine in fp16",
}


def ort_options(variant) -> dict:
    """The variant's ONNX Runtime settings (`options.ort`), checked."""
    opts = dict((getattr(variant, "options", None) or {}).get("ort") or {})
    unknown = sorted(set(opts) - set(ORT_KEYS))
    if unknown:
        raise ModelError(f"{getattr(variant, 'id', '?')}: unknown options.ort key(s) {unknown} "
                         f"(known: {', '.join(ORT_KEYS)})")
    if opts.get("graph_optimization", "all") not in OPT_LEVELS:
        raise ModelError(f"options.ort.graph_optimization must be one of {', '.join(OPT_LEVELS)}")
    if opts.get("execution_mode", "sequential") not in EXEC_MODES:
        raise ModelError(f"options.ort.execution_mode must be one of {', '.join(EXEC_MODES)}")
    return opts


def session_options(threads: int, ort_opts: dict | None = None) -> ort.SessionOptions:
    o = dict(ort_opts or {})
    opts = ort.SessionOptions()
    opts.graph_optimization_level = OPT_LEVELS[o.get("graph_optimization", "all")]
    if threads > 0:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    if "execution_mode" in o:
        opts.execution_mode = EXEC_MODES[o["execution_mode"]]
    if o.get("inter_op_threads"):
        opts.inter_op_num_threads = int(o["inter_op_threads"])
    if "allow_spinning" in o:
        flag = "1" if o["allow_spinning"] else "0"
        opts.add_session_config_entry("session.intra_op.allow_spinning", flag)
        opts.add_session_config_entry("session.inter_op.allow_spinning", flag)
    if "cpu_mem_arena" in o:
        opts.enable_cpu_mem_arena = bool(o["cpu_mem_arena"])
    if "mem_pattern" in o:
        opts.enable_mem_pattern = bool(o["mem_pattern"])
    if o.get("dynamic_block_base"):
        opts.add_session_config_entry("session.dynamic_block_base", str(int(o["dynamic_block_base"])))
    if "denormal_as_zero" in o:
        opts.add_session_config_entry("session.set_denormal_as_zero", "1" if o["denormal_as_zero"] else "0")
    opts.log_severity_level = 3
    return opts


def optimized_path(path: str, level: str) -> Path:
    """Where the optimised copy of a model file lives: keyed by the file (path, size, time),
    the ONNX Runtime version, the level and this CPU (level `all` lays out for its vector width)."""
    st = Path(path).stat()
    ident = json.dumps([str(Path(path).resolve()), st.st_size, st.st_mtime_ns, ort.__version__, level,
                        platform.machine(), platform.processor(), _cpu_flags()])
    return settings.cache_dir() / "optimized" / f"{hashlib.sha256(ident.encode()).hexdigest()[:20]}.onnx"


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return hashlib.sha256(line.encode()).hexdigest()[:12]
    except OSError:
        pass
    return ""


def create_session(path: str, device: str = "cpu", threads: int = 0,
                   ort_opts: dict | None = None) -> ort.InferenceSession:
    """An ORT session on the asked device; refuse a silent fall-back from CUDA to CPU."""
    kind = device.split(":")[0]
    if kind not in PROVIDERS:
        raise ModelError(f"device {device!r} is not supported by the onnx backend (cpu, cuda)")
    wanted = PROVIDERS[kind]
    if wanted[0] not in ort.get_available_providers():
        raise ModelError(f"{wanted[0]} is not available in this onnxruntime build "
                         f"(available: {', '.join(ort.get_available_providers())})")
    o = dict(ort_opts or {})
    opts = session_options(threads, o)
    providers: list = list(wanted)
    if kind == "tensorrt":
        cache = settings.cache_dir() / "tensorrt"
        cache.mkdir(parents=True, exist_ok=True)
        providers[0] = ("TensorrtExecutionProvider", {
            "trt_fp16_enable": bool(o.get("trt_fp16")), "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache), "trt_timing_cache_enable": True})
    if o.get("optimized_model") and kind == "cpu":
        saved = optimized_path(path, o.get("graph_optimization", "all"))
        if saved.is_file():  # optimised before: load as is
            path = str(saved)
            opts.graph_optimization_level = OPT_LEVELS["disable"]
        else:  # optimise now and keep the result (written beside, then moved: never half a file)
            saved.parent.mkdir(parents=True, exist_ok=True)
            tmp = saved.with_name(f".{saved.name}.{os.getpid()}.tmp")
            opts.optimized_model_filepath = str(tmp)
            sess = ort.InferenceSession(path, sess_options=opts, providers=wanted)
            if tmp.is_file():
                os.replace(tmp, saved)
            return sess
    sess = ort.InferenceSession(path, sess_options=opts, providers=providers)
    if kind in ("cuda", "tensorrt") and wanted[0] not in sess.get_providers():
        raise ModelError(f"{wanted[0]} was asked for but onnxruntime fell back to "
                         f"{sess.get_providers()[0]} (CUDA/cuDNN/TensorRT libraries missing?)")
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
    alpha = np.asarray(out, dtype=np.float32)  # a new array, so scaling it in place is safe
    alpha *= 1.0 / 255.0  # in place: a 50 MP matte is 200 MB per float32 copy
    return alpha


class OnnxRunner(Runner):
    def __init__(self, variant, weights, device="cpu", threads=0):
        super().__init__(variant, weights, device, threads)
        if not isinstance(variant.input_size, tuple):
            raise ModelError(f"{variant.id}: the onnx backend needs a fixed input_size")
        self.session = create_session(str(weights), device, threads, ort_options(variant))
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
