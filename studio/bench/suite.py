"""The benchmark run: dataset × variants -> cached predictions -> scores, latency, cold start.

The driver here plans one job per variant, lets an executor (local, or Ray) run the model,
writes every matte to the prediction cache the moment it arrives (so a killed run resumes),
then scores from the cache against the run's reference: the ground-truth masks, or a
reference variant's mattes (a labels-free run, where scores are agreement, not accuracy).

Latencies come from one sitting: a resumed run is the same sitting; a new run reuses cached
mattes for quality but times each variant again on `timing_images` images.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from studio import artifacts, inventory, labels, settings
from studio.bench import coldstart, report
from studio.bench.config import SuiteConfig
from studio.bench.executor import ImageResult, Job, JobReport, LocalExecutor
from studio.bench.recommend import recommend
from studio.bench.results import Latency, Summary, VariantRow, reference_variant
from studio.errors import StudioError
from studio.fileio import atomic_write_json
from studio.prediction_cache import (
    CachedPrediction,
    JsonCache,
    PredictionCache,
    cache_root,
    variant_fingerprint,
)
from studio.zoo import Variant, load_zoo

Progress = Callable[[dict[str, Any]], None]
PACKAGES = ["numpy", "onnxruntime", "onnxruntime-gpu", "torch", "torchvision", "rembg", "transparent-background",
            "opencv-python-headless", "scikit-image", "pillow", "gradio", "ray", "matting-studio"]
WORST_PER_VARIANT = 4
IMAGE_MEMO_BYTES = 1.5e9
SITTING_FILE = "sitting.json"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=settings.REPO_ROOT, capture_output=True,
                              text=True, timeout=5).stdout.strip() or None
    except Exception:
        return None


def environment(cfg: SuiteConfig, executor: Any) -> dict[str, Any]:
    from studio.metrics import CONVENTIONS

    versions = {}
    for p in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[p] = metadata.version(p)
    gpu = None
    if cfg.device.startswith("cuda"):
        try:
            import torch

            gpu = torch.cuda.get_device_name(0)
        except Exception:
            gpu = "unknown CUDA device"
    return {
        "cpu": _cpu_name(), "cpu_count": os.cpu_count(), "threads": cfg.threads or "runtime default",
        "device": cfg.device, "gpu": gpu, "python": platform.python_version(), "platform": platform.platform(),
        "packages": versions, "git_commit": _git_commit(), "metric_conventions": CONVENTIONS,
        **executor.describe(),
        "latency": "warm wall time per image of preprocess + inference + postprocess, after warm-up runs, "
                   "measured in this run's sitting only",
        "cold_start": "fresh subprocess, measured in this sitting; OS file cache may be warm",
        "memory": "cold-start subprocess peak RSS when cold start is measured, else peak RSS growth "
                  "while loading and warming up the model in-process (per variant: memory_source)",
    }


def latency_stats(runs: list[dict[str, float]]) -> Latency | None:
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


class _ImageMemo:
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


def _emit(progress: Progress | None, **event: Any) -> None:
    if progress is not None:
        progress(event)


def make_executor(name: str, keep_loaded: bool = False, **options: Any) -> Any:
    """The executor a config names. Ray is imported only when asked for (here, in the driver:
    `studio.bench.ray_executor` builds on `studio.bench.executor`, so the choice cannot live there)."""
    if name == "local":
        return LocalExecutor(keep_loaded=keep_loaded)
    if name == "ray":
        from studio.bench.ray_executor import RayExecutor

        return RayExecutor(**options)
    raise StudioError(f"unknown executor {name!r}: local or ray")


# --- the sitting -------------------------------------------------------------------------------

def _config_fingerprint(cfg: SuiteConfig) -> str:
    """What makes two runs the same run (budgets and output options do not)."""
    keep = {k: v for k, v in cfg.to_json().items()
            if k not in ("budget_p95_ms", "budget_memory_mb", "price_per_hour", "resume", "out", "tolerance",
                         "executor", "ray_address")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


def open_sitting(out: Path, cfg: SuiteConfig) -> dict[str, Any]:
    """This run's sitting: the unfinished one in `out` with the same config (a resume), else new."""
    path = out / SITTING_FILE
    fp = _config_fingerprint(cfg)
    with contextlib.suppress(OSError, ValueError):
        old = json.loads(path.read_text())
        if cfg.resume and not old.get("complete") and old.get("config") == fp:
            old["resumed"] = old.get("resumed", 0) + 1
            atomic_write_json(path, old)
            return old
    sitting = {"id": uuid.uuid4().hex[:12], "config": fp, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
               "complete": False, "resumed": 0}
    atomic_write_json(path, sitting)
    return sitting


