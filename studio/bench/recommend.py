"""The decision: the cheapest variant whose quality is equivalent to the best, within budgets.

The rule (DESIGN.md, "Deciding"), a pure function of a summary so the app can re-ask with
other budgets without rerunning anything:
1. Drop the variants outside the budgets (p95 latency, memory), and those whose quality
   means nothing (untrained, failed, unscored).
2. Find the best on the chosen metric.
3. A variant is *equivalent* when the paired-bootstrap 95 % CI of its difference from the
   best (in the metric's better direction) has its lower end at or above -tolerance.
4. Recommend the cheapest equivalent: lowest cost per 1,000 images when a price is given,
   else lowest p95; memory breaks ties.
Against a reference variant (a labels-free run) the metric is agreement with it, and the
recommendation reads "equivalent to REF on these images".
"""

from __future__ import annotations

import math
from typing import Any

from studio.bench.results import PREFERENCE, Summary, VariantRow

# The default tolerance per metric: how much worse (in the metric's own units) still counts as
# the same quality. IoU-like scores in [0, 1]: half a point. Errors: their usual scales.
DEFAULT_TOLERANCE: dict[str, float] = {
    **dict.fromkeys(("iou", "dice", "boundary_iou", "ssim", "fmeasure_max", "fmeasure_mean",
                     "fmeasure_adaptive", "wfmeasure", "smeasure", "emeasure_max", "emeasure_mean",
                     "emeasure_adaptive"), 0.005),
    "mae": 0.002,  # mean absolute error in [0, 1]
    "mse": 0.001,
    "sad": 0.5,  # thousands, Composition-1k convention
    "grad": 0.5,
    "conn": 0.5,
    "preference": 25.0,  # arena rating points (Elo scale)
}

RULE = ("eligible = within the budgets and trained; best = highest {metric}; equivalent = "
        "paired-bootstrap 95 % CI of (variant - best) has lower end >= -{tol:g}; recommended = "
        "the cheapest equivalent ({cost}, memory breaks ties)")


def default_tolerance(metric: str) -> float:
    return DEFAULT_TOLERANCE.get(metric, 0.005)


def higher_is_better(metric: str) -> bool:
    from studio.metrics import HIGHER_IS_BETTER

    if metric == PREFERENCE:
        return True
    return HIGHER_IS_BETTER.get(metric, True)


def cost_per_1000(row: VariantRow, price_per_hour: float | None) -> float | None:
    """Price of 1,000 images on one instance serving one request at a time (mean latency)."""
    if not price_per_hour or not row.throughput_ips:
        return None
    return price_per_hour / 3600.0 / row.throughput_ips * 1000.0


def pareto_front(rows: list[VariantRow], metric: str = "iou") -> list[str]:
    """Ids not dominated on (quality, p95 latency), sorted by latency."""
    sign = 1.0 if higher_is_better(metric) else -1.0
    pts = []
    for r in rows:
        q, lat = r.quality(metric), r.p95_ms
        if r.ranks_on_quality and q is not None and lat is not None:
            pts.append((lat, sign * q, r.id))
    pts.sort(key=lambda p: (p[0], -p[1]))
    front, best = [], float("-inf")
    for _lat, q, vid in pts:
        if q > best:
            front.append(vid)
            best = q
    return front


def paired_difference(summary: Summary, a: str, b: str, metric: str, seed: int = 0) -> dict[str, Any] | None:
    """Paired bootstrap of a - b on the images both were scored on (None when under 2)."""
    from studio.metrics import ImageScore, compare_paired

    sa, sb = summary.per_image_scores.get(a), summary.per_image_scores.get(b)
    if not sa or not sb:
        return None
    common = sorted(set(sa) & set(sb))
    if len(common) < 2:
        return None
    ra = [ImageScore.from_json(sa[k]) for k in common]
    rb = [ImageScore.from_json(sb[k]) for k in common]
    return compare_paired(ra, rb, metric=metric, seed=seed)


