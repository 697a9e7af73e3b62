"""Plotly figures of a summary: shared by the HTML report and the app."""

from __future__ import annotations

import math
from typing import Any

import plotly.graph_objects as go

from studio.bench.recommend import LATENCY_ONLY_FLAGS, pareto_front, quality_of, ranks_on_quality

COLD_PHASES = [("interpreter", "interpreter start"), ("import", "imports"), ("weights", "weights + hash check"),
               ("init", "session / JIT init"), ("first_inference", "first inference")]
PALETTE = ["#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#FF9DA6", "#9D755D", "#BAB0AC",
           "#EECA3B"]


def _layout(fig: go.Figure, title: str, **kw: Any) -> go.Figure:
    fig.update_layout(title=title, template="plotly_white", margin={"l": 60, "r": 20, "t": 60, "b": 60},
                      font={"family": "Inter, Helvetica, Arial, sans-serif", "size": 13}, **kw)
    return fig


def pareto_figure(summary: dict[str, Any], metric: str | None = None,
                  recommendation: dict[str, Any] | None = None) -> go.Figure:
    """Quality against p95 latency (log), marker size = model size, frontier drawn."""
    from studio.metrics import HIGHER_IS_BETTER

    metric = metric or summary.get("config", {}).get("quality_metric", "iou")
    rows = [r for r in summary.get("variants", []) if (r.get("latency") or {}).get("p95_ms")]
    rec = recommendation or summary.get("recommendation") or {}
    front = pareto_front(rows, metric, HIGHER_IS_BETTER.get(metric, True))
    fig = go.Figure()
    sizes = [max(r.get("model_size_mb") or 1.0, 1.0) for r in rows]
    ref = max(sizes) if sizes else 1.0
    for i, r in enumerate(rows):
        q = quality_of(r, metric)
        if q is None:
            continue
        ci = (r.get("metrics") or {}).get(metric, {}).get("ci95") or [q, q]
        latency_only = not ranks_on_quality(r)
        flags = r.get("flags", [])
        label = r["id"] + (" (latency only)" if latency_only else "") + (" ★" if r["id"] == rec.get("best") else "")
        size = 12 + 34 * math.sqrt(max(r.get("model_size_mb") or 1.0, 1.0) / ref)
        fig.add_trace(go.Scatter(
            x=[r["latency"]["p95_ms"]], y=[q], mode="markers+text", name=label, text=[r["id"]],
            textposition="top center", cliponaxis=False,
            error_y={"type": "data", "symmetric": False, "array": [ci[1] - q], "arrayminus": [q - ci[0]],
                     "thickness": 1, "width": 3},
            marker={"size": size, "color": "rgba(0,0,0,0)" if latency_only else PALETTE[i % len(PALETTE)],
                    "line": {"width": 2, "color": "#888" if latency_only else "#222"},
                    "symbol": "star" if r["id"] == rec.get("best") else "circle"},
            hovertemplate=(f"<b>{r['id']}</b><br>{metric} %{{y:.4f}} [{ci[0]:.4f}, {ci[1]:.4f}]"
                           f"<br>p95 %{{x:.0f}} ms<br>size {r.get('model_size_mb') or 0:.0f} MB"
                           + (f"<br>{', '.join(flags)}" if flags else "") + "<extra></extra>"),
        ))
    pts = sorted((r["latency"]["p95_ms"], quality_of(r, metric)) for r in rows if r["id"] in front)
    if len(pts) > 1:
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines",
                                 line={"dash": "dash", "color": "#444", "shape": "hv"}, name="Pareto frontier",
                                 hoverinfo="skip"))
    budget = (rec.get("budgets") or {}).get("p95_ms")
    if budget:
        fig.add_vline(x=budget, line={"color": "#E45756", "dash": "dot"}, annotation_text=f"p95 budget {budget:g} ms")
    return _layout(fig, f"Quality ({metric}) vs p95 latency — marker size = model size on disk",
                   xaxis={"type": "log", "title": "p95 latency per image (ms, log scale)"},
                   yaxis={"title": f"{metric} (mean, 95% CI)"}, height=520, legend={"font": {"size": 11}})


def metric_bars(summary: dict[str, Any], metrics: list[str] | None = None) -> go.Figure:
    """Mean of each metric per variant, with bootstrap 95% intervals."""
    metrics = metrics or ["iou", "fmeasure_max", "smeasure", "emeasure_mean", "ssim", "boundary_iou"]
    rows = [r for r in summary.get("variants", []) if r.get("metrics")]
    fig = go.Figure()
    for i, r in enumerate(rows):
        means, lo, hi = [], [], []
        for m in metrics:
            s = r["metrics"].get(m) or {}
            mu = s.get("mean")
            ci = s.get("ci95") or [mu, mu]
            means.append(mu)
            lo.append((mu - ci[0]) if mu is not None else 0)
            hi.append((ci[1] - mu) if mu is not None else 0)
        latency_only = any(f in LATENCY_ONLY_FLAGS for f in r.get("flags", []))
        fig.add_trace(go.Bar(name=r["id"] + (" (latency only)" if latency_only else ""), x=metrics, y=means,
                             error_y={"type": "data", "symmetric": False, "array": hi, "arrayminus": lo},
                             marker={"color": PALETTE[i % len(PALETTE)],
                                     "pattern": {"shape": "/" if latency_only else ""}}))
    return _layout(fig, "Metrics (mean with bootstrap 95% CI; higher is better)", barmode="group",
                   yaxis={"range": [0, 1.02]}, height=420)


def cold_start_bars(summary: dict[str, Any]) -> go.Figure:
    rows = [r for r in summary.get("variants", []) if r.get("cold_start")]
    fig = go.Figure()
    for j, (key, label) in enumerate(COLD_PHASES):
        fig.add_trace(go.Bar(name=label, y=[r["id"] for r in rows], x=[r["cold_start"].get(key, 0.0) for r in rows],
                             orientation="h", marker={"color": PALETTE[j]}))
    return _layout(fig, "Cold start in a fresh process (seconds)", barmode="stack",
                   xaxis={"title": "seconds"}, height=max(260, 60 + 40 * len(rows)))