# --- planning ------------------------------------------------------------------------------------

class _Plan:
    """One variant's share of the run: its row, cache, samples and what the executor must do."""

    def __init__(self, variant: Variant, row: VariantRow):
        self.variant = variant
        self.row = row
        self.cache: PredictionCache | None = None
        self.samples: list[Any] = []
        self.job: Job | None = None
        self.report: JobReport | None = None
        self.retimed: dict[str, list[dict[str, float]]] = {}
        self.image_errors: dict[str, str] = {}
        self.cold: dict | None = None
        self.cold_wall_s = 0.0
        self.scored = False


def _new_row(v: Variant, info: inventory.VariantInfo, dataset: Any) -> VariantRow:
    from studio.data import trained_on_flag

    row = VariantRow(id=v.id, family=v.family, backend=v.backend, precision=v.precision,
                     input_size=v.input_size_label, license=v.license, model_size_mb=info.size_mb,
                     flags=list(info.flags), untrained=info.untrained)
    if trained_on_flag(v, dataset):
        row.trained_on_dataset = True
        row.add_flag(labels.TRAINED_ON_DATASET)
    return row


def _plan(v: Variant, dataset: Any, cfg: SuiteConfig, sitting: str) -> _Plan:
    info = inventory.describe(v)
    plan = _Plan(v, _new_row(v, info, dataset))
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
    compute, timed_here, cached_elsewhere = [], 0, []
    for s in samples:
        try:
            entry = plan.cache.get(s.content_hash) if cfg.resume else None
        except StudioError as exc:  # an unreadable image file
            plan.image_errors[s.id] = str(exc)
            continue
        if entry is None:
            compute.append(s)
        elif entry.sitting == sitting:
            timed_here += 1
        else:
            cached_elsewhere.append(s)
    # latencies come from this sitting: top up with cached images timed again
    want = min(max(0, cfg.timing_images), len(samples)) - timed_here - len(compute)
    retime = cached_elsewhere[: max(0, want)]
    plan.job = Job(v, key, compute, retime, device=cfg.device, threads=cfg.threads, warmup=cfg.warmup,
                   repeats=cfg.repeats)
    return plan


def _measured(key: str, cfg: SuiteConfig, what: str, measure: Callable[[], dict], plan: _Plan,
              progress: Progress | None, index: int, total: int) -> dict | None:
    """A cold-start figure of this sitting: from the cache when a resumed run has it, else
    measured now; a failure is the variant's error, not the run's."""
    cache = JsonCache("coldstart")
    found = cache.get(key) if cfg.resume else None
    if found is not None:
        return found
    _emit(progress, stage="cold_start", variant=plan.variant.id, done=index, total=total,
          message=f"cold start of {what}")
    try:
        found = measure()
    except Exception as exc:
        plan.row.errors.append({"image": None, "error": f"cold start of {what} failed: {exc}"})
        return None
    cache.put(key, found)
    return found


