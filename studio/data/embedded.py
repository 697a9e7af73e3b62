"""The embedded default sample: 24 image/mask pairs generated in code, with exact ground truth.

Every pair is a foreground drawn in code (hair, stems, feathers, spokes, holes, glass,
soft edges) composited over a crop of a photograph that scikit-image bundles. The photos
used are public domain or CC0 (see `PHOTOS`), and the foregrounds are ours, so the sample
is licence-clean and can ship anywhere.

Ground truth is exact by construction: the image *is* `alpha * F + (1 - alpha) * B`
for the returned `alpha` (quantised to 1/255 before compositing, so the PNGs written by
`studio data sample` are the truth too). The binary mask is `alpha > 0.5`, i.e. the
8-bit alpha above 127, the convention references are read with.

Generation is deterministic (fixed seeds, no clock, no threads) and cheap: each pair renders
in 25-300 ms of one core (all 24 in about 2-3 s of CPU), lazily on first use, and is cached
in memory for the life of the process.
Bump `GENERATOR_VERSION` whenever a pixel may change, so caches keyed on it are dropped.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from studio.data.draw import (
    Cover,
    Patch,
    bezier,
    blob,
    ellipse_pts,
    gaussian,
    lathe,
    leaf,
    over,
    paint,
    resize_rgb,
    unit,
    value_noise,
)

EMBEDDED_NAME = "embedded"
GENERATOR_VERSION = 1
BASE_SEED = 20240601


# --- backgrounds ------------------------------------------------------------------------

@dataclass(frozen=True)
class Photo:
    loader: str  # the skimage.data function
    credit: str


# Only photos whose licence scikit-image documents as public domain or CC0.
PHOTOS: dict[str, Photo] = {
    "rocket": Photo("rocket", "rocket: SpaceX launch photo, public domain (via scikit-image)"),
    "coffee": Photo("coffee", "coffee: Rachel Michetti, CC0 (via scikit-image)"),
    "chelsea": Photo("chelsea", "chelsea: Stefan van der Walt, CC0 (via scikit-image)"),
    "astronaut": Photo("astronaut", "astronaut: NASA, public domain (via scikit-image)"),
    "hubble": Photo("hubble_deep_field", "hubble_deep_field: NASA, public domain (via scikit-image)"),
    "camera": Photo("camera", "camera: Lav Varshney, CC0 (via scikit-image)"),
    "grass": Photo("grass", "grass: CC0 texture (via scikit-image)"),
    "gravel": Photo("gravel", "gravel: CC0 texture (via scikit-image)"),
    "brick": Photo("brick", "brick: CC0 texture (via scikit-image)"),
}


@functools.cache
def _photo(name: str) -> np.ndarray:
    from skimage import data

    img = getattr(data, PHOTOS[name].loader)()
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = np.ascontiguousarray(img[..., :3], dtype=np.uint8)
    img.flags.writeable = False
    return img


@dataclass(frozen=True)
class Background:
    """A crop of a bundled photo (box as fractions), or a studio gradient when `photo` is None."""

    photo: str | None = None
    box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    blur: float = 0.0  # gaussian sigma per 512 px of the short side: depth of field
    tint: tuple[int, int, int] | None = None  # colours a grayscale texture
    top: tuple[int, int, int] = (236, 236, 232)
    bottom: tuple[int, int, int] = (196, 198, 204)

    @property
    def credit(self) -> str:
        return PHOTOS[self.photo].credit if self.photo else "studio gradient (generated)"


def render_background(bg: Background, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """Float32 RGB in [0, 1] at (h, w)."""
    if bg.photo is None:
        t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
        top = np.asarray(bg.top, np.float32) / 255
        bottom = np.asarray(bg.bottom, np.float32) / 255
        img = np.broadcast_to(top * (1 - t) + bottom * t, (h, w, 3)).copy()
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        r2 = ((xs - w / 2) / w) ** 2 + ((ys - h / 2) / h) ** 2
        img *= (1.0 - 0.35 * r2)[..., None]  # vignette
        img *= (1.0 + 0.015 * value_noise(h, w, rng, 6))[..., None]
        return np.clip(img, 0, 1)
    src = _photo(bg.photo)
    sh, sw = src.shape[:2]
    x0, y0, x1, y1 = bg.box[0] * sw, bg.box[1] * sh, bg.box[2] * sw, bg.box[3] * sh
    bw, bh = x1 - x0, y1 - y0
    # shrink the box to the output's aspect ratio about its centre, then jitter a little
    if bw / bh > w / h:
        bw = bh * w / h
    else:
        bh = bw * h / w
    cx = (x0 + x1) / 2 + rng.uniform(-0.03, 0.03) * sw
    cy = (y0 + y1) / 2 + rng.uniform(-0.03, 0.03) * sh
    cx = min(max(cx, bw / 2), sw - bw / 2)
    cy = min(max(cy, bh / 2), sh - bh / 2)
    box = (int(round(cx - bw / 2)), int(round(cy - bh / 2)), int(round(cx + bw / 2)), int(round(cy + bh / 2)))
    crop = np.ascontiguousarray(src[box[1]:box[3], box[0]:box[2]])
    if bg.blur:
        # blur at the crop's own resolution (cheap), by the sigma the output asks for
        sigma = bg.blur * min(w, h) / 512 * crop.shape[1] / w
        crop = np.clip(gaussian(crop.astype(np.float32), sigma) + 0.5, 0, 255).astype(np.uint8)
    img = resize_rgb(crop, (w, h)).astype(np.float32) / 255
    if bg.tint is not None:
        gray = img.mean(axis=2, keepdims=True)
        tint = np.asarray(bg.tint, np.float32) / 255
        img = np.clip(gray * tint * 1.6, 0, 1)
    return img


# --- scenes -----------------------------------------------------------------------------

class Scene:
    """Layers of (alpha, colour) for one image, drawn back to front."""

    def __init__(self, w: int, h: int, rng: np.random.Generator) -> None:
        self.w, self.h, self.rng = w, h, rng
        self.S = float(min(w, h))
        self.layers: list[tuple[Patch, np.ndarray]] = []

    def cover(self) -> Cover:
        return Cover(self.w, self.h)

    def add(self, cover: Cover | Patch, colour: np.ndarray | tuple[int, int, int], **paint_kw) -> Patch:
        """Add a layer; a tuple colour is painted (texture, relief) over the layer's box."""
        if isinstance(cover, Cover):
            cover = cover.render(pad=3.0 * paint_kw.get("radius", 0.0))
        if isinstance(colour, tuple):
            h, w = cover.shape
            colour = paint(h, w, colour, self.rng, alpha=cover.alpha, **paint_kw)
        self.layers.append((cover, colour))
        return cover

    def u(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi))


