"""Contact sheets: every sample of a dataset as an (image | reference mask) pair in a grid."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from studio.data.dataset import Dataset, subset
from studio.fileio import atomic_write_bytes
from studio.imageio import ImageError, alpha_to_uint8

PAGE = (255, 255, 255)
BOX = (226, 228, 232)
INK = (30, 30, 34)
MUTED = (110, 112, 120)
ERROR = (190, 30, 40)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _fit(img: Image.Image, box_w: int, box_h: int) -> Image.Image:
    scale = min(box_w / img.width, box_h / img.height)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.LANCZOS if scale < 1 else Image.BICUBIC)


def _panel(img: Image.Image | None, box_w: int, box_h: int, text: str = "") -> Image.Image:
    panel = Image.new("RGB", (box_w, box_h), BOX)
    if img is not None:
        t = _fit(img, box_w, box_h)
        panel.paste(t, ((box_w - t.width) // 2, (box_h - t.height) // 2))
    if text:
        d = ImageDraw.Draw(panel)
        font = _font(13)
        y = 8
        for line in _wrap(text, 30):
            d.text((8, y), line, fill=ERROR, font=font)
            y += 16
    return panel


def _wrap(text: str, width: int) -> list[str]:
    words, lines, cur = text.split(), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    return [*lines, cur] if cur else lines


def contact_sheet(dataset: Dataset, columns: int = 4, thumb: int = 180, limit: int | None = 48,
                  seed: int = 0) -> Image.Image:
    """A grid of (image | mask) pairs labelled with id, size and tags. A sample that fails to
    load gets a red cell with the reason instead of stopping the sheet."""
    ds = subset(dataset, limit, seed) if limit and len(dataset) > limit else dataset
    box_w, box_h, gap, pad = round(thumb * 1.4), thumb, 4, 14
    label_h = 38
    cell_w, cell_h = 2 * box_w + gap, box_h + label_h
    cols = max(1, min(columns, len(ds.samples) or 1))
    rows = max(1, -(-len(ds.samples) // cols))
    head_h = 58
    width = pad + cols * (cell_w + pad)
    height = head_h + rows * (cell_h + pad) + pad
    sheet = Image.new("RGB", (width, height), PAGE)
    d = ImageDraw.Draw(sheet)
    title, small = _font(20), _font(13)
    total = f" of {ds.total}" if ds.total and ds.total != len(ds) else ""
    flag = f"  ·  catalogue: {ds.catalog_name}" if ds.catalog_name else ""
    d.text((pad, 10), f"{ds.name}: {len(ds)}{total} samples{flag}", fill=INK, font=title)
    d.text((pad, 36), f"each cell: image | reference mask (white = foreground)  ·  {ds.layout}", fill=MUTED,
           font=small)
    for i, s in enumerate(ds.samples):
        x = pad + (i % cols) * (cell_w + pad)
        y = head_h + (i // cols) * (cell_h + pad)
        size_txt, err = "", ""
        try:
            image = s.image()
            size_txt = f"{image.shape[1]}x{image.shape[0]}"
            left = _panel(Image.fromarray(image), box_w, box_h)
            try:
                mask = s.mask()
                right = (_panel(Image.fromarray(alpha_to_uint8(mask)).convert("RGB"), box_w, box_h)
                         if mask is not None else _panel(None, box_w, box_h, "no reference"))
                if mask is not None:
                    size_txt += f"  fg {float((mask > 0.5).mean()) * 100:.1f}%"
            except ImageError as exc:
                right, err = _panel(None, box_w, box_h, str(exc)), "mask error"
        except ImageError as exc:
            left, right, err = _panel(None, box_w, box_h, str(exc)), _panel(None, box_w, box_h), "image error"
        sheet.paste(left, (x, y))
        sheet.paste(right, (x + box_w + gap, y))
        d.text((x, y + box_h + 4), s.id, fill=ERROR if err else INK, font=_font(14))
        tags = ", ".join(s.tags)
        sub = "  ·  ".join(t for t in (size_txt, tags, err) if t)
        d.text((x, y + box_h + 21), sub, fill=ERROR if err else MUTED, font=small)
    return sheet


def save_contact_sheet(dataset: Dataset, out: str | os.PathLike, **kw) -> Path:
    """Render and save a contact sheet as PNG (atomically)."""
    out = Path(out)
    buf = io.BytesIO()
    contact_sheet(dataset, **kw).save(buf, format="PNG", optimize=False)
    atomic_write_bytes(out, buf.getvalue())
    return out


def sheet_array(dataset: Dataset, **kw) -> np.ndarray:
    """The contact sheet as RGB uint8, for fronts that show arrays."""
    return np.asarray(contact_sheet(dataset, **kw))
