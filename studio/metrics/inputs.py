"""Input checks and the 8-bit quantisation every metric starts from."""

from __future__ import annotations

import cv2
import numpy as np

from studio.errors import StudioError
from studio.imageio import ImageError


class MetricInputError(ImageError, StudioError):
    """A prediction or reference the metrics cannot score, with the reason in plain words.

    It is an `ImageError` (so a `ValueError`) and a `StudioError`, so every front prints it as
    one line.
    """


def _as_2d(arr: np.ndarray, role: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise MetricInputError(f"the {role} must be a 2-D (H, W) array, got shape {arr.shape}")
    if arr.size == 0:
        raise MetricInputError(f"the {role} is empty (shape {arr.shape})")
    return arr


def to_u8(arr: np.ndarray, role: str = "prediction") -> np.ndarray:
    """An (H, W) uint8 copy of a mask: uint8 as is, bool as 0/255, floats in [0, 1] rounded.

    Floats outside [0, 1] (logits, 0-255 floats) and NaN are refused rather than guessed at.
    """
    arr = _as_2d(arr, role)
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == bool:
        return arr.view(np.uint8) * np.uint8(255)
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise MetricInputError(f"the {role} has integer values in [{lo}, {hi}]; expected 0-255")
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        lo, hi = float(np.min(arr)), float(np.max(arr))
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise MetricInputError(f"the {role} contains NaN or infinite values")
        if lo < 0.0 or hi > 1.0:
            raise MetricInputError(
                f"the {role} has float values in [{lo:.4g}, {hi:.4g}]; expected [0, 1] "
                "(apply the sigmoid, or pass uint8 for 0-255 data)")
        if arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float32)
        # round(x * 255), half to even, as np.rint; v / 255 stored as float32 maps back to v.
        return cv2.convertScaleAbs(arr, alpha=255.0)
    raise MetricInputError(f"the {role} has an unsupported dtype {arr.dtype}")


def check_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both as uint8 (H, W); a size mismatch is an error, never a silent resize."""
    p = to_u8(pred, "prediction")
    g = to_u8(gt, "reference")
    if p.shape != g.shape:
        raise MetricInputError(
            f"the prediction is {p.shape[1]}x{p.shape[0]} but the reference is "
            f"{g.shape[1]}x{g.shape[0]}: resize the matte to the reference first "
            "(metrics never resize silently)")
    return p, g
