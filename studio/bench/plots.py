"""Plotly figures of a summary: shared by the HTML report and the app."""

from __future__ import annotations

import math
from typing import Any

import plotly.graph_objects as go

from studio.bench.recommend import higher_is_better, pareto_front
from studio.bench.results import Summary
from studio.bench.table import metric_label
from studio.metrics.conventions import HEADLINE_METRICS

COLD_PHASES = [("interpreter", "interpreter start"), ("import", "imports"), ("weights", "weights + hash check"),
               ("init", "session / JIT init"), ("first_inference", "first inference")]
BUNDLE_PHASES = [("listening_s", "exported server: start to listening"),
                 ("first_answer_s", "exported server: first answer")]
PALETTE = ["#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#FF9DA6", "#9D755D", "#BAB0AC",
           "#EECA3B"]


def _layout(fig: go.Figure, title: str, **kw: Any) -> go.Figure:
    fig.update_layout(title=title, template="plotly_white", margin={"l": 60, "r": 20, "t": 60, "b": 60},
                      font={"family": "Inter, Helvetica, Arial, sans-serif", "size": 13}, **kw)
    return fig


def pareto_figure(summary: Summary, metric: str | None = None,
                  recommendation: dict[str, Any] | None = None) -> go.Figure:
    """Quality against p95 latency (log), marker size = model size, frontier drawn."""
    metric = metric or summary.quality_metric
    rows = [r for r in summary.variants if r.p95_ms]
    rec = recommendation or summary.recommendation or {}
    equivalent = {e["id"] for e in rec.get("equivalent") or []}
    front = pareto_front(rows, metric)
    fig = go.Figure()
    ref = max([max(r.model_size_mb or 1.0, 1.0) for r in rows] or [1.0])
    what = f"agreement with {summary.reference_id}" if summary.reference_id else metric
    for i, r in enumerate(rows):
        q = r.quality(metric)
        if q is None:
            continue
        ci = r.ci95(metric) or (q, q)
        latency_only = not r.ranks_on_quality
        star = r.id == rec.get("recommended", rec.get("best"))
        label = r.id + (" (untrained: latency only)" if r.untrained else "") + (" ★" if star else "") \
            + (" ≈" if r.id in equivalent and not star else "")
        size = 12 + 34 * math.sqrt(max(r.model_size_mb or 1.0, 1.0) / ref)
        fig.add_trace(go.Scatter(
            x=[r.p95_ms], y=[q], mode="markers+text", name=label, text=[r.id],
            textposition="top center", cliponaxis=False,
            error_y={"type": "data", "symmetric": False, "array": [ci[1] - q], "arrayminus": [q - ci[0]],
                     "thickness": 1, "width": 3},
            marker={"size": size, "color": "rgba(0,0,0,0)" if latency_only else PALETTE[i % len(PALETTE)],
                    "line": {"width": 2, "color": "#888" if latency_only else "#222"},
                    "symbol": "star" if star else "circle"},
            hovertemplate=(f"<b>{r.id}</b><br>{what} %{{y:.4f}} [{ci[0]:.4f}, {ci[1]:.4f}]"
                           f"<br>p95 %{{x:.0f}} ms<br>size {r.model_size_mb or 0:.0f} MB"
                           + (f"<br>{', '.join(r.flags)}" if r.flags else "") + "<extra></extra>"),
        ))
    pts = sorted((r.p95_ms, r.quality(metric)) for r in rows if r.id in front)
    if len(pts) > 1:
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines",
                                 line={"dash": "dash", "color": "#444", "shape": "hv"}, name="Pareto frontier",
                                 hoverinfo="skip"))
    budget = (rec.get("budgets") or {}).get("p95_ms")
    if budget:
        fig.add_vline(x=budget, line={"color": "#E45756", "dash": "dot"}, annotation_text=f"p95 budget {budget:g} ms")
    return _layout(fig, f"Quality ({what}) vs p95 latency — marker size = model size on disk",
                   xaxis={"type": "log", "title": "p95 latency per image (ms, log scale)"},
                   yaxis={"title": f"{what} (mean, 95% CI)"}, height=520, legend={"font": {"size": 11}})


def metric_bars(summary: Summary, metrics: tuple[str, ...] | None = None) -> go.Figure:
    """Mean of each metric per variant, with bootstrap 95% intervals (higher-is-better ones)."""
    metrics = metrics or tuple(m for m in HEADLINE_METRICS if higher_is_better(m))
    rows = [r for r in summary.variants if r.metrics]
    fig = go.Figure()
    for i, r in enumerate(rows):
        means, lo, hi = [], [], []
        for m in metrics:
            mu = r.quality(m)
            ci = r.ci95(m) or (mu, mu)
            means.append(mu)
            lo.append((mu - ci[0]) if mu is not None else 0)
            hi.append((ci[1] - mu) if mu is not None else 0)
        fig.add_trace(go.Bar(name=r.id + (" (untrained: latency only)" if r.untrained else ""),
                             x=[metric_label(m) for m in metrics], y=means,
                             error_y={"type": "data", "symmetric": False, "array": hi, "arrayminus": lo},
                             marker={"color": PALETTE[i % len(PALETTE)],
                                     "pattern": {"shape": "/" if r.untrained else ""}}))
    what = f" — agreement with {summary.reference_id}" if summary.reference_id else ""
    return _layout(fig, f"Metrics (mean with bootstrap 95% CI; higher is better){what}", barmode="group",
                   yaxis={"range": [0, 1.02]}, height=420)


def cold_start_bars(summary: Summary) -> go.Figure:
    """In-studio cold start split by phase, and each exported server's time to its first answer."""
    rows = [r for r in summary.variants if r.cold_start]
    fig = go.Figure()
    for j, (key, label) in enumerate(COLD_PHASES):
        fig.add_trace(go.Bar(name=label, y=[r.id for r in rows], x=[(r.cold_start or {}).get(key) or 0.0 for r in rows],
                             orientation="h", marker={"color": PALETTE[j]}))
    bundles = [r for r in summary.variants if r.bundle_cold_start]
    if bundles:
        ids = [f"{r.id} (exported server)" for r in bundles]
        listen = [(r.bundle_cold_start or {}).get("listening_s") or 0.0 for r in bundles]
        first = [max(0.0, ((r.bundle_cold_start or {}).get("first_answer_s") or 0.0) - a)
                 for r, a in zip(bundles, listen, strict=True)]
        fig.add_trace(go.Bar(name=BUNDLE_PHASES[0][1], y=ids, x=listen, orientation="h",
                             marker={"color": PALETTE[6]}))
        fig.add_trace(go.Bar(name=BUNDLE_PHASES[1][1], y=ids, x=first, orientation="h",
                             marker={"color": PALETTE[7]}))
    n = len(rows) + len(bundles)
    return _layout(fig, "Cold start in a fresh process (seconds)", barmode="stack",
                   xaxis={"title": "seconds"}, height=max(260, 60 + 40 * n))
