"""The OpenVINO lab's shared parts: images, the two runtimes, NNCF builds, mattes, scores, timing.

Used by the scripts beside it (search.py, determinism.py, profile_ov.py). Everything runs the
studio's own pre- and post-processing (the onnx backend's, shared), so ONNX Runtime and
OpenVINO rows differ only in the runtime and the model file.

Images:
- `sod_calibration()` / `sod_held_out()`: the split every ORT int8-static recipe uses (the 16
  sod-dev images `studio.data`'s seeded subset ranks first for seed 0, and the other 94). The
  search selects on the 16 (never on the 94); the tables report the 94.
- `embedded()`: the 24 pairs generated in code (no licence question, on every clone).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from studio import settings  # noqa: E402
from studio.prepost import postprocess, preprocess  # noqa: E402  (the onnx backend's own)

REFERENCE = "isnet-general-use"
OUT = settings.results_dir() / "quant" / "openvino"


# --- images ------------------------------------------------------------------------------------


def _split():
    from studio.quant.images import ImageSet

    return ImageSet.from_dict({"dataset": "sod-dev", "part": "calibration", "count": 16, "seed": 0})


def sod_calibration() -> list:
    return _split().samples()


def sod_held_out() -> list:
    return _split().held_out()


def embedded() -> list:
    from studio.data import open_dataset

    return list(open_dataset(None))


def variant(vid: str = REFERENCE):
    from studio.zoo import load_zoo

    return load_zoo().get(vid)


def ort_options(vid: str) -> dict[str, Any]:
    """A zoo variant's ONNX Runtime settings as a plain mapping (typed options or a dict)."""
    opts = variant(vid).options
    opts = opts.to_dict() if hasattr(opts, "to_dict") else dict(opts or {})
    return dict(opts.get("ort") or {})


def artifact(vid: str) -> Path:
    """The installed file of a zoo variant (a weights file or a build), building it if needed."""
    from studio import artifacts
    from studio.quant import builds

    v = variant(vid)
    if builds.is_derived(v) and artifacts.installed(v) is None:
        builds.build(v, progress=True, threads=2, check=False)
    return Path(artifacts.require(v, verify=False).path)


def feeds(samples: Sequence, size: int) -> list[np.ndarray]:
    """Model inputs for the samples at `size`, with the variant's own preprocessing."""
    cfg = variant().preprocess
    return [preprocess(s.image(), (size, size), cfg) for s in samples]


# --- the two runtimes ------------------------------------------------------------------------


class Net:
    """A loaded model: `net(x)` gives the first output for one NCHW float32 input."""

    name: str = ""
    size: int = 1024

    def __call__(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class OrtNet(Net):
    def __init__(self, name: str, path: Path, threads: int, ort_opts: dict | None = None, size: int = 1024):
        from studio.backends.onnx import create_session

        self.name, self.size, self.path = name, size, Path(path)
        opts: Any = dict(ort_opts or {})
        try:  # the typed options (studio.zoo.OrtOptions) where the onnx backend takes them
            from studio.zoo import OrtOptions

            opts = OrtOptions.from_dict(opts)
        except ImportError:
            pass
        self.session = create_session(str(path), "cpu", threads, opts)
        self.input = self.session.get_inputs()[0].name
        self.output = self.session.get_outputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output], {self.input: x})[0]


def ov_config(threads: int, precision: str = "f32", extra: dict | None = None) -> dict[str, Any]:
    """CPU plugin settings: threads, the latency hint, and the inference precision. On a CPU
    with AVX512-BF16 the plugin's default precision is bf16, not f32: always say which."""
    cfg: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}
    if threads > 0:
        cfg["INFERENCE_NUM_THREADS"] = threads
    cfg.update(extra or {})
    return cfg


