"""Cut-outs, overlays and composites, all made from a matte's alpha in this one place.

`alpha` is a float matte in [0, 1], or its 8-bit levels (uint8 0-255, as the app keeps
them to save memory). The work is done in bands of rows, so a 50 MP image needs no
full-size float temporaries: only the uint8 result is full size.
"""

from __future__ import annotations

import numpy as np

from studio.imageio import alpha_to_uint8, row_bands

FALSE_POSITIVE_RGB = (255, 0, 170)  # magenta: predicted foreground that is background
FALSE_NEGATIVE_RGB = (0, 200, 255)  # cyan: missed foreground


def _unit(alpha: np.ndarray) -> np.ndarray:
    """A band of alpha as float32 in [0, 1] (8-bit levels divided by 255)."""
    if alpha.dtype == np.uint8:
        return alpha.astype(np.float32) / np.float32(255.0)
    return alpha.astype(np.float32, copy=False)


def _above(alpha: np.ndarray, threshold: float) -> np.ndarray:
    """alpha > threshold, for a float matte or its 8-bit levels (level / 255 > threshold)."""
    if alpha.dtype == np.uint8:
        return alpha > threshold * 255.0
    return alpha > threshold


def cutout_rgba(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """RGBA uint8: the image with the matte as its alpha channel."""
    h, w = alpha.shape
    out = np.empty((h, w, 4), np.uint8)
    out[..., :3] = image[..., :3]
    for rows in row_bands(h, w):
        out[rows, :, 3] = alpha_to_uint8(alpha[rows])
    return out


def checkerboard(height: int, width: int, cell: int = 16, top: int = 0) -> np.ndarray:
    """RGB uint8 grey squares of `cell` pixels; `top` is the first row's index (for bands)."""
    py = ((np.arange(top, top + height) // cell) % 2).astype(np.uint8)
    px = ((np.arange(width) // cell) % 2).astype(np.uint8)
    dark = py[:, None] ^ px[None, :]
    board = np.where(dark, np.uint8(190), np.uint8(235))
    return np.repeat(board[..., None], 3, axis=2)


def composite(image: np.ndarray, alpha: np.ndarray, background: np.ndarray | None = None) -> np.ndarray:
    """RGB uint8: the cut-out over a background (a checkerboard by default)."""
    h, w = alpha.shape
    out = np.empty((h, w, 3), np.uint8)
    for rows in row_bands(h, w):
        bg = checkerboard(rows.stop - rows.start, w, top=rows.start) if background is None else background[rows]
        a = _unit(alpha[rows])[..., None]
        mix = image[rows, :, :3].astype(np.float32) * a + bg.astype(np.float32) * (1.0 - a)
        mix += 0.5
        out[rows] = mix  # truncation, as astype(np.uint8)
    return out


def error_overlay(image: np.ndarray, alpha: np.ndarray, reference: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """RGB uint8: the image dimmed, false positives and false negatives painted in two colours."""
    h, w = alpha.shape
    out = np.empty((h, w, 3), np.uint8)
    for rows in row_bands(h, w):
        pred = _above(alpha[rows], threshold)
        gt = _above(reference[rows], threshold)
        img = image[rows, :, :3]
        band = (img.astype(np.float32) * 0.45).astype(np.uint8)
        hit = pred & gt
        band[hit] = (img[hit].astype(np.float32) * 0.9).astype(np.uint8)
        band[pred & ~gt] = FALSE_POSITIVE_RGB
        band[~pred & gt] = FALSE_NEGATIVE_RGB
        out[rows] = band
    return out


def mask_rgb(alpha: np.ndarray) -> np.ndarray:
    g = alpha_to_uint8(alpha)
    return np.repeat(g[..., None], 3, axis=2)