def _cold_start(plan: _Plan, cfg: SuiteConfig, sitting: str, memo: _ImageMemo, progress: Progress | None,
                index: int, total: int, executor: Any = None) -> None:
    if not cfg.cold_start or not plan.samples or plan.row.failed:
        return
    v, row = plan.variant, plan.row
    measure = getattr(executor, "measure_cold_start", None) or coldstart.measure
    cold = _measured(f"{row.cache_key}-{sitting}", cfg, f"{v.id} in a fresh process",
                     lambda: measure(v.id, _cold_image(plan, memo), cfg.device, cfg.threads),
                     plan, progress, index, total)
    if cold is None:
        return
    plan.cold = cold
    row.cold_start = {k: cold.get(k) for k in (*coldstart.PHASES, "total_s")}
    if len(cold.get("by_node") or {}) > 1:  # Ray: measured once on each node kind
        row.cold_start_by_node = {k: {p: c.get(p) for p in (*coldstart.PHASES, "total_s", "error")}
                                  for k, c in cold["by_node"].items()}
    row.peak_rss_mb = cold.get("peak_rss_mb")
    row.gpu_mb = cold.get("gpu_mb")
    row.memory_mb, row.memory_source = row.peak_rss_mb, "cold-start subprocess peak RSS (whole process)"
    if cfg.bundle_cold_start and v.backend == "onnx" and not v.requires:
        bundle = _measured(f"bundle-{row.cache_key}-{sitting}", cfg, f"{v.id}'s exported server",
                           lambda: _measure_bundle(plan, memo), plan, progress, index, total)
        if bundle is not None:
            row.bundle_cold_start = {k: bundle.get(k) for k in BUNDLE_KEYS}


def _cold_image(plan: _Plan, memo: _ImageMemo) -> Path:
    """The image cold starts answer: the first sample's file (the embedded sample: a PNG of it)."""
    first = plan.samples[0]
    if first.image_path is not None:
        return Path(first.image_path)
    from PIL import Image

    path = plan.cache.dir / "_coldstart_input.png"
    if not path.is_file():
        Image.fromarray(memo.get(first)).save(path)
    return path


BUNDLE_KEYS = ("listening_s", "first_answer_s", "first_request_s", "warm_request_s", "interpreter_s",
               "peak_rss_mb", "phases_s")


def _measure_bundle(plan: _Plan, memo: _ImageMemo) -> dict:
    """The exported serving bundle's cold start (`studio export`): exec -> first answer -> warm."""
    from studio.export.bundle import export_bundle
    from studio.export.coldstart import measure_bundle

    bundle = cache_root() / "bundles" / str(plan.row.cache_key)
    if not (bundle / "model.json").is_file():
        export_bundle(plan.variant, bundle, force=True, check=False)
    return {k: x for k, x in measure_bundle(bundle, _cold_image(plan, memo)).items() if k in BUNDLE_KEYS}


# --- scoring -------------------------------------------------------------------------------------

