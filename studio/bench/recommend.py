"""The decision: the cheapest variant whose quality is equivalent to the best, within budgets.

The rule (DESIGN.md, "Deciding"), a pure function of a summary so the app can re-ask with
other budgets without rerunning anything:
1. Drop the variants outside the budgets (p95 latency, memory), and those whose quality
   means nothing (untrained, failed, unscored).
2. Find the best on the chosen metric.
3. A variant is *equivalent* when the paired-bootstrap 95 % CI of its difference from the
   best (in the metric's better direction) has its lower end at or above -tolerance.
4. Recommend the cheapest equivalent. Speed comes from the run's interleaved timing phase: one
   variant is *faster* than another only when the bootstrap CI of their paired speed ratio (the
   median of per-round ratios) lies wholly above 1; otherwise they are *equally fast* and memory,
   then size on disk, breaks the tie. (Runs without that phase: lowest p95, as before.)
5. *Undecided is an answer*: a faster variant whose difference is within the tolerance but whose
   CI is still too wide is named beside the recommendation, with its speed-up, its difference
   and about how many images would settle it (`images_needed`).

Against a reference variant (a labels-free run) the metric is agreement with it, judged against
the agreement floor (the reference against itself under +-1 grey-level input noise, which its
own row holds): the reference is no candidate against itself. A cheaper candidate whose
agreement is equivalent to the floor is recommended; else "keep the reference: nothing cheaper
agrees with it". Blind votes on the disagreement set (`studio.bench.labelsfree`) feed the
decision, labelled as preference, once there are enough of them.

`recommendation_lines` gives the sentences every front shows, in order.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from studio import timing
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
Z95 = 1.959964  # two-sided 95 % normal quantile

RULE = ("eligible = within the budgets and trained; best = highest {metric}; equivalent = "
        "paired-bootstrap 95 % CI of (variant - best) has lower end >= -{tol:g}; recommended = "
        "the cheapest equivalent ({cost}: faster only when the CI of the paired speed ratio from the "
        "interleaved timing lies wholly above 1, else equally fast and memory, then size, breaks the tie)")
RULE_LABELS_FREE = ("candidates = within the budgets and trained, the reference {ref} excluded; floor = {ref} "
                    "against itself under ±1 grey-level input noise; agrees = paired-bootstrap 95 % CI of "
                    "(candidate - floor) on {metric} agreement has lower end >= -{tol:g}; recommended = the "
                    "cheapest candidate that agrees and is cheaper than {ref} ({cost}), else keep {ref}")
IMAGES_NEEDED_HOW = ("N ≈ (1.96 · sd / (tolerance − |Δ|))², sd the spread of the per-image paired differences: "
                     "the images at which the 95 % CI's lower end would reach −tolerance if Δ and sd hold")


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
    """Paired bootstrap of a - b on the images both were scored on (None when under 2), with the
    per-image differences' spread (`sd`, for `images_needed`)."""
    from studio.metrics import ImageScore, compare_paired

    sa, sb = summary.per_image_scores.get(a), summary.per_image_scores.get(b)
    if not sa or not sb:
        return None
    common = sorted(set(sa) & set(sb))
    if len(common) < 2:
        return None
    ra = [ImageScore.from_json(sa[k]) for k in common]
    rb = [ImageScore.from_json(sb[k]) for k in common]
    out = compare_paired(ra, rb, metric=metric, seed=seed)
    d = [x.values.get(metric) - y.values.get(metric) for x, y in zip(ra, rb, strict=True)
         if x.values.get(metric) is not None and y.values.get(metric) is not None]
    out["sd"] = float(np.std(d, ddof=1)) if len(d) > 1 else None
    return out


def images_needed(diff: float, sd: float | None, tolerance: float, n: int, z: float = Z95) -> int | None:
    """About how many images would settle an undecided comparison: the N at which the 95 % CI
    of the mean paired difference, z·sd/√N either side of `diff` (the difference in the metric's
    better direction, within the tolerance), has its lower end at -tolerance:
    N = ceil((z·sd / (tolerance + diff))²). At least n + 1 (n images did not settle it). None when
    the point estimate itself is outside the tolerance or there is no spread."""
    margin = tolerance + diff
    if sd is None or margin <= 0 or not math.isfinite(sd):
        return None
    if sd == 0:
        return n + 1
    return max(n + 1, math.ceil((z * sd / margin) ** 2))


