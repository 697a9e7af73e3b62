"""ONNX Runtime runner, driven entirely by the variant's typed settings: its `Preprocess` and
`Postprocess` (studio.prepost, the code the exported bundle runs too) and its `OrtOptions`."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

import numpy as np
import onnxruntime as ort

from studio import settings
from studio.backends.base import Runner, predict_fixed_size
from studio.errors import ModelError
from studio.matte import Matte
from studio.prepost import postprocess, preprocess
from studio.zoo import OnnxOptions, OrtOptions

__all__ = ["OPT_LEVELS", "PROVIDERS", "OnnxRunner", "create_session", "optimized_path", "ort_options",
           "postprocess", "preprocess", "session_options"]

PROVIDERS = {"cpu": ["CPUExecutionProvider"],
             "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
             # TensorRT builds an engine per model and shape (minutes, cached under the studio's
             # cache); nodes it cannot take fall back to CUDA.
             "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]}
OPT_LEVELS = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
EXEC_MODES = {"sequential": ort.ExecutionMode.ORT_SEQUENTIAL, "parallel": ort.ExecutionMode.ORT_PARALLEL}


def ort_options(variant) -> OrtOptions:
    """The variant's ONNX Runtime settings (checked when the zoo was read)."""
    opts = getattr(variant, "options", None)
    return opts.ort if isinstance(opts, OnnxOptions) else OrtOptions()


def session_options(threads: int, o: OrtOptions | None = None) -> ort.SessionOptions:
    """ONNX Runtime session options: `threads` intra-op threads (0: ORT's default), then the
    variant's settings; an unset setting keeps ONNX Runtime's default."""
    o = o or OrtOptions()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = OPT_LEVELS[o.level]
    if threads > 0:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    if o.execution_mode is not None:
        opts.execution_mode = EXEC_MODES[o.execution_mode]
    if o.inter_op_threads:
        opts.inter_op_num_threads = o.inter_op_threads
    if o.allow_spinning is not None:
        flag = "1" if o.allow_spinning else "0"
        opts.add_session_config_entry("session.intra_op.allow_spinning", flag)
        opts.add_session_config_entry("session.inter_op.allow_spinning", flag)
    if o.cpu_mem_arena is not None:
        opts.enable_cpu_mem_arena = o.cpu_mem_arena
    if o.mem_pattern is not None:
        opts.enable_mem_pattern = o.mem_pattern
    if o.dynamic_block_base:
        opts.add_session_config_entry("session.dynamic_block_base", str(o.dynamic_block_base))
    if o.denormal_as_zero is not None:
        opts.add_session_config_entry("session.set_denormal_as_zero", "1" if o.denormal_as_zero else "0")
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
                   ort_opts: OrtOptions | None = None) -> ort.InferenceSession:
    """An ORT session on the asked device; refuse a silent fall-back from CUDA to CPU."""
    kind = device.split(":")[0]
    if kind not in PROVIDERS:
        raise ModelError(f"device {device!r} is not supported by the onnx backend (cpu, cuda)")
    wanted = PROVIDERS[kind]
    if wanted[0] not in ort.get_available_providers():
        raise ModelError(f"{wanted[0]} is not available in this onnxruntime build "
                         f"(available: {', '.join(ort.get_available_providers())})")
    o = ort_opts or OrtOptions()
    opts = session_options(threads, o)
    providers: list = list(wanted)
    if kind == "tensorrt":
        cache = settings.cache_dir() / "tensorrt"
        cache.mkdir(parents=True, exist_ok=True)
        providers[0] = ("TensorrtExecutionProvider", {
            "trt_fp16_enable": bool(o.trt_fp16), "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache), "trt_timing_cache_enable": True})
    if o.optimized_model and kind == "cpu":
        saved = optimized_path(path, o.level)
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


class OnnxRunner(Runner):
    def __init__(self, variant, weights, device="cpu", threads=0, weights_sha256=None):
        super().__init__(variant, weights, device, threads, weights_sha256)
        if not isinstance(variant.input_size, tuple):
            raise ModelError(f"{variant.id}: the onnx backend needs a fixed input_size")
        self.session = create_session(str(weights), device, threads, ort_options(variant))
        self.input_name = self.session.get_inputs()[0].name

    def predict(self, image: np.ndarray) -> Matte:
        return predict_fixed_size(self.variant, image, lambda x: self.session.run(None, {self.input_name: x})[0])

    def close(self) -> None:
        self.session = None
