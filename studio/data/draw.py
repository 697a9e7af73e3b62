"""A small, deterministic drawing kit for the embedded sample.

Shapes are drawn with Pillow on a supersampled 8-bit canvas and box-averaged down, so a
layer's alpha is its exact pixel coverage (to 1/255): a strand a quarter of a pixel wide
gives alpha 0.25, as a real hair does. Colours are smooth fields (value noise, relief
shading) evaluated at the output size. Layers are composited with the `over` operator,
so the image is exactly `alpha * F + (1 - alpha) * B` for the returned alpha.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

SS = 4  # supersampling factor: coverage is exact to 1/16 of a pixel before quantisation

Point = tuple[float, float]


@dataclass
class Patch:
    """A layer's alpha over the box it covers: rows y0.., columns x0.. of the frame."""

    alpha: np.ndarray
    x0: int
    y0: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.alpha.shape  # type: ignore[return-value]

    @property
    def slices(self) -> tuple[slice, slice]:
        h, w = self.alpha.shape
        return slice(self.y0, self.y0 + h), slice(self.x0, self.x0 + w)

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Frame coordinates (ys, xs) of the patch's pixels."""
        h, w = self.alpha.shape
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        return ys + self.y0, xs + self.x0


class Cover:
    """One layer's coverage, drawn in frame-pixel coordinates (floats).

    Drawing calls are recorded and rendered at the end over their bounding box only, so a
    small object on a large frame costs what its box costs.
    """

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.ops: list[tuple[str, np.ndarray, int, float]] = []
        self.lo = np.array([np.inf, np.inf])
        self.hi = np.array([-np.inf, -np.inf])

    def _add(self, kind: str, pts: np.ndarray | Sequence[Point], value: int, width: float = 0.0) -> None:
        arr = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        self.ops.append((kind, arr, value, width))
        if value > 0:
            self.lo = np.minimum(self.lo, arr.min(axis=0) - width)
            self.hi = np.maximum(self.hi, arr.max(axis=0) + width)

    def polygon(self, pts: np.ndarray | Sequence[Point], value: int = 255) -> None:
        self._add("polygon", pts, value)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, value: int = 255) -> None:
        self._add("ellipse", [(cx - rx, cy - ry), (cx + rx, cy + ry)], value)

    def line(self, pts: np.ndarray | Sequence[Point], width: float, value: int = 255) -> None:
        """A polyline of constant width (in frame pixels; sub-pixel widths give soft alpha)."""
        self._add("line", pts, value, width)

    def stroke(self, pts: np.ndarray, w0: float, w1: float, value: int = 255) -> None:
        """A tapered stroke from width w0 to w1: a filled outline when wide, a thin line when not."""
        if max(w0, w1) * SS < 4:
            self.line(pts, (w0 + w1) / 2, value)
            return
        pts = np.asarray(pts, dtype=np.float64)
        tang = np.gradient(pts, axis=0)
        tang /= np.maximum(np.linalg.norm(tang, axis=1, keepdims=True), 1e-9)
        normal = np.stack([-tang[:, 1], tang[:, 0]], axis=1)
        half = np.linspace(w0, w1, len(pts))[:, None] / 2
        outline = np.concatenate([pts + normal * half, (pts - normal * half)[::-1]])
        self.polygon(outline, value)

    def render(self, pad: float = 0.0) -> Patch:
        """The coverage over the drawn box (grown by `pad` pixels, clipped to the frame)."""
        if not np.isfinite(self.lo).all():
            return Patch(np.zeros((1, 1), np.float32), 0, 0)
        x0 = int(min(max(math.floor(self.lo[0] - pad - 2), 0), self.width - 1))
        y0 = int(min(max(math.floor(self.lo[1] - pad - 2), 0), self.height - 1))
        x1 = int(max(min(math.ceil(self.hi[0] + pad + 2), self.width), x0 + 1))
        y1 = int(max(min(math.ceil(self.hi[1] + pad + 2), self.height), y0 + 1))
        img = Image.new("L", ((x1 - x0) * SS, (y1 - y0) * SS), 0)
        draw = ImageDraw.Draw(img)
        off = np.array([x0, y0], dtype=np.float64)
        for kind, arr, value, width in self.ops:
            q = (arr - off) * SS
            pts = [(float(x), float(y)) for x, y in q]
            if kind == "polygon":
                draw.polygon(pts, fill=value)
            elif kind == "ellipse":
                draw.ellipse([pts[0], pts[1]], fill=value)
            else:
                w = max(1, int(round(width * SS)))
                draw.line(pts, fill=value, width=w, joint="curve" if w >= 4 else None)
        alpha = np.asarray(img.reduce(SS), dtype=np.float32) / 255.0
        return Patch(alpha, x0, y0)