# --- speed: from the interleaved timing phase -----------------------------------------------------

def speed(summary: Summary, a: str, b: str) -> dict[str, Any] | None:
    """Speed-up of `a` over `b` (t_b / t_a; > 1: a is faster): the median of the paired per-round
    ratios of the run's interleaved timing, with a bootstrap 95 % CI; None without that phase."""
    return timing.record_speed(summary.run.get("timing"), a, b)


def speed_verdict(summary: Summary, a: str, b: str) -> int | None:
    """+1: `a` is faster than `b` (the ratio's CI wholly above 1); -1: slower; 0: equally fast.
    Without interleaved timing of both (older runs): lower p95 is faster; None when unknown."""
    got = timing.verdict(speed(summary, a, b))
    if got is not None:
        return got
    ra, rb = summary.row(a), summary.row(b)
    if ra is None or rb is None or ra.p95_ms is None or rb.p95_ms is None:
        return None
    return (ra.p95_ms < rb.p95_ms) - (ra.p95_ms > rb.p95_ms)


def _lighter(ra: VariantRow, rb: VariantRow) -> bool:
    """Memory, then size on disk: what breaks a tie between equally fast variants."""
    def key(r: VariantRow) -> tuple[float, float]:
        return (r.memory_mb if r.memory_mb is not None else math.inf,
                r.model_size_mb if r.model_size_mb is not None else math.inf)
    return key(ra) < key(rb)


def cheaper(summary: Summary, a: str, b: str) -> bool:
    """`a` is cheaper to serve than `b`: faster, or equally fast and lighter."""
    v = speed_verdict(summary, a, b)
    ra, rb = summary.row(a), summary.row(b)
    return v == 1 or (v == 0 and ra is not None and rb is not None and _lighter(ra, rb))


def _point_cost(r: VariantRow, price: float | None) -> float:
    if price:
        c = cost_per_1000(r, price)
        if c is not None:
            return c
    lat = r.latency
    if lat is None:
        return math.inf
    val = lat.p50_ms if r.timing.get("interleaved") else lat.p95_ms
    return val if val is not None else math.inf


def cheapest(summary: Summary, ids: list[str], price: float | None = None) -> str:
    """The cheapest of `ids`: the fastest by its point estimate, unless variants equally fast as it
    (their paired ratio's CI holds 1) are lighter: then the lightest of those."""
    rows = {i: summary.row(i) for i in ids}
    order = sorted(ids, key=lambda i: (_point_cost(rows[i], price), ids.index(i)))
    fastest = order[0]
    ties = [i for i in order if i == fastest or speed_verdict(summary, i, fastest) == 0]
    best = ties[0]
    for i in ties[1:]:
        if _lighter(rows[i], rows[best]):
            best = i
    return best


def timing_info(summary: Summary) -> dict[str, Any]:
    """recommendation.timing: {interleaved, rounds, images, n_rounds, load_max, cores, anchor, node}."""
    rec = summary.run.get("timing") or {}
    if not rec.get("interleaved"):
        loads = [x for r in summary.variants for x in (r.timing or {}).get("load_average", [])[:1]]
        return {"interleaved": False, "rounds": None, "load_max": max(loads) if loads else None,
                "cores": summary.environment.get("cpu_count")}
    return {"interleaved": True, "rounds": rec.get("rounds"), "images": len(rec.get("images") or []),
            "n_rounds": len(rec.get("samples") or []), "load_max": rec.get("load_max"), "cores": rec.get("cores"),
            "anchor": rec.get("anchor"), "node": rec.get("node")}


# --- the rule -------------------------------------------------------------------------------------

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


