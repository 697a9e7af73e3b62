"""The trade-off: Pareto frontier of quality against p95 latency, and the recommendation.

Pure functions of a summary dict, so the app can re-ask with other budgets without
rerunning anything.
"""

from __future__ import annotations

from typing import Any

LATENCY_ONLY_FLAGS = ("untrained — latency only",)


def quality_of(row: dict[str, Any], metric: str) -> float | None:
    m = (row.get("metrics") or {}).get(metric)
    return None if m is None or m.get("mean") is None else float(m["mean"])


def ranks_on_quality(row: dict[str, Any]) -> bool:
    """Untrained, failed and unscored variants take no part in quality comparisons."""
    if any(f in LATENCY_ONLY_FLAGS for f in row.get("flags", [])):
        return False
    return row.get("n_scored", row.get("n_images", 0)) > 0 and not row.get("failed")


def pareto_front(rows: list[dict[str, Any]], metric: str = "iou", higher_is_better: bool = True) -> list[str]:
    """Ids not dominated on (quality, p95 latency), sorted by latency."""
    pts = []
    for r in rows:
        q, lat = quality_of(r, metric), (r.get("latency") or {}).get("p95_ms")
        if ranks_on_quality(r) and q is not None and lat is not None:
            pts.append((lat, q if higher_is_better else -q, r["id"]))
    pts.sort(key=lambda p: (p[0], -p[1]))
    front, best = [], float("-inf")
    for _lat, q, vid in pts:
        if q > best:
            front.append(vid)
            best = q
    return front


def cost_per_1000(row: dict[str, Any], price_per_hour: float | None) -> float | None:
    """Price of 1,000 images on one instance serving one request at a time (mean latency)."""
    ips = row.get("throughput_ips")
    if not price_per_hour or not ips:
        return None
    return price_per_hour / 3600.0 / ips * 1000.0


def recommend(summary: dict[str, Any], budget_p95_ms: float | None = None, budget_memory_mb: float | None = None,
              price_per_hour: float | None = None, metric: str | None = None) -> dict[str, Any]:
    """The best quality within the budgets, the runner-up, and whether the gap is significant."""
    from studio.metrics import HIGHER_IS_BETTER

    metric = metric or summary.get("config", {}).get("quality_metric", "iou")
    higher = HIGHER_IS_BETTER.get(metric, True)
    rows = summary.get("variants", [])
    excluded: list[dict[str, str]] = []
    fits = []
    for r in rows:
        lat = (r.get("latency") or {}).get("p95_ms")
        mem = r.get("peak_rss_mb")
        why = None
        if not ranks_on_quality(r):
            why = "latency only (untrained)" if any(f in LATENCY_ONLY_FLAGS for f in r.get("flags", [])) \
                else "failed or unscored"
        elif quality_of(r, metric) is None:
            why = f"no {metric}"
        elif budget_p95_ms is not None and (lat is None or lat > budget_p95_ms):
            why = f"p95 {lat:.0f} ms > {budget_p95_ms:g} ms" if lat is not None else "no latency"
        elif budget_memory_mb is not None and (mem is None or mem > budget_memory_mb):
            why = f"peak RSS {mem:.0f} MB > {budget_memory_mb:g} MB" if mem is not None else "no memory figure"
        if why:
            excluded.append({"id": r["id"], "why": why})
        else:
            fits.append(r)
    sign = 1.0 if higher else -1.0
    fits.sort(key=lambda r: (-sign * quality_of(r, metric), (r.get("latency") or {}).get("p95_ms") or 0.0))
    out: dict[str, Any] = {
        "metric": metric, "budgets": {"p95_ms": budget_p95_ms, "memory_mb": budget_memory_mb,
                                      "price_per_hour": price_per_hour},
        "best": None, "runner_up": None, "significant": None, "comparison": None,
        "cost_per_1000": None, "excluded": excluded, "pareto": pareto_front(rows, metric, higher),
    }
    if not fits:
        out["reason"] = "no variant fits the budgets" if rows else "no variants ran"
        return out
    best = fits[0]
    out["best"] = best["id"]
    out["cost_per_1000"] = cost_per_1000(best, price_per_hour)
    out["best_flags"] = best.get("flags", [])
    q = quality_of(best, metric)
    lat = (best.get("latency") or {}).get("p95_ms")
    reason = f"{best['id']}: best {metric} {q:.4f} within the budgets (p95 {lat:.0f} ms)"
    if len(fits) > 1:
        second = fits[1]
        out["runner_up"] = second["id"]
        comp = (summary.get("comparisons") or {}).get(f"{best['id']}|{second['id']}|{metric}")
        if comp is None:
            comp = paired_comparison(summary, best["id"], second["id"], metric)
        out["comparison"] = comp
        if comp is not None:
            out["significant"] = bool(comp["significant"])
            verdict = "significant" if comp["significant"] else "not significant"
            reason += (f"; the gap to runner-up {second['id']} ({quality_of(second, metric):.4f}) is {verdict} "
                       f"(paired bootstrap, diff {comp['diff']:+.4f}, 95% CI [{comp['ci95'][0]:+.4f}, "
                       f"{comp['ci95'][1]:+.4f}])")
            if not comp["significant"]:
                faster = min((best, second), key=lambda r: (r.get("latency") or {}).get("p95_ms") or 1e18)
                if faster is second:
                    reason += f"; {second['id']} is faster for the same quality"
    if out["cost_per_1000"] is not None:
        reason += f"; ${out['cost_per_1000']:.4f} per 1,000 images at ${price_per_hour:g}/h"
    if best.get("flags"):
        reason += f" [{', '.join(best['flags'])}]"
    out["reason"] = reason
    return out


def paired_comparison(summary: dict[str, Any], a: str, b: str, metric: str) -> dict[str, Any] | None:
    """Paired bootstrap on the per-image scores the summary carries (same images in both)."""
    from studio.metrics import ImageScore, compare_paired

    per = summary.get("per_image_scores") or {}
    sa, sb = per.get(a), per.get(b)
    if not sa or not sb:
        return None
    common = sorted(set(sa) & set(sb))
    if len(common) < 2:
        return None
    ra = [ImageScore.from_json(sa[k]) for k in common]
    rb = [ImageScore.from_json(sb[k]) for k in common]
    return compare_paired(ra, rb, metric=metric)
