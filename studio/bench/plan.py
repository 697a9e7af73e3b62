"""Planning a run: which variants, which images, and per variant what the executor must compute.

A `Plan` is one variant's share of the run: its row, its prediction cache, its samples and the
`Job` (the images not cached yet). The floor plan of a labels-free run is the reference again,
on the same images under +-1 grey level of noise (`studio.bench.labelsfree`), in its own cache.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from studio import artifacts, inventory, labels
from studio.bench.config import SuiteConfig
from studio.bench.executor import Job, JobReport
from studio.bench.labelsfree import FLOOR_NOISE, FLOOR_SUFFIX
from studio.bench.results import VariantRow
from studio.errors import StudioError
from studio.prediction_cache import PredictionCache, variant_fingerprint
from studio.zoo import Variant, load_zoo


@dataclass(eq=False)
class Plan:
    """One variant's share of the run: its row, cache, samples and what the executor must do."""

    variant: Variant
    row: VariantRow
    cache: PredictionCache | None = None
    samples: list[Any] = field(default_factory=list)
    job: Job | None = None
    report: JobReport | None = None
    retimed: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    image_errors: dict[str, str] = field(default_factory=dict)
    cold: dict | None = None
    cold_wall_s: float = 0.0
    scored: bool = False
    is_floor: bool = False  # the reference under input noise: scored into the reference's row

    @property
    def name(self) -> str:
        return self.variant.id + (FLOOR_SUFFIX if self.is_floor else "")

    @property
    def finished(self) -> bool:
        """Nothing left for the executor (done, failed, or nothing to compute)."""
        return self.cache is not None and (self.report is not None or self.job is None)


def new_row(v: Variant, info: inventory.VariantInfo, dataset: Any) -> VariantRow:
    from studio.data import trained_on_flag

    row = VariantRow(id=v.id, family=v.family, backend=v.backend, precision=v.precision,
                     input_size=v.input_size_label, license=v.license, model_size_mb=info.size_mb,
                     flags=list(info.flags), untrained=info.untrained)
    if trained_on_flag(v, dataset):
        row.trained_on_dataset = True
        row.add_flag(labels.TRAINED_ON_DATASET)
    return row


def plan_variant(v: Variant, dataset: Any, cfg: SuiteConfig) -> Plan:
    """The variant's plan: its cache, and a job for every image not cached yet (latencies come
    from the run's interleaved timing phase, so cached images are not run again)."""
    info = inventory.describe(v)
    plan = Plan(v, new_row(v, info, dataset))
    row = plan.row
    if v.requires and not cfg.device.startswith(v.requires):
        row.failed = True
        row.errors.append({"image": None, "error": f"{labels.needs(v.requires)}, the run is on {cfg.device}"})
        return plan
    try:
        rec = artifacts.require(v, verify=False)
    except StudioError as exc:
        row.failed = True
        row.errors.append({"image": None, "error": str(exc)})
        return plan
    key = variant_fingerprint(v, rec.sha256 if rec else None, cfg.device, cfg.threads)
    row.cache_key = key
    plan.cache = PredictionCache(key)
    samples = list(dataset)
    if row.untrained and cfg.untrained_limit and len(samples) > cfg.untrained_limit:
        # random weights: their quality means nothing, so a few images give the latency
        samples = samples[: cfg.untrained_limit]
        row.latency_only_images = len(samples)
    plan.samples = samples
    plan.job = Job(v, key, _to_compute(plan, cfg), [], device=cfg.device, threads=cfg.threads, warmup=cfg.warmup,
                   repeats=cfg.repeats)
    return plan


def plan_floor(ref: Plan, cfg: SuiteConfig) -> Plan | None:
    """The agreement floor's plan: the reference on its images under input noise, cached apart."""
    if ref.cache is None or ref.row.failed:
        return None
    key = f"{ref.row.cache_key}-noise{FLOOR_NOISE}"
    plan = Plan(ref.variant, ref.row, cache=PredictionCache(key), samples=list(ref.samples), is_floor=True)
    plan.job = Job(ref.variant, key, _to_compute(plan, cfg), [], device=cfg.device, threads=cfg.threads,
                   warmup=0, repeats=1, measure_memory=False, input_noise=FLOOR_NOISE)
    return plan


def _to_compute(plan: Plan, cfg: SuiteConfig) -> list[Any]:
    assert plan.cache is not None
    compute = []
    for s in plan.samples:
        try:
            entry = plan.cache.get(s.content_hash) if cfg.resume else None
        except StudioError as exc:  # an unreadable image file
            plan.image_errors[s.id] = str(exc)
            continue
        if entry is None:
            compute.append(s)
    return compute


def hold_out(dataset: Any, variants: list[Variant], cfg: SuiteConfig) -> tuple[Any, dict[str, Any]]:
    """The dataset less every image a build of the run was calibrated on (then the --limit)."""
    from studio.bench.contamination import calibration_hashes
    from studio.data import subset

    seen: set[str] = set()
    unknown = []
    for v in variants:
        hashes = calibration_hashes(v)
        if hashes is None:
            unknown.append(v.id)
        else:
            seen |= hashes
    keep = [s for s in dataset if s.content_hash not in seen]
    if not keep:
        raise StudioError(f"{dataset.name}: every image was a calibration image of a build in this run")
    note = {"excluded": len(dataset) - len(keep), "of": len(dataset), "unknown_calibration": unknown}
    ds = dataclasses.replace(dataset, samples=keep, notes=[*dataset.notes, f"held out: {note['excluded']} "
                                                            f"calibration images excluded"])
    if cfg.limit:
        ds = subset(ds, int(cfg.limit), cfg.seed)
    return ds, note


def select(cfg: SuiteConfig) -> tuple[list[Variant], list[dict[str, str]]]:
    """(the variants to run, the reference first; those skipped, with why)."""
    sel = inventory.select_runnable(cfg.models, cfg.device) if cfg.models else \
        inventory.Selection(inventory.installed_variants(), [])
    variants = list(sel.runnable)
    if cfg.reference:
        ref = load_zoo().get(cfg.reference)
        variants = [ref, *[v for v in variants if v.id != ref.id]]  # the reference runs first
    return variants, [{"id": v.id, "why": why} for v, why in sel.skipped]