class _Decision:
    """The inputs of one recommendation, shared by its steps."""

    def __init__(self, summary: Summary, metric: str, tol: float, price: float | None, out: dict[str, Any]):
        self.summary, self.metric, self.tol, self.price, self.out = summary, metric, tol, price, out
        self.higher = higher_is_better(metric)
        self.sign = 1.0 if self.higher else -1.0

    def compare(self, r: VariantRow, against: VariantRow) -> dict[str, Any] | None:
        """{diff, ci95, n_images, sd} of r - against in the metric's better direction."""
        if self.metric == PREFERENCE:
            # votes are not paired per image: the variant's own rating interval against the
            # other's rating (the arena's bootstrap already carries the vote noise)
            ci, qb = r.ci95(self.metric), against.quality(self.metric)
            if ci is None or qb is None:
                return None
            return {"diff": (r.quality(self.metric) or 0.0) - qb, "ci95": [ci[0] - qb, ci[1] - qb],
                    "n_votes": (r.preference or {}).get("votes"), "sd": None}
        comp = paired_difference(self.summary, r.id, against.id, self.metric)
        if comp is None:
            return None
        lo, hi = (self.sign * x for x in comp["ci95"])
        return {"diff": self.sign * comp["diff"], "ci95": [min(lo, hi), max(lo, hi)], "n_images": comp["n_images"],
                "sd": comp.get("sd")}

    def entry(self, r: VariantRow) -> dict[str, Any]:
        return {"id": r.id, "quality": r.quality(self.metric), "p95_ms": r.p95_ms, "memory_mb": r.memory_mb,
                "cost_per_1000": cost_per_1000(r, self.price)}

    def undecided(self, cands: list[tuple[VariantRow, dict[str, Any]]], chosen: VariantRow) -> list[dict[str, Any]]:
        """Faster than the chosen one, Δ within the tolerance, CI too wide: named, with N."""
        out = []
        for r, comp in cands:
            lo = comp["ci95"][0]
            if comp["diff"] < -self.tol or lo >= -self.tol or speed_verdict(self.summary, r.id, chosen.id) != 1:
                continue
            sp = speed(self.summary, r.id, chosen.id)
            n = comp.get("n_images") or 0
            out.append({"id": r.id, "vs": chosen.id, "speedup": sp["median"] if sp else None,
                        "speedup_ci95": sp["ci95"] if sp else None, "diff": comp["diff"], "ci95": comp["ci95"],
                        "n_images": n, "sd": comp.get("sd"),
                        "images_needed": images_needed(comp["diff"], comp.get("sd"), self.tol, n)})
        out.sort(key=lambda e: -(e["speedup"] or 0.0))
        return out


def recommend(summary: Summary, budget_p95_ms: float | None = None, budget_memory_mb: float | None = None,
              price_per_hour: float | None = None, metric: str | None = None,
              tolerance: float | None = None) -> dict[str, Any]:
    """The recommendation (see the module docstring) as a JSON-ready dict. `recommended` is the
    variant to ship (`best` is the same, for readers of older summary.json files);
    `best_scoring` the top scorer; `undecided` the faster candidates the evidence cannot settle."""
    metric = metric or summary.quality_metric
    tol = default_tolerance(metric) if tolerance is None else float(tolerance)
    higher = higher_is_better(metric)
    priced = bool(price_per_hour)
    ref_id = summary.reference_id
    labels_free = bool(ref_id) and metric != PREFERENCE and summary.row(ref_id) is not None
    cost = "cost per 1,000 images" if priced else "speed"
    out: dict[str, Any] = {
        "rule": (RULE_LABELS_FREE.format(ref=ref_id, metric=metric, tol=tol, cost=cost) if labels_free
                 else RULE.format(metric=metric, tol=tol, cost=cost)),
        "metric": metric, "tolerance": tol, "higher_is_better": higher,
        "reference": dict(summary.reference),
        "budgets": {"p95_ms": budget_p95_ms, "memory_mb": budget_memory_mb, "price_per_hour": price_per_hour},
        "budgets_text": budgets_text(budget_p95_ms, budget_memory_mb, price_per_hour),
        "recommended": None, "best": None, "best_scoring": None, "equivalent": [], "undecided": [], "excluded": [],
        "pareto": pareto_front(summary.variants, metric), "cost_per_1000": None, "timing": timing_info(summary),
        "images_needed_how": IMAGES_NEEDED_HOW, "floor": None, "disagreements": None, "preference_basis": None,
    }
    t = out["timing"]
    out["busy"] = timing.busy_sentence(t.get("load_max"), t.get("cores")) if t.get("interleaved") else None
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
        out["lines"] = recommendation_lines(out)
        return out
    d = _Decision(summary, metric, tol, price_per_hour, out)
    if labels_free:
        _labels_free(d, fits)
    else:
        _against_best(d, fits)
    chosen = summary.row(out["recommended"]) if out["recommended"] else None
    out["best"] = out["recommended"]  # the old name, kept for readers of older summary.json files
    if chosen is not None:
        out["cost_per_1000"] = cost_per_1000(chosen, price_per_hour)
        out["best_flags"] = list(chosen.flags)
    out["reason"] = out["sentence"]
    out["lines"] = recommendation_lines(out)
    return out