# --- geometry ---------------------------------------------------------------------------

def bezier(p0: Point, p1: Point, p2: Point, p3: Point, n: int = 24) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    p = [np.asarray(q, dtype=np.float64) for q in (p0, p1, p2, p3)]
    return ((1 - t) ** 3) * p[0] + 3 * ((1 - t) ** 2) * t * p[1] + 3 * (1 - t) * t * t * p[2] + t ** 3 * p[3]


def unit(angle: float) -> np.ndarray:
    return np.array([math.cos(angle), math.sin(angle)])


def blob(cx: float, cy: float, r: float, rng: np.random.Generator, harmonics: int = 4,
         roughness: float = 0.12, aspect: float = 1.0, angle: float = 0.0, n: int = 240) -> np.ndarray:
    """A smooth closed outline: a circle whose radius carries a few random low harmonics."""
    th = np.linspace(0, 2 * np.pi, n, endpoint=False)
    rad = np.ones_like(th)
    for k in range(2, 2 + harmonics):
        rad += roughness / (k - 1) * rng.uniform(-1, 1) * np.cos(k * th + rng.uniform(0, 2 * np.pi))
    x, y = rad * np.cos(th) * r * aspect, rad * np.sin(th) * r
    ca, sa = math.cos(angle), math.sin(angle)
    return np.stack([cx + ca * x - sa * y, cy + sa * x + ca * y], axis=1)


def ellipse_pts(cx: float, cy: float, rx: float, ry: float, angle: float = 0.0, n: int = 120) -> np.ndarray:
    th = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x, y = rx * np.cos(th), ry * np.sin(th)
    ca, sa = math.cos(angle), math.sin(angle)
    return np.stack([cx + ca * x - sa * y, cy + sa * x + ca * y], axis=1)


def leaf(base: Point, angle: float, length: float, width: float, n: int = 20) -> np.ndarray:
    """A pointed leaf (two arcs) from `base` along `angle`."""
    t = np.linspace(0, 1, n)
    half = width / 2 * np.sin(np.pi * t) ** 0.8
    along = np.concatenate([t, t[::-1]]) * length
    across = np.concatenate([half, -half[::-1]])
    d, nrm = unit(angle), unit(angle + np.pi / 2)
    return np.asarray(base) + along[:, None] * d + across[:, None] * nrm


def lathe(cx: float, top: float, bottom: float, radius: np.ndarray) -> np.ndarray:
    """A symmetric outline (vase, bottle) from its radius profile, top to bottom."""
    ys = np.linspace(top, bottom, len(radius))
    right = np.stack([cx + radius, ys], axis=1)
    left = np.stack([cx - radius, ys], axis=1)[::-1]
    return np.concatenate([right, left])


# --- colour fields ----------------------------------------------------------------------