def _excluded_why(r: VariantRow, metric: str, budget_p95_ms: float | None,
                  budget_memory_mb: float | None) -> str | None:
    if r.untrained:
        return "latency only (untrained weights)"
    if r.failed or (r.n_scored == 0 and metric != PREFERENCE):
        return "failed or unscored"
    if r.quality(metric) is None:
        if metric == PREFERENCE:
            return f"too few arena votes ({(r.preference or {}).get('votes', 0)})"
        return f"no {metric}"
    if budget_p95_ms is not None:
        if r.p95_ms is None:
            return "no latency measured in this run"
        if r.p95_ms > budget_p95_ms:
            return f"p95 {r.p95_ms:.0f} ms > {budget_p95_ms:g} ms"
    if budget_memory_mb is not None:
        if r.memory_mb is None:
            return "no memory figure"
        if r.memory_mb > budget_memory_mb:
            return f"memory {r.memory_mb:.0f} MB > {budget_memory_mb:g} MB"
    return None


def budgets_text(budget_p95_ms: float | None, budget_memory_mb: float | None,
                 price_per_hour: float | None) -> str:
    parts = [f"p95 ≤ {budget_p95_ms:g} ms" if budget_p95_ms else None,
             f"memory ≤ {budget_memory_mb:g} MB" if budget_memory_mb else None,
             f"${price_per_hour:g}/h" if price_per_hour else None]
    return ", ".join(p for p in parts if p) or "no budget given"


def recommend(summary: Summary, budget_p95_ms: float | None = None, budget_memory_mb: float | None = None,
              price_per_hour: float | None = None, metric: str | None = None,
              tolerance: float | None = None) -> dict[str, Any]:
    """The recommendation (see the module docstring) as a JSON-ready dict."""
    metric = metric or summary.quality_metric
    tol = default_tolerance(metric) if tolerance is None else float(tolerance)
    higher = higher_is_better(metric)
    sign = 1.0 if higher else -1.0
    priced = bool(price_per_hour)
    out: dict[str, Any] = {
        "rule": RULE.format(metric=metric, tol=tol,
                            cost="cost per 1,000 images" if priced else "p95 latency"),
        "metric": metric, "tolerance": tol, "higher_is_better": higher,
        "reference": dict(summary.reference),
        "budgets": {"p95_ms": budget_p95_ms, "memory_mb": budget_memory_mb, "price_per_hour": price_per_hour},
        "budgets_text": budgets_text(budget_p95_ms, budget_memory_mb, price_per_hour),
        "best": None, "best_scoring": None, "equivalent": [], "excluded": [],
        "pareto": pareto_front(summary.variants, metric), "cost_per_1000": None,
    }
    fits: list[VariantRow] = []
    for r in summary.variants:
        why = _excluded_why(r, metric, budget_p95_ms, budget_memory_mb)
        if why:
            out["excluded"].append({"id": r.id, "why": why})
        else:
            fits.append(r)
    if not fits:
        out["reason"] = out["sentence"] = (
            "No variant fits the budgets." if summary.variants else "No variants ran.")
        return out

    def speed_key(r: VariantRow) -> tuple[float, float]:
        cost = cost_per_1000(r, price_per_hour) if priced else r.p95_ms
        return (cost if cost is not None else math.inf, r.memory_mb if r.memory_mb is not None else math.inf)

    best = max(fits, key=lambda r: (sign * (r.quality(metric) or 0.0), [-x for x in speed_key(r)]))
    out["best_scoring"] = best.id
    equivalent, not_equivalent = [], []
    for r in fits:
        entry: dict[str, Any] = {"id": r.id, "quality": r.quality(metric), "p95_ms": r.p95_ms,
                                 "memory_mb": r.memory_mb, "cost_per_1000": cost_per_1000(r, price_per_hour)}
        if r is best:
            entry.update(diff=0.0, ci95=[0.0, 0.0])
            equivalent.append(entry)
            continue
        if metric == PREFERENCE:
            # votes are not paired per image: the variant's own rating interval against the
            # best's rating (the arena's bootstrap already carries the vote noise)
            ci, qb = r.ci95(metric), best.quality(metric)
            lo, hi = ci[0] - qb, ci[1] - qb
            entry.update(diff=r.quality(metric) - qb, ci95=[lo, hi], n_votes=(r.preference or {}).get("votes"))
            (equivalent if lo >= -tol else not_equivalent).append(entry)
            continue
        comp = paired_difference(summary, r.id, best.id, metric)
        if comp is None:
            continue  # no paired scores: cannot claim equivalence
        lo, hi = (sign * x for x in comp["ci95"])
        lo, hi = min(lo, hi), max(lo, hi)
        entry.update(diff=sign * comp["diff"], ci95=[lo, hi], n_images=comp["n_images"])
        (equivalent if lo >= -tol else not_equivalent).append(entry)
    chosen_id = min(equivalent, key=lambda e: speed_key(summary.row(e["id"])))["id"]
    chosen = summary.row(chosen_id)
    out["equivalent"] = sorted(equivalent, key=lambda e: speed_key(summary.row(e["id"])))
    out["best"] = chosen.id
    out["cost_per_1000"] = cost_per_1000(chosen, price_per_hour)
    out["best_flags"] = list(chosen.flags)
    # What the engineer would ask next: the cheaper variant closest to passing, and by how much.
    cheaper = [e for e in not_equivalent if speed_key(summary.row(e["id"])) < speed_key(chosen)]
    out["nearest_cheaper"] = max(cheaper, key=lambda e: e["ci95"][0]) if cheaper else None
    out["sentence"], out["why_not_best"] = _sentences(summary, chosen, best, metric, tol, priced,
                                                       price_per_hour, out)
    out["reason"] = out["sentence"]
    return out


