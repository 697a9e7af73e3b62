"""One image: `score_image(pred, gt) -> ImageScore`, and the plain agreement helpers."""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from studio.metrics import matting, sod
from studio.metrics.conventions import CURVE_NAMES, METRIC_NAMES, VERSION
from studio.metrics.inputs import MetricInputError, check_pair, to_u8
from studio.metrics.ssim import ssim_u8
from studio.metrics.wfm import wfmeasure


@dataclass
class ImageScore:
    """Every metric of one image (`values`, keys METRIC_NAMES, never NaN) and the
    per-threshold curves (`curves`: fmeasure, emeasure, precision, recall; 256 long,
    index k is threshold 255 - k) that dataset-level max/mean F and E are computed from."""

    values: dict[str, float]
    curves: dict[str, np.ndarray]
    name: str = ""
    size: tuple[int, int] = (0, 0)  # (width, height)

    def to_json(self) -> dict:
        return {"name": self.name, "size": list(self.size), "version": VERSION,
                "values": {k: float(self.values[k]) for k in METRIC_NAMES},
                "curves": {k: [float(x) for x in v] for k, v in self.curves.items()}}

    @classmethod
    def from_json(cls, d: dict) -> ImageScore:
        return cls(values={k: float(v) for k, v in d["values"].items()},
                   curves={k: np.asarray(v, dtype=np.float64) for k, v in d["curves"].items()},
                   name=str(d.get("name", "")), size=tuple(d.get("size", (0, 0))))


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
# Below this many pixels a second thread costs more than it saves.
_PARALLEL_MIN_PIXELS = 512 * 512
# Above this, one thread: the two halves' temporaries would be held at once (~1 GB at 50 MP),
# and at that size the second thread was seen to save little.
_PARALLEL_MAX_PIXELS = 1 << 24


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="studio-metrics")
        return _POOL


def _second_half(p8: np.ndarray, prep: sod.Prepared) -> dict[str, float]:
    # SSIM, connectivity and boundary IoU: about half the work, independent of the rest.
    bin_pred = (p8 > _binary_level(prep)).view(np.uint8)
    return {"ssim": ssim_u8(p8, prep.gt01, prep.lut, prep.pmin, prep.pmax),
            "conn": matting.conn(p8, prep.g8),
            "boundary_iou": matting.boundary_iou(bin_pred, prep.gt01)}


def score_image(pred: np.ndarray, gt: np.ndarray, name: str = "",
                threads: int | None = None) -> ImageScore:
    """Score one prediction against its reference.

    pred, gt: (H, W) arrays, uint8 0-255, bool, or float in [0, 1] (both are rounded to
    8 bits first). Raises MetricInputError (an ImageError, so a ValueError) for a size
    mismatch, NaN, values out of range or a non-2-D array. See the package docstring for
    the conventions and each edge case.

    threads: 2 computes SSIM and connectivity in a second thread (OpenCV and numpy release
    the GIL), about 1.3-1.5x faster on two cores; 1 runs everything in the calling thread.
    None (default): 2 for images from 512x512 to 16.7 MP, else 1 (above that, memory
    over speed). The values are identical either way.
    """
    p8, g8 = check_pair(pred, gt)
    if threads is None:
        threads = 2 if _PARALLEL_MIN_PIXELS <= p8.size <= _PARALLEL_MAX_PIXELS else 1
    prep = sod.prepare(p8, g8)
    half = _pool().submit(_second_half, p8, prep) if threads > 1 else None
    values, curves = sod.sod_scores(prep)
    values["wfmeasure"] = wfmeasure(prep)
    values["sad"] = matting.sad(p8, g8)
    values["mse"] = matting.mse(p8, g8)
    values["grad"] = matting.grad(p8, g8)
    values.update(half.result() if half is not None else _second_half(p8, prep))
    out = {k: float(values[k]) for k in METRIC_NAMES}
    bad = [k for k, v in out.items() if not math.isfinite(v)]
    if bad:  # a bug, not an input problem: say so loudly rather than average a NaN
        raise RuntimeError(f"non-finite metric values {bad} for {name or 'an image'}")
    return ImageScore(values=out, curves={k: curves[k] for k in CURVE_NAMES}, name=name,
                      size=(p8.shape[1], p8.shape[0]))


