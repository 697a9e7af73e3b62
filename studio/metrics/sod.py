"""Salient-object metrics (F, E, S, MAE, IoU, Dice) from joint histograms.

Every one of these metrics depends on a pixel only through (its 8-bit prediction level,
its binarised reference), and on the S-measure's four quadrants. So one 256 x 2 histogram
per quadrant replaces PySODMetrics' passes over the image, and the formulas are then
evaluated per level, in PySODMetrics' operation order, so the values agree with it to
floating-point rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from studio.metrics.conventions import BETA2, SMEASURE_ALPHA

EPS = np.spacing(1)  # PySODMetrics' (MATLAB's) eps
_LEVELS = np.arange(256, dtype=np.float64)
# calcHist counts in float32: exact below 2**24 per bin; bigger images use bincount.
_CALCHIST_MAX = 1 << 24


@dataclass
class Prepared:
    """One pair, quantised and normalised once, shared by every metric."""

    p8: np.ndarray        # (H, W) uint8 prediction as given
    g8: np.ndarray        # (H, W) uint8 reference as given
    gt: np.ndarray        # (H, W) bool, reference > 128
    gt01: np.ndarray      # (H, W) uint8 0/1 view of gt
    lut: np.ndarray       # (256,) float64: normalised prediction value of each level
    pmin: int
    pmax: int
    fg: int               # reference foreground pixel count
    hist_fg: np.ndarray   # (256,) int64 prediction-level counts inside the reference
    hist_bg: np.ndarray   # (256,) outside
    quads: list           # S-measure quadrants: (slice_y, slice_x, hist_fg, hist_bg)
    split: tuple[int, int]

    @property
    def size(self) -> int:
        return self.p8.size

    def pred_norm(self) -> np.ndarray:
        """The normalised prediction as PySODMetrics holds it (float64, H x W)."""
        return self.lut[self.p8]


def normalisation_lut(pmin: int, pmax: int) -> np.ndarray:
    """PySODMetrics' prepare_data (pred / 255, then min-max) evaluated per 8-bit level,
    with the same floating-point operations, so the values are bit-identical."""
    pred = _LEVELS / 255
    lo, hi = pmin / 255, pmax / 255
    if hi != lo:
        pred = (pred - lo) / (hi - lo)
    return pred


def _hist_pair(p8: np.ndarray, gt01: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if p8.size == 0:
        z = np.zeros(256, np.int64)
        return z, z.copy()
    if p8.size < _CALCHIST_MAX:
        allh = cv2.calcHist([p8], [0], None, [256], [0, 256]).ravel().astype(np.int64)
        fg = cv2.calcHist([p8], [0], gt01, [256], [0, 256]).ravel().astype(np.int64)
    else:
        allh = np.bincount(p8.ravel(), minlength=256).astype(np.int64)
        fg = np.bincount(p8[gt01.view(bool)], minlength=256).astype(np.int64)
    return fg, allh - fg


def centroid_split(gt: np.ndarray, fg: int) -> tuple[int, int]:
    """S-measure's split point: the reference centroid, rounded (half to even), plus one."""
    h, w = gt.shape
    if fg == 0:
        cy, cx = np.round(h / 2), np.round(w / 2)
    else:
        g01 = gt.view(np.uint8)
        rows = cv2.reduce(g01, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel().astype(np.int64)
        cols = cv2.reduce(g01, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel().astype(np.int64)
        # Integer sums are exact, so this equals np.argwhere(gt).mean(axis=0) bit for bit.
        cy = np.round(float(rows @ np.arange(h, dtype=np.int64)) / fg)
        cx = np.round(float(cols @ np.arange(w, dtype=np.int64)) / fg)
    return int(cy) + 1, int(cx) + 1


def prepare(p8: np.ndarray, g8: np.ndarray) -> Prepared:
    gt = g8 > 128
    gt01 = gt.view(np.uint8)
    pmin, pmax, _, _ = cv2.minMaxLoc(p8)
    pmin, pmax = int(pmin), int(pmax)
    fg = int(np.count_nonzero(gt))
    h, w = gt.shape
    cy, cx = centroid_split(gt, fg)
    quads = []
    for sy, sx in ((slice(0, cy), slice(0, cx)), (slice(0, cy), slice(cx, w)),
                   (slice(cy, h), slice(0, cx)), (slice(cy, h), slice(cx, w))):
        hf, hb = _hist_pair(p8[sy, sx], gt01[sy, sx])
        quads.append((sy, sx, hf, hb))
    hist_fg = sum(q[2] for q in quads)
    hist_bg = sum(q[3] for q in quads)
    return Prepared(p8=p8, g8=g8, gt=gt, gt01=gt01, lut=normalisation_lut(pmin, pmax),
                    pmin=pmin, pmax=pmax, fg=fg, hist_fg=hist_fg, hist_bg=hist_bg,
                    quads=quads, split=(cy, cx))


# ---------------------------------------------------------------- thresholded counts


def _threshold_hists(prep: Prepared) -> tuple[np.ndarray, np.ndarray]:
    """Histograms over PySODMetrics' 256 thresholds: level q = uint8(pred * 255)."""
    q = (prep.lut * 255).astype(np.uint8)
    fg = np.bincount(q, weights=prep.hist_fg, minlength=256)
    bg = np.bincount(q, weights=prep.hist_bg, minlength=256)
    return fg.astype(np.int64), bg.astype(np.int64)


def adaptive_threshold(prep: Prepared) -> float:
    """min(2 * mean(prediction), 1), PySODMetrics' adaptive threshold."""
    counts = prep.hist_fg + prep.hist_bg
    mean = float(prep.lut @ counts) / prep.size
    # When a prediction level sits on the threshold to rounding, `>=` is decided by the
    # last bit of the mean: then take the mean exactly as PySODMetrics does (np.mean over
    # the image, pairwise summation), at the cost of one pass.
    if np.any(np.abs(prep.lut[counts > 0] - 2 * mean) <= 1e-9):
        mean = float(np.mean(prep.pred_norm()))
    return min(2 * mean, 1)


# ---------------------------------------------------------------- F-measure


def fmeasure_curves(tp_hist: np.ndarray, fp_hist: np.ndarray, fg: int,
                    beta2: float = BETA2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, F) at thresholds 255..0, as PySODMetrics' Fmeasure.cal_pr."""
    tps = np.cumsum(np.flip(tp_hist))
    ps = tps + np.cumsum(np.flip(fp_hist))
    ps[ps == 0] = 1
    t = max(fg, 1)
    precisions = tps / ps
    recalls = tps / t
    numerator = (1 + beta2) * precisions * recalls
    denominator = np.where(numerator == 0, 1, beta2 * precisions + recalls)
    return precisions, recalls, numerator / denominator


def adaptive_fmeasure(prep: Prepared, thr: float, beta2: float = BETA2) -> float:
    sel = prep.lut >= thr
    inter = int(prep.hist_fg[sel].sum())
    if inter == 0:
        return 0.0
    pre = inter / int(prep.hist_fg[sel].sum() + prep.hist_bg[sel].sum())
    rec = inter / prep.fg
    return float((1 + beta2) * pre * rec / (beta2 * pre + rec))


# ---------------------------------------------------------------- E-measure


def _enhanced_sum(fg_fg, fg_bg, gt_fg: int, size: int):
    """Sum of the enhanced-alignment matrix from counts (PySODMetrics' Emeasure)."""
    fg_all = fg_fg + fg_bg
    bg_all = size - fg_all
    if gt_fg == 0:
        return bg_all
    if gt_fg == size:
        return fg_all
    bg_fg = gt_fg - fg_fg
    bg_bg = bg_all - bg_fg
    mean_pred = fg_all / size
    mean_gt = gt_fg / size
    pred_fg, pred_bg = 1 - mean_pred, 0 - mean_pred
    gt_fgv, gt_bgv = 1 - mean_gt, 0 - mean_gt
    total = 0
    for numel, (a, b) in ((fg_fg, (pred_fg, gt_fgv)), (fg_bg, (pred_fg, gt_bgv)),
                          (bg_fg, (pred_bg, gt_fgv)), (bg_bg, (pred_bg, gt_bgv))):
        align = 2 * (a * b) / (a**2 + b**2 + EPS)
        total = total + (align + 1) ** 2 / 4 * numel
    return total


def emeasure_curve(tp_hist: np.ndarray, fp_hist: np.ndarray, fg: int, size: int) -> np.ndarray:
    tps = np.cumsum(np.flip(tp_hist))
    fps = np.cumsum(np.flip(fp_hist))
    return _enhanced_sum(tps, fps, fg, size) / (size - 1 + EPS)


def adaptive_emeasure(prep: Prepared, thr: float) -> float:
    sel = prep.lut >= thr
    fg_fg = int(prep.hist_fg[sel].sum())
    fg_bg = int(prep.hist_bg[sel].sum())
    return float(_enhanced_sum(fg_fg, fg_bg, prep.fg, prep.size) / (prep.size - 1 + EPS))


# ---------------------------------------------------------------- S-measure


def _s_object(values: np.ndarray, counts: np.ndarray) -> float:
    n = int(counts.sum())
    mean = float(values @ counts) / n
    std = float(np.sqrt(((values - mean) ** 2) @ counts / (n - 1))) if n > 1 else 0.0
    return 2 * mean / (mean**2 + 1 + std + EPS)


def _region_ssim_exact(pred: np.ndarray, gt: np.ndarray) -> float:
    """PySODMetrics' Smeasure.ssim on arrays: used only when a quadrant's prediction is
    constant, where its floating-point noise decides between 0 and 1."""
    h, w = pred.shape
    n = h * w
    x = np.mean(pred)
    y = np.mean(gt)
    sigma_x = np.sum((pred - x) ** 2) / (n - 1 + EPS)
    sigma_y = np.sum((gt - y) ** 2) / (n - 1 + EPS)
    sigma_xy = np.sum((pred - x) * (gt - y)) / (n - 1 + EPS)
    alpha = 4 * x * y * sigma_xy
    beta = (x**2 + y**2) * (sigma_x + sigma_y)
    if alpha != 0:
        return float(alpha / (beta + EPS))
    return 1.0 if beta == 0 else 0.0


def _region_ssim(prep: Prepared, sy: slice, sx: slice, hf: np.ndarray, hb: np.ndarray) -> float:
    n = int(hf.sum() + hb.sum())
    if n == 0:
        return 0.0  # zero-area quadrant: zero weight (PySODMetrics would give NaN)
    allh = hf + hb
    if np.count_nonzero(allh) == 1:
        return _region_ssim_exact(prep.lut[prep.p8[sy, sx]], prep.gt[sy, sx])
    lut = prep.lut
    nf = int(hf.sum())
    x = float(lut @ allh) / n
    y = nf / n
    dx = lut - x
    sigma_x = float((dx * dx) @ allh) / (n - 1 + EPS)
    sigma_y = ((1 - y) ** 2 * nf + y**2 * (n - nf)) / (n - 1 + EPS)
    sigma_xy = (float(dx @ hf) * (1 - y) + float(dx @ hb) * (0 - y)) / (n - 1 + EPS)
    alpha = 4 * x * y * sigma_xy
    beta = (x**2 + y**2) * (sigma_x + sigma_y)
    if alpha != 0:
        return alpha / (beta + EPS)
    return 1.0 if beta == 0 else 0.0


def smeasure(prep: Prepared, alpha: float = SMEASURE_ALPHA) -> float:
    n = prep.size
    y = prep.fg / n
    allh = prep.hist_fg + prep.hist_bg
    if y == 0:
        return float(1 - float(prep.lut @ allh) / n)
    if y == 1:
        return float(float(prep.lut @ allh) / n)
    obj = (_s_object(prep.lut, prep.hist_fg) * y
           + _s_object(1 - prep.lut, prep.hist_bg) * (1 - y))
    h, w = prep.gt.shape
    cy, cx = prep.split
    area = h * w
    w_lt = cx * cy / area
    w_rt = cy * (w - cx) / area
    w_lb = (h - cy) * cx / area
    w_rb = 1 - w_lt - w_rt - w_lb
    region = sum(_region_ssim(prep, *q) * wq for q, wq in zip(prep.quads, (w_lt, w_rt, w_lb, w_rb),
                                                              strict=True))
    return float(max(0.0, obj * alpha + region * (1 - alpha)))


# ---------------------------------------------------------------- the rest


def binary_counts(prep: Prepared, cut: float = 0.5) -> tuple[int, int, int]:
    """(TP, FP, FN) of normalised prediction > cut (PySODMetrics' binary 'bi' metrics)."""
    sel = prep.lut > cut
    tp = int(prep.hist_fg[sel].sum())
    fp = int(prep.hist_bg[sel].sum())
    return tp, fp, prep.fg - tp


def mae(prep: Prepared) -> float:
    return float(((1 - prep.lut) @ prep.hist_fg + prep.lut @ prep.hist_bg) / prep.size)


def sod_scores(prep: Prepared) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Every histogram-based metric of one image, plus its curves."""
    tp_h, fp_h = _threshold_hists(prep)
    pre, rec, fm = fmeasure_curves(tp_h, fp_h, prep.fg)
    em = emeasure_curve(tp_h, fp_h, prep.fg, prep.size)
    thr = adaptive_threshold(prep)
    tp, fp, fn = binary_counts(prep)
    values = {
        "iou": tp / (tp + fp + fn) if tp + fp + fn else 0.0,
        "dice": 2 * tp / (2 * tp + fn + fp) if tp + fn + fp else 0.0,
        "mae": mae(prep),
        "fmeasure_max": float(fm.max()),
        "fmeasure_mean": float(fm.mean()),
        "fmeasure_adaptive": adaptive_fmeasure(prep, thr),
        "smeasure": smeasure(prep),
        "emeasure_max": float(em.max()),
        "emeasure_mean": float(em.mean()),
        "emeasure_adaptive": adaptive_emeasure(prep, thr),
    }
    curves = {"fmeasure": fm, "emeasure": em.astype(np.float64), "precision": pre, "recall": rec}
    return values, curves
