"""The one image loader every front uses, and the one mask writer.

`load_image` gives RGB uint8, upright by EXIF, size-capped. `load_mask` gives a float32
reference in [0, 1]. Anything Pillow cannot read cleanly raises `ImageError` with a
message a user can act on.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from studio import settings
from studio.errors import ImageError
from studio.fileio import atomic_write_bytes

__all__ = ["ImageError", "load_image", "load_mask", "load_mask_levels", "save_alpha_png"]

ImageSource = str | os.PathLike | bytes | Image.Image | np.ndarray

# Full-size images are converted in bands of about this many pixels, so a conversion's
# temporaries stay at a few tens of MB instead of a second (or third) copy of a 50 MP image.
BAND_PIXELS = 1 << 22


def row_bands(height: int, width: int) -> list[slice]:
    """Row slices covering `height` rows, each about BAND_PIXELS pixels."""
    step = max(1, BAND_PIXELS // max(width, 1))
    return [slice(y0, min(height, y0 + step)) for y0 in range(0, height, step)]


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
    if isinstance(src, Image.Image):
        img = src
    elif isinstance(src, np.ndarray):
        return Image.fromarray(_array_to_uint8(src))
    else:
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
        cap = max_pixels()
        Image.MAX_IMAGE_PIXELS = cap  # Pillow's own bomb check then agrees with ours
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(fp)  # type: ignore[arg-type]
        except UnidentifiedImageError:
            raise ImageError(f"{name}: not an image format Pillow can read") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageError(
                f"{name}: over the cap of {cap / 1e6:.0f} MP, refused before decoding "
                f"(set STUDIO_MAX_PIXELS to raise it; {exc})"
            ) from None
        except OSError as exc:
            raise ImageError(f"{name}: cannot be opened ({exc})") from None

    w, h = img.size
    cap = max_pixels()
    if w * h > cap:
        raise ImageError(
            f"{name}: {w}x{h} is {w * h / 1e6:.1f} MP, over the cap of {cap / 1e6:.0f} MP "
            "(set STUDIO_MAX_PIXELS to raise it)"
        )
    if w == 0 or h == 0:
        raise ImageError(f"{name}: has zero size ({w}x{h})")
    try:
        img.load()
    except OSError as exc:
        raise ImageError(f"{name}: truncated or corrupt image data ({exc})") from None
    except (SyntaxError, ValueError) as exc:  # Pillow raises these for broken headers
        raise ImageError(f"{name}: corrupt image data ({exc})") from None
    return img


def _upright(img: Image.Image) -> Image.Image:
    """Apply EXIF orientation; a broken EXIF block should not make the pixels unusable."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:
        return img


def _array_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale a numeric array to uint8: 16-bit by its bit depth, floats as [0, 1] or [0, 255]."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.integer):
        top = int(arr.max()) if arr.size else 0
        if top > 255:  # 16-bit data (I;16, I) is scaled by bit depth, not by its own max
            # round(x / 257) in integers: (2x + 257) // 514, never a tie (2x + 257 is odd)
            q = np.clip(arr, 0, 65535).astype(np.uint32)
            q *= 2
            q += 257
            q //= 514
            return q.astype(np.uint8)
        return np.clip(arr, 0, 255).astype(np.uint8)
    arr = np.nan_to_num(arr.astype(np.float64))
    if arr.size and arr.max() <= 1.0:
        arr = arr * 255.0
    return (np.clip(arr, 0, 255) + 0.5).astype(np.uint8)


def _flatten_alpha(img: Image.Image) -> Image.Image:
    """Composite transparent pixels over white, as an image viewer shows them."""
    rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _banded(img: Image.Image, convert) -> np.ndarray:
    """`np.asarray(convert(img))`, converted band by band into one new array.

    A whole-image conversion holds Pillow's copy, its `tobytes()` and the array at once
    (three copies of a 50 MP image); band by band, only the result is full size. Every
    conversion used here is per pixel, so the bands give the same pixels."""
    w, h = img.size
    out: np.ndarray | None = None
    for rows in row_bands(h, w):
        part = np.asarray(convert(img.crop((0, rows.start, w, rows.stop))), dtype=np.uint8)
        if out is None:
            out = np.empty((h, *part.shape[1:]), np.uint8)
        out[rows] = part
    assert out is not None  # an image has at least one row (zero sizes are refused on open)
    return out


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info)


HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def to_rgb(img: Image.Image) -> np.ndarray:
    """Any Pillow mode as RGB uint8 (H, W, 3)."""
    mode = img.mode
    if mode == "RGB":
        return _banded(img, lambda band: band)
    if _has_alpha(img):
        return _banded(img, _flatten_alpha)
    if mode in HIGH_DEPTH_MODES:  # scaled by the whole image's range: not band by band
        gray = _array_to_uint8(np.asarray(img))
        return np.repeat(gray[..., None], 3, axis=2)
    # CMYK, YCbCr, LAB, HSV, P, L and 1 all have a Pillow conversion to RGB.
    return _banded(img, lambda band: band.convert("RGB"))


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
        levels = _banded(img, lambda band: (band if band.mode in ("RGBA", "LA")
                                            else band.convert("RGBA")).getchannel("A"))
        if levels.min() != levels.max():
            return levels
        return _banded(img, lambda band: band.convert("L"))
    if img.mode in HIGH_DEPTH_MODES:
        return _array_to_uint8(np.asarray(img))
    return _banded(img, lambda band: band.convert("L"))


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


def alpha_to_uint8(alpha: np.ndarray) -> np.ndarray:
    """A [0, 1] matte as 8-bit levels, round(255 * alpha) half up; uint8 levels pass through.

    Band by band, so a 50 MP matte needs no full-size float temporaries."""
    alpha = np.asarray(alpha)
    if alpha.dtype == np.uint8:
        return alpha
    out = np.empty(alpha.shape, np.uint8)
    if alpha.ndim < 2:
        out[...] = np.clip(alpha, 0.0, 1.0) * 255.0 + 0.5
        return out
    for rows in row_bands(alpha.shape[0], int(np.prod(alpha.shape[1:]))):
        t = np.clip(alpha[rows], 0.0, 1.0)
        t *= 255.0
        t += 0.5
        out[rows] = t  # truncation, as astype(np.uint8)
    return out


def encode_png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def save_alpha_png(alpha: np.ndarray, path: str | os.PathLike) -> Path:
    """Save an alpha matte as an 8-bit grayscale PNG, atomically."""
    path = Path(path)
    atomic_write_bytes(path, encode_png(alpha_to_uint8(alpha)))
    return path
