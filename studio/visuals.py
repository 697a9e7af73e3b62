"""Cut-outs, overlays and composites, all made from a matte's alpha in this one place."""

from __future__ import annotations

import numpy as np

from studio.imageio import alpha_to_uint8

FALSE_POSITIVE_RGB = (255, 0, 170)  # magenta: predicted foreground that is background
FALSE_NEGATIVE_RGB = (0, 200, 255)  # cyan: missed foreground


def cutout_rgba(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """RGBA uint8: the image with the matte as its alpha channel."""
    return np.dstack([image[..., :3], alpha_to_uint8(alpha)])


def checkerboard(height: int, width: int, cell: int = 16) -> np.ndarray:
    ys, xs = np.indices((height, width))
    light = ((ys // cell + xs // cell) % 2 == 0)
    board = np.where(light, 235, 190).astype(np.uint8)
    return np.repeat(board[..., None], 3, axis=2)


def composite(image: np.ndarray, alpha: np.ndarray, background: np.ndarray | None = None) -> np.ndarray:
    """RGB uint8: the cut-out over a background (a checkerboard by default)."""
    h, w = alpha.shape
    bg = checkerboard(h, w) if background is None else background
    a = alpha[..., None].astype(np.float32)
    out = image[..., :3].astype(np.float32) * a + bg.astype(np.float32) * (1.0 - a)
    return (out + 0.5).astype(np.uint8)


def error_overlay(image: np.ndarray, alpha: np.ndarray, reference: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """RGB uint8: the image dimmed, false positives and false negatives painted in two colours."""
    pred = alpha > threshold
    gt = reference > threshold
    out = (image[..., :3].astype(np.float32) * 0.45).astype(np.uint8)
    out[pred & gt] = (image[..., :3][pred & gt].astype(np.float32) * 0.9).astype(np.uint8)
    out[pred & ~gt] = FALSE_POSITIVE_RGB
    out[~pred & gt] = FALSE_NEGATIVE_RGB
    return out


def mask_rgb(alpha: np.ndarray) -> np.ndarray:
    g = alpha_to_uint8(alpha)
    return np.repeat(g[..., None], 3, axis=2)