def value_noise(h: int, w: int, rng: np.random.Generator, cells: float, octaves: int = 3,
                stretch: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Smooth noise in about [-1, 1]: random grids upsampled bicubically, several octaves."""
    # Octaves are summed on a grid a few times finer than the finest octave, then upsampled once.
    finest = cells * 2 ** (octaves - 1) * max(stretch) * 4
    k = max(1.0, max(h, w) / finest)
    hs, ws = max(2, int(round(h / k))), max(2, int(round(w / k)))
    out = np.zeros((hs, ws), dtype=np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        c = cells * 2 ** o
        gy = max(2, int(round(c * stretch[1] * h / max(h, w))) + 1)
        gx = max(2, int(round(c * stretch[0] * w / max(h, w))) + 1)
        grid = rng.uniform(-1, 1, (gy, gx)).astype(np.float32)
        out += amp * np.asarray(Image.fromarray(grid, "F").resize((ws, hs), Image.BICUBIC))
        total += amp
        amp *= 0.5
    out /= total
    if (hs, ws) != (h, w):
        out = np.asarray(Image.fromarray(out, "F").resize((w, h), Image.BILINEAR))
    return out


def relief(alpha: np.ndarray, radius: float, light: tuple[float, float, float] = (-0.45, -0.65, 0.62),
           shininess: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Lambert shade and specular term of the height field `blur(alpha)`, lit from the upper left.

    Computed at a reduced scale (the field is smooth), then upsampled: cheap at 1024 px.
    """
    h, w = alpha.shape
    f = max(1, int(radius / 3))
    small = alpha[::f, ::f] if f > 1 else alpha
    height = ndimage.gaussian_filter(small.astype(np.float32), sigma=max(radius / f, 0.5))
    gy, gx = np.gradient(height)
    k = 4.0 * radius / f
    nx, ny, nz = -gx * k, -gy * k, np.ones_like(gx)
    norm = np.sqrt(nx * nx + ny * ny + nz * nz)
    nx, ny, nz = nx / norm, ny / norm, nz / norm
    lx, ly, lz = np.asarray(light) / np.linalg.norm(light)
    lam = np.clip(nx * lx + ny * ly + nz * lz, 0, 1)
    spec = np.zeros_like(lam)
    if shininess:
        # Blinn-Phong half vector for a viewer straight above
        hx, hy, hz = lx, ly, lz + 1.0
        hn = math.sqrt(hx * hx + hy * hy + hz * hz)
        spec = np.clip((nx * hx + ny * hy + nz * hz) / hn, 0, 1) ** shininess

    def up(a: np.ndarray) -> np.ndarray:
        if f == 1:
            return a.astype(np.float32)
        return np.asarray(Image.fromarray(a.astype(np.float32), "F").resize((w, h), Image.BILINEAR))

    return up(lam), up(spec)


def paint(h: int, w: int, rgb: Sequence[float], rng: np.random.Generator, *, alpha: np.ndarray | None = None,
          radius: float = 0.0, texture: float = 0.08, cells: float = 10, shininess: float = 0.0,
          gloss: float = 0.0, stretch: tuple[float, float] = (1.0, 1.0), ambient: float = 0.55) -> np.ndarray:
    """An object colour field: base colour x texture x relief shading (+ specular gloss)."""
    base = np.asarray(rgb, dtype=np.float32).reshape(1, 1, 3) / 255.0
    col = np.broadcast_to(base, (h, w, 3)).copy()
    if texture:
        col *= (1.0 + texture * value_noise(h, w, rng, cells, stretch=stretch))[..., None]
    if alpha is not None and radius > 0:
        lam, spec = relief(alpha, radius, shininess=shininess)
        col *= (ambient + (1.0 - ambient) * 1.25 * lam)[..., None]
        if gloss:
            col += gloss * spec[..., None]
    return np.clip(col, 0.0, 1.0)


def over(layers: Sequence[tuple[Patch, np.ndarray]], h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Composite (patch, colour) layers back to front: premultiplied colour and total alpha."""
    prem = np.zeros((h, w, 3), dtype=np.float32)
    total = np.zeros((h, w), dtype=np.float32)
    for patch, col in layers:
        sl = patch.slices
        a = patch.alpha
        a3 = a[..., None]
        prem[sl] = col * a3 + prem[sl] * (1.0 - a3)
        total[sl] = a + total[sl] * (1.0 - a)
    return prem, total


def resize_rgb(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(img).resize(size, Image.BICUBIC))


def gaussian(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a float image (H, W) or (H, W, C); wide kernels run on a reduced copy."""
    if sigma <= 0:
        return img
    img = img.astype(np.float32, copy=False)
    if sigma <= 1.5:
        return ndimage.gaussian_filter(img, sigma=(sigma, sigma, 0)[: img.ndim])
    # A wide blur is smooth: box-reduce, blur the small copy, upsample bilinearly.
    f = max(1, int(sigma / 2))
    h, w = img.shape[:2]
    sw, shh = max(1, w // f), max(1, h // f)
    chans = [img] if img.ndim == 2 else [img[..., c] for c in range(img.shape[2])]
    out = []
    for ch in chans:
        small = np.asarray(Image.fromarray(np.ascontiguousarray(ch), "F").resize((sw, shh), Image.BOX))
        small = ndimage.gaussian_filter(small, sigma=sigma / f)
        out.append(np.asarray(Image.fromarray(small, "F").resize((w, h), Image.BILINEAR)))
    return out[0] if img.ndim == 2 else np.stack(out, axis=2)
