"""Activation ranges for static quantization, collected one image at a time.

ONNX Runtime's percentile and entropy calibrators hold every activation of every
calibration image until the end (24 IS-Net images at 1024² were OOM-killed at 24 GB).
This collector keeps only a min/max per tensor (first pass) and a fixed-range histogram per
tensor (second pass, histogram methods only), so memory is one image's activations however
large the set. Because the second pass bins into the first pass's final range, the result
does not depend on how the images are chunked or ordered.

Methods:
- minmax: the observed range;
- percentile: asymmetric, clip `(100 - p) / 2` % of the mass on each side of the histogram
  (post-ReLU tensors keep 0 as their floor instead of wasting half the levels);
- entropy: TensorRT's KL-divergence threshold on the |x| histogram;
- mse: the range whose 8-bit quantization has the least expected squared error (rounding
  inside, clipping outside), searched on the histogram.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from studio.quant.graph import activation_tensors, with_outputs

METHODS = ("minmax", "percentile", "entropy", "mse")


@dataclass
class TensorStats:
    lo: float = math.inf
    hi: float = -math.inf
    hist: np.ndarray | None = None

    def update_range(self, arr: np.ndarray) -> None:
        if arr.size:
            self.lo = min(self.lo, float(arr.min()))
            self.hi = max(self.hi, float(arr.max()))


@dataclass
class Ranges:
    """Per-tensor (low, high) activation ranges, plus how they were made."""

    method: str
    ranges: dict[str, tuple[float, float]]
    params: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"method": self.method, "params": self.params,
                "ranges": {k: [float(lo), float(hi)] for k, (lo, hi) in sorted(self.ranges.items())}}

    @classmethod
    def from_json(cls, d: dict) -> Ranges:
        return cls(d["method"], {k: (float(v[0]), float(v[1])) for k, v in d["ranges"].items()},
                   d.get("params", {}))

    def tensors_data(self):
        """The ranges as ONNX Runtime's `TensorsData` (its quantizer's input)."""
        from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData

        data = {k: TensorData(lowest=np.float32(lo), highest=np.float32(hi))
                for k, (lo, hi) in self.ranges.items()}
        return TensorsData(CalibrationMethod.MinMax, data)


def _session(model: onnx.ModelProto, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = max(threads, 0)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _runs(sess, batches: Sequence[Sequence[str]], inputs: Iterable[dict[str, np.ndarray]]):
    """Yield {tensor: array} per image and batch of tensors, asking the session for one batch
    at a time (fewer live outputs means less peak memory on big models)."""
    for feed in inputs:
        for part in batches:
            yield dict(zip(part, sess.run(list(part), feed), strict=True))


def tensor_batches(names: Sequence[str], sizes: dict[str, int], max_bytes: int | None,
                   max_count: int) -> list[list[str]]:
    """The tensors split, in order, into batches of at most `max_count` tensors and (when known)
    `max_bytes` bytes: one model run per batch and image. A tensor larger than the budget goes
    alone. The statistics do not depend on the split."""
    out: list[list[str]] = []
    cur: list[str] = []
    used = 0
    for n in names:
        b = sizes.get(n, 0)
        if cur and (len(cur) >= max_count or (max_bytes and used + b > max_bytes)):
            out.append(cur)
            cur, used = [], 0
        cur.append(n)
        used += b
    if cur:
        out.append(cur)
    return out


def tensor_sizes(model: onnx.ModelProto) -> dict[str, int]:
    """Bytes of each float32 tensor whose shape is known (0 where it is not)."""
    from onnx import shape_inference

    g = model.graph
    vis = list(g.value_info) + list(g.input) + list(g.output)
    if not g.value_info:
        vis = list(shape_inference.infer_shapes(model).graph.value_info) + vis
    out = {}
    for v in vis:
        dims = [d.dim_value for d in v.type.tensor_type.shape.dim]
        out[v.name] = int(np.prod(dims)) * 4 if dims and all(dims) else 0
    return out


def collect_stats(
    model_path: str | Path,
    inputs: Callable[[], Iterable[dict[str, np.ndarray]]],
    histograms: bool = True,
    num_bins: int = 2048,
    tensors: Sequence[str] | None = None,
    threads: int = 0,
    outputs_per_run: int = 100_000,
    hist_sample: int = 1 << 21,
    progress: Callable[[str, int], None] | None = None,
    max_batch_mb: float | None = None,
) -> dict[str, TensorStats]:
    """Min, max and (optionally) a histogram over [min, max] of every activation tensor (or
    the named ones) over the calibration inputs: what every method derives its ranges from.

    `inputs` is called once per pass and yields feeds; `progress(phase, n)` is told each
    finished image. Histograms see at most `hist_sample` evenly strided values of a tensor
    per image (its range pass sees them all): binning is the slow part, and a few million
    values per image place a 99.99th percentile as well as sixteen million do.

    `max_batch_mb` caps the outputs asked for in one run (the memory trap: a transformer's
    every activation at once can exceed the machine); the model then runs once per batch."""
    model = onnx.load(str(model_path))
    names = list(tensors) if tensors is not None else activation_tensors(model)
    max_bytes = int(max_batch_mb * 2**20) if max_batch_mb else None
    batches = tensor_batches(names, tensor_sizes(model) if max_bytes else {}, max_bytes, outputs_per_run)
    # ONNX Runtime keeps every graph output of a run alive, fetched or not: a batch of tensors
    # is a session of its own, with only those tensors as outputs, one at a time.
    one = len(batches) == 1
    shared_sess = _session(with_outputs(model, names), threads) if one else None
    stats = {n: TensorStats() for n in names}

    def each_image(phase: str, fn: Callable[[str, np.ndarray], None]) -> None:
        for b, part in enumerate(batches):
            sess = shared_sess if one else _session(with_outputs(model, part), threads)
            count = 0
            for out in _runs(sess, [part], inputs()):
                for name, arr in out.items():
                    fn(name, arr)
                count += 1
                if progress and b == len(batches) - 1:
                    progress(phase, count)
            del sess
            if count == 0:
                raise ValueError("the calibration set is empty")

    each_image("range", lambda n, a: stats[n].update_range(a))
    if histograms:
        def add_hist(name: str, arr: np.ndarray) -> None:
            s = stats[name]
            flat = arr.ravel()
            if hist_sample and flat.size > hist_sample:
                flat = flat[:: -(-flat.size // hist_sample)]
            lo, hi = (s.lo, s.hi) if s.hi > s.lo else (s.lo, s.lo + 1.0)
            h, _ = np.histogram(flat, bins=num_bins, range=(lo, hi))
            s.hist = h if s.hist is None else s.hist + h

        each_image("histogram", add_hist)
    return stats


def ranges_from_stats(stats: dict[str, TensorStats], method: str = "minmax", percentile: float = 99.999,
                      num_quantized_bins: int = 128) -> Ranges:
    """Per-tensor ranges by one method from collected stats (histogram methods need histograms)."""
    if method not in METHODS:
        raise ValueError(f"calibration method must be one of {METHODS}, got {method!r}")
    if method != "minmax" and any(s.hist is None for s in stats.values()):
        raise ValueError(f"calibration method {method} needs histograms")
    if method == "minmax":
        ranges, params = {n: (s.lo, s.hi) for n, s in stats.items()}, {}
    elif method == "percentile":
        ranges, params = {n: _percentile_range(s, percentile) for n, s in stats.items()}, {"percentile": percentile}
    elif method == "mse":
        ranges, params = {n: _mse_range(s) for n, s in stats.items()}, {}
    else:
        ranges = {n: _entropy_range(s, num_quantized_bins) for n, s in stats.items()}
        params = {"num_quantized_bins": num_quantized_bins}
    return Ranges(method, {n: (float(lo), float(hi)) for n, (lo, hi) in ranges.items()}, params)


def collect_ranges(model_path: str | Path, inputs: Callable[[], Iterable[dict[str, np.ndarray]]],
                   method: str = "minmax", percentile: float = 99.999, num_bins: int = 2048,
                   **kw) -> Ranges:
    """`collect_stats` then `ranges_from_stats` (histograms only when the method needs them)."""
    if method not in METHODS:
        raise ValueError(f"calibration method must be one of {METHODS}, got {method!r}")
    stats = collect_stats(model_path, inputs, histograms=method != "minmax", num_bins=num_bins, **kw)
    return ranges_from_stats(stats, method, percentile)


def save_stats(stats: dict[str, TensorStats], path: str | Path) -> None:
    names = list(stats)
    arrays = {"names": np.array(names), "lo": np.array([stats[n].lo for n in names]),
              "hi": np.array([stats[n].hi for n in names])}
    if all(stats[n].hist is not None for n in names):
        arrays["hist"] = np.stack([stats[n].hist for n in names]).astype(np.int64)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def load_stats(path: str | Path) -> dict[str, TensorStats]:
    with np.load(path) as z:
        hist = z["hist"] if "hist" in z.files else None
        return {str(n): TensorStats(float(lo), float(hi), None if hist is None else hist[i].copy())
                for i, (n, lo, hi) in enumerate(zip(z["names"], z["lo"], z["hi"], strict=True))}


def _edges(s: TensorStats) -> np.ndarray:
    return np.linspace(s.lo, s.hi, s.hist.size + 1)


def _percentile_range(s: TensorStats, percentile: float) -> tuple[float, float]:
    if s.hist is None or s.hi <= s.lo:
        return s.lo, s.hi
    edges = _edges(s)
    cdf = np.cumsum(s.hist) / max(int(s.hist.sum()), 1)
    tail = (100.0 - percentile) / 200.0
    lo = edges[int(np.searchsorted(cdf, tail, side="right"))]
    hi = edges[min(int(np.searchsorted(cdf, 1.0 - tail, side="left")) + 1, s.hist.size)]
    # Never widen past what was seen; keep 0 inside so zero-padding stays exact.
    lo, hi = max(float(lo), s.lo), min(float(hi), s.hi)
    return min(lo, 0.0) if s.lo <= 0 else lo, max(hi, 0.0) if s.hi >= 0 else hi


def _abs_hist(s: TensorStats) -> tuple[np.ndarray, float]:
    """The |x| histogram (same bin count, over [0, max|x|]) of a signed histogram."""
    amax = max(abs(s.lo), abs(s.hi))
    edges = _edges(s)
    centers = np.abs((edges[:-1] + edges[1:]) / 2)
    n = s.hist.size
    idx = np.minimum((centers / amax * n).astype(np.int64), n - 1)
    return np.bincount(idx, weights=s.hist, minlength=n), amax


def _entropy_range(s: TensorStats, num_quantized_bins: int) -> tuple[float, float]:
    """TensorRT's KL calibration on the |x| histogram: the clipping threshold whose
    `num_quantized_bins`-level quantization diverges least from the clipped distribution."""
    if s.hist is None or s.hi <= s.lo or max(abs(s.lo), abs(s.hi)) == 0:
        return s.lo, s.hi
    hist, amax = _abs_hist(s)
    t = amax * kl_threshold_fraction(hist, num_quantized_bins)
    return max(-t, s.lo), min(t, s.hi)


def kl_threshold_fraction(hist: np.ndarray, nq: int = 128, candidates: int = 128) -> float:
    """Where to clip an |x| histogram, as a fraction of its range (1.0 = no clipping)."""
    nbins = hist.size
    hist = hist.astype(np.float64)
    if nbins <= nq or hist.sum() == 0:
        return 1.0
    best_i, best_kl = nbins, math.inf
    for i in np.unique(np.linspace(nq, nbins, candidates).astype(int)):
        ref = hist[:i]
        p = ref.copy()
        p[-1] += hist[i:].sum()  # the clipped outliers pile up in the last bin
        group = (np.arange(i) * nq) // i
        nonzero = ref > 0
        qsum = np.bincount(group, weights=ref, minlength=nq)
        qcnt = np.bincount(group, weights=nonzero, minlength=nq)
        q = np.where(nonzero, qsum[group] / np.maximum(qcnt[group], 1), 0.0)
        if q.sum() == 0:
            continue
        p, q = p / p.sum(), q / q.sum()
        mask = p > 0
        kl = float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-12))))
        if kl < best_kl:
            best_i, best_kl = int(i), kl
    return best_i / nbins


def _mse_range(s: TensorStats, levels: int = 256, candidates: int = 200) -> tuple[float, float]:
    """Shrink the observed range by a common factor (0 stays inside) to the point where the
    histogram's expected 8-bit quantization error (clipping plus rounding) is least."""
    if s.hist is None or s.hi <= s.lo:
        return s.lo, s.hi
    edges = _edges(s)
    centers = (edges[:-1] + edges[1:]) / 2
    counts = s.hist.astype(np.float64)
    best, best_err = (s.lo, s.hi), math.inf
    for t in np.linspace(1.0, 0.02, candidates):
        lo = min(s.lo * t, 0.0) if s.lo < 0 else s.lo
        hi = max(s.hi * t, 0.0) if s.hi > 0 else s.hi
        step = (hi - lo) / (levels - 1)
        inside = (centers >= lo) & (centers <= hi)
        err = float(np.sum(counts * (centers - np.clip(centers, lo, hi)) ** 2)
                    + np.sum(counts[inside]) * step * step / 12)
        if err < best_err:
            best, best_err = (lo, hi), err
    return best