class OvNet(Net):
    def __init__(self, name: str, model: Any, threads: int, precision: str = "f32", size: int = 1024,
                 extra: dict | None = None, first_output_only: bool = True):
        import openvino as ov

        self.name, self.size = name, size
        core = ov.Core()
        if isinstance(model, str | Path):
            model = core.read_model(str(model))
        if first_output_only and len(model.outputs) > 1:  # side maps the studio never reads
            for r in model.get_results()[1:]:
                model.remove_result(r)
            model.validate_nodes_and_infer_types()
        self.config = ov_config(threads, precision, extra)
        self.compiled = core.compile_model(model, "CPU", self.config)
        self.request = self.compiled.create_infer_request()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.request.infer({0: x}, share_inputs=True)
        return self.request.get_output_tensor(0).data.copy()


def predict(net: Net, image: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """The studio's predict path around `net`: preprocess, model, postprocess, each timed."""
    v = variant()
    t0 = time.perf_counter()
    x = preprocess(image, (net.size, net.size), v.preprocess)
    t1 = time.perf_counter()
    y = net(x)
    t2 = time.perf_counter()
    alpha = postprocess(y[0, 0], (image.shape[1], image.shape[0]), v.postprocess)
    if alpha.dtype == np.uint8:  # the shared postprocess gives 8-bit levels, as the runners read them
        alpha = alpha.astype(np.float32) * np.float32(1.0 / 255.0)
    t3 = time.perf_counter()
    return alpha, {"preprocess": t1 - t0, "inference": t2 - t1, "postprocess": t3 - t2, "total": t3 - t0}


# --- mattes, cached ------------------------------------------------------------------------


class Mattes:
    """8-bit mattes on disk by (model tag, image content hash): the reference's mattes are
    computed once for every script, and a candidate's when it is scored again."""

    def __init__(self, root: Path = OUT / "mattes"):
        self.root = root

    def get(self, tag: str, samples: Sequence, net_factory: Callable[[], Net]) -> dict[str, np.ndarray]:
        from studio.imageio import encode_png, load_mask_levels

        out, todo = {}, []
        for s in samples:
            p = self.root / tag / f"{s.content_hash[:24]}.png"
            if p.is_file():
                out[s.id] = load_mask_levels(p).astype(np.float32) / 255.0
            else:
                todo.append(s)
        if todo:
            net = net_factory()
            for s in todo:
                a, _ = predict(net, s.image())
                q = np.round(a * 255).astype(np.uint8)
                p = self.root / tag / f"{s.content_hash[:24]}.png"
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(encode_png(q))
                out[s.id] = q.astype(np.float32) / 255.0  # as stored, so reruns give the same
            del net
        return out


def file_tag(*parts: Any) -> str:
    """A short stable tag for a model file (by content) and its settings."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, Path) and p.is_file():
            h.update(sha256_file(p).encode())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


_SHA: dict[tuple[str, int, int], str] = {}


def sha256_file(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA:
        from studio.weights.store import hash_file

        _SHA[key] = hash_file(path, ("sha256",))["sha256"]
    return _SHA[key]


# --- scores ----------------------------------------------------------------------------------


def iou_pair(a: np.ndarray, b: np.ndarray) -> float:
    """Mask IoU at 0.5 of two mattes (1 when both are empty)."""
    from studio.metrics import iou

    return iou(b, a)


def pooled(ref: Sequence[np.ndarray], got: Sequence[np.ndarray]) -> float:
    inter = sum(int(np.count_nonzero((a > 0.5) & (b > 0.5))) for a, b in zip(ref, got, strict=True))
    union = sum(int(np.count_nonzero((a > 0.5) | (b > 0.5))) for a, b in zip(ref, got, strict=True))
    return inter / union if union else 1.0


def pooled_ci(ref: Sequence[np.ndarray], got: Sequence[np.ndarray], n_boot: int = 1000, seed: int = 0) -> list[float]:
    inter = np.array([np.count_nonzero((a > 0.5) & (b > 0.5)) for a, b in zip(ref, got, strict=True)], float)
    union = np.array([np.count_nonzero((a > 0.5) | (b > 0.5)) for a, b in zip(ref, got, strict=True)], float)
    w = np.random.default_rng(seed).multinomial(len(ref), np.full(len(ref), 1.0 / len(ref)), size=n_boot).astype(float)
    vals = (w @ inter) / np.maximum(w @ union, 1.0)
    return [float(x) for x in np.percentile(vals, [2.5, 97.5])]


@dataclass
class Scored:
    """Quality of one candidate on one image set, against ground truth and the reference."""

    n: int
    iou_gt: float
    iou_gt_ci: list[float]
    d_iou: float | None
    d_iou_ci: list[float] | None
    agree_pooled: float
    agree_pooled_ci: list[float]
    agree_mean: float
    agree_median: float
    agree_min: float
    per_image_iou: list[float] = field(default_factory=list, repr=False)


def score(ids: Sequence[str], got: dict[str, np.ndarray], ref: dict[str, np.ndarray], gts: dict[str, np.ndarray],
          ref_scores: list | None = None, n_boot: int = 1000) -> tuple[Scored, list]:
    """IoU against ground truth (PySODMetrics conventions, bootstrap CI), ΔIoU against the
    reference (paired bootstrap) and agreement with the reference's masks."""
    from studio.metrics import aggregate, compare_paired, score_image
    from studio.quant.agreement import compare_mattes

    scores = [score_image(got[i], gts[i], name=i, threads=1) for i in ids]
    agg = aggregate(scores, n_boot=n_boot)
    agree = compare_mattes([ref[i] for i in ids], [got[i] for i in ids])
    d = compare_paired(scores, ref_scores, "iou", n_boot=2 * n_boot) if ref_scores is not None else None
    return Scored(
        n=len(ids), iou_gt=agg["iou"]["mean"], iou_gt_ci=agg["iou"]["ci95"],
        d_iou=d["diff"] if d else None, d_iou_ci=d["ci95"] if d else None,
        agree_pooled=agree["iou_pooled"], agree_pooled_ci=pooled_ci([ref[i] for i in ids], [got[i] for i in ids]),
        agree_mean=agree["iou_mean"], agree_median=agree["iou_median"], agree_min=agree["iou_min"],
        per_image_iou=[s.values["iou"] for s in scores]), scores


# --- timing ------------------------------------------------------------------------------------


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def interleave(nets: dict[str, Net], image: np.ndarray, rounds: int, anchor: str, seed: int = 0,
               gap: float = 0.05, warmup: int = 1) -> dict[str, dict[str, Any]]:
    """Each net once per round, in a seeded shuffled order, on one image (the studio's timing
    loop, `studio.timing.interleave`); a short pause before each run lets the previous runtime's
    worker threads go idle. Returns per net the p50 of the model run and of the whole predict,
    and the median of the per-round ratios anchor/net with its bootstrap 95 % interval."""
    from studio.timing import interleave as timed
    from studio.timing import speed_ratio

    for net in nets.values():
        for _ in range(warmup):
            predict(net, image)
    def parts(net: Net, img: np.ndarray) -> dict[str, float]:
        t = predict(net, img)[1]
        return {k: t[k] for k in ("preprocess", "inference", "postprocess")}  # "total" is their sum

    res = timed({k: (lambda img, n=n: parts(n, img)) for k, n in nets.items()}, [image], rounds, seed=seed, gap=gap)
    out: dict[str, dict[str, Any]] = {}
    for k in nets:
        ratio = speed_ratio(res.ratios(k, anchor, "inference"), seed=seed) or {"median": None, "ci95": None}
        out[k] = {"p50_inference_s": statistics.median(res.samples(k, "inference")),
                  "p50_total_s": statistics.median(res.samples(k, "total")),
                  "speedup_paired": ratio["median"], "speedup_paired_ci": ratio["ci95"],
                  "speedup_total": statistics.median(res.samples(anchor, "total")) / statistics.median(res.samples(k, "total")),
                  "rounds": rounds}
    out["_meta"] = {"load_average_1min": res.loads, "rounds": rounds, "seed": seed, "gap_s": gap,
                    "load_max": res.load_max}
    return out


def peak_rss_mb() -> float:
    """This process's peak resident set so far (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
