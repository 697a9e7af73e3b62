"""The one image loader every front uses, and the one mask writer.

`load_image` gives RGB uint8, upright by EXIF, size-capped. `load_mask` gives a float32
reference in [0, 1]. Anything Pillow cannot read cleanly raises `ImageError` with a
message a user can act on.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from studio import prepost, settings
from studio.errors import ImageError
from studio.fileio import atomic_write_bytes
from studio.prepost import (  # one copy, shared with the exported bundle
    BAND_PIXELS,
    HIGH_DEPTH_MODES,
    alpha_to_uint8,
    banded,
    row_bands,
    to_rgb,
)
from studio.prepost import array_to_uint8 as _array_to_uint8
from studio.prepost import upright as _upright

__all__ = ["BAND_PIXELS", "ImageError", "alpha_to_uint8", "load_image", "load_mask", "load_mask_levels",
           "row_bands", "save_alpha_png", "to_rgb"]

ImageSource = str | os.PathLike | bytes | Image.Image | np.ndarray
CAP_HINT = "set STUDIO_MAX_PIXELS to raise it"


def max_pixels() -> int:
    # 50 MP by default (about 7000 x 7000): far above what any matting model resizes from
    return settings.max_pixels()


def _describe(src: ImageSource) -> str:
    if isinstance(src, str | os.PathLike):
        return str(src)
    if isinstance(src, bytes):
        return f"<{len(src)} bytes>"
    return f"<{type(src).__name__}>"


def _open(src: ImageSource) -> Image.Image:
    """Open and fully decode an image, turning every failure into ImageError."""
    name = _describe(src)
    if isinstance(src, np.ndarray):
        return Image.fromarray(_array_to_uint8(src))
    if isinstance(src, Image.Image):
        try:
            return prepost.checked(src, max_pixels(), CAP_HINT)
        except prepost.ImageError as exc:
            raise ImageError(f"{name}: {exc}") from None
    if isinstance(src, str | os.PathLike):
        path = Path(src)
        if not path.exists():
            raise ImageError(f"{name}: no such file")
        if path.is_dir():
            raise ImageError(f"{name}: is a folder, not an image")
        if path.stat().st_size == 0:
            raise ImageError(f"{name}: the file is empty")
        fp: object = path
    else:
        if not src:
            raise ImageError("the uploaded data is empty")
        fp = io.BytesIO(src)
    try:
        return prepost.open_image(fp, max_pixels(), CAP_HINT)
    except prepost.ImageError as exc:
        raise ImageError(f"{name}: {exc}") from None


def load_image(src: ImageSource) -> np.ndarray:
    """Load an image as RGB uint8 (H, W, 3), EXIF-upright and under the pixel cap."""
    if isinstance(src, np.ndarray):
        arr = _array_to_uint8(src)
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise ImageError(f"an image array must be (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")
        if arr.shape[2] == 4:
            return to_rgb(Image.fromarray(arr, "RGBA"))
        return np.ascontiguousarray(arr)
    return to_rgb(_upright(_open(src)))


def _mask_levels(img: Image.Image) -> np.ndarray:
    """A decoded mask's 8-bit levels (H, W): its alpha when that varies, else its luminance."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        levels = banded(img, lambda band: (band if band.mode in ("RGBA", "LA")
                                            else band.convert("RGBA")).getchannel("A"))
        if levels.min() != levels.max():
            return levels
        return banded(img, lambda band: band.convert("L"))
    if img.mode in HIGH_DEPTH_MODES:
        return _array_to_uint8(np.asarray(img))
    return banded(img, lambda band: band.convert("L"))


def _read_levels(src: ImageSource) -> np.ndarray:
    img = _upright(_open(src))
    try:
        return _mask_levels(img)
    except ValueError as exc:  # a mode Pillow cannot turn into grey (LAB, ...)
        raise ImageError(f"{_describe(src)}: a {img.mode} image cannot be read as a mask ({exc})") from None


def _check_mask_size(src: ImageSource, shape: tuple[int, ...], size: tuple[int, int] | None) -> None:
    if size is not None and (shape[1], shape[0]) != tuple(size):
        raise ImageError(
            f"{_describe(src)}: mask is {shape[1]}x{shape[0]} but the image is "
            f"{size[0]}x{size[1]}"
        )


def load_mask_levels(src: ImageSource, size: tuple[int, int] | None = None) -> np.ndarray:
    """A reference mask's 8-bit levels, uint8 (H, W): `load_mask` without the float.

    For a file, `load_mask(src) == load_mask_levels(src) / 255` exactly, at a quarter of the
    memory. An array source is rounded to 8 bits as `alpha_to_uint8` does.
    """
    levels = alpha_to_uint8(load_mask(src)) if isinstance(src, np.ndarray) else _read_levels(src)
    _check_mask_size(src, levels.shape, size)
    return levels


def load_mask(src: ImageSource, size: tuple[int, int] | None = None) -> np.ndarray:
    """Load a reference mask or matte as float32 (H, W) in [0, 1].

    A mask with a non-constant alpha channel (an RGBA cut-out) is read from its alpha;
    otherwise from its luminance. `size` is (width, height): a mask of another size is
    refused with ImageError rather than silently resized.
    """
    if isinstance(src, np.ndarray):
        arr = src
        if arr.ndim == 3:
            arr = arr[..., 3] if arr.shape[2] == 4 else arr[..., :3].mean(axis=2)
        if np.issubdtype(arr.dtype, np.floating) and arr.size and arr.max() <= 1.0:
            alpha = np.clip(arr, 0.0, 1.0).astype(np.float32)
        else:
            alpha = _array_to_uint8(np.asarray(arr)).astype(np.float32) / 255.0
        _check_mask_size(src, alpha.shape, size)
        return np.ascontiguousarray(alpha, dtype=np.float32)
    levels = _read_levels(src)
    _check_mask_size(src, levels.shape, size)
    alpha = np.empty(levels.shape, np.float32)
    for rows in row_bands(*levels.shape):  # float32(level) / 255, without a float64 or second copy
        np.divide(levels[rows], np.float32(255.0), out=alpha[rows], dtype=np.float32)
    return alpha


def encode_png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def save_alpha_png(alpha: np.ndarray, path: str | os.PathLike) -> Path:
    """Save an alpha matte as an 8-bit grayscale PNG, atomically."""
    path = Path(path)
    atomic_write_bytes(path, encode_png(alpha_to_uint8(alpha)))
    return path
