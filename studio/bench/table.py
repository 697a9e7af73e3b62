"""The summary table: one function gives its columns and cells; the terminal, the HTML report
and the app only format them.

A cell carries its value (a number for sorting and the app's Dataframe), its text, a tooltip
(the 95 % interval), and whether it is muted (an untrained variant's quality is noise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from studio import labels
from studio.bench.recommend import cost_per_1000
from studio.bench.results import Summary, VariantRow
from studio.metrics.conventions import HEADLINE_METRICS, METRIC_LABELS, METRIC_LEGEND


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    legend: str
    numeric: bool = True


@dataclass
class Cell:
    value: Any
    text: str
    tip: str = ""
    muted: bool = False


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def columns(metrics: tuple[str, ...] | list[str] = HEADLINE_METRICS, p99: bool = False,
            reference_id: str | None = None, preference: bool = False) -> list[Column]:
    cols = [Column("mark", "", "★ recommended, ≈ equivalent to the best-scoring (within the tolerance)", False),
            Column("variant", "variant", "zoo id", False),
            Column("images", "imgs", "images run (scored)"),
            Column("errors", "errs", "images that failed")]
    # against a reference variant the numbers are agreement: the headers say so
    suffix = " agreement" if reference_id else ""
    cols += [Column(m, metric_label(m) + suffix, METRIC_LEGEND.get(m, m)) for m in metrics]
    if preference:
        cols.append(Column("preference", "pref",
                           "human preference: arena rating from blind A/B votes (Elo scale), votes in brackets"))
    cols += [Column("p50", "p50 ms", "median warm latency per image (pre + inference + post), this run"),
             Column("p95", "p95 ms", "95th percentile warm latency per image, this run"),
             Column("speedup", "speed ×", "speed-up against the best-scoring variant (labels-free: the reference), "
                                          "median of per-round ratios in the interleaved timing, 95 % CI on hover; "
                                          "'≈' where the CI holds 1 (equally fast)")]
    if p99:
        cols.append(Column("p99", "p99 ms", "99th percentile warm latency per image, this run"))
    cols += [Column("ips", "img/s", "throughput, one request at a time"),
             Column("cold", "cold s", "cold start: fresh process to first answer"),
             Column("memory", "mem MB", "memory figure the budget compares (see memory source)"),
             Column("size", "size MB", "model file size on disk"),
             Column("cost", "$/1k", "cost per 1,000 images at the given price per hour"),
             Column("flags", "flags", "contamination and licence notes", False)]
    return cols


def _num(x: float | None, digits: int) -> Cell:
    if x is None:
        return Cell(None, "—")
    return Cell(round(float(x), digits), f"{x:.{digits}f}")


def _mark(r: VariantRow, rec: dict[str, Any]) -> str:
    if r.id == rec.get("recommended", rec.get("best")):
        return "★"
    if any(e["id"] == r.id for e in rec.get("equivalent") or []):
        return "≈"
    return ""


def _speedup_cell(r: VariantRow) -> Cell:
    sp = (r.timing or {}).get("speedup_vs")
    if not sp:
        return Cell(None, "1×" if (r.timing or {}).get("interleaved") else "—")
    lo, hi = sp["ci95"]
    mark = "≈" if lo <= 1.0 <= hi else ""
    return Cell(round(sp["median"], 3), f"{mark}{sp['median']:.2f}×",
                f"95 % CI {lo:.2f}–{hi:.2f} against {sp['anchor']}, {sp['n']} interleaved rounds")


def _preference_cell(r: VariantRow) -> Cell:
    p = r.preference or {}
    votes = p.get("votes", 0)
    if not votes:
        return Cell(None, "—")
    if not p.get("shown") or p.get("rating") is None:
        return Cell(None, f"— ({votes})", f"{votes} votes: too few to rate", muted=True)
    lo, hi = p.get("ci95") or (None, None)
    tip = f"95 % CI [{lo:.0f}, {hi:.0f}], {votes} votes" if lo is not None else f"{votes} votes"
    return Cell(round(p["rating"]), f"{p['rating']:.0f} ({votes})", tip)


def _metric_cell(r: VariantRow, metric: str) -> Cell:
    q = r.quality(metric)
    if q is None:
        return Cell(None, "—")
    ci = r.ci95(metric)
    tip = f"95 % CI [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else ""
    held = (r.metrics_held_out.get(metric) or {}).get("mean")
    if r.calibrated_on and held is not None:
        tip += f"; held-out part (not calibration images): {held:.4f}"
    if r.untrained:
        tip = "untrained weights: not a quality score"
    if r.agreement_floor:
        tip = f"the agreement floor: {r.id} against itself under ±1 grey-level input noise; " + tip
    return Cell(round(q, 4), f"{q:.4f}", tip, muted=r.untrained)


def row_cells(r: VariantRow, columns_: list[Column], rec: dict[str, Any], price: float | None) -> list[Cell]:
    lat = r.latency
    cold = (r.cold_start or {}).get("total_s")
    flags = list(r.flags)
    if r.failed:
        flags.insert(0, "FAILED: " + (r.errors[0]["error"] if r.errors else "no images ran"))
    values: dict[str, Cell] = {
        "mark": Cell(_mark(r, rec), _mark(r, rec)),
        "variant": Cell(r.id, r.id + (f"  {labels.UNTRAINED_SHORT}" if r.untrained else "")
                        + (("  (reference: floor)" if r.agreement_floor else "  (reference)")
                           if r.is_reference else "")),
        "images": Cell(r.n_images, f"{r.n_images}" + (f" ({r.n_scored})" if r.n_scored != r.n_images else "")),
        "errors": Cell(len(r.errors), str(len(r.errors))),
        "p50": _num(lat.p50_ms if lat else None, 0),
        "p95": _num(lat.p95_ms if lat else None, 0),
        "p99": _num(lat.p99_ms if lat else None, 0),
        "speedup": _speedup_cell(r),
        "ips": _num(r.throughput_ips, 2),
        "cold": _num(cold, 1),
        "memory": _num(r.memory_mb, 0),
        "size": _num(r.model_size_mb, 1),
        "cost": _num(cost_per_1000(r, price), 4),
        "flags": Cell("; ".join(flags), "; ".join(flags)),
    }
    if r.memory_source:
        values["memory"].tip = r.memory_source
    first = (r.bundle_cold_start or {}).get("first_answer_s")
    if first is not None:
        values["cold"].tip = f"its exported server (studio export): first answer after {first:.1f} s"
    if lat and not (r.timing or {}).get("this_sitting", True):
        values["p95"].tip = "timed in an earlier sitting"
    values["preference"] = _preference_cell(r)
    out = []
    for c in columns_:
        out.append(values[c.key] if c.key in values else _metric_cell(r, c.key))
    return out


def summary_table(summary: Summary, rec: dict[str, Any] | None = None, metrics: list[str] | None = None,
                  p99: bool = False) -> tuple[list[Column], list[list[Cell]]]:
    """(columns, one row of cells per variant) for every front."""
    rec = rec if rec is not None else summary.recommendation
    price = (rec.get("budgets") or {}).get("price_per_hour")
    voted = any((r.preference or {}).get("votes") for r in summary.variants)
    cols = columns(tuple(metrics) if metrics else HEADLINE_METRICS, p99=p99, reference_id=summary.reference_id,
                   preference=voted)
    return cols, [row_cells(r, cols, rec, price) for r in summary.variants]


def legend(cols: list[Column], reference_id: str | None = None) -> list[str]:
    """Three lines saying what the columns mean: marks, metrics, and the rest."""
    metric_cols = [c for c in cols if c.key in METRIC_LABELS]
    other = [c for c in cols if c.key not in METRIC_LABELS and c.key not in ("mark", "variant")]
    against = (f"agreement with {reference_id}; {reference_id}'s own row is the agreement floor, {reference_id} "
               "against itself under ±1 grey-level input noise" if reference_id else "against the reference masks")
    mark = next((c for c in cols if c.key == "mark"), None)
    lines = [f"Marks: {mark.legend}"] if mark else []
    if metric_cols:
        lines.append(f"Metrics (mean over images, {against}; hover or see summary.json for 95 % CIs): "
                     + " · ".join(f"{c.header} = {c.legend}" for c in metric_cols))
    lines.append("Columns: " + " · ".join(f"{c.header} = {c.legend}" for c in other))
    return lines
