"""A matting model's pre- and post-processing, and the checks an uploaded image passes: one copy,
for the studio and for the exported bundle.

- `Preprocess`, `Postprocess`: a variant's typed settings (the zoo parses them once; the bundle
  reads them back from its model.json);
- `preprocess`: RGB uint8 -> the model's NCHW float32 input; `postprocess`: the model's first
  output channel -> the 8-bit matte at the image's size;
- `open_image`, `decode`, `to_rgb`: decoding as the studio does it (pixel cap before decoding,
  truncated and corrupt data refused, EXIF upright, CMYK / 16-bit / palette / grayscale / alpha
  to RGB), band by band so that a 50 MP image is not copied whole.

It needs numpy and Pillow and nothing of the studio: `studio export` copies this file beside the
bundle's serve.py, which must run where the studio is not installed. numpy and Pillow are
imported on first use, so importing this module costs nothing (the bundle imports it before its
port is open, while its model loads in another thread).
"""

from __future__ import annotations

import io
import threading
import warnings
from dataclasses import dataclass, fields
from typing import Any

RESAMPLE = ("lanczos", "bilinear", "bicubic")
SCALES = ("max", "255", "1")  # max: the resized image's own largest value, as rembg does
ACTIVATIONS = ("none", "sigmoid")
NORMALIZE = ("minmax", "none")
HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
# Full-size images are converted in bands of about this many pixels, so a conversion's
# temporaries stay at a few tens of MB instead of a second (or third) copy of a 50 MP image.
BAND_PIXELS = 1 << 22


class ConfigError(ValueError):
    """A pre- or post-processing setting that is not known or not valid; says which key."""


class ImageError(ValueError):
    """An image that cannot be used; the message says why, in plain words."""


# --- the settings ------------------------------------------------------------------------------


def _checked_keys(cls: type, raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {raw!r}")
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(known)})")
    return dict(raw)


def _choice(value: Any, allowed: tuple[str, ...], where: str) -> str:
    text = str(value)
    if text not in allowed:
        raise ConfigError(f"{where} must be one of {', '.join(allowed)}, got {value!r}")
    return text


def _triple(value: Any, where: str) -> tuple[float, float, float]:
    try:
        out = tuple(float(x) for x in value)
    except (TypeError, ValueError):
        out = ()
    if len(out) != 3:
        raise ConfigError(f"{where} must be three numbers (R, G, B), got {value!r}")
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class Preprocess:
    """How an RGB image becomes the model's input: resized to the input size with `resize`,
    divided by `scale`, then (x - mean) / std per channel, laid out NCHW."""

    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    scale: str = "max"
    resize: str = "lanczos"

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None, where: str = "preprocess") -> Preprocess:
        d = _checked_keys(cls, raw, where)
        out = cls()
        mean = _triple(d["mean"], f"{where}.mean") if "mean" in d else out.mean
        std = _triple(d["std"], f"{where}.std") if "std" in d else out.std
        if any(s == 0 for s in std):
            raise ConfigError(f"{where}.std must not be 0, got {list(std)}")
        return cls(mean=mean, std=std, scale=_choice(d.get("scale", out.scale), SCALES, f"{where}.scale"),
                   resize=_choice(d.get("resize", out.resize), RESAMPLE, f"{where}.resize"))

    def to_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std), "scale": self.scale, "resize": self.resize}


@dataclass(frozen=True)
class Postprocess:
    """How the model's first output channel becomes the matte: `activation` (none: the model's
    output is already a probability), `normalize` (minmax: stretched to [0, 1], as rembg does),
    then resized back to the image with `resize`."""

    activation: str = "none"
    normalize: str = "minmax"
    resize: str = "lanczos"

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None, where: str = "postprocess") -> Postprocess:
        d = _checked_keys(cls, raw, where)
        out = cls()
        return cls(activation=_choice(d.get("activation", out.activation), ACTIVATIONS, f"{where}.activation"),
                   normalize=_choice(d.get("normalize", out.normalize), NORMALIZE, f"{where}.normalize"),
                   resize=_choice(d.get("resize", out.resize), RESAMPLE, f"{where}.resize"))

    def to_dict(self) -> dict[str, Any]:
        return {"activation": self.activation, "normalize": self.normalize, "resize": self.resize}