def _score_plan(plan: _Plan, cfg: SuiteConfig, summary: Summary, sitting: str,
                reference_alpha: Callable[[Any], np.ndarray | None], memo: _ImageMemo,
                n_boot: int) -> tuple[list[dict], list[tuple[float, Any, np.ndarray, np.ndarray]]]:
    """Score a finished variant from the cache; fill its row. Returns (CSV rows, worst images)."""
    from studio.bench.contamination import calibration_hashes
    from studio.metrics import (
        HIGHER_IS_BETTER,
        ImageScore,
        aggregate,
        agreement_levels,
        score_agreement,
        score_image,
    )

    row, v = plan.row, plan.variant
    ref_id = summary.reference_id
    csv_rows: list[dict] = []
    scores: dict[str, Any] = {}
    gt_scores: dict[str, Any] = {}
    scored: list[tuple[float, Any, np.ndarray, np.ndarray]] = []
    timed_runs: list[dict[str, float]] = []
    nodes: dict[str, list[dict[str, float]]] = {}
    n_computed = n_cached = 0
    computed_ids = {s.id for s in plan.job.compute} if plan.job else set()
    cal = calibration_hashes(v)
    calibrated: set[str] = set()
    for s in plan.samples:
        if s.id in plan.image_errors:
            row.errors.append({"image": s.id, "error": plan.image_errors[s.id]})
            csv_rows.append({"variant": v.id, "image": s.id, "error": plan.image_errors[s.id]})
            continue
        entry: CachedPrediction | None = plan.cache.get(s.content_hash)
        if entry is None:
            continue  # not run (the variant failed to load)
        n_computed += s.id in computed_ids
        n_cached += s.id not in computed_ids
        runs = plan.retimed.get(s.id) or (entry.runs if entry.sitting == sitting else [])
        timed_runs += runs
        if runs:
            nodes.setdefault(entry.node or "", []).extend(runs)
        row.n_images += 1
        csv_row: dict[str, Any] = {"variant": v.id, "image": s.id, "error": "", "cached": s.id not in computed_ids,
                                   **{f"{k}_ms": round(x * 1e3, 2) for k, x in entry.runs[0].items()}}
        try:
            if cal and s.content_hash in cal:
                calibrated.add(s.id)
                csv_row["calibration_image"] = True
            gt = s.mask()
            ref = reference_alpha(s) if ref_id else gt
            if ref is not None:
                if ref.shape != entry.alpha.shape:
                    raise StudioError(f"reference {ref.shape[::-1]} does not match the image {entry.alpha.shape[::-1]}")
                shown = entry.alpha
                if not ref_id:
                    sc = score_image(entry.alpha, ref)
                else:  # agreement: both mattes normalised alike (the reference's own row: what a perfect copy scores)
                    shown = agreement_levels(entry.alpha)
                    sc = score_agreement(shown, ref)
                scores[s.id] = sc.to_json()
                row.n_scored += 1
                csv_row.update({k: round(float(x), 6) for k, x in sc.values.items()})
                scored.append((float(sc.values.get(cfg.quality_metric, 0.0)), s, shown, ref))
            if ref_id and gt is not None:
                if gt.shape != entry.alpha.shape:
                    raise StudioError(f"reference mask {gt.shape[::-1]} does not match the image "
                                      f"{entry.alpha.shape[::-1]}")
                gsc = score_image(entry.alpha, gt)
                gt_scores[s.id] = gsc.to_json()
                csv_row.update({f"gt_{k}": round(float(x), 6) for k, x in gsc.values.items()})
        except (StudioError, OSError) as exc:
            row.errors.append({"image": s.id, "error": str(exc)})
            csv_row["error"] = str(exc)
        csv_rows.append(csv_row)

    report_ = plan.report
    row.latency = latency_stats(timed_runs)
    if row.latency and len(nodes) > 1:
        # never pool a p95 over different machines: the row's latency (what budgets, the table
        # and the Pareto plot read) is the node kind that timed most images, named; every kind
        # is in latency_by_node
        row.latency_by_node = {k: latency_stats(r) for k, r in nodes.items()}
        main = max(nodes, key=lambda k: (len(nodes[k]), k))
        row.latency = row.latency_by_node[main]
        row.mixed_nodes = True
        row.add_flag(f"timed on {len(nodes)} node kinds: latency shown for {main or 'unknown'}; "
                     "per node kind in latency_by_node")
        for k, lat in row.latency_by_node.items():
            lat.node = k or None
    elif row.latency and nodes:
        row.latency.node = next(iter(nodes)) or None
    row.nodes = sorted(k for k in nodes if k)
    row.throughput_ips = 1e3 / row.latency.mean_ms if row.latency else None
    model_s = sum(sum(r.values()) for r in timed_runs)
    row.timing = {
        "model_s": model_s, "warmup_s": report_.warmup_s if report_ else 0.0,
        "load_s": report_.load_s if report_ else 0.0,
        "cold_start_s": plan.cold_wall_s,  # wall time this run spent on cold starts (exports included)
        "computed_images": n_computed, "cached_images": n_cached, "retimed_images": len(plan.retimed),
        "timed_images": len(timed_runs) // max(1, cfg.repeats), "sitting": sitting,
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_average": report_.load_average if report_ else [],
    }
    if report_ and report_.loads:  # Ray: each worker loaded the model once (per node)
        row.timing["loads"] = report_.loads
    if report_ and report_.memory_mb is not None and row.memory_mb is None:
        row.memory_mb, row.memory_source = report_.memory_mb, report_.memory_source
    if row.n_images == 0:
        row.failed = True
    if scores:
        summary.per_image_scores[v.id] = scores
        row.metrics = _aggregate([ImageScore.from_json(x) for x in scores.values()], n_boot, cfg.seed, aggregate)
        if calibrated:
            row.calibrated_on = len(calibrated)
            row.add_flag(labels.calibrated_on(len(calibrated)))
            held = [ImageScore.from_json(x) for k, x in scores.items() if k not in calibrated]
            if held:
                row.metrics_held_out = _aggregate(held, n_boot, cfg.seed, aggregate)
    if gt_scores:
        summary.per_image_gt_scores[v.id] = gt_scores
        row.metrics_gt = _aggregate([ImageScore.from_json(x) for x in gt_scores.values()], n_boot, cfg.seed,
                                    aggregate)
    higher = HIGHER_IS_BETTER.get(cfg.quality_metric, True)
    scored.sort(key=lambda t: t[0], reverse=not higher)
    worst = scored[:WORST_PER_VARIANT] if row.ranks_on_quality and not row.is_reference else []
    plan.scored = True
    return csv_rows, worst


