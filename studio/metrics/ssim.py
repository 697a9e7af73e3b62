"""SSIM exactly as `skimage.metrics.structural_similarity` defines it, computed faster.

skimage: 7x7 uniform windows, sample covariance, K1 0.01, K2 0.03, data_range 1, mean of
the SSIM map less a 3-pixel border (so the border mode never matters). Here the inputs are
an 8-bit prediction (then min-max normalised, an affine map of the level) and a binary
reference, so every window statistic is an integer sum:

- where the window holds one prediction level and one reference value (most of a clean
  matte), SSIM depends on that pair alone: those pixels are counted by a 256 x 2
  histogram and scored from a table;
- elsewhere, the window sums come from integral images, exactly, and skimage's formula is
  evaluated on those pixels only.

Agreement with skimage is to floating-point rounding (tested to 1e-6, seen ~1e-15).

A large image is scored in bands of rows (each with the window's 3-row halo above and
below), so the temporaries stay at a few hundred MB whatever the image size: every map
value depends on its window alone, so the bands give the same values; only the order of
the final sum changes.
"""

from __future__ import annotations

import cv2
import numpy as np

from studio.metrics.conventions import SSIM_K1, SSIM_K2, SSIM_WIN
from studio.metrics.scratch import scratch

C1 = (SSIM_K1 * 1.0) ** 2
C2 = (SSIM_K2 * 1.0) ** 2
# Interior pixels per band: about 20 bytes of temporaries each (plus 37 per pixel where only
# the prediction varies), so ~100-250 MB per band, instead of ~1-3 GB for a 50 MP image.
BAND_PIXELS = 1 << 22


def _window(h: int, w: int) -> int:
    """skimage's 7, shrunk to the largest odd size that fits a tiny image (skimage refuses)."""
    win = SSIM_WIN
    while win > 1 and (win > h or win > w):
        win -= 2
    return win


def _ssim_from_sums(s1, s2, g, pg, n: int, pmin: int, inv: float):
    """skimage's SSIM map from exact window sums of level, level^2, ref and level*ref
    (float64 arrays holding integers), for prediction = (level - pmin) * inv."""
    cov = 1.0 / (n * (n - 1)) if n > 1 else 0.0
    ux = s1 * (1.0 / n)
    ux -= pmin
    ux *= inv
    uy = g * (1.0 / n)
    a1 = ux * uy
    a1 *= 2
    a1 += C1
    a2 = pg * n
    a2 -= s1 * g
    a2 *= 2 * inv * cov
    a2 += C2
    b1 = ux * ux
    b1 += uy * uy
    b1 += C1
    b2 = s2 * n
    b2 -= s1 * s1
    b2 *= inv * inv * cov
    vy = g * n
    vy -= g * g
    vy *= cov
    b2 += vy
    b2 += C2
    a1 *= a2
    b1 *= b2
    a1 /= b1
    return a1