def _resample(name: str):
    from PIL import Image

    return {"lanczos": Image.Resampling.LANCZOS, "bilinear": Image.Resampling.BILINEAR,
            "bicubic": Image.Resampling.BICUBIC}[name]


# --- the model's input and output ----------------------------------------------------------------


def preprocess(image, size: tuple[int, int] | list[int], cfg: Preprocess):
    """RGB uint8 (H, W, 3) -> (1, 3, height, width) float32 for a (width, height) `size`.

    Fused into one multiply-add per channel written straight into the NCHW buffer: this runs on
    every request, so it must cost less than rembg's own float64 version."""
    import numpy as np
    from PIL import Image

    w, h = int(size[0]), int(size[1])
    resized = np.asarray(Image.fromarray(image).resize((w, h), _resample(cfg.resize)))
    top = max(float(resized.max()), 1e-6) if cfg.scale == "max" else 255.0 if cfg.scale == "255" else 1.0
    mean = np.asarray(cfg.mean, dtype=np.float32)
    std = np.asarray(cfg.std, dtype=np.float32)
    gain = (1.0 / (top * std)).astype(np.float32)[:, None, None]
    offset = (-mean / std).astype(np.float32)[:, None, None]
    x = np.empty((1, 3, h, w), dtype=np.float32)
    np.multiply(resized.transpose(2, 0, 1), gain, out=x[0])
    x[0] += offset
    return x


def postprocess(pred, out_size: tuple[int, int] | list[int], cfg: Postprocess):
    """The raw first output channel (h, w) -> the 8-bit matte (uint8) at (width, height) `out_size`.

    Rounded to 8 bits before the resize, as rembg does: every consumer (PNG answers and files,
    the cache, the metrics) keeps 8 bits, and an 8-bit resize is the cheaper one."""
    import numpy as np
    from PIL import Image

    pred = pred.astype(np.float32, copy=False)
    if cfg.activation == "sigmoid":
        pred = 1.0 / (1.0 + np.exp(-pred))
    lo, hi = float(pred.min()), float(pred.max())
    if cfg.normalize == "minmax" and hi > lo:
        q = pred - lo
        q *= 255.0 / (hi - lo)
        q += 0.5
        levels = q.astype(np.uint8)
    else:  # a constant output has no range to stretch: keep its value rather than divide by 0
        levels = alpha_to_uint8(pred)
    small = Image.fromarray(levels, mode="L")
    return np.asarray(small.resize((int(out_size[0]), int(out_size[1])), _resample(cfg.resize)))


def levels_to_alpha(levels):
    """8-bit matte levels as the studio's alpha: float32 in [0, 1], exactly levels / 255."""
    import numpy as np

    alpha = levels.astype(np.float32)
    alpha *= np.float32(1.0 / 255.0)  # in place: a 50 MP matte is 200 MB per float32 copy
    return alpha


def alpha_to_uint8(alpha):
    """A [0, 1] matte as 8-bit levels, round(255 * alpha) half up; uint8 levels pass through.

    Band by band, so a 50 MP matte needs no full-size float temporaries."""
    import numpy as np

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


# --- decoding ------------------------------------------------------------------------------------


def row_bands(height: int, width: int) -> list[slice]:
    """Row slices covering `height` rows, each about BAND_PIXELS pixels."""
    step = max(1, BAND_PIXELS // max(width, 1))
    return [slice(y0, min(height, y0 + step)) for y0 in range(0, height, step)]


_PILLOW_LOCK = threading.Lock()
_PILLOW: dict[str, bool] = {}


def configure_pillow(max_pixels: int) -> None:
    """Every image plugin registered once (not lazily by whichever request comes first), and
    Pillow's own bomb check at our cap, so its refusal and ours agree."""
    from PIL import Image

    if not _PILLOW:
        with _PILLOW_LOCK:
            if not _PILLOW:
                Image.init()
                _PILLOW["init"] = True
    Image.MAX_IMAGE_PIXELS = max_pixels


def open_image(fp, max_pixels: int, cap_hint: str = ""):
    """Open and fully decode an image (a path or a binary file object) under the pixel cap;
    every failure becomes ImageError. `cap_hint` says how to raise the cap, where one can."""
    from PIL import Image, UnidentifiedImageError

    configure_pillow(max_pixels)
    hint = f" ({cap_hint})" if cap_hint else ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fp)
    except UnidentifiedImageError:
        raise ImageError("not an image format Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"over the cap of {max_pixels / 1e6:.0f} MP, refused before decoding{hint} "
                         f"({exc})") from None
    except OSError as exc:
        raise ImageError(f"cannot be opened ({exc})") from None
    return checked(img, max_pixels, cap_hint)