def _aggregate(scores: list, n_boot: int, seed: int, aggregate: Callable) -> dict[str, dict]:
    return {k: x for k, x in aggregate(scores, n_boot=n_boot, seed=seed).items() if isinstance(x, dict)}


def _worst_gallery(worst: list[tuple[float, Any, np.ndarray, np.ndarray]], metric: str, memo: _ImageMemo) -> list[dict]:
    from studio.visuals import error_overlay

    items = []
    for value, sample, alpha, ref in worst:
        try:
            overlay = error_overlay(memo.get(sample), alpha, ref)
        except StudioError:
            continue
        items.append({"image": sample.id, "metric": metric, "value": value, "png": report.thumbnail_b64(overlay)})
    return items


# --- the run -------------------------------------------------------------------------------------

def _hold_out(dataset: Any, variants: list[Variant], cfg: SuiteConfig) -> tuple[Any, dict[str, Any]]:
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


def _select(cfg: SuiteConfig) -> tuple[list[Variant], list[dict[str, str]]]:
    sel = inventory.select_runnable(cfg.models, cfg.device) if cfg.models else \
        inventory.Selection(inventory.installed_variants(), [])
    variants = list(sel.runnable)
    if cfg.reference:
        ref = load_zoo().get(cfg.reference)
        variants = [ref, *[v for v in variants if v.id != ref.id]]  # the reference runs first
    return variants, [{"id": v.id, "why": why} for v, why in sel.skipped]


