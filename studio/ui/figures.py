"""The Pareto plot as the app shows it: `studio.bench.plots.pareto_figure` (shared with the HTML
report) with its labels placed so they do not overlap, units on both axes, and the Plotly
template of the page's theme (light or dark).

Label placement is done here, not by Plotly (which has no collision avoidance): the axes get
fixed ranges, so a point's position in the plot is known as a fraction of its width and height;
each label tries the eight places around its marker at an assumed plot size, and takes the first
that overlaps no label or marker placed before it. A label that fits nowhere is left to the
legend and the hover text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# The plot area the placement assumes (px): the app's Benchmark column at 1440 px is wider; a
# narrower assumption only leaves more room between labels.
PLOT_W, PLOT_H = 640, 420
CHAR_W, TEXT_H = 7.0, 15.0  # a 12 px label: about 7 px per character
POSITIONS = ["top center", "bottom center", "middle right", "middle left", "top right", "top left",
             "bottom right", "bottom left"]
LABEL_FONT = 12

# What a theme changes: backgrounds stay transparent so the plot sits on the page's own panel.
THEMES: dict[bool, dict[str, Any]] = {
    False: {"template": "plotly_white", "font": "#1f2937", "grid": "rgba(0,0,0,0.10)", "outline": "#222222",
            "frontier": "#444444", "plot_bg": "rgba(255,255,255,0)"},
    True: {"template": "plotly_dark", "font": "#e5e7eb", "grid": "rgba(255,255,255,0.12)", "outline": "#e5e7eb",
           "frontier": "#cbd5e1", "plot_bg": "rgba(0,0,0,0)"},
}


@dataclass
class Box:
    x0: float
    y0: float
    x1: float
    y1: float

    def overlaps(self, other: Box, pad: float = 2.0) -> bool:
        return not (self.x1 + pad <= other.x0 or other.x1 + pad <= self.x0 or
                    self.y1 + pad <= other.y0 or other.y1 + pad <= self.y0)

    def inside(self, w: float, h: float, slack: float) -> bool:
        return self.x0 >= -slack and self.x1 <= w + slack and self.y0 >= -slack and self.y1 <= h + slack


def label_box(x: float, y: float, r: float, text: str, position: str) -> Box:
    """The box (px, y down) a label of `text` takes at `position` around a marker of radius r."""
    w, h = CHAR_W * len(text), TEXT_H
    vert, horiz = position.split()
    if vert == "top":
        y1 = y - r - 1
        y0 = y1 - h
    elif vert == "bottom":
        y0 = y + r + 1
        y1 = y0 + h
    else:
        y0, y1 = y - h / 2, y + h / 2
    if horiz == "center":
        x0 = x - w / 2
    elif horiz == "right":
        x0 = x + (r + 2 if vert == "middle" else r * 0.5)
    else:
        x0 = x - w - (r + 2 if vert == "middle" else r * 0.5)
    return Box(x0, y0, x0 + w, y1)


def place(points: list[tuple[float, float, float, str]], w: float = PLOT_W, h: float = PLOT_H,
          slack: float = 30.0) -> list[str | None]:
    """For each (x px, y px, marker radius, text): the first position whose box overlaps no
    marker and no label placed before it, or None (no room: leave it to the legend)."""
    markers = [Box(x - r, y - r, x + r, y + r) for x, y, r, _ in points]
    placed: list[Box] = []
    out: list[str | None] = []
    for i, (x, y, r, text) in enumerate(points):
        chosen = None
        for pos in POSITIONS:
            box = label_box(x, y, r, text, pos)
            if not box.inside(w, h, slack):
                continue
            if any(box.overlaps(m) for j, m in enumerate(markers) if j != i):
                continue
            if any(box.overlaps(b) for b in placed):
                continue
            chosen = pos
            placed.append(box)
            break
        out.append(chosen)
    return out


def _ranges(xs: list[float], ys: list[float]) -> tuple[list[float], list[float]]:
    """Fixed axis ranges (x in log10 units): what makes a point's place in the plot known."""
    lx = [math.log10(x) for x in xs]
    lo, hi = min(lx), max(lx)
    pad = max(0.12, (hi - lo) * 0.12)
    y_lo, y_hi = min(ys), max(ys)
    ypad = max(0.01, (y_hi - y_lo) * 0.15)
    return [lo - pad, hi + pad], [y_lo - ypad, y_hi + ypad]


def spread_labels(fig: Any) -> None:
    """Fix the axis ranges and give every labelled marker a text position that overlaps nothing
    (or no text at all: the legend and hover name it)."""
    traces = [t for t in fig.data if t.mode == "markers+text" and t.x and t.y and t.text]
    if not traces:
        return
    xs = [float(t.x[0]) for t in traces]
    ys = [float(t.y[0]) for t in traces]
    lows, highs = [], []
    for t, y in zip(traces, ys, strict=True):
        ey = t.error_y
        lows.append(y - (float(ey.arrayminus[0]) if ey and ey.arrayminus else 0.0))
        highs.append(y + (float(ey.array[0]) if ey and ey.array else 0.0))
    xr, yr = _ranges(xs, lows + highs)
    fig.update_xaxes(range=xr, autorange=False)
    fig.update_yaxes(range=yr, autorange=False)
    pts = []
    for t, x, y in zip(traces, xs, ys, strict=True):
        px = (math.log10(x) - xr[0]) / (xr[1] - xr[0]) * PLOT_W
        py = (1 - (y - yr[0]) / (yr[1] - yr[0])) * PLOT_H
        size = t.marker.size if t.marker and t.marker.size else 12
        pts.append((px, py, float(size) / 2, str(t.text[0])))
    order = sorted(range(len(pts)), key=lambda i: (pts[i][0], pts[i][1]))  # left to right, as one reads
    chosen = place([pts[i] for i in order])
    for i, pos in zip(order, chosen, strict=True):
        t = traces[i]
        if pos is None:
            t.mode = "markers"
        else:
            t.textposition = pos
            t.textfont = {"size": LABEL_FONT}


def apply_theme(fig: Any, dark: bool) -> None:
    """The page's theme on the figure: template, text colour, grid, and the marker outlines and
    frontier line that would vanish on a dark background."""
    th = THEMES[bool(dark)]
    fig.update_layout(template=th["template"], paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor=th["plot_bg"],
                      font={"color": th["font"]}, title={"font": {"color": th["font"]}},
                      legend={"font": {"color": th["font"]}})
    fig.update_xaxes(gridcolor=th["grid"], zerolinecolor=th["grid"], linecolor=th["grid"])
    fig.update_yaxes(gridcolor=th["grid"], zerolinecolor=th["grid"], linecolor=th["grid"])
    for t in fig.data:
        if t.mode and "markers" in t.mode and t.marker and t.marker.line and t.marker.line.color in ("#222",
                                                                                                     "#222222"):
            t.marker.line.color = th["outline"]
        if t.mode == "lines":
            t.line.color = th["frontier"]
        if t.mode and "text" in t.mode:
            t.textfont = {**(t.textfont.to_plotly_json() if t.textfont else {}), "color": th["font"]}
