"""The shape of a benchmark's results: one typed row per variant, and the run summary.

`summary.json` is `Summary.to_json()`; `Summary.from_json` reads it back, including files
written before this module existed (unknown keys are kept in `extra`, missing ones default).
Behaviour depends on the booleans here (`untrained`, `failed`, ...), never on label text.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from studio import labels

REFERENCE_GROUND_TRUTH = {"kind": "ground_truth"}
PREFERENCE = "preference"  # the arena's human-preference rating, a quality axis like a metric


def reference_variant(variant_id: str) -> dict[str, str]:
    return {"kind": "variant", "id": variant_id}


@dataclass
class Latency:
    """Warm per-image latency (preprocess + inference + postprocess), from one sitting."""

    p50_ms: float | None = None
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    inference_p50_ms: float | None = None
    preprocess_p50_ms: float | None = None
    postprocess_p50_ms: float | None = None
    n_samples: int = 0
    node: str | None = None  # the node kind it was measured on (Ray runs)


@dataclass
class VariantRow:
    """Everything one variant gave in one run."""

    id: str
    family: str = ""
    backend: str = ""
    precision: str = ""
    input_size: str = ""
    license: str = ""
    model_size_mb: float | None = None
    n_images: int = 0
    n_scored: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)  # {"image": id | None, "error": str}
    flags: list[str] = field(default_factory=list)  # display labels (labels.py), one place
    failed: bool = False
    untrained: bool = False  # random weights: latency and memory only
    is_reference: bool = False  # the reference variant of a labels-free run
    # its metrics are the agreement floor: itself under +-1 grey-level input noise, not 1.0
    agreement_floor: bool = False
    trained_on_dataset: bool = False
    calibrated_on: int = 0  # how many of the run's images the build was calibrated on
    cache_key: str | None = None
    latency_only_images: int | None = None
    latency: Latency | None = None
    latency_by_node: dict[str, Latency] = field(default_factory=dict)  # when nodes differ
    # timed on more than one node kind: `latency` is the kind that timed most images (its
    # `node` says which), never a pool of them; every kind is in latency_by_node
    mixed_nodes: bool = False
    throughput_ips: float | None = None
    cold_start: dict[str, float | None] | None = None
    bundle_cold_start: dict[str, float | None] | None = None  # the exported server's, when measured
    cold_start_by_node: dict[str, dict[str, Any]] = field(default_factory=dict)  # Ray: per node kind, when they differ
    memory_mb: float | None = None  # the figure budgets compare; see memory_source
    memory_source: str | None = None
    peak_rss_mb: float | None = None  # cold-start subprocess peak (whole process)
    gpu_mb: float | None = None
    timing: dict[str, Any] = field(default_factory=dict)  # model_s, warmup_s, sitting, load average...
    wall_s: float | None = None
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # vs the run's reference
    metrics_held_out: dict[str, dict[str, Any]] = field(default_factory=dict)  # builds: non-calibration images
    metrics_gt: dict[str, dict[str, Any]] = field(default_factory=dict)  # labels-free runs: images with masks
    # human preference from the arena's blind votes: {"rating", "ci95", "votes", "shown"}
    preference: dict[str, Any] | None = None
    nodes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    # --- what decisions read ------------------------------------------------------------
    @property
    def ranks_on_quality(self) -> bool:
        """Untrained, failed and unscored variants take no part in quality comparisons."""
        return not self.untrained and not self.failed and self.n_scored > 0

    def quality(self, metric: str) -> float | None:
        if metric == PREFERENCE:
            p = self.preference or {}
            return float(p["rating"]) if p.get("shown") and p.get("rating") is not None else None
        m = self.metrics.get(metric)
        if not m or m.get("mean") is None:
            return None
        value = float(m["mean"])
        return value if math.isfinite(value) else None

    def ci95(self, metric: str) -> tuple[float, float] | None:
        if metric == PREFERENCE:
            ci = (self.preference or {}).get("ci95") if self.quality(PREFERENCE) is not None else None
            return (float(ci[0]), float(ci[1])) if ci else None
        ci = (self.metrics.get(metric) or {}).get("ci95")
        return (float(ci[0]), float(ci[1])) if ci else None

    @property
    def p95_ms(self) -> float | None:
        return self.latency.p95_ms if self.latency else None

    def add_flag(self, label: str) -> None:
        if label not in self.flags:
            self.flags.append(label)

    # --- JSON ---------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out["latency"] = dataclasses.asdict(self.latency) if self.latency else {}
        out["latency_by_node"] = {k: dataclasses.asdict(v) for k, v in self.latency_by_node.items()}
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> VariantRow:
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in raw.items() if k in known and k != "extra"}
        kw["extra"] = {k: v for k, v in raw.items() if k not in known}
        kw["latency"] = _latency(raw.get("latency"))
        kw["latency_by_node"] = {k: _latency(v) for k, v in (raw.get("latency_by_node") or {}).items()}
        row = cls(**kw)
        # files written before the booleans existed said it only in the flags
        if "untrained" not in raw and labels.UNTRAINED in row.flags:
            row.untrained = True
        if row.memory_mb is None:
            row.memory_mb = raw.get("peak_rss_mb") or raw.get("rss_delta_mb")
        if "n_scored" not in raw:
            row.n_scored = row.n_images if row.metrics else 0
        return row


def _latency(raw: dict[str, Any] | None) -> Latency | None:
    if not raw:
        return None
    known = {f.name for f in dataclasses.fields(Latency)}
    return Latency(**{k: v for k, v in raw.items() if k in known})


@dataclass
class Summary:
    """A run: what was asked, where, on what, and one row per variant."""

    created: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=lambda: dict(REFERENCE_GROUND_TRUTH))
    variants: list[VariantRow] = field(default_factory=list)
    recommendation: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"id", "why"}: not runnable here
    per_image_scores: dict[str, dict[str, Any]] = field(default_factory=dict)  # scores.json, not summary.json
    per_image_gt_scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def reference_id(self) -> str | None:
        """The reference variant of a labels-free run, or None (ground truth)."""
        return self.reference.get("id") if self.reference.get("kind") == "variant" else None

    @property
    def quality_metric(self) -> str:
        return self.config.get("quality_metric") or "iou"

    def row(self, variant_id: str) -> VariantRow | None:
        return next((r for r in self.variants if r.id == variant_id), None)

    def upsert(self, row: VariantRow) -> None:
        for i, r in enumerate(self.variants):
            if r.id == row.id:
                self.variants[i] = row
                return
        self.variants.append(row)

    def to_json(self) -> dict[str, Any]:
        """What summary.json holds (per-image scores go to scores.json)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in ("extra", "per_image_scores", "per_image_gt_scores", "variants")}
        out["variants"] = [r.to_json() for r in self.variants]
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Summary:
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in raw.items() if k in known and k not in ("extra", "variants")}
        kw["extra"] = {k: v for k, v in raw.items() if k not in known}
        kw["variants"] = [VariantRow.from_json(r) for r in raw.get("variants") or []]
        if not kw.get("reference"):
            kw["reference"] = dict(REFERENCE_GROUND_TRUTH)
        return cls(**kw)