def run_suite(cfg: SuiteConfig, progress: Progress | None = None, show_bars: bool = True,
              n_boot: int = 1000, keep_loaded: bool = False, executor: Any = None) -> Summary:
    """Run the benchmark and write per_image.csv, summary.json, scores.json and report.html to cfg.out.

    `keep_loaded` leaves the runners in the shared pool (the app); the CLI frees each model
    after its variant so a sweep holds one at a time."""
    from studio.data import open_dataset

    t_start = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = open_dataset(cfg.dataset, limit=None if cfg.held_out else cfg.limit, seed=cfg.seed,
                           unlabelled=bool(cfg.reference))
    if not cfg.reference and not dataset.has_references:
        raise StudioError(f"{dataset.name}: no reference masks; score against a model instead with "
                          "--reference VARIANT (e.g. --reference isnet-general-use)")
    variants, skipped = _select(cfg)
    held_out = _hold_out(dataset, variants, cfg) if cfg.held_out else None
    if held_out is not None:
        dataset = held_out[0]
    owned = executor is None  # made here: closed here (a local Ray cluster is shut down)
    executor = executor or make_executor(cfg.executor, keep_loaded=keep_loaded, address=cfg.ray_address)
    sitting = open_sitting(out, cfg)
    summary = Summary(
        created=time.strftime("%Y-%m-%d %H:%M:%S"), config=cfg.to_json(), environment=environment(cfg, executor),
        dataset={"name": dataset.name, "root": str(dataset.root) if dataset.root else None,
                 "n_images": len(dataset), "n_with_masks": sum(1 for s in dataset if s.has_reference),
                 "catalog_name": dataset.catalog_name, "held_out": held_out[1] if held_out else None,
                 "flags": ([f"{len(dataset.unpaired)} unpaired files skipped"] if dataset.unpaired else [])
                 + ([f"held out: {held_out[1]['excluded']} calibration images excluded"] if held_out else [])},
        reference=reference_variant(cfg.reference) if cfg.reference else {"kind": "ground_truth"},
        skipped=skipped,
        run={"sitting": sitting["id"], "sitting_started": sitting["started"], "resumed": sitting["resumed"]},
    )
    for s in skipped:
        _emit(progress, stage="skipped", variant=s["id"], message=f"skipped {s['id']}: {s['why']}")
    memo = _ImageMemo()
    plans = [_plan(v, dataset, cfg, sitting["id"]) for v in variants]
    by_id = {p.variant.id: p for p in plans}
    if cfg.reference:
        by_id[cfg.reference].row.is_reference = True
        by_id[cfg.reference].row.add_flag("reference")
    for i, p in enumerate(plans):
        t_cold = time.perf_counter()
        _cold_start(p, cfg, sitting["id"], memo, progress, i, len(plans), executor)
        p.cold_wall_s = time.perf_counter() - t_cold
        summary.upsert(p.row)

    csv_rows: list[dict] = []
    worst_all: dict[str, list[dict]] = {}
    bars: dict[str, Any] = {}
    ref_plan = by_id.get(cfg.reference) if cfg.reference else None

    def load_reference(sample: Any) -> np.ndarray | None:
        from studio.metrics import agreement_reference

        entry = ref_plan.cache.get(sample.content_hash) if ref_plan and ref_plan.cache else None
        return agreement_reference(entry.alpha) if entry is not None else None

    # the reference's mask of each image, read and prepared once for every variant (a uint8
    # mask is a third of the RGB image's bytes)
    reference_alpha = _ImageMemo(load_reference, IMAGE_MEMO_BYTES / 3).get

    def write_partial() -> None:
        report.write_csv(out / "per_image.csv", csv_rows)
        report.write_summary(out / "summary.json", summary)  # partial results survive a kill

    def score_ready() -> None:
        ref_done = ref_plan is None or ref_plan.scored or ref_plan.row.failed
        for p in plans:
            if p.scored or p.cache is None or (p.report is None and p.job is not None):
                continue
            if p is not ref_plan and not ref_done:
                continue
            rows, worst = _score_plan(p, cfg, summary, sitting["id"], reference_alpha, memo, n_boot)
            csv_rows.extend(rows)
            if worst:
                worst_all[p.variant.id] = _worst_gallery(worst, cfg.quality_metric, memo)
            write_partial()
            if p is ref_plan:
                ref_done = True

    # a cluster runs variants side by side: one bar for all its images (tqdm on the driver)
    one_bar = show_bars and getattr(executor, "one_bar", False)
    if one_bar:
        bars["*"] = tqdm(total=sum(p.job.n_images for p in plans if p.job is not None and not p.row.failed),
                         desc=f"{executor.name}", unit="img", leave=True, dynamic_ncols=True)

    def on_image(res: ImageResult) -> None:
        p = by_id[res.variant_id]
        if res.error is not None:
            p.image_errors[res.sample_id] = res.error
        elif res.store:
            sample = next(s for s in p.samples if s.id == res.sample_id)
            p.cache.put(sample.content_hash, res.alpha, res.runs, sitting=sitting["id"], node=res.node)
        else:
            sample = next(s for s in p.samples if s.id == res.sample_id)
            p.cache.retime(sample.content_hash, res.runs, sitting["id"], res.node)
            p.retimed[res.sample_id] = res.runs
        bar = bars.get("*" if one_bar else res.variant_id)
        if bar is not None:
            bar.update(1)

    def on_job_done(rep: JobReport) -> None:
        p = by_id[rep.variant_id]
        p.report = rep
        if rep.error:
            p.row.failed = True
            p.row.errors.append({"image": None, "error": rep.error})
        bar = bars.pop(rep.variant_id, None)
        if bar is not None:
            bar.close()
        done = sum(1 for q in plans if q.report is not None or q.job is None)
        _emit(progress, stage="variant", variant=rep.variant_id, done=done, total=len(plans),
              message=f"{rep.variant_id} done" + (f": failed: {rep.error}" if rep.error else ""))
        score_ready()

    def on_event(**ev: Any) -> None:
        vid = ev.get("variant")
        if one_bar and ev.get("stage") == "cluster":
            bars["*"].set_postfix_str(str(ev.get("message") or ""), refresh=True)
        if ev.get("stage") == "loading" and show_bars and not one_bar and vid in by_id and vid not in bars:
            idx = plans.index(by_id[vid])
            bars[vid] = tqdm(total=by_id[vid].job.n_images, desc=f"[{idx + 1}/{len(plans)}] {vid}", unit="img",
                             leave=True, dynamic_ncols=True)
        _emit(progress, **ev)

    jobs = [p.job for p in plans if p.job is not None and not p.row.failed]
    for p in plans:  # failed before running: nothing to execute
        if p.job is None or p.row.failed:
            p.report = p.report or JobReport(p.variant.id)
    try:
        executor.run(jobs, memo.get, on_image, on_job_done, on_event)
    except BaseException:
        if owned and hasattr(executor, "close"):
            executor.close()
        raise
    finally:
        if one_bar:
            bars.pop("*").close()
    if hasattr(executor, "run_stats"):  # workers, retries, lost nodes (Ray)
        summary.run["executor"] = executor.run_stats()
    score_ready()

    attach_preference(summary)
    summary.recommendation = recommend(summary, cfg.budget_p95_ms, cfg.budget_memory_mb, cfg.price_per_hour,
                                       cfg.quality_metric, cfg.tolerance)
    _emit(progress, stage="report", done=len(plans), total=len(plans), message="writing the report")
    atomic_write_json(out / "scores.json", {"reference": summary.reference, "scores": summary.per_image_scores,
                                            "gt_scores": summary.per_image_gt_scores}, indent=None)
    wall = time.perf_counter() - t_start
    cold_s = sum(r.timing.get("cold_start_s", 0.0) for r in summary.variants)
    model_s = sum(r.timing.get("model_s", 0.0) + r.timing.get("warmup_s", 0.0) for r in summary.variants)
    summary.run.update({"wall_s": wall, "cold_start_s": cold_s, "model_s": model_s,
                        "overhead_ratio": (wall - cold_s) / model_s if model_s > 0 else None,
                        "all_ran": all(not r.errors and not r.failed for r in summary.variants)})
    write_partial()
    report.write_html(out / "report.html", summary, worst_all)
    sitting["complete"] = True
    atomic_write_json(out / SITTING_FILE, sitting)
    if owned and hasattr(executor, "close"):
        executor.close()  # after the wall time: shutting a local Ray cluster down is teardown
    return summary


