"""Soft-matte metrics (SAD, MSE, gradient, connectivity) and boundary IoU.

SAD, MSE, gradient and connectivity follow Rhemann et al. (CVPR 2009) and the
Composition-1k evaluation code that the matting literature reports with: alpha in [0, 1]
(8-bit level / 255), SAD, gradient and connectivity divided by 1000. There is no trimap
here, so they are summed over the whole image; they therefore grow with image size and
compare models only on the same images.

Boundary IoU follows Cheng et al. (CVPR 2021): the band of a mask is the mask minus its
erosion by d pixels (chessboard, image border counted as background, so a mask touching
the border has a band there), d = 2 % of the image diagonal.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from studio.imageio import row_bands
from studio.metrics.conventions import BOUNDARY_RATIO, CONN_THETA, GRAD_SIGMA
from studio.metrics.scratch import scratch

_LEVELS_255 = np.arange(256, dtype=np.float64) / 255


def sad(p8: np.ndarray, g8: np.ndarray) -> float:
    """Sum of absolute alpha differences, in thousands."""
    return float(cv2.norm(p8, g8, cv2.NORM_L1)) / 255.0 / 1000.0


def mse(p8: np.ndarray, g8: np.ndarray) -> float:
    """Mean squared alpha difference per pixel (alpha in [0, 1], not scaled)."""
    return float(cv2.norm(p8, g8, cv2.NORM_L2SQR)) / (255.0 * 255.0) / p8.size


# ---------------------------------------------------------------- gradient


def _gauss_gradient_kernels(sigma: float = GRAD_SIGMA, epsilon: float = 1e-2):
    """Derivative-of-Gaussian filter of Rhemann et al.'s gradient error, as separable parts.

    Half-size from where the Gaussian falls below `epsilon`; the 2-D kernel g(y) * g'(x) is
    normalised to unit L2 norm, which for a separable kernel is the product of the norms.
    """
    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * epsilon)))
    u = np.arange(-half, half + 1, dtype=np.float64)
    g = np.exp(-u * u / (2 * sigma * sigma)) / (sigma * math.sqrt(2 * math.pi))
    dg = -u * g / (sigma * sigma)
    norm = np.linalg.norm(g) * np.linalg.norm(dg)
    return g.astype(np.float32), (dg / norm).astype(np.float32), half


_G, _DG, _HALF = _gauss_gradient_kernels()
_DG255 = (_DG.astype(np.float64) / 255).astype(np.float32)


def _grad_mag(img8: np.ndarray, tag: str) -> np.ndarray:
    """Gradient magnitude of level / 255 (the 1/255 is folded into the kernel). Computed
    on an aligned copy padded on the right with its last column (what the replicate border
    reads there anyway), so every row takes the same SIMD path: OpenCV's float32 filters
    round differently on unaligned rows. Returns a (h, w') array: use [:, :w]."""
    h, w = img8.shape
    wp = (w + 63) // 64 * 64
    buf = scratch(f"grad_in_{tag}", (h, wp), np.uint8)
    buf[:, :w] = img8
    buf[:, w:] = img8[:, -1:]
    gx = scratch(f"grad_gx_{tag}", (h, wp), np.float32)
    gy = scratch(f"grad_gy_{tag}", (h, wp), np.float32)
    # Replicate border as the reference ('replicate', 'conv'); the sign flip between
    # convolution and correlation does not change the magnitude.
    cv2.sepFilter2D(buf, cv2.CV_32F, _DG255, _G, dst=gx, borderType=cv2.BORDER_REPLICATE)
    cv2.sepFilter2D(buf, cv2.CV_32F, _G, _DG255, dst=gy, borderType=cv2.BORDER_REPLICATE)
    # numpy, not cv2.magnitude, whose SIMD square root depends on buffer alignment
    gx *= gx
    gy *= gy
    gx += gy
    return np.sqrt(gx, out=gx)


def _changing_box(p8: np.ndarray, g8: np.ndarray, margin: int):
    """Bounding box, grown by `margin`, of the pixels that differ from the corner value of
    either image: outside it both images are constant, so filters see nothing."""
    # numpy, not cv2, for array-scalar ops: cv2 reads a scalar as a 4-vector on tiny arrays
    changing = ((p8 != p8[0, 0]) | (g8 != g8[0, 0])).view(np.uint8)
    x, y, bw, bh = cv2.boundingRect(changing)
    if bw == 0:
        return None
    h, w = p8.shape
    return (max(y - margin, 0), min(y + bh + margin, h), max(x - margin, 0), min(x + bw + margin, w))


def grad(p8: np.ndarray, g8: np.ndarray) -> float:
    """Gradient error: sum of squared differences of gradient magnitudes, in thousands."""
    box = _changing_box(p8, g8, _HALF + 1)
    if box is None:
        return 0.0
    y0, y1, x0, x1 = box
    w = x1 - x0
    total = 0.0
    # In bands of rows (four float32 planes each): each band is filtered with _HALF rows of
    # the box above and below it, so its pixels get the values the whole box would give.
    for rows in row_bands(y1 - y0, w):
        a, b = y0 + rows.start, y0 + rows.stop
        ba, bb = max(a - _HALF, y0), min(b + _HALF, y1)
        mp = _grad_mag(p8[ba:bb, x0:x1], "p")
        mg = _grad_mag(g8[ba:bb, x0:x1], "g")
        keep = slice(a - ba, b - ba)
        total += float(cv2.norm(mp[keep, :w], mg[keep, :w], cv2.NORM_L2SQR))
    return total / 1000.0


# ---------------------------------------------------------------- connectivity


def _largest_component(mask: np.ndarray, area: int, seed: tuple[int, int]) -> np.ndarray | None:
    """0/1 mask of the largest 4-connected component of a 0/1 mask of `area` pixels (the
    first in scan order among equals), or None when the mask is empty. `mask` is modified.

    `seed` (y, x): a pixel likely in the largest component. A flood fill from it is cheaper
    than labelling; when its component holds more than half the mask it is the largest.
    """
    if area == 0:
        return None
    sy, sx = seed
    if mask[sy, sx]:
        filled = cv2.floodFill(mask, None, (sx, sy), 2, flags=4)[0]
        if 2 * filled > area:
            return (mask == 2).view(np.uint8)
    try:
        labels = scratch("conn_labels", mask.shape, np.uint16)
        n, labels = cv2.connectedComponents(mask, labels=labels, connectivity=4,
                                            ltype=cv2.CV_16U)
    except cv2.error:  # more than 65535 components
        n, labels = cv2.connectedComponents(mask, connectivity=4, ltype=cv2.CV_32S)
    if n == 2:
        return (mask != 0).view(np.uint8)
    if labels.dtype == np.uint16:
        sizes = cv2.calcHist([labels], [0], None, [n], [0, n]).ravel()
    else:
        sizes = np.bincount(labels.ravel(), minlength=n)
    return (labels == 1 + int(np.argmax(sizes[1:]))).view(np.uint8)


def conn(p8: np.ndarray, g8: np.ndarray) -> float:
    """Connectivity error (Rhemann et al.), step 0.1, theta 0.15, 4-connectivity, /1000.

    Thresholds k/10 are applied in integer arithmetic (level / 255 >= k / 10 exactly).
    """
    both = cv2.min(p8, g8)
    # level / 255 >= k / 10  <=>  10 * level >= 255 * k
    thresholds = [(255 * k + 9) // 10 for k in range(1, 11)]
    levels = np.zeros(p8.shape, np.uint8)  # tenths: how many thresholds stay connected
    x, y, bw, bh = cv2.boundingRect((both >= thresholds[0]).view(np.uint8))
    if bw:
        sub = np.ascontiguousarray(both[y:y + bh, x:x + bw])
        # pixels at or above each level, from one histogram
        above = np.cumsum(np.bincount(sub.ravel(), minlength=256)[::-1])[::-1]
        # the brightest pixel of both images survives the most thresholds: a good seed
        _, _, _, (sx, sy) = cv2.minMaxLoc(sub)
        lv = np.zeros(sub.shape, np.uint8)
        alive = np.ones(sub.shape, np.uint8)  # 0/1: connected at every threshold so far
        for t in thresholds:
            omega = _largest_component((sub >= t).view(np.uint8), int(above[t]), (sy, sx))
            if omega is None:
                break
            cv2.bitwise_and(alive, omega, dst=alive)
            if not cv2.countNonZero(alive):
                break
            lv += alive
        levels[y:y + bh, x:x + bw] = lv
    # phi(x) = 1 - d * (d >= 0.15), d = x - level / 10, read from an (11, 256) table.
    table = _phi_table()
    # calcHist counts in float32, exact below 2**24: zero stays zero above that, which is all
    # this histogram is asked.
    g_hist = cv2.calcHist([g8], [0], None, [256], [0, 256]).ravel()
    h, w = p8.shape
    if g_hist[1:255].sum() == 0:
        # A binary reference: count (prediction level, connected tenths) pairs over each
        # reference value; pixels equal in both images contribute |phi - phi| = 0. Counted
        # in bands of rows (each under 2**24 pixels, so float32 counts are exact).
        total = 0.0
        for gv in (0, 255):
            if g_hist[gv]:
                hist = np.zeros(256 * 11, np.float64)
                for rows in row_bands(h, w):
                    hist += cv2.calcHist([p8[rows], levels[rows]], [0, 1],
                                         (g8[rows] == gv).view(np.uint8), [256, 11],
                                         [0, 256, 0, 11]).ravel()
                err = np.abs(table.T - table[:, gv][None, :])  # (256 levels, 11 tenths)
                total += float(err.ravel() @ hist)
        return total / 1000.0
    # Otherwise, only pixels where the two images differ can contribute (in bands of rows:
    # ~40 bytes of temporaries per differing pixel).
    flat = table.ravel()
    total = 0.0
    for rows in row_bands(h, w):
        p_r, g_r = p8[rows].ravel(), g8[rows].ravel()
        diff = np.flatnonzero(p_r != g_r)
        if diff.size == 0:
            continue
        base = levels[rows].ravel()[diff].astype(np.intp) * 256
        phi_p = flat[base + p_r[diff]]
        phi_g = flat[base + g_r[diff]]
        total += float(np.abs(phi_p - phi_g).sum())
    return total / 1000.0


@functools.cache
def _phi_table() -> np.ndarray:
    """phi for every (connected tenths, level): 1 - d * (d >= 0.15), d = level/255 - l/10."""
    d = _LEVELS_255[None, :] - (np.arange(11, dtype=np.float64) / 10)[:, None]
    return 1 - d * (d >= CONN_THETA)


# ---------------------------------------------------------------- boundary IoU


def boundary_width(h: int, w: int, ratio: float = BOUNDARY_RATIO) -> int:
    return max(1, int(round(ratio * math.sqrt(h * h + w * w))))


def _band(mask01: np.ndarray, d: int) -> np.ndarray:
    k = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * d + 1, 2 * d + 1))
    inner = cv2.erode(mask01, k, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return cv2.subtract(mask01, inner)


def boundary_iou(pred01: np.ndarray, gt01: np.ndarray) -> float:
    """Boundary IoU of two 0/1 uint8 masks; 0 when both bands are empty."""
    d = boundary_width(*gt01.shape)
    bp, bg = _band(pred01, d), _band(gt01, d)
    inter = cv2.countNonZero(cv2.bitwise_and(bp, bg))
    union = cv2.countNonZero(cv2.bitwise_or(bp, bg))
    return inter / union if union else 0.0