def _binary_level(prep: sod.Prepared) -> int:
    """Highest level whose normalised value is <= 0.5: `p8 > level` is `pred > 0.5`."""
    above = np.flatnonzero(prep.lut > 0.5)
    return int(above[0]) - 1 if above.size else 255


# ---------------------------------------------------------------- agreement helpers


def agreement_levels(alpha: np.ndarray) -> np.ndarray:
    """A matte as 8-bit levels for scoring against another model's matte (labels-free runs).

    PySODMetrics min-max normalises every prediction but binarises the mask as it is (> 128).
    A model's matte used as that mask must get the same normalisation first, and so must the
    matte scored against it (for the soft metrics too): otherwise a reference that peaks below
    0.5 on a faint object binarises to nothing while an identical candidate, normalised, covers
    the object. With it, identical mattes agree perfectly whatever their range."""
    a8 = to_u8(alpha, "matte")
    lo, hi = int(a8.min()), int(a8.max())
    if hi == lo:
        return a8
    lut = np.clip(np.round(sod.normalisation_lut(lo, hi) * 255.0), 0, 255).astype(np.uint8)
    return lut[a8]


def agreement_reference(reference: np.ndarray) -> np.ndarray:
    """A reference model's matte as the mask candidates are scored against: `agreement_levels`,
    and level 128 moved to 129. (A mask is binarised at > 128, a prediction at > 0.5, and level
    128 is 0.502: moved across, identical mattes split at the same place, IoU 1.) Idempotent, so
    a caller scoring many candidates prepares each image's reference once."""
    ref = agreement_levels(reference)
    return np.where(ref == 128, np.uint8(129), ref)


def score_agreement(candidate: np.ndarray, reference: np.ndarray, name: str = "") -> ImageScore:
    """Every metric of a candidate's matte against a reference model's matte (agreement, not
    accuracy): the candidate by `agreement_levels`, the reference by `agreement_reference`
    (either may come prepared). The reference scored against itself is what a perfect copy
    scores: IoU 1, the soft metrics short of 1 by the matte's own softness."""
    return score_image(agreement_levels(candidate), agreement_reference(reference), name=name)



def _float_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(pred)
    b = np.asarray(gt)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if b.ndim == 3 and b.shape[2] == 1:
        b = b[..., 0]
    if a.shape != b.shape:
        raise MetricInputError(f"the two mattes differ in shape: {a.shape} vs {b.shape}")
    a = a.astype(np.float32) / 255 if a.dtype == np.uint8 else a.astype(np.float32, copy=False)
    b = b.astype(np.float32) / 255 if b.dtype == np.uint8 else b.astype(np.float32, copy=False)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise MetricInputError("a matte contains NaN or infinite values")
    return a, b


def iou(pred: np.ndarray, gt: np.ndarray, threshold: float = 0.5) -> float:
    """Plain IoU of two mattes, both thresholded at `threshold` (> threshold is in).

    For agreement checks between two mattes (e.g. fp32 vs int8): no min-max normalisation,
    no 8-bit rounding, and 1.0 when both are empty (two empty mattes agree). The suite's
    `iou` value follows PySODMetrics instead (see the package docstring).
    """
    a, b = _float_pair(pred, gt)
    ma, mb = a > threshold, b > threshold
    union = np.count_nonzero(ma | mb)
    return float(np.count_nonzero(ma & mb) / union) if union else 1.0


def mae(pred: np.ndarray, gt: np.ndarray) -> float:
    """Plain mean absolute difference of two mattes (uint8 read as /255, floats as given)."""
    a, b = _float_pair(pred, gt)
    return float(np.mean(np.abs(a.astype(np.float64) - b)))