def _against_best(d: _Decision, fits: list[VariantRow]) -> None:
    """Ground truth (or preference): the cheapest variant equivalent to the best-scoring one."""
    summary, metric, tol, out = d.summary, d.metric, d.tol, d.out
    best = max(fits, key=lambda r: (d.sign * (r.quality(metric) or 0.0), -_point_cost(r, d.price)))
    out["best_scoring"] = best.id
    equivalent, others = [], []
    for r in fits:
        entry = d.entry(r)
        if r is best:
            entry.update(diff=0.0, ci95=[0.0, 0.0])
            equivalent.append(entry)
            continue
        comp = d.compare(r, best)
        if comp is None:
            continue  # no paired scores: cannot claim equivalence
        entry.update({k: v for k, v in comp.items() if k != "sd"})
        sp = speed(summary, r.id, best.id)
        entry["speedup"] = sp["median"] if sp else None
        entry["speedup_ci95"] = sp["ci95"] if sp else None
        if comp["ci95"][0] >= -tol:
            equivalent.append(entry)
        else:
            others.append((r, comp, entry))
    chosen = summary.row(cheapest(summary, [e["id"] for e in equivalent], d.price))
    assert chosen is not None
    out["recommended"] = chosen.id
    rank = {i: k for k, i in enumerate(_by_cost(summary, [e["id"] for e in equivalent], d.price))}
    out["equivalent"] = sorted(equivalent, key=lambda e: rank[e["id"]])
    # What the engineer would ask next: the cheaper variant closest to passing, and by how much.
    cheaper_ones = [e for _, _, e in others if cheaper(summary, e["id"], chosen.id)]
    out["nearest_cheaper"] = max(cheaper_ones, key=lambda e: e["ci95"][0]) if cheaper_ones else None
    out["undecided"] = d.undecided([(r, c) for r, c, _ in others], chosen)
    out["sentence"], out["why_not_best"] = _sentences(d, chosen, best)
    out["undecided_sentence"] = _undecided_sentence(d, out["undecided"])


def _by_cost(summary: Summary, ids: list[str], price: float | None) -> list[str]:
    """ids cheapest first (the recommended one first)."""
    left, order = list(ids), []
    while left:
        pick = cheapest(summary, left, price)
        order.append(pick)
        left.remove(pick)
    return order