def checked(img, max_pixels: int, cap_hint: str = ""):
    """An opened image, size-checked, then decoded (`load`); ImageError when it cannot be."""
    hint = f" ({cap_hint})" if cap_hint else ""
    w, h = img.size
    if w * h > max_pixels:
        raise ImageError(f"{w}x{h} is {w * h / 1e6:.1f} MP, over the cap of {max_pixels / 1e6:.0f} MP{hint}")
    if w == 0 or h == 0:
        raise ImageError(f"has zero size ({w}x{h})")
    try:
        img.load()
    except OSError as exc:
        raise ImageError(f"truncated or corrupt image data ({exc})") from None
    except (SyntaxError, ValueError) as exc:  # Pillow raises these for broken headers
        raise ImageError(f"corrupt image data ({exc})") from None
    return img


def peek_size(data) -> tuple[int, int] | None:
    """(width, height) from an image's header (bytes or a binary file object) without decoding
    it; None when Pillow cannot tell. For admitting work by pixels before any is decoded."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the bomb check comes later, in open_image
            with Image.open(io.BytesIO(data) if isinstance(data, bytes | bytearray) else data) as img:
                return img.size
    except Exception:  # anything unreadable is refused with its reason by open_image
        return None


def upright(img):
    """Apply EXIF orientation; a broken EXIF block should not make the pixels unusable."""
    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(img)
    except Exception:
        return img


def array_to_uint8(arr):
    """Scale a numeric array to uint8: 16-bit by its bit depth, floats as [0, 1] or [0, 255]."""
    import numpy as np

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


def has_alpha(img) -> bool:
    return img.mode in ALPHA_MODES or (img.mode == "P" and "transparency" in img.info)


def flatten_alpha(img):
    """Composite transparent pixels over white, as an image viewer shows them."""
    from PIL import Image

    rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def banded(img, convert):
    """`np.asarray(convert(img))`, converted band by band into one new array.

    A whole-image conversion holds Pillow's copy, its `tobytes()` and the array at once (three
    copies of a 50 MP image); band by band, only the result is full size. Every conversion used
    here is per pixel, so the bands give the same pixels."""
    import numpy as np

    w, h = img.size
    out = None
    for rows in row_bands(h, w):
        part = np.asarray(convert(img.crop((0, rows.start, w, rows.stop))), dtype=np.uint8)
        if out is None:
            out = np.empty((h, *part.shape[1:]), np.uint8)
        out[rows] = part
    assert out is not None  # an image has at least one row (zero sizes are refused on open)
    return out


def to_rgb(img):
    """Any Pillow mode as RGB uint8 (H, W, 3); transparent pixels over white."""
    import numpy as np

    if img.mode == "RGB":
        return banded(img, lambda band: band)
    if has_alpha(img):
        return banded(img, flatten_alpha)
    if img.mode in HIGH_DEPTH_MODES:  # scaled by the whole image's range: not band by band
        gray = array_to_uint8(np.asarray(img))
        return np.repeat(gray[..., None], 3, axis=2)
    # CMYK, YCbCr, LAB, HSV, P, L and 1 all have a Pillow conversion to RGB.
    return banded(img, lambda band: band.convert("RGB"))


def decode(data: bytes, max_pixels: int, cap_hint: str = ""):
    """An uploaded file's bytes as RGB uint8 (H, W, 3): EXIF-upright, under the pixel cap."""
    if not data:
        raise ImageError("the uploaded data is empty")
    return to_rgb(upright(open_image(io.BytesIO(data), max_pixels, cap_hint)))