def ssim_u8(p8: np.ndarray, gt01: np.ndarray, lut: np.ndarray, pmin: int, pmax: int) -> float:
    """SSIM of the normalised prediction `lut[p8]` against the 0/1 reference `gt01`."""
    h, w = p8.shape
    win = _window(h, w)
    r = (win - 1) // 2
    # lut is (level - pmin) / (pmax - pmin), or level / 255 for a constant prediction.
    if pmax != pmin:
        inv, off = 1.0 / (pmax - pmin), pmin
    else:
        inv, off = 1.0 / 255, 0
    if r == 0:
        s1 = p8.astype(np.float64)
        g = gt01.astype(np.float64)
        return float(_ssim_from_sums(s1, s1 * s1, g, s1 * g, 1, off, inv).mean())
    # Interior rows r .. h - r - 1 in bands; a band's block adds r rows of halo on each side,
    # so the block's own interior is exactly the band's rows.
    step = max(1, BAND_PIXELS // max(w, 1))
    total = 0.0
    for y0 in range(r, h - r, step):
        y1 = min(h - r, y0 + step)
        total += _ssim_sum(p8[y0 - r:y1 + r], gt01[y0 - r:y1 + r], lut, win, off, inv)
    return total / ((h - 2 * r) * (w - 2 * r))


def _ssim_sum(p8: np.ndarray, gt01: np.ndarray, lut: np.ndarray, win: int, off: int,
              inv: float) -> float:
    """The sum of the SSIM map over the block's interior (a border of (win - 1) / 2 cut)."""
    h, w = p8.shape
    r = (win - 1) // 2
    n = win * win

    # Three kinds of interior pixel (skimage crops a border of r): windows flat in both
    # images, windows where only the prediction varies, windows where the reference varies.
    # Every full-size temporary is a reused scratch buffer (fresh ones cost page faults).
    kernel = np.ones((win, win), np.uint8)
    e = scratch("ssim_e", (h, w), np.uint8)
    d = scratch("ssim_d", (h, w), np.uint8)
    interior = scratch("ssim_interior", (h, w), bool)
    interior.fill(False)
    interior[r:h - r, r:w - r] = True
    only_p = scratch("ssim_only_p", (h, w), bool)
    g_var = scratch("ssim_g_var", (h, w), bool)
    flat = scratch("ssim_flat", (h, w), bool)
    cv2.erode(gt01, kernel, dst=e)
    cv2.dilate(gt01, kernel, dst=d)
    np.not_equal(e, d, out=g_var)
    g_var &= interior
    cv2.erode(p8, kernel, dst=e)
    cv2.dilate(p8, kernel, dst=d)
    np.not_equal(e, d, out=only_p)
    only_p &= interior
    np.greater(only_p, g_var, out=only_p)  # and not g_var
    np.logical_or(only_p, g_var, out=flat)
    np.not_equal(flat, interior, out=flat)  # interior and neither

    # Flat windows: no variance, so SSIM is the luminance term alone (C2 cancels),
    # a function of (level, reference): count them by a histogram.
    total = 0.0
    flat_fg = np.logical_and(flat, gt01.view(bool), out=e.view(bool))
    if p8.size < 1 << 24:  # calcHist counts in float32: exact below 2**24
        h_all = cv2.calcHist([p8], [0], flat.view(np.uint8), [256], [0, 256]).ravel()
        h_fg = cv2.calcHist([p8], [0], flat_fg.view(np.uint8), [256], [0, 256]).ravel()
    else:
        h_all = np.bincount(p8[flat], minlength=256).astype(np.float64)
        h_fg = np.bincount(p8[flat_fg], minlength=256).astype(np.float64)
    for uy, hist in ((0.0, h_all - h_fg), (1.0, h_fg)):
        table = ((2 * lut * uy + C1) * C2) / ((lut * lut + uy * uy + C1) * C2)
        total += float(table @ hist.astype(np.float64))

    k = int(np.count_nonzero(only_p))
    idx_g = np.flatnonzero(g_var)  # a band along the reference's edge: small
    if k == 0 and idx_g.size == 0:
        return total
    # Window sums of level and level^2 (they fit int32: at most 49 * 255**2).
    box = scratch("ssim_box", (h, w), np.int32)
    sq = scratch("ssim_sq", (h, w), np.uint16)
    np.multiply(p8, p8, out=sq, dtype=np.uint16)
    s1 = scratch("ssim_s1", (k,), np.int32)
    s2 = scratch("ssim_s2", (k,), np.int32)
    only_p_flat = only_p.ravel()
    cv2.boxFilter(p8, cv2.CV_32S, (win, win), dst=box, normalize=False,
                  borderType=cv2.BORDER_CONSTANT)
    np.compress(only_p_flat, box.ravel(), out=s1)
    s1_g = box.ravel()[idx_g].astype(np.float64)
    cv2.boxFilter(sq, cv2.CV_32S, (win, win), dst=box, normalize=False,
                  borderType=cv2.BORDER_CONSTANT)
    np.compress(only_p_flat, box.ravel(), out=s2)
    s2_g = box.ravel()[idx_g].astype(np.float64)

    if k:
        # Only the prediction varies: the reference is a constant 0 or 1 over the window,
        # so its variance and the covariance are exactly 0:
        # SSIM = (2 ux uy + C1) C2 / ((ux^2 + uy^2 + C1) (vx + C2)), uy^2 = uy.
        uy = scratch("ssim_uy", (k,), np.uint8)
        np.compress(only_p_flat, gt01.ravel(), out=uy)
        ux = scratch("ssim_ux", (k,), np.float64)
        num = scratch("ssim_num", (k,), np.float64)
        vx = scratch("ssim_vx", (k,), np.float64)
        vi = scratch("ssim_vi", (k,), np.int32)
        np.multiply(s1, 1.0 / n, out=ux)
        ux -= off
        ux *= inv
        np.multiply(ux, uy, out=num)
        num *= 2
        num += C1
        num *= C2
        np.multiply(s2, n, out=vi)      # n * s2 - s1^2: exact in int32
        np.multiply(s1, s1, out=s2)
        vi -= s2
        np.multiply(vi, inv * inv / (n * (n - 1)), out=vx)
        vx += C2
        ux *= ux
        ux += uy
        ux += C1
        ux *= vx
        num /= ux
        total += float(num.sum())
    if idx_g.size:
        # Window sums of the reference and of level * reference from integral images,
        # read at those pixels only.
        stride = w + 1
        ys, xs = np.divmod(idx_g, w)
        base = (ys - r) * stride + (xs - r)  # top-left corner of each window
        corners = (base, base + win, base + win * stride, base + win * stride + win)

        def wsum(img: np.ndarray) -> np.ndarray:
            depth = cv2.CV_32S if img.size < 1 << 23 else cv2.CV_64F
            it = scratch("ssim_integral", (h + 1, w + 1),
                         np.int32 if depth == cv2.CV_32S else np.float64)
            cv2.integral(img, sum=it, sdepth=depth)
            a, b, c, dd = (it.ravel()[i].astype(np.float64) for i in corners)
            return dd - b - c + a

        g = wsum(gt01)
        pg = wsum(cv2.multiply(p8, gt01, dst=scratch("ssim_pg", (h, w), np.uint8)))
        total += float(_ssim_from_sums(s1_g, s2_g, g, pg, n, off, inv).sum())
    return total
