"""Scoring a finished variant from the prediction cache: per image against the run's reference
(the masks, or a reference variant's mattes), then the row's aggregates, latency and timing.

In a labels-free run the reference's own row is scored from the floor plan's mattes (the
reference under +-1 grey level of input noise) against its clean ones: its row holds the
agreement floor, never a perfect 1.0 (`studio.bench.labelsfree`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from studio import labels
from studio.bench import report
from studio.bench.config import SuiteConfig
from studio.bench.labelsfree import FLOOR_FLAG
from studio.bench.plan import Plan
from studio.bench.results import Latency, Summary, VariantRow
from studio.errors import StudioError
from studio.prediction_cache import CachedPrediction

WORST_PER_VARIANT = 4
IMAGE_MEMO_BYTES = 1.5e9

Worst = tuple[float, Any, np.ndarray, np.ndarray]  # (metric value, sample, shown matte, reference)


class ImageMemo:
    """Decode each image once per run; every variant reuses it (within a memory cap).
    `load` makes the array of a sample (default: its decoded image); None is not kept."""

    def __init__(self, load: Callable[[Any], np.ndarray | None] | None = None,
                 cap_bytes: float = IMAGE_MEMO_BYTES) -> None:
        self.load = load or (lambda sample: sample.image())
        self.cap_bytes = cap_bytes
        self.images: dict[str, np.ndarray] = {}
        self.bytes = 0

    def get(self, sample: Any) -> np.ndarray | None:
        if sample.id in self.images:
            return self.images[sample.id]
        img = self.load(sample)
        if img is not None and self.bytes + img.nbytes <= self.cap_bytes:
            self.images[sample.id] = img
            self.bytes += img.nbytes
        return img


def latency_stats(runs: list[dict[str, float]]) -> Latency | None:
    """p50/p90/p95/p99 of preprocess + inference + postprocess over timed runs (seconds in)."""
    if not runs:
        return None
    total = np.array([sum(r.get(k, 0.0) for k in ("preprocess", "inference", "postprocess")) for r in runs]) * 1e3
    p50, p90, p95, p99 = np.percentile(total, [50, 90, 95, 99])
    return Latency(
        p50_ms=float(p50), p90_ms=float(p90), p95_ms=float(p95), p99_ms=float(p99), mean_ms=float(total.mean()),
        inference_p50_ms=float(np.median([r.get("inference", 0.0) for r in runs]) * 1e3),
        preprocess_p50_ms=float(np.median([r.get("preprocess", 0.0) for r in runs]) * 1e3),
        postprocess_p50_ms=float(np.median([r.get("postprocess", 0.0) for r in runs]) * 1e3),
        n_samples=len(runs))


@dataclass
class Scored:
    """What scoring one plan gave: CSV rows and the worst images (for the report's gallery)."""

    csv_rows: list[dict] = field(default_factory=list)
    worst: list[Worst] = field(default_factory=list)


@dataclass
class _Tally:
    scores: dict[str, Any] = field(default_factory=dict)
    gt_scores: dict[str, Any] = field(default_factory=dict)
    scored: list[Worst] = field(default_factory=list)
    timed_runs: list[dict[str, float]] = field(default_factory=list)
    nodes: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    calibrated: set[str] = field(default_factory=set)
    n_computed: int = 0
    n_cached: int = 0
    floor_s: float = 0.0  # model time the floor's noisy inputs took in this sitting


def score_plan(plan: Plan, cfg: SuiteConfig, summary: Summary, sitting: str,
               reference_alpha: Callable[[Any], np.ndarray | None], n_boot: int,
               floor: Plan | None = None) -> Scored:
    """Score a finished variant from the cache and fill its row. `floor`: the reference's floor
    plan (labels-free runs): the reference row's agreement comes from its noisy mattes."""
    from studio.bench.contamination import calibration_hashes
    from studio.metrics import HIGHER_IS_BETTER

    row, v = plan.row, plan.variant
    assert plan.cache is not None
    out, t = Scored(), _Tally()
    computed_ids = {s.id for s in plan.job.compute} if plan.job else set()
    cal = calibration_hashes(v)
    for s in plan.samples:
        if s.id in plan.image_errors:
            row.errors.append({"image": s.id, "error": plan.image_errors[s.id]})
            out.csv_rows.append({"variant": v.id, "image": s.id, "error": plan.image_errors[s.id]})
            continue
        entry: CachedPrediction | None = plan.cache.get(s.content_hash)
        if entry is None:
            continue  # not run (the variant failed to load)
        cached = s.id not in computed_ids
        t.n_cached += cached
        t.n_computed += not cached
        runs = plan.retimed.get(s.id) or (entry.runs if entry.sitting == sitting else [])
        t.timed_runs += runs
        if runs:
            t.nodes.setdefault(entry.node or "", []).extend(runs)
        row.n_images += 1
        csv_row: dict[str, Any] = {"variant": v.id, "image": s.id, "error": "", "cached": cached,
                                   **{f"{k}_ms": round(x * 1e3, 2) for k, x in entry.runs[0].items()}}
        if cal and s.content_hash in cal:
            t.calibrated.add(s.id)
            csv_row["calibration_image"] = True
        agreed = _floor_entry(floor, s)
        if agreed is not None and agreed.sitting == sitting:
            t.floor_s += sum(sum(r.values()) for r in agreed.runs)
        try:
            _score_sample(s, entry, agreed, summary.reference_id, reference_alpha, cfg.quality_metric, row, t,
                          csv_row)
        except (StudioError, OSError) as exc:
            row.errors.append({"image": s.id, "error": str(exc)})
            csv_row["error"] = str(exc)
        out.csv_rows.append(csv_row)
    _fill_timing(plan, cfg, sitting, t)
    if row.n_images == 0:
        row.failed = True
    _fill_metrics(summary, row, t, n_boot, cfg.seed)
    if floor is not None:
        row.timing["floor_model_s"] = t.floor_s
    if floor is not None and t.scores:
        row.agreement_floor = True
        row.add_flag(FLOOR_FLAG)
    higher = HIGHER_IS_BETTER.get(cfg.quality_metric, True)
    t.scored.sort(key=lambda x: x[0], reverse=not higher)
    out.worst = t.scored[:WORST_PER_VARIANT] if row.ranks_on_quality and not row.is_reference else []
    plan.scored = True
    return out


def _floor_entry(floor: Plan | None, sample: Any) -> CachedPrediction | None:
    if floor is None or floor.cache is None or sample.id in floor.image_errors:
        return None
    return floor.cache.get(sample.content_hash)


def _score_sample(s: Any, entry: CachedPrediction, agreed: CachedPrediction | None, ref_id: str | None,
                  reference_alpha: Callable[[Any], np.ndarray | None], metric: str, row: VariantRow, t: _Tally,
                  csv_row: dict[str, Any]) -> None:
    """One image: its score against the run's reference (agreement: both mattes normalised
    alike; `agreed`, the floor's noisy matte, stands in for the reference's own), and in a
    labels-free run, against its mask when it has one."""
    from studio.metrics import agreement_levels, score_agreement, score_image

    gt = s.mask()
    ref = reference_alpha(s) if ref_id else gt
    if ref is not None:
        if ref.shape != entry.alpha.shape:
            raise StudioError(f"reference {ref.shape[::-1]} does not match the image {entry.alpha.shape[::-1]}")
        shown = entry.alpha
        if not ref_id:
            sc = score_image(entry.alpha, ref)
        else:
            shown = agreement_levels((agreed or entry).alpha)
            sc = score_agreement(shown, ref)
        t.scores[s.id] = sc.to_json()
        row.n_scored += 1
        csv_row.update({k: round(float(x), 6) for k, x in sc.values.items()})
        t.scored.append((float(sc.values.get(metric, 0.0)), s, shown, ref))
    if ref_id and gt is not None:
        if gt.shape != entry.alpha.shape:
            raise StudioError(f"reference mask {gt.shape[::-1]} does not match the image {entry.alpha.shape[::-1]}")
        gsc = score_image(entry.alpha, gt)
        t.gt_scores[s.id] = gsc.to_json()
        csv_row.update({f"gt_{k}": round(float(x), 6) for k, x in gsc.values.items()})


def _fill_timing(plan: Plan, cfg: SuiteConfig, sitting: str, t: _Tally) -> None:
    """The row's latency from the images timed in this sitting while computing them (the run's
    interleaved timing phase replaces it when it runs), and what the run spent on the variant."""
    row, rep = plan.row, plan.report
    row.latency = latency_stats(t.timed_runs)
    if row.latency and len(t.nodes) > 1:
        # never pool a p95 over different machines: the row's latency (what budgets, the table
        # and the Pareto plot read) is the node kind that timed most images, named; every kind
        # is in latency_by_node
        row.latency_by_node = {k: latency_stats(r) for k, r in t.nodes.items()}
        main = max(t.nodes, key=lambda k: (len(t.nodes[k]), k))
        row.latency = row.latency_by_node[main]
        row.mixed_nodes = True
        row.add_flag(f"timed on {len(t.nodes)} node kinds: latency shown for {main or 'unknown'}; "
                     "per node kind in latency_by_node")
        for k, lat in row.latency_by_node.items():
            lat.node = k or None
    elif row.latency and t.nodes:
        row.latency.node = next(iter(t.nodes)) or None
    row.nodes = sorted(k for k in t.nodes if k)
    row.throughput_ips = 1e3 / row.latency.mean_ms if row.latency else None
    row.timing = {
        "model_s": sum(sum(r.values()) for r in t.timed_runs), "warmup_s": rep.warmup_s if rep else 0.0,
        "load_s": rep.load_s if rep else 0.0,
        "cold_start_s": plan.cold_wall_s,  # wall time this run spent on cold starts (exports included)
        "computed_images": t.n_computed, "cached_images": t.n_cached, "retimed_images": len(plan.retimed),
        "timed_images": len(t.timed_runs) // max(1, cfg.repeats), "sitting": sitting,
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"), "interleaved": False,
        "load_average": rep.load_average if rep else [],
    }
    if rep and rep.loads:  # Ray: each worker loaded the model once (per node)
        row.timing["loads"] = rep.loads
    if rep and rep.memory_mb is not None and row.memory_mb is None:
        row.memory_mb, row.memory_source = rep.memory_mb, rep.memory_source


def _fill_metrics(summary: Summary, row: VariantRow, t: _Tally, n_boot: int, seed: int) -> None:
    from studio.metrics import ImageScore

    if t.scores:
        summary.per_image_scores[row.id] = t.scores
        row.metrics = aggregate_scores([ImageScore.from_json(x) for x in t.scores.values()], n_boot, seed)
        if t.calibrated:
            row.calibrated_on = len(t.calibrated)
            row.add_flag(labels.calibrated_on(len(t.calibrated)))
            held = [ImageScore.from_json(x) for k, x in t.scores.items() if k not in t.calibrated]
            if held:
                row.metrics_held_out = aggregate_scores(held, n_boot, seed)
    if t.gt_scores:
        summary.per_image_gt_scores[row.id] = t.gt_scores
        row.metrics_gt = aggregate_scores([ImageScore.from_json(x) for x in t.gt_scores.values()], n_boot, seed)


def aggregate_scores(scores: list, n_boot: int, seed: int) -> dict[str, dict]:
    """Each metric's mean and bootstrap 95 % CI over the images (the dict-valued aggregates)."""
    from studio.metrics import aggregate

    return {k: x for k, x in aggregate(scores, n_boot=n_boot, seed=seed).items() if isinstance(x, dict)}


def worst_gallery(worst: list[Worst], metric: str, memo: ImageMemo) -> list[dict]:
    """The report's thumbnails: each worst image with its error overlay."""
    from studio.visuals import error_overlay

    items = []
    for value, sample, alpha, ref in worst:
        try:
            overlay = error_overlay(memo.get(sample), alpha, ref)
        except StudioError:
            continue
        items.append({"image": sample.id, "metric": metric, "value": value, "png": report.thumbnail_b64(overlay)})
    return items