def _labels_free(d: _Decision, fits: list[VariantRow]) -> None:
    """Against a reference variant: candidates judged against the floor; the reference kept when
    nothing cheaper agrees; the preference on the disagreement set, when voted, feeds in."""
    summary, metric, tol, out = d.summary, d.metric, d.tol, d.out
    ref = summary.row(summary.reference_id or "")
    assert ref is not None
    floor_q = ref.quality(metric)
    out["floor"] = {"id": ref.id, "measured": ref.agreement_floor, "metric": metric, "value": floor_q,
                    "ci95": list(ref.ci95(metric) or []) or None,
                    "how": "the reference against itself under ±1 grey-level input noise, same images"}
    cands = [r for r in fits if r.id != ref.id]
    ref_fits = any(r.id == ref.id for r in fits)
    if cands:
        out["best_scoring"] = max(cands, key=lambda r: d.sign * (r.quality(metric) or 0.0)).id
    agree, others = [], []
    for r in cands:
        comp = d.compare(r, ref)
        if comp is None:
            continue
        entry = {**d.entry(r), **{k: v for k, v in comp.items() if k != "sd"}}
        sp = speed(summary, r.id, ref.id)
        entry["speedup"] = sp["median"] if sp else None
        entry["speedup_ci95"] = sp["ci95"] if sp else None
        entry["cheaper_than_reference"] = cheaper(summary, r.id, ref.id)
        if comp["ci95"][0] >= -tol:
            agree.append(entry)
        else:
            others.append((r, comp, entry))
    # the preference on the disagreement set: a candidate people rate within the preference
    # tolerance of the reference there counts as agreeing, by preference
    dis = summary.run.get("disagreements") or {}
    out["disagreements"] = {k: dis.get(k) for k in ("n_images", "of", "candidates", "metric", "tolerance", "rule")} \
        if dis else None
    pref = dis.get("preference") or {}
    pr = pref.get(ref.id) or {}
    p_tol = DEFAULT_TOLERANCE[PREFERENCE]
    for r, _comp, entry in list(others):
        pc = pref.get(r.id) or {}
        if pr.get("shown") and pc.get("shown") and pc.get("ci95") and pr.get("rating") is not None:
            entry["preference"] = {"rating": pc["rating"], "ci95": pc["ci95"], "votes": pc.get("votes"),
                                   "reference_rating": pr["rating"], "tolerance": p_tol}
            if pc["ci95"][0] >= pr["rating"] - p_tol:
                entry["by_preference"] = True
                agree.append(entry)
                others.remove((r, _comp, entry))
    out["equivalent"] = agree
    eligible = [e["id"] for e in agree if e["cheaper_than_reference"]]
    if eligible:
        chosen = summary.row(cheapest(summary, eligible, d.price))
    elif ref_fits:
        chosen = ref
    else:
        chosen = summary.row(cheapest(summary, [e["id"] for e in agree], d.price)) if agree else None
    if chosen is None:
        out["sentence"] = (f"No candidate within the budgets agrees with {ref.id} (floor {floor_q:.4f}), and "
                           f"{ref.id} itself is outside them.")
        out["why_not_best"] = ""
        return
    out["recommended"] = chosen.id
    entry_of = {e["id"]: e for e in agree}
    if chosen.id in entry_of and entry_of[chosen.id].get("by_preference"):
        out["preference_basis"] = chosen.id
    cheaper_others = [e for r, _, e in others if e["cheaper_than_reference"]]
    out["nearest_cheaper"] = max(cheaper_others, key=lambda e: e["ci95"][0]) if cheaper_others else None
    out["undecided"] = d.undecided([(r, c) for r, c, _ in others], chosen)
    out["sentence"], out["why_not_best"] = _labels_free_sentences(d, chosen, ref, entry_of)
    out["undecided_sentence"] = _undecided_sentence(d, out["undecided"])


# --- the sentences ------------------------------------------------------------------------------

def _ci(ci: list[float] | tuple[float, float], fmt: str = "+.4f") -> str:
    return f"{ci[0]:{fmt}} … {ci[1]:{fmt}}"


def _speed_phrase(summary: Summary, a: VariantRow, b: VariantRow, priced: bool, price: float | None) -> str:
    """How a compares with b on speed, ending so that " b" follows: "2.6× faster (…) than"."""
    sp = speed(summary, a.id, b.id)
    if sp is not None:
        lo, hi = sp["ci95"]
        ci = f"95 % CI {lo:.2f}–{hi:.2f}, {sp['n']} interleaved rounds"
        v = timing.verdict(sp)
        if v == 1:
            return f"{sp['median']:.2f}× {'cheaper per image' if priced else 'faster'} ({ci}) than"
        if v == -1:
            return f"{1 / sp['median']:.2f}× slower ({ci}) than"
        lighter = []
        if a.memory_mb is not None and b.memory_mb is not None:
            lighter.append(f"memory {a.memory_mb:.0f} vs {b.memory_mb:.0f} MB")
        if a.model_size_mb is not None and b.model_size_mb is not None:
            lighter.append(f"size {a.model_size_mb:.0f} vs {b.model_size_mb:.0f} MB")
        tie = f"; the tie broken by {', '.join(lighter)}" if lighter else ""
        return f"equally fast (speed ratio {sp['median']:.2f}×, {ci}{tie}) as"
    if priced:
        ca, cb = cost_per_1000(b, price), cost_per_1000(a, price)
        if ca and cb:
            return f"{ca / cb:.1f}× cheaper per image than"
    if a.p95_ms and b.p95_ms:
        return f"{b.p95_ms / a.p95_ms:.1f}× faster (p95, timed one after another) than"
    return "as good as"


def _what(d: _Decision, chosen: VariantRow) -> str:
    ref_id = d.summary.reference_id
    if d.metric == PREFERENCE:
        return f"preference (arena rating, {(chosen.preference or {}).get('votes', 0)} votes)"
    return f"agreement with {ref_id} ({d.metric})" if ref_id else d.metric


