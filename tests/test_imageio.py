"""The one image loader: every odd mode, broken files and oversized images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from studio.imageio import ImageError, load_image, load_mask, save_alpha_png


def _save(img: Image.Image, path, fmt: str = "PNG", **kw):
    img.save(path, format=fmt, **kw)
    return path


@pytest.fixture
def rgb():
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "L", "1", "P", "CMYK", "I;16", "I", "F", "YCbCr"])
def test_every_mode_loads_as_rgb_uint8(tmp_path, rgb, mode):
    base = Image.fromarray(rgb)
    if mode == "I;16":
        arr = (np.asarray(base.convert("L")).astype(np.uint16) * 257)
        img = Image.fromarray(arr)
    elif mode == "F":
        img = Image.fromarray(np.asarray(base.convert("L")).astype(np.float32) / 255.0, mode="F")
    else:
        img = base.convert(mode)
    fmt = {"CMYK": "JPEG", "YCbCr": "JPEG", "F": "TIFF", "I": "TIFF"}.get(mode, "PNG")
    path = _save(img, tmp_path / f"x.{fmt.lower()}", fmt)
    out = load_image(path)
    assert out.dtype == np.uint8 and out.shape == (30, 40, 3)
    if mode in ("I;16", "I", "F", "L"):
        # 16-bit and float grayscale keep their full range: scaled, not clipped or zeroed
        gray = np.asarray(base.convert("L")).astype(int)
        assert np.abs(out[..., 0].astype(int) - gray).max() <= 1


def test_16bit_png_is_scaled_by_bit_depth(tmp_path):
    arr = np.full((8, 8), 65535, np.uint16)
    arr[:4] = 32896  # mid grey in 16 bits
    path = _save(Image.fromarray(arr), tmp_path / "g16.png")
    out = load_image(path)
    assert out[0, 0, 0] == 128 and out[-1, 0, 0] == 255


def test_rgba_transparent_pixels_become_white(tmp_path):
    arr = np.zeros((4, 4, 4), np.uint8)
    arr[..., 3] = 0  # fully transparent black
    arr[0, 0] = (255, 0, 0, 255)
    out = load_image(_save(Image.fromarray(arr, "RGBA"), tmp_path / "a.png"))
    assert tuple(out[1, 1]) == (255, 255, 255) and tuple(out[0, 0]) == (255, 0, 0)


def test_exif_orientation_is_applied(tmp_path, rgb):
    img = Image.fromarray(rgb)  # 40 wide, 30 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    path = tmp_path / "rot.jpg"
    img.save(path, format="JPEG", exif=exif.tobytes())
    out = load_image(path)
    assert out.shape == (40, 30, 3)


def test_truncated_file_is_a_clear_error(tmp_path, rgb):
    buf = io.BytesIO()
    Image.fromarray(np.tile(rgb, (10, 10, 1))).save(buf, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError, match="truncated|corrupt"):
        load_image(path)
    png = io.BytesIO()
    Image.fromarray(rgb).save(png, format="PNG")
    path.write_bytes(png.getvalue()[:-40])
    with pytest.raises(ImageError):
        load_image(path)


@pytest.mark.parametrize("payload, message", [
    (b"this is not an image at all", "not an image"),
    (b"", "empty"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "not an image|corrupt|cannot"),
])
def test_non_images_are_clear_errors(tmp_path, payload, message):
    path = tmp_path / "bad.png"
    path.write_bytes(payload)
    with pytest.raises(ImageError, match=message):
        load_image(path)
    if payload:
        with pytest.raises(ImageError):
            load_image(payload)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


def test_oversized_image_is_refused_before_decoding(tmp_path, monkeypatch):
    # 12000 x 12000 one-bit PNG: 144 MP, a few KB on disk
    path = _save(Image.new("1", (12000, 12000)), tmp_path / "huge.png")
    with pytest.raises(ImageError, match="over the cap"):
        load_image(path)
    monkeypatch.setenv("STUDIO_MAX_PIXELS", "100")
    small = _save(Image.new("RGB", (20, 20)), tmp_path / "s.png")
    with pytest.raises(ImageError, match="STUDIO_MAX_PIXELS"):
        load_image(small)


def test_mask_reading_and_size_check(tmp_path):
    m = np.zeros((10, 12), np.uint8)
    m[2:8, 3:9] = 255
    path = _save(Image.fromarray(m), tmp_path / "m.png")
    out = load_mask(path, size=(12, 10))
    assert out.dtype == np.float32 and out.max() == 1.0 and out.sum() == 36
    with pytest.raises(ImageError, match="mask is 12x10 but the image is 10x12"):
        load_mask(path, size=(10, 12))
    # an RGBA cut-out's mask is its alpha channel
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[..., 3] = m
    out = load_mask(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "c.png"))
    assert out.sum() == 36


def test_save_alpha_png_roundtrip(tmp_path):
    alpha = np.linspace(0, 1, 50, dtype=np.float32).reshape(5, 10)
    path = save_alpha_png(alpha, tmp_path / "sub" / "a.png")
    img = Image.open(path)
    assert img.mode == "L" and img.size == (10, 5)
    assert np.abs(np.asarray(img) / 255.0 - alpha).max() <= 0.5 / 255 + 1e-6
    assert not list(path.parent.glob("*.part"))


def test_a_mask_in_a_mode_without_grey_is_a_clear_error(tmp_path):
    path = tmp_path / "lab.tif"
    Image.new("LAB", (8, 6)).save(path)
    with pytest.raises(ImageError, match="a LAB image cannot be read as a mask"):
        load_mask(path)


def test_mask_levels_are_the_float_mask_times_255(tmp_path):
    from studio.imageio import load_mask_levels

    rng = np.random.default_rng(3)
    for mode in ("L", "RGB", "LA", "RGBA", "P", "I;16"):
        base = Image.fromarray(rng.integers(0, 256, (9, 7, 4), dtype=np.uint8), "RGBA")
        img = base.convert(mode) if mode != "I;16" else Image.fromarray(
            rng.integers(0, 65536, (9, 7)).astype(np.uint16))
        path = _save(img, tmp_path / f"m-{mode.replace(';', '')}.png")
        levels = load_mask_levels(path, size=(7, 9))
        assert levels.dtype == np.uint8 and levels.flags.writeable
        assert np.array_equal(levels.astype(np.float32) / np.float32(255), load_mask(path)), mode