def _speedup(chosen: VariantRow, best: VariantRow, priced: bool, price: float | None) -> str:
    if priced:
        a, b = cost_per_1000(best, price), cost_per_1000(chosen, price)
        if a and b:
            return f"{a / b:.1f}× cheaper per image than"
    if chosen.p95_ms and best.p95_ms:
        return f"{best.p95_ms / chosen.p95_ms:.1f}× faster (p95) than"
    return "as good as"


def _sentences(summary: Summary, chosen: VariantRow, best: VariantRow, metric: str, tol: float,
               priced: bool, price: float | None, out: dict[str, Any]) -> tuple[str, str]:
    ref_id = summary.reference_id
    what = f"agreement with {ref_id} ({metric})" if ref_id and metric != PREFERENCE else metric
    if metric == PREFERENCE:
        what = f"preference (arena rating, {chosen.preference.get('votes', 0)} votes)"
    within = "" if out["budgets_text"] == "no budget given" else f" within the budgets ({out['budgets_text']})"
    q_best = best.quality(metric)
    if chosen is best:
        others = [e["id"] for e in out["equivalent"] if e["id"] != best.id]
        sentence = f"{best.id}: the best {what}, {q_best:.4f}{within}"
        if ref_id and best.id == ref_id:
            sentence = f"{best.id}: the reference itself{within}"
            if others:
                sentence += (f"; equivalent to it on these images ({what} within the {tol:g} tolerance) "
                             f"but not cheaper: {', '.join(others)}")
            else:
                sentence += (f"; no other variant is equivalent to it on these images ({what} within the "
                             f"{tol:g} tolerance)")
        elif others:
            sentence += f"; equivalent within the {tol:g} tolerance but not cheaper: {', '.join(others)}"
        else:
            sentence += f"; no cheaper variant is within the {tol:g} tolerance"
            near = out.get("nearest_cheaper")
            if near:
                lo, hi = near["ci95"]
                faster = _speedup(summary.row(near["id"]), best, priced, price)
                faster = f"{faster} it, " if faster != "as good as" else ""
                sentence += (f" (nearest: {near['id']}, {faster}{what} {near['diff']:+.4f}, "
                             f"95 % CI {lo:+.4f} … {hi:+.4f})")
        if out["cost_per_1000"] is not None:
            sentence += f"; ${out['cost_per_1000']:.4f} per 1,000 images at ${price:g}/h"
        return sentence + ".", ""
    e = next(x for x in out["equivalent"] if x["id"] == chosen.id)
    lo, hi = e["ci95"]
    ref_words = f"equivalent to {ref_id} on these images" if ref_id else f"within the {tol:g} tolerance"
    sentence = (f"{chosen.id}: {_speedup(chosen, best, priced, price)} the best-scoring {best.id}, "
                f"{what} {e['diff']:+.4f} (95 % CI {lo:+.4f} … {hi:+.4f}), {ref_words}"
                + (f" (tolerance {tol:g})" if ref_id else "") + within)
    if out["cost_per_1000"] is not None:
        sentence += f"; ${out['cost_per_1000']:.4f} per 1,000 images at ${price:g}/h"
    sentence += "."
    why = (f"Best-scoring: {best.id} ({what} {q_best:.4f}); not picked because {chosen.id} is equivalent "
           f"within the {tol:g} tolerance and "
           + ("cheaper per image." if priced else "faster (lower p95)."))
    return sentence, why