def _sentences(d: _Decision, chosen: VariantRow, best: VariantRow) -> tuple[str, str]:
    summary, metric, tol, out = d.summary, d.metric, d.tol, d.out
    priced = bool(d.price)
    ref_id = summary.reference_id
    what = _what(d, chosen)
    within = "" if out["budgets_text"] == "no budget given" else f" within the budgets ({out['budgets_text']})"
    q_best = best.quality(metric)
    cost = f"; ${out_cost:.4f} per 1,000 images at ${d.price:g}/h" if (
        out_cost := cost_per_1000(chosen, d.price)) is not None else ""
    if chosen is best:
        others = [e["id"] for e in out["equivalent"] if e["id"] != best.id]
        sentence = f"{best.id}: the best {what}, {q_best:.4f}{within}"
        if others:
            sentence += f"; equivalent within the {tol:g} tolerance but not cheaper: {', '.join(others)}"
        else:
            sentence += f"; no cheaper variant is proven within the {tol:g} tolerance"
            near = out.get("nearest_cheaper")
            if near and not out["undecided"]:
                lo, hi = near["ci95"]
                faster = _speed_phrase(summary, summary.row(near["id"]), best, priced, d.price)
                faster = f"{faster} it, " if faster != "as good as" else ""
                sentence += f" (nearest: {near['id']}, {faster}{what} {near['diff']:+.4f}, 95 % CI {lo:+.4f} … {hi:+.4f})"
        return sentence + _beside(out) + cost + ".", ""
    e = next(x for x in out["equivalent"] if x["id"] == chosen.id)
    lo, hi = e["ci95"]
    ref_words = f"equivalent to {ref_id} on these images" if ref_id else f"within the {tol:g} tolerance"
    sentence = (f"{chosen.id}: {_speed_phrase(summary, chosen, best, priced, d.price)} the best-scoring {best.id}, "
                f"{what} {e['diff']:+.4f} (95 % CI {lo:+.4f} … {hi:+.4f}), {ref_words}"
                + (f" (tolerance {tol:g})" if ref_id else "") + within + _beside(out) + cost + ".")
    why = (f"Best-scoring: {best.id} ({what} {q_best:.4f}); not picked because {chosen.id} is equivalent "
           f"within the {tol:g} tolerance and "
           + ("cheaper per image." if priced else "cheaper to serve (faster, or as fast and lighter)."))
    return sentence, why


def _labels_free_sentences(d: _Decision, chosen: VariantRow, ref: VariantRow,
                           entry_of: dict[str, dict[str, Any]]) -> tuple[str, str]:
    summary, metric, tol, out = d.summary, d.metric, d.tol, d.out
    priced = bool(d.price)
    floor = out["floor"]
    fq = floor["value"]
    floor_words = (f"floor {fq:.4f}: {ref.id} against itself under ±1 grey-level input noise"
                   if ref.agreement_floor else f"{ref.id}'s own score {fq:.4f}")
    within = "" if out["budgets_text"] == "no budget given" else f" within the budgets ({out['budgets_text']})"
    cost = f"; ${c:.4f} per 1,000 images at ${d.price:g}/h" if (c := cost_per_1000(chosen, d.price)) is not None \
        else ""
    if chosen is ref:
        sentence = (f"Keep the reference {ref.id}: nothing cheaper agrees with it ({metric} agreement judged "
                    f"against the {floor_words}; tolerance {tol:g}){within}")
        near = out.get("nearest_cheaper")
        if near and not out["undecided"]:
            lo, hi = near["ci95"]
            sentence += (f". Nearest: {near['id']}, {_speed_phrase(summary, summary.row(near['id']), ref, priced, d.price)}"
                         f" {ref.id}, agreement {near['quality']:.4f}, {near['diff']:+.4f} from the floor "
                         f"(95 % CI {lo:+.4f} … {hi:+.4f})")
        pref_note = _preference_note(d, ref)
        return sentence + _beside(out) + cost + "." + (f" {pref_note}" if pref_note else ""), ""
    e = entry_of[chosen.id]
    lo, hi = e["ci95"]
    speed_words = _speed_phrase(summary, chosen, ref, priced, d.price)
    if e.get("by_preference"):
        p = e["preference"]
        n = (out.get("disagreements") or {}).get("n_images")
        sentence = (f"{chosen.id}: {speed_words} the reference {ref.id}; by preference on the {n} disagreement "
                    f"images ({p['votes']} blind votes), rated {p['rating']:.0f} (95 % CI {p['ci95'][0]:.0f} … "
                    f"{p['ci95'][1]:.0f}) against {ref.id}'s {p['reference_rating']:.0f} (tolerance {p['tolerance']:g} "
                    f"rating points), though its {metric} agreement {e['quality']:.4f} is {e['diff']:+.4f} from the "
                    f"{floor_words}{within}")
    else:
        sentence = (f"{chosen.id}: {speed_words} the reference {ref.id}, agreement with {ref.id} ({metric}) "
                    f"{e['quality']:.4f}, {e['diff']:+.4f} from the {floor_words} (95 % CI {lo:+.4f} … {hi:+.4f}), "
                    f"within the {tol:g} tolerance{within}")
    why = (f"The reference {ref.id} is not a candidate against itself; {chosen.id} is the cheapest candidate that "
           f"agrees with it as well as {ref.id} agrees with itself under ±1 grey-level noise"
           + (" (by preference)." if e.get("by_preference") else "."))
    return sentence + _beside(out) + cost + ".", why