def person_back(sc: Scene, cx: float, head_y: float, size: float, hair: tuple[int, int, int],
                shirt: tuple[int, int, int], length: float = 1.0, strands: int = 420) -> None:
    """A person seen from behind: shoulders to the bottom edge, long hair with flyaway strands."""
    rng, h = sc.rng, sc.h
    rx, ry = 0.2 * size, 0.24 * size
    sh = sc.cover()
    sh.polygon(blob(cx, h + 0.12 * size, 0.62 * size, rng, harmonics=2, roughness=0.03, aspect=1.05))
    sh.ellipse(cx, head_y + 0.9 * ry, 0.09 * size, 0.2 * size)  # neck
    sc.add(sh, shirt, radius=0.05 * size, texture=0.06, cells=30)

    y_end = head_y + (0.9 + 0.9 * length) * ry
    top = [(cx + 1.08 * rx * math.cos(a), head_y + 1.1 * ry * math.sin(a))
           for a in np.linspace(math.pi, 2 * math.pi, 40)]
    right = bezier(top[-1], (cx + 1.25 * rx, head_y + 0.6 * ry), (cx + 1.35 * rx, y_end - 0.4 * ry),
                   (cx + 1.2 * rx, y_end), 20)
    left = bezier((cx - 1.2 * rx, y_end), (cx - 1.35 * rx, y_end - 0.4 * ry), (cx - 1.25 * rx, head_y + 0.6 * ry),
                  top[0], 20)
    xs = np.linspace(cx + 1.2 * rx, cx - 1.2 * rx, 30)
    ragged = np.stack([xs, y_end + rng.uniform(-0.05, 0.08, len(xs)) * ry
                       + 0.12 * ry * np.sin(np.linspace(0, math.pi, len(xs)))], axis=1)
    outline = np.concatenate([np.asarray(top), right, ragged, left])
    hc = sc.cover()
    hc.polygon(outline)
    centre = np.array([cx, head_y + 0.3 * ry])
    side = np.concatenate([np.asarray(top), right[:14], left[6:]])
    for _ in range(strands):
        p = side[rng.integers(len(side))]
        out = p - centre
        out /= np.linalg.norm(out)
        grav = np.clip((p[1] - head_y) / ry, 0, 1)  # lower strands fall more
        d = out * (1 - 0.6 * grav) + np.array([0, 1.0]) * 0.6 * grav
        d = d / np.linalg.norm(d)
        ang = math.atan2(d[1], d[0]) + rng.normal(0, 0.35)
        ln = rng.uniform(0.02, 0.13) * size
        start = p - unit(ang) * 0.02 * size
        bend = rng.normal(0, 0.5)
        pts = bezier(start, start + unit(ang) * ln * 0.4, start + unit(ang + bend) * ln * 0.75,
                     start + unit(ang + bend * 1.4) * ln, 12)
        hc.line(pts, rng.uniform(0.25, 0.8))
    for x in np.linspace(cx - 1.15 * rx, cx + 1.15 * rx, strands // 3):  # tips at the ragged ends
        y0 = y_end + 0.04 * ry * rng.uniform(-1, 1)
        ln = rng.uniform(0.02, 0.08) * size
        a = math.pi / 2 + rng.normal(0, 0.25)
        pts = bezier((x, y0 - 0.03 * size), (x, y0), (x + math.cos(a) * ln * 0.6, y0 + ln * 0.5),
                     (x + math.cos(a) * ln, y0 + math.sin(a) * ln), 10)
        hc.line(pts, rng.uniform(0.3, 0.9))
    sc.add(hc, hair, radius=0.06 * size, texture=0.3, cells=6, stretch=(6, 0.4), shininess=30, gloss=0.12)


def potted_plant(sc: Scene, cx: float, base_y: float, size: float, leaves: int = 3, stems: int = 7,
                 pot: tuple[int, int, int] = (190, 95, 60)) -> None:
    rng = sc.rng
    ph, top_w, bot_w = 0.28 * size, 0.34 * size, 0.24 * size
    y_top = base_y - ph
    pc = sc.cover()
    pc.polygon([(cx - bot_w / 2, base_y), (cx + bot_w / 2, base_y), (cx + top_w / 2, y_top), (cx - top_w / 2, y_top)])
    pc.polygon([(cx - 0.19 * size, y_top - 0.05 * size), (cx + 0.19 * size, y_top - 0.05 * size),
                (cx + 0.19 * size, y_top + 0.01 * size), (cx - 0.19 * size, y_top + 0.01 * size)])
    sc.add(pc, pot, radius=0.03 * size, texture=0.1, cells=20)
    stem_c, leaf_c = sc.cover(), sc.cover()
    for k in range(stems):
        x0 = cx + rng.uniform(-0.1, 0.1) * size
        y0 = y_top - 0.04 * size
        dx, dy = rng.uniform(-0.38, 0.38) * size, -rng.uniform(0.3, 0.62) * size
        pts = bezier((x0, y0), (x0 + dx * 0.1, y0 + dy * 0.4), (x0 + dx * 0.7 + rng.normal(0, 0.05) * size,
                     y0 + dy * 0.8), (x0 + dx, y0 + dy), 40)
        stem_c.stroke(pts, 0.012 * size, 0.004 * size)
        for j, t in enumerate(np.linspace(0.4, 1.0, leaves + 1)):
            i = min(int(t * (len(pts) - 1)), len(pts) - 2)
            tang = pts[i + 1] - pts[i]
            ang = math.atan2(tang[1], tang[0]) + (1 if (j + k) % 2 else -1) * rng.uniform(0.4, 1.1)
            if t == 1.0:
                ang = math.atan2(tang[1], tang[0])
            ln = rng.uniform(0.07, 0.13) * size
            leaf_c.polygon(leaf(tuple(pts[i]), ang, ln, ln * rng.uniform(0.32, 0.45)))
    sc.add(stem_c, (70, 110, 45), texture=0.1)
    sc.add(leaf_c, (60, 140, 55), radius=0.012 * size, texture=0.2, cells=25, shininess=20, gloss=0.1)


def dandelion(sc: Scene, cx: float, cy: float, radius: float, filaments: int = 260,
              colour: tuple[int, int, int] = (238, 238, 230)) -> None:
    rng, h = sc.rng, sc.h
    st = sc.cover()
    end = (cx + rng.uniform(-0.12, 0.12) * sc.S, h + 5.0)
    st.stroke(bezier((cx, cy), (cx, cy + 0.4 * (h - cy)), (end[0], cy + 0.7 * (h - cy)), end, 40),
              0.012 * sc.S, 0.017 * sc.S)
    sc.add(st, (120, 150, 80), radius=0.006 * sc.S, texture=0.1)
    fc = sc.cover()
    for _ in range(filaments):
        z = rng.uniform(-1, 1)
        phi = rng.uniform(0, 2 * math.pi)
        s = math.sqrt(1 - z * z)
        d = np.array([s * math.cos(phi), s * math.sin(phi)])
        tip = np.array([cx, cy]) + d * radius * rng.uniform(0.88, 1.0)
        fc.line([(cx, cy) + d * radius * 0.12, tuple(tip)], rng.uniform(0.3, 0.55))
        base = math.atan2(d[1], d[0])
        for a in np.linspace(-1.2, 1.2, 7):
            ln = radius * (0.05 + 0.11 * s) * rng.uniform(0.8, 1.1)
            fc.line([tuple(tip), tuple(tip + unit(base + a) * ln)], 0.3)
    sc.add(fc, colour, texture=0.06)
    core = sc.cover()
    core.ellipse(cx, cy, 0.13 * radius, 0.13 * radius)
    sc.add(core, (150, 125, 85), radius=0.03 * radius, texture=0.2, cells=30)


def feather(sc: Scene, base: tuple[float, float], tip: tuple[float, float], width: float,
            colour: tuple[int, int, int] = (225, 218, 205), barbs: int = 150) -> None:
    rng = sc.rng
    b, t = np.asarray(base), np.asarray(tip)
    axis = t - b
    nrm = np.array([-axis[1], axis[0]]) / np.linalg.norm(axis)
    shaft = bezier(b, b + axis * 0.33 + nrm * 0.04 * np.linalg.norm(axis), b + axis * 0.66 + nrm * 0.05 *
                   np.linalg.norm(axis), t, 80)
    fc = sc.cover()
    fc.stroke(shaft, 0.012 * np.linalg.norm(axis), 0.002 * np.linalg.norm(axis))
    for side in (-1, 1):
        gap = 0
        for s in np.linspace(0.1, 0.985, barbs):
            if gap > 0:
                gap -= 1
                continue
            if rng.random() < 0.025:
                gap = rng.integers(1, 4)  # a split in the vane
            i = int(s * (len(shaft) - 1))
            p = shaft[i]
            tang = shaft[min(i + 1, len(shaft) - 1)] - shaft[max(i - 1, 0)]
            ta = math.atan2(tang[1], tang[0])
            env = math.sin(math.pi * min(1.0, (s - 0.05) / 0.97)) ** 0.6 * (1 - 0.35 * s)
            ln = width * env * rng.uniform(0.9, 1.05)
            a = ta + side * rng.uniform(0.75, 0.95)
            curl = side * rng.normal(0.25, 0.08)
            pts = bezier(p, p + unit(a) * ln * 0.35, p + unit(a + curl * 0.5) * ln * 0.7,
                         p + unit(a + curl) * ln, 8)
            fc.line(pts, rng.uniform(0.45, 0.9))
    for _ in range(40):  # downy barbs near the quill
        s = rng.uniform(0.0, 0.15)
        p = shaft[int(s * (len(shaft) - 1))]
        a = math.atan2(axis[1], axis[0]) + rng.choice([-1, 1]) * rng.uniform(0.5, 1.6)
        ln = width * rng.uniform(0.3, 0.7)
        pts = bezier(p, p + unit(a) * ln * 0.3, p + unit(a + rng.normal(0, 0.6)) * ln * 0.7,
                     p + unit(a + rng.normal(0, 1.0)) * ln, 10)
        fc.line(pts, 0.3)
    patch = fc.render()
    col = paint(*patch.shape, colour, rng, texture=0.12, cells=14)
    ys, xs = patch.grid()
    along = ((xs - b[0]) * axis[0] + (ys - b[1]) * axis[1]) / float(axis @ axis)
    bands = 0.5 + 0.5 * np.sin(along * 2 * math.pi * 5.5 + 1.0)
    col *= (1.0 - 0.45 * (bands > 0.75) * np.clip(along, 0, 1))[..., None]
    sc.add(patch, np.clip(col, 0, 1))


def wheel(sc: Scene, cx: float, cy: float, r: float, spokes: int = 36) -> None:
    tyre = sc.cover()
    tyre.ellipse(cx, cy, r, r)
    tyre.ellipse(cx, cy, 0.9 * r, 0.9 * r, value=0)
    sc.add(tyre, (42, 42, 46), radius=0.02 * r, texture=0.08, cells=40, shininess=12, gloss=0.08)
    rim = sc.cover()
    rim.ellipse(cx, cy, 0.9 * r, 0.9 * r)
    rim.ellipse(cx, cy, 0.84 * r, 0.84 * r, value=0)
    for i in range(spokes):
        a = 2 * math.pi * i / spokes
        b = a + (0.32 if i % 2 else -0.32)
        rim.line([(cx + 0.07 * r * math.cos(a), cy + 0.07 * r * math.sin(a)),
                  (cx + 0.85 * r * math.cos(b), cy + 0.85 * r * math.sin(b))], max(0.45, 0.0032 * r))
    rim.ellipse(cx, cy, 0.09 * r, 0.09 * r)
    sc.add(rim, (190, 192, 198), radius=0.01 * r, texture=0.05, shininess=40, gloss=0.25)


def donut(sc: Scene, cx: float, cy: float, r: float, icing: tuple[int, int, int] = (236, 122, 165)) -> None:
    rng = sc.rng
    d = sc.cover()
    d.polygon(blob(cx, cy, r, rng, harmonics=3, roughness=0.04))
    d.polygon(blob(cx, cy, 0.3 * r, rng, harmonics=2, roughness=0.05), value=0)
    sc.add(d, (205, 145, 80), radius=0.16 * r, texture=0.12, cells=20, ambient=0.45)
    ic = sc.cover()
    th = np.linspace(0, 2 * math.pi, 200, endpoint=False)
    wav = 0.86 + 0.05 * np.sin(9 * th + rng.uniform(0, 6)) + 0.03 * np.sin(23 * th)
    ic.polygon(np.stack([cx + wav * r * np.cos(th), cy + wav * r * np.sin(th)], axis=1))
    ic.polygon(blob(cx, cy, 0.42 * r, rng, harmonics=3, roughness=0.08), value=0)
    sc.add(ic, icing, radius=0.1 * r, texture=0.05, shininess=40, gloss=0.35)
    for colour in [(250, 250, 250), (250, 210, 60), (70, 120, 230), (80, 190, 90)]:
        sp = sc.cover()
        for _ in range(22):
            rad, a = rng.uniform(0.5, 0.8) * r, rng.uniform(0, 2 * math.pi)
            p = np.array([cx + rad * math.cos(a), cy + rad * math.sin(a)])
            q = unit(rng.uniform(0, math.pi)) * 0.035 * r
            sp.line([tuple(p - q), tuple(p + q)], 0.022 * r)
        sc.add(sp, colour, radius=0.01 * r, texture=0.0)


def cheese(sc: Scene, cx: float, cy: float, size: float, holes: int = 8) -> None:
    rng = sc.rng
    c = sc.cover()
    c.polygon([(cx - 0.45 * size, cy + 0.2 * size), (cx + 0.42 * size, cy + 0.24 * size),
               (cx + 0.4 * size, cy - 0.02 * size), (cx - 0.3 * size, cy - 0.24 * size)])
    for _ in range(holes):
        hx, hy = cx + rng.uniform(-0.42, 0.4) * size, cy + rng.uniform(-0.15, 0.22) * size
        rr = rng.uniform(0.025, 0.065) * size
        c.polygon(blob(hx, hy, rr, rng, harmonics=2, roughness=0.1, aspect=rng.uniform(1.0, 1.4)), value=0)
    sc.add(c, (242, 200, 85), radius=0.02 * size, texture=0.08, cells=18)


def mug(sc: Scene, cx: float, cy: float, size: float, glaze: tuple[int, int, int] = (35, 125, 150)) -> None:
    bw, bh = 0.36 * size, 0.42 * size
    top, bottom = cy - bh / 2, cy + bh / 2
    body = sc.cover()
    body.polygon(ellipse_pts(cx + bw / 2 + 0.02 * size, cy, 0.13 * size, 0.14 * size))
    body.polygon(ellipse_pts(cx + bw / 2 + 0.02 * size, cy, 0.075 * size, 0.085 * size), value=0)
    corner = 0.05 * size
    arc = [(cx + bw / 2 - corner + corner * math.cos(a), bottom - corner + corner * math.sin(a))
           for a in np.linspace(0, math.pi / 2, 8)]
    arc2 = [(cx - bw / 2 + corner + corner * math.cos(a), bottom - corner + corner * math.sin(a))
            for a in np.linspace(math.pi / 2, math.pi, 8)]
    body.polygon([(cx + bw / 2, top), *arc, *arc2, (cx - bw / 2, top)])
    body.ellipse(cx, top, bw / 2, 0.045 * size)
    sc.add(body, glaze, radius=0.03 * size, texture=0.04, shininess=50, gloss=0.3)
    coffee = sc.cover()
    coffee.ellipse(cx, top + 0.004 * size, bw / 2 - 0.015 * size, 0.034 * size)
    sc.add(coffee, (70, 40, 22), radius=0.01 * size, texture=0.1)


def vase(sc: Scene, cx: float, top: float, bottom: float, width: float,
         glaze: tuple[int, int, int] = (40, 70, 160)) -> None:
    t = np.linspace(0, 1, 120)
    r = width * (0.25 + 0.55 * np.exp(-((t - 0.62) / 0.25) ** 2) + 0.18 * np.exp(-(t / 0.05) ** 2)
                 - 0.12 * np.exp(-((t - 1.0) / 0.05) ** 2))
    v = sc.cover()
    v.polygon(lathe(cx, top, bottom, r))
    patch = v.render(pad=0.3 * width)
    col = paint(*patch.shape, glaze, sc.rng, alpha=patch.alpha, radius=0.1 * width, texture=0.06, shininess=40,
                gloss=0.3)
    ys = patch.grid()[0][:, :1]
    band = ((ys > top + 0.55 * (bottom - top)) & (ys < top + 0.6 * (bottom - top))).astype(np.float32)
    # a gilded band: the glaze's shading, recoloured
    gold = np.array([212, 170, 70], np.float32) / np.maximum(np.asarray(glaze, np.float32), 1.0)
    col = col * (1 - band[..., None]) + np.clip(col * gold, 0, 1) * band[..., None]
    sc.add(patch, np.clip(col, 0, 1))


def glass_bottle(sc: Scene, cx: float, top: float, bottom: float, width: float) -> None:
    """Semi-transparent glass: alpha about 0.6 in the body, opaque rims, a bright highlight."""
    t = np.linspace(0, 1, 140)
    r = width * (0.18 + 0.32 / (1 + np.exp(-(t - 0.32) * 30)))
    outline = lathe(cx, top, bottom, r)
    g = sc.cover()
    g.polygon(outline, value=150)
    g.line(np.concatenate([outline, outline[:1]]), 0.012 * width * 4, value=235)
    sc.add(g, (70, 130, 90), texture=0.05)
    hl = sc.cover()
    hx = cx - 0.25 * width
    hl.polygon([(hx - 0.04 * width, top + 0.42 * (bottom - top)), (hx + 0.02 * width, top + 0.42 * (bottom - top)),
                (hx + 0.02 * width, bottom - 0.06 * (bottom - top)), (hx - 0.04 * width, bottom - 0.08 * (bottom - top))],
               value=190)
    sc.add(hl, (245, 250, 245), texture=0.0)
    cap = sc.cover()
    cap.polygon([(cx - 0.2 * width, top - 0.05 * width), (cx + 0.2 * width, top - 0.05 * width),
                 (cx + 0.2 * width, top + 0.1 * width), (cx - 0.2 * width, top + 0.1 * width)])
    sc.add(cap, (180, 150, 60), radius=0.02 * width, shininess=30, gloss=0.3)


def key(sc: Scene, cx: float, cy: float, size: float, angle: float) -> None:
    ca, sa = math.cos(angle), math.sin(angle)

    def tr(pts: np.ndarray | list) -> np.ndarray:
        p = np.asarray(pts, dtype=np.float64) * size
        return np.stack([cx + ca * p[:, 0] - sa * p[:, 1], cy + sa * p[:, 0] + ca * p[:, 1]], axis=1)

    k = sc.cover()
    k.polygon(tr(ellipse_pts(-0.3, 0, 0.14, 0.12) / size))
    k.polygon(tr(ellipse_pts(-0.33, 0, 0.06, 0.05) / size), value=0)
    k.polygon(tr([(-0.18, -0.025), (0.42, -0.025), (0.44, 0.0), (0.42, 0.025), (-0.18, 0.025)]))
    k.polygon(tr([(0.22, 0.02), (0.25, 0.09), (0.28, 0.09), (0.3, 0.06), (0.33, 0.06), (0.34, 0.1),
                  (0.38, 0.1), (0.4, 0.02)]))
    sc.add(k, (196, 158, 62), radius=0.015 * size, texture=0.05, shininess=40, gloss=0.35)


def plush(sc: Scene, cx: float, cy: float, r: float, colour: tuple[int, int, int]) -> None:
    """A defocused soft toy: a blob whose edge is a wide soft ramp, as out-of-focus edges are."""
    c = sc.cover()
    c.polygon(blob(cx, cy, r, sc.rng, harmonics=3, roughness=0.1, aspect=1.15))
    c.ellipse(cx - 0.62 * r, cy - 0.72 * r, 0.28 * r, 0.3 * r)  # ears
    c.ellipse(cx + 0.62 * r, cy - 0.72 * r, 0.28 * r, 0.3 * r)
    patch = c.render(pad=0.6 * r)
    patch.alpha = gaussian(patch.alpha, 0.06 * r)
    sc.add(patch, colour, radius=0.2 * r, texture=0.25, cells=60)
    eyes = sc.cover()
    for dx in (-0.3, 0.3):
        eyes.ellipse(cx + dx * r, cy - 0.2 * r, 0.08 * r, 0.1 * r)
    patch = eyes.render(pad=0.1 * r)
    patch.alpha = gaussian(patch.alpha, 0.03 * r)
    sc.add(patch, (30, 25, 25), texture=0.0)


def pompom(sc: Scene, cx: float, cy: float, r: float, colour: tuple[int, int, int], strands: int = 900) -> None:
    rng = sc.rng
    c = sc.cover()
    c.ellipse(cx, cy, 0.8 * r, 0.8 * r)
    for _ in range(strands):
        a = rng.uniform(0, 2 * math.pi)
        r0 = rng.uniform(0.55, 0.8) * r
        p = np.array([cx + r0 * math.cos(a), cy + r0 * math.sin(a)])
        d = a + rng.normal(0, 0.5)
        ln = rng.uniform(0.15, 0.4) * r
        curl = rng.normal(0, 1.2)
        pts = bezier(p, p + unit(d) * ln * 0.4, p + unit(d + curl * 0.5) * ln * 0.8, p + unit(d + curl) * ln, 10)
        c.line(pts, rng.uniform(0.4, 1.1))
    sc.add(c, colour, radius=0.25 * r, texture=0.25, cells=50)


def fern(sc: Scene, base: tuple[float, float], tip: tuple[float, float], size: float, pinnae: int = 26) -> None:
    rng = sc.rng
    b, t = np.asarray(base), np.asarray(tip)
    axis = t - b
    nrm = np.array([-axis[1], axis[0]]) / np.linalg.norm(axis)
    rach = bezier(b, b + axis * 0.35 + nrm * 0.12 * size, b + axis * 0.7 + nrm * 0.1 * size, t, 80)
    st, lf = sc.cover(), sc.cover()
    st.stroke(rach, 0.012 * size, 0.002 * size)
    for s in np.linspace(0.08, 0.97, pinnae):
        i = int(s * (len(rach) - 1))
        p = rach[i]
        tang = rach[min(i + 1, len(rach) - 1)] - rach[max(i - 1, 0)]
        ta = math.atan2(tang[1], tang[0])
        env = math.sin(math.pi * (0.15 + 0.85 * s)) ** 0.7 * (1.1 - 0.6 * s)
        for side in (-1, 1):
            ln = 0.2 * size * env * rng.uniform(0.9, 1.1)
            a = ta + side * rng.uniform(0.9, 1.15)
            lf.polygon(leaf(tuple(p), a, ln, ln * 0.22))
    sc.add(st, (80, 110, 50), texture=0.1)
    sc.add(lf, (70, 145, 60), radius=0.008 * size, texture=0.25, cells=30)


def grass_tuft(sc: Scene, cx: float, base_y: float, size: float, blades: int = 60) -> None:
    rng = sc.rng
    for colour in [(80, 130, 50), (120, 165, 70)]:
        c = sc.cover()
        for _ in range(blades // 2):
            x0 = cx + rng.uniform(-0.12, 0.12) * size
            dx, dy = rng.uniform(-0.4, 0.4) * size, -rng.uniform(0.3, 0.85) * size
            pts = bezier((x0, base_y), (x0 + dx * 0.05, base_y + dy * 0.4), (x0 + dx * 0.5, base_y + dy * 0.85),
                         (x0 + dx, base_y + dy), 30)
            c.stroke(pts, rng.uniform(0.012, 0.022) * size, 0.0)
        sc.add(c, colour, texture=0.15, cells=20)


def starfish(sc: Scene, cx: float, cy: float, r: float) -> None:
    rng = sc.rng
    th = np.linspace(0, 2 * math.pi, 400, endpoint=False)
    a0 = rng.uniform(0, 2 * math.pi)
    rad = r * (0.38 + 0.62 * ((1 + np.cos(5 * (th - a0))) / 2) ** 1.5)
    rad *= 1 + 0.04 * np.sin(3 * th + rng.uniform(0, 6))
    c = sc.cover()
    c.polygon(np.stack([cx + rad * np.cos(th), cy + rad * np.sin(th)], axis=1))
    sc.add(c, (228, 118, 52), radius=0.08 * r, texture=0.3, cells=45)


def pebble(sc: Scene, cx: float, cy: float, r: float, colour: tuple[int, int, int]) -> None:
    c = sc.cover()
    c.polygon(blob(cx, cy, r, sc.rng, harmonics=3, roughness=0.1, aspect=sc.u(1.1, 1.5), angle=sc.u(0, 3.1)))
    sc.add(c, colour, radius=0.25 * r, texture=0.2, cells=40, shininess=25, gloss=0.15)


def cushion(sc: Scene, cx: float, cy: float, hw: float, hh: float, colour: tuple[int, int, int]) -> None:
    """A huge object: a superellipse cushion filling most of the frame."""
    th = np.linspace(0, 2 * math.pi, 400, endpoint=False)
    c, s = np.cos(th), np.sin(th)
    e = 0.35
    x = np.sign(c) * np.abs(c) ** e * hw
    y = np.sign(s) * np.abs(s) ** e * hh
    wob = 1 + 0.02 * np.sin(4 * th + sc.u(0, 6))
    cov = sc.cover()
    cov.polygon(np.stack([cx + x * wob, cy + y * wob], axis=1))
    sc.add(cov, colour, radius=0.08 * min(hw, hh), texture=0.12, cells=80, stretch=(1.0, 1.0))


def branch(sc: Scene, start: tuple[float, float], end: tuple[float, float], size: float, leaves: int = 14) -> None:
    rng = sc.rng
    s, e = np.asarray(start), np.asarray(end)
    d = e - s
    nrm = np.array([-d[1], d[0]]) / np.linalg.norm(d)
    main = bezier(s, s + d * 0.3 + nrm * 0.1 * size, s + d * 0.7 - nrm * 0.05 * size, e, 60)
    tw, lf = sc.cover(), sc.cover()
    tw.stroke(main, 0.03 * size, 0.006 * size)
    for j in range(leaves):
        u = rng.uniform(0.15, 1.0)
        i = min(int(u * (len(main) - 1)), len(main) - 2)
        p = main[i]
        tang = main[i + 1] - main[i]
        ta = math.atan2(tang[1], tang[0]) + (1 if j % 2 else -1) * rng.uniform(0.5, 1.0)
        ln = rng.uniform(0.06, 0.1) * size
        twig_end = p + unit(ta) * ln
        tw.line([tuple(p), tuple(twig_end)], 0.004 * size + 0.5)
        ll = rng.uniform(0.1, 0.16) * size
        lf.polygon(leaf(tuple(twig_end), ta + rng.normal(0, 0.3), ll, ll * 0.45))
    sc.add(tw, (105, 75, 50), radius=0.01 * size, texture=0.2, cells=40)
    sc.add(lf, (95, 150, 45), radius=0.015 * size, texture=0.15, cells=25, shininess=25, gloss=0.12)


def flower(sc: Scene, cx: float, cy: float, r: float, petal: tuple[int, int, int]) -> None:
    rng = sc.rng
    pc = sc.cover()
    n = int(rng.integers(7, 12))
    a0 = rng.uniform(0, 2 * math.pi)
    for i in range(n):
        a = a0 + 2 * math.pi * i / n
        pc.polygon(leaf((cx, cy), a, r, r * 0.42))
    sc.add(pc, petal, radius=0.08 * r, texture=0.12, cells=30)
    cc = sc.cover()
    cc.ellipse(cx, cy, 0.22 * r, 0.22 * r)
    sc.add(cc, (235, 180, 40), radius=0.06 * r, texture=0.3, cells=60)


# --- the sample -------------------------------------------------------------------------

@dataclass(frozen=True)
class PairSpec:
    id: str
    size: tuple[int, int]  # (width, height)
    background: Background
    draw: Callable[[Scene], None] | None
    tags: tuple[str, ...] = ()
    description: str = ""
    shadow: float = 0.0  # strength of a soft contact shadow cast on the background


def _s(fn: Callable[..., None], **kw) -> Callable[[Scene], None]:
    """Bind a drawing function's arguments, given as fractions of the frame (x, y, size)."""
    def run(sc: Scene) -> None:
        args = {}
        for k, v in kw.items():
            if isinstance(v, Frac):
                v = v.resolve(sc)
            elif isinstance(v, tuple) and v and isinstance(v[0], Frac):
                v = tuple(q.resolve(sc) for q in v)
            args[k] = v
        fn(sc, **args)
    return run


@dataclass(frozen=True)
class Frac:
    """A length as a fraction of the frame: axis 'x' (width), 'y' (height) or 's' (short side)."""

    v: float
    axis: str = "s"

    def resolve(self, sc: Scene) -> float:
        return self.v * {"x": sc.w, "y": sc.h, "s": sc.S}[self.axis]


def X(v: float) -> Frac:
    return Frac(v, "x")


def Y(v: float) -> Frac:
    return Frac(v, "y")


def S(v: float) -> Frac:
    return Frac(v, "s")


def _multi_pebbles(sc: Scene) -> None:
    for (x, y, r), col in zip([(0.3, 0.55, 0.13), (0.55, 0.62, 0.1), (0.74, 0.5, 0.15)],
                              [(175, 110, 80), (70, 80, 100), (225, 218, 205)], strict=True):
        pebble(sc, x * sc.w, y * sc.h, r * sc.S, col)


def _bouquet(sc: Scene) -> None:
    w, h, s = sc.w, sc.h, sc.S
    rng = sc.rng
    stems, lf = sc.cover(), sc.cover()
    heads = []
    for i in range(5):
        x0 = w / 2 + rng.uniform(-0.03, 0.03) * s
        tip = (w / 2 + (i - 2) * 0.11 * s + rng.normal(0, 0.02) * s, 0.18 * h + rng.uniform(0, 0.12) * h)
        pts = bezier((x0, 0.62 * h), (x0, 0.45 * h), (tip[0], tip[1] + 0.15 * h), tip, 40)
        stems.stroke(pts, 0.009 * s, 0.005 * s)
        for t in (0.45, 0.7):
            i2 = int(t * (len(pts) - 1))
            ta = math.atan2(*(pts[i2 + 1] - pts[i2])[::-1]) + rng.choice([-1, 1]) * 0.9
            lf.polygon(leaf(tuple(pts[i2]), ta, 0.09 * s, 0.035 * s))
        heads.append(tip)
    sc.add(stems, (70, 120, 50), texture=0.1)
    sc.add(lf, (70, 140, 60), radius=0.01 * s, texture=0.2)
    for (x, y), col in zip(heads, [(240, 240, 235), (230, 90, 110), (250, 200, 70), (200, 120, 220),
                                   (245, 245, 240)], strict=True):
        flower(sc, x, y, 0.075 * s, col)
    vase(sc, w / 2, 0.5 * h, 0.93 * h, 0.3 * s, glaze=(190, 70, 40))


@functools.cache
def specs() -> tuple[PairSpec, ...]:
    studio = Background()
    warm = Background(top=(245, 238, 225), bottom=(205, 190, 170))
    return (
        PairSpec("01_hair_dark", (768, 1024), Background("camera", (0.45, 0.25, 1.0, 0.62), blur=2.5),
                 _s(person_back, cx=X(0.5), head_y=Y(0.36), size=S(0.95), hair=(58, 38, 28), shirt=(170, 40, 45)),
                 ("hair", "soft", "border"), "person from behind, long dark hair with flyaway strands"),
        PairSpec("02_potted_plant", (640, 800), Background("brick", (0.0, 0.0, 1.0, 1.0), blur=1.5, tint=(190, 120, 95)),
                 _s(potted_plant, cx=X(0.5), base_y=Y(0.92), size=S(0.95)), ("thin", "holes"),
                 "potted plant: thin stems, leaves, gaps", shadow=0.35),
        PairSpec("03_dandelion", (512, 512), Background("rocket", (0.22, 0.0, 0.45, 0.35), blur=1.0),
                 _s(dandelion, cx=X(0.48), cy=Y(0.4), radius=S(0.3)), ("thin", "soft", "border"),
                 "dandelion clock: hundreds of sub-pixel filaments"),
        PairSpec("04_donut", (480, 320), Background("coffee", (0.55, 0.35, 1.0, 1.0)),
                 _s(donut, cx=X(0.5), cy=Y(0.5), r=S(0.4)), ("holes",), "iced donut with sprinkles", shadow=0.4),
        PairSpec("05_cheese", (600, 400), studio, _s(cheese, cx=X(0.5), cy=Y(0.5), size=S(1.1)), ("holes",),
                 "cheese wedge with holes and bites", shadow=0.35),
        PairSpec("06_mug", (800, 600), warm, _s(mug, cx=X(0.46), cy=Y(0.52), size=S(1.0)), ("holes",),
                 "mug: the handle encloses a hole", shadow=0.4),
        PairSpec("07_feather", (1024, 576), Background("hubble", (0.0, 0.0, 1.0, 1.0)),
                 _s(feather, base=(X(0.12), Y(0.8)), tip=(X(0.9), Y(0.22)), width=S(0.2)), ("thin", "soft"),
                 "feather: barbs thinner than a pixel, splits in the vane"),
        PairSpec("08_wheel", (720, 720), Background("gravel", tint=(170, 160, 140), blur=0.8),
                 _s(wheel, cx=X(0.5), cy=Y(0.5), r=S(0.44)), ("thin", "holes"), "spoked wheel", shadow=0.3),
        PairSpec("09_plush_soft", (640, 480), Background("astronaut", (0.05, 0.5, 0.65, 1.0), blur=5.0),
                 _s(plush, cx=X(0.5), cy=Y(0.56), r=S(0.3), colour=(205, 170, 120)), ("soft",),
                 "out-of-focus soft toy: wide soft edges"),
        PairSpec("10_vase", (384, 512), Background("chelsea", (0.25, 0.0, 0.75, 0.4), blur=4.0),
                 _s(vase, cx=X(0.5), top=Y(0.12), bottom=Y(0.9), width=S(0.5)), (), "glazed vase over fur"),
        PairSpec("11_glass_bottle", (480, 640), Background("coffee", (0.0, 0.0, 0.5, 0.6), blur=3.0),
                 _s(glass_bottle, cx=X(0.5), top=Y(0.1), bottom=Y(0.92), width=S(0.5)), ("transparent",),
                 "green glass bottle: alpha about 0.6 inside"),
        PairSpec("12_three_pebbles", (1024, 768), Background("gravel", blur=3.0, tint=(190, 175, 150)),
                 _multi_pebbles, ("multi",), "three pebbles on a gravel path", shadow=0.4),
        PairSpec("13_pompom", (512, 384), warm, _s(pompom, cx=X(0.5), cy=Y(0.5), r=S(0.34), colour=(205, 45, 70)),
                 ("hair", "soft"), "wool pompom: curly fibres", shadow=0.3),
        PairSpec("14_fern", (900, 600), Background("rocket", (0.0, 0.0, 0.45, 0.6), blur=2.0),
                 _s(fern, base=(X(0.15), Y(0.95)), tip=(X(0.88), Y(0.12)), size=S(0.9)), ("thin", "holes"),
                 "fern frond: many leaflets"),
        PairSpec("15_starfish", (320, 320), Background("gravel", tint=(215, 195, 150), blur=0.5),
                 _s(starfish, cx=X(0.5), cy=Y(0.5), r=S(0.42)), (), "starfish on sand", shadow=0.3),
        PairSpec("16_key", (640, 360), Background("coffee", (0.6, 0.3, 1.0, 1.0), blur=1.0),
                 _s(key, cx=X(0.5), cy=Y(0.52), size=S(1.25), angle=-0.25), ("holes",), "brass key", shadow=0.45),
        PairSpec("17_empty", (800, 600), Background("grass", tint=(110, 160, 80), blur=1.0), None, ("empty",),
                 "no object: the reference is empty"),
        PairSpec("18_grass_border", (600, 800), Background("camera", (0.0, 0.0, 0.3, 0.22), blur=3.0),
                 _s(grass_tuft, cx=X(0.1), base_y=Y(1.02), size=S(1.3)), ("border", "thin"),
                 "grass tuft cut by the left and bottom edges"),
        PairSpec("19_tiny", (1024, 768), Background("gravel", tint=(200, 190, 170), blur=1.0),
                 _s(pebble, cx=X(0.63), cy=Y(0.41), r=S(0.013), colour=(60, 90, 150)), ("tiny",),
                 "a tiny blue pebble, about 0.03 % of the frame"),
        PairSpec("20_huge", (640, 640), Background("hubble"),
                 _s(cushion, cx=X(0.5), cy=Y(0.5), hw=X(0.465), hh=Y(0.455), colour=(90, 120, 170)), ("huge",),
                 "a cushion filling most of the frame"),
        PairSpec("21_hair_blonde", (600, 900), Background("rocket", (0.55, 0.0, 1.0, 0.7), blur=2.5),
                 _s(person_back, cx=X(0.52), head_y=Y(0.34), size=S(0.95), hair=(205, 165, 105),
                    shirt=(196, 192, 184), length=1.2), ("hair", "soft", "border"),
                 "person from behind, blonde hair on a dark sky"),
        PairSpec("22_branch_border", (1024, 512), Background("astronaut", (0.6, 0.0, 1.0, 0.45), blur=4.0),
                 _s(branch, start=(X(1.05), Y(0.3)), end=(X(0.2), Y(0.62)), size=S(1.0)), ("border", "thin"),
                 "leafy branch entering from the right edge"),
        PairSpec("23_dandelion_light", (448, 448), Background(top=(240, 240, 236), bottom=(215, 218, 222)),
                 _s(dandelion, cx=X(0.5), cy=Y(0.42), radius=S(0.32), colour=(250, 250, 246)), ("thin", "soft", "border"),
                 "white dandelion on a light background: low contrast"),
        PairSpec("24_bouquet", (1024, 1024), Background("brick", blur=3.0, tint=(200, 190, 175)),
                 _bouquet, ("thin", "multi"), "vase of flowers: stems, petals, leaves", shadow=0.35),
    )


@dataclass(frozen=True)
class EmbeddedPair:
    id: str
    image: np.ndarray  # (H, W, 3) uint8
    alpha: np.ndarray  # (H, W) float32, multiples of 1/255
    mask: np.ndarray  # (H, W) float32, 0 or 1 (alpha > 0.5)
    tags: tuple[str, ...]
    description: str
    background: str
    content_hash: str = field(default="")


def _contact_shadow(bg: np.ndarray, alpha: np.ndarray, strength: float, s: float) -> np.ndarray:
    """Darken the background under and behind the object: a soft drop shadow (background only)."""
    shift = int(round(0.025 * s))
    a = np.zeros_like(alpha)
    a[shift:, shift:] = alpha[:-shift, :-shift] if shift else alpha
    sh = gaussian(a, 0.03 * s)
    return bg * (1.0 - strength * sh)[..., None]


def render(spec: PairSpec, index: int) -> EmbeddedPair:
    w, h = spec.size
    rng = np.random.default_rng([BASE_SEED, index])
    bg = render_background(spec.background, w, h, rng)
    sc = Scene(w, h, rng)
    if spec.draw is not None:
        spec.draw(sc)
    prem, total = over(sc.layers, h, w)
    a8 = np.clip(np.floor(total * 255.0 + 0.5), 0, 255).astype(np.uint8)
    alpha = a8.astype(np.float32) / 255.0
    if spec.shadow:
        bg = _contact_shadow(bg, alpha, spec.shadow, sc.S)
    out = bg
    if sc.layers:
        # composite only inside the union of the layers' boxes: alpha is 0 outside it
        y0 = min(p.y0 for p, _ in sc.layers)
        x0 = min(p.x0 for p, _ in sc.layers)
        y1 = max(p.y0 + p.shape[0] for p, _ in sc.layers)
        x1 = max(p.x0 + p.shape[1] for p, _ in sc.layers)
        box = (slice(y0, y1), slice(x0, x1))
        a3 = alpha[box][..., None]
        fg = prem[box] / np.maximum(total[box], 1e-6)[..., None]
        out[box] = fg * a3 + out[box] * (1.0 - a3)
    out *= 255.0
    out += 0.5
    np.clip(out, 0, 255, out=out)
    image = out.astype(np.uint8)  # truncation after +0.5: round half up
    mask = (a8 > 127).astype(np.float32)
    digest = hashlib.sha256()
    digest.update(f"{h}x{w}".encode())
    digest.update(image.tobytes())
    for arr in (image, alpha, mask):
        arr.flags.writeable = False
    return EmbeddedPair(spec.id, image, alpha, mask, spec.tags, spec.description, spec.background.credit,
                        digest.hexdigest())


@functools.cache
def pair(index: int) -> EmbeddedPair:
    """Pair number `index`, rendered once per process (read-only arrays)."""
    return render(specs()[index], index)


def generate() -> tuple[EmbeddedPair, ...]:
    """All pairs (each rendered once per process)."""
    return tuple(pair(i) for i in range(len(specs())))


def sample_hash(pairs: tuple[EmbeddedPair, ...] | None = None) -> str:
    """One sha256 over every pixel of every image, alpha and mask: the sample's identity."""
    digest = hashlib.sha256()
    for p in pairs if pairs is not None else generate():
        digest.update(p.id.encode())
        for arr in (p.image, p.alpha, p.mask):
            digest.update(str(arr.shape).encode())
            digest.update(np.ascontiguousarray(arr).tobytes())
    return digest.hexdigest()