def attach_preference(summary: Summary, db_path: str | Path | None = None) -> None:
    """Each row's human preference from the arena's blind votes among the run's trained
    variants (ratings are relative to that set); rows without votes get none."""
    from studio.arena.ratings import preference

    ids = [r.id for r in summary.variants if not r.untrained]
    try:
        prefs = preference(ids, db_path=db_path) if ids else {}
    except Exception as exc:  # a broken votes file must not break a benchmark
        summary.run["preference_error"] = f"{type(exc).__name__}: {exc}"
        return
    for r in summary.variants:
        p = prefs.get(r.id)
        r.preference = p if p and p.get("votes") else None


def load_summary(path: str | Path) -> Summary:
    """A past run's summary.json (or its folder), with per-image scores when they were kept."""
    p = Path(path)
    if p.is_dir():
        p = p / "summary.json"
    summary = Summary.from_json(json.loads(p.read_text()))
    scores = p.parent / "scores.json"
    if scores.is_file():
        raw = json.loads(scores.read_text())
        if "scores" in raw and isinstance(raw.get("scores"), dict):
            summary.per_image_scores = raw["scores"]
            summary.per_image_gt_scores = raw.get("gt_scores") or {}
        else:  # files written before the reference was recorded
            summary.per_image_scores = raw
    return summary


def list_runs(results_dir: str | Path | None = None) -> list[Path]:
    """summary.json files under the results folder, newest first."""
    root = Path(results_dir) if results_dir else settings.results_dir()
    if not root.is_dir():
        return []
    found = [p for p in root.glob("**/summary.json") if "cache" not in p.parts]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def exit_code(summary: Summary) -> int:
    """0 when every variant ran on every image, 1 otherwise."""
    return 0 if summary.run.get("all_ran") else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use eval/run.py")