def _beside(out: dict[str, Any]) -> str:
    """The headline's mention of the faster candidates the evidence cannot settle yet."""
    und = out.get("undecided") or []
    if not und:
        return ""
    names = ", ".join(f"{e['id']}" + (f" ({e['speedup']:.1f}× faster)" if e.get("speedup") else "") for e in und)
    return f"; undecided beside it: {names}, see below"


def _preference_note(d: _Decision, ref: VariantRow) -> str:
    """What the votes on the disagreement set say, or how to get them."""
    dis = d.out.get("disagreements") or {}
    n = dis.get("n_images") or 0
    if not n:
        return ""
    pref = (d.summary.run.get("disagreements") or {}).get("preference") or {}
    pr = pref.get(ref.id) or {}
    rated = [(c, pref[c]) for c in dis.get("candidates") or [] if (pref.get(c) or {}).get("shown")]
    if pr.get("shown") and rated:
        parts = ", ".join(f"{c} {p['rating']:.0f}" for c, p in rated)
        return (f"Preference on the {n} disagreement images ({pr.get('votes', 0)} votes for {ref.id}): "
                f"{ref.id} {pr['rating']:.0f}, {parts}: none within {DEFAULT_TOLERANCE[PREFERENCE]:g} rating points "
                "of the reference.")
    votes = pr.get("votes", 0)
    return (f"{n} images where a cheaper candidate disagrees beyond the floor: judge them blind "
            f"(`eval/run.py … --arena`){f'; {votes} votes so far' if votes else ''}.")


def _undecided_sentence(d: _Decision, undecided: list[dict[str, Any]]) -> str:
    if not undecided:
        return ""
    metric = d.metric
    parts = []
    for e in undecided:
        sp = (f"{e['speedup']:.2f}× faster than {e['vs']} (95 % CI {e['speedup_ci95'][0]:.2f}–"
              f"{e['speedup_ci95'][1]:.2f})" if e.get("speedup") else f"faster than {e['vs']}")
        need = (f"; about {e['images_needed']:,} images would settle it at ±{d.tol:g}" if e.get("images_needed")
                else "")
        parts.append(f"Undecided at {e['n_images']} images: {e['id']} is {sp} at Δ{metric} {e['diff']:+.4f} "
                     f"(95 % CI {e['ci95'][0]:+.4f} … {e['ci95'][1]:+.4f}){need}.")
    how = " (N ≈ (1.96·sd/(tolerance − |Δ|))², sd the spread of the per-image differences.)"
    return " ".join(parts) + how


def recommendation_lines(rec: dict[str, Any]) -> list[str]:
    """The recommendation's sentences, in the order every front shows them: the decision, the
    undecided faster candidates beside it, why the best-scoring was not picked, and how busy the
    machine was while timing."""
    lines = [rec.get("sentence") or rec.get("reason") or "—"]
    for key in ("undecided_sentence", "why_not_best"):
        if rec.get(key):
            lines.append(rec[key])
    if rec.get("busy"):
        lines.append(rec["busy"][0].upper() + rec["busy"][1:])
    return lines
