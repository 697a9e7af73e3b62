"""The benchmark run: dataset x variants -> cached predictions -> scores, latency, cold start.

Everything goes through `studio.engine` (the same runners the app uses), `studio.metrics`
and `studio.data`. Each finished image is cached atomically, so a killed run resumes.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from studio import engine, inventory, labels, settings, weights
from studio.bench import coldstart, report
from studio.bench.cache import JsonCache, PredictionCache, variant_fingerprint
from studio.bench.config import SuiteConfig
from studio.bench.recommend import ranks_on_quality, recommend
from studio.errors import StudioError
from studio.zoo import Variant, load_zoo

Progress = Callable[[dict[str, Any]], None]
PACKAGES = ["numpy", "onnxruntime", "onnxruntime-gpu", "torch", "torchvision", "rembg", "transparent-background",
            "opencv-python-headless", "scikit-image", "pillow", "gradio", "matting-studio"]
WORST_PER_VARIANT = 4
IMAGE_MEMO_BYTES = 1.5e9


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


def environment(cfg: SuiteConfig) -> dict[str, Any]:
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
        "latency": "warm wall time per image of preprocess + inference + postprocess, after warm-up runs",
        "cold_start": "fresh subprocess; OS file cache may be warm",
    }


def latency_stats(runs: list[dict[str, float]]) -> dict[str, Any]:
    if not runs:
        return {}
    total = np.array([sum(r.get(k, 0.0) for k in ("preprocess", "inference", "postprocess")) for r in runs]) * 1e3
    inf = np.array([r.get("inference", 0.0) for r in runs]) * 1e3
    p50, p90, p95, p99 = np.percentile(total, [50, 90, 95, 99])
    return {"p50_ms": float(p50), "p90_ms": float(p90), "p95_ms": float(p95), "p99_ms": float(p99),
            "mean_ms": float(total.mean()), "inference_p50_ms": float(np.median(inf)),
            "preprocess_p50_ms": float(np.median([r.get("preprocess", 0.0) for r in runs]) * 1e3),
            "postprocess_p50_ms": float(np.median([r.get("postprocess", 0.0) for r in runs]) * 1e3),
            "n_samples": len(runs)}


class _ImageMemo:
    """Decode each image once per run; every variant reuses it (within a memory cap)."""

    def __init__(self) -> None:
        self.images: dict[str, np.ndarray] = {}
        self.bytes = 0

    def get(self, sample: Any) -> np.ndarray:
        if sample.id in self.images:
            return self.images[sample.id]
        img = sample.image()
        if self.bytes + img.nbytes <= IMAGE_MEMO_BYTES:
            self.images[sample.id] = img
            self.bytes += img.nbytes
        return img


def _emit(progress: Progress | None, **event: Any) -> None:
    if progress is not None:
        progress(event)


def run_variant(variant: Variant, dataset: Any, cfg: SuiteConfig, memo: _ImageMemo, progress: Progress | None,
                index: int, n_variants: int, show_bars: bool) -> tuple[dict[str, Any], list[dict], dict, list]:
    """One variant over the dataset. Returns (summary row, CSV rows, per-image scores, worst list)."""
    from studio.data import trained_on_flag
    from studio.metrics import score_image

    info = inventory.describe(variant)
    flags = list(info.flags)
    if trained_on_flag(variant, dataset):
        flags.append("trained on this dataset")
    row: dict[str, Any] = {"id": variant.id, "family": variant.family, "backend": variant.backend,
                           "precision": variant.precision, "input_size": variant.input_size_label,
                           "n_images": 0, "n_scored": 0, "errors": [], "flags": flags, "failed": False,
                           "license": variant.license, "model_size_mb": round(info.size_mb or 0.0, 2)}
    csv_rows: list[dict] = []
    scores: dict[str, Any] = {}
    scored: list[tuple[float, Any, np.ndarray]] = []

    def fail(msg: str) -> tuple[dict[str, Any], list[dict], dict, list]:
        row["failed"] = True
        row["errors"].append({"image": None, "error": msg})
        _emit(progress, stage="variant", variant=variant.id, done=index + 1, total=n_variants, message=f"failed: {msg}")
        return row, csv_rows, scores, []

    if variant.requires and not cfg.device.startswith(variant.requires):
        return fail(f"needs {variant.requires}, the run is on {cfg.device}")
    try:
        rec = weights.require(variant, verify=False)
    except StudioError as exc:
        return fail(str(exc))
    key = variant_fingerprint(variant, rec.sha256 if rec else None, cfg.device, cfg.threads)
    cache = PredictionCache(key)
    row["cache_key"] = key

    samples = list(dataset)
    if labels.UNTRAINED in flags and cfg.untrained_limit and len(samples) > cfg.untrained_limit:
        # random weights: their quality means nothing, so a few images give the latency
        samples = samples[: cfg.untrained_limit]
        row["latency_only_images"] = len(samples)
    cold_now = 0.0
    if cfg.cold_start and samples:
        cold_cache = JsonCache("coldstart")
        cold = cold_cache.get(key) if cfg.resume else None
        if cold is None:
            _emit(progress, stage="cold_start", variant=variant.id, done=index, total=n_variants,
                  message=f"cold start of {variant.id} in a fresh process")
            try:
                first = samples[0]
                image_path = first.image_path
                if image_path is None:
                    from PIL import Image

                    image_path = cache.dir / "_coldstart_input.png"
                    Image.fromarray(memo.get(first)).save(image_path)
                cold = coldstart.measure(variant.id, image_path, cfg.device, cfg.threads)
                cold_now = cold["total_s"]
                cold_cache.put(key, cold)
            except Exception as exc:
                row["errors"].append({"image": None, "error": f"cold start failed: {exc}"})
                cold = None
        if cold:
            row["cold_start"] = {k: cold.get(k) for k in (*coldstart.PHASES, "total_s")}
            row["peak_rss_mb"] = cold.get("peak_rss_mb")
            row["gpu_mb"] = cold.get("gpu_mb")
            row["memory_source"] = "cold-start subprocess peak RSS"

    runner = None
    all_runs: list[dict[str, float]] = []
    model_s = warm_s = 0.0
    n_computed = 0
    bar = tqdm(total=len(samples), desc=f"[{index + 1}/{n_variants}] {variant.id}", unit="img",
               disable=not show_bars, leave=True, dynamic_ncols=True)
    for i, sample in enumerate(samples):
        try:
            cached = cache.get(sample.content_hash) if cfg.resume else None
            was_cached = cached is not None
            if cached is None:
                image = memo.get(sample)
                if runner is None:
                    rss0 = coldstart.proc_status_mb("VmRSS")
                    runner = engine.get_runner(variant, cfg.device, cfg.threads)
                    t0 = time.perf_counter()
                    for _ in range(max(0, cfg.warmup)):
                        engine.run_runner(runner, image)
                    warm_s = time.perf_counter() - t0
                    if "peak_rss_mb" not in row:
                        row["rss_delta_mb"] = coldstart.proc_status_mb("VmRSS") - rss0
                        row["memory_source"] = "in-process RSS growth at load (no cold start)"
                runs, first_alpha = [], None
                for _ in range(max(1, cfg.repeats)):
                    m = engine.run_runner(runner, image)
                    runs.append(m.timings)
                    model_s += m.total_s
                    if first_alpha is None:
                        first_alpha = m.alpha
                cached = cache.put(sample.content_hash, first_alpha, runs)
                n_computed += 1
            all_runs += cached.runs
            row["n_images"] += 1
            csv_row = {"variant": variant.id, "image": sample.id, "error": "",
                       "cached": was_cached,
                       **{f"{k}_ms": round(v * 1e3, 2) for k, v in cached.runs[0].items()}}
            gt = sample.mask()
            if gt is not None:
                if gt.shape != cached.alpha.shape:
                    raise StudioError(f"reference mask {gt.shape[::-1]} does not match the image {cached.alpha.shape[::-1]}")
                s = score_image(cached.alpha, gt)
                scores[sample.id] = s.to_json()
                row["n_scored"] += 1
                csv_row.update({k: round(float(v), 6) for k, v in s.values.items()})
                scored.append((float(s.values.get(cfg.quality_metric, 0.0)), sample, cached.alpha))
            csv_rows.append(csv_row)
        except (StudioError, OSError, MemoryError) as exc:
            row["errors"].append({"image": sample.id, "error": str(exc)})
            csv_rows.append({"variant": variant.id, "image": sample.id, "error": str(exc)})
            if runner is None and "failed to load" in str(exc):
                bar.close()
                return fail(str(exc))
        bar.update(1)
        _emit(progress, stage="image", variant=variant.id, done=i + 1, total=len(samples),
              message=f"{variant.id}: {i + 1}/{len(samples)}")
    bar.close()
    row["latency"] = latency_stats(all_runs)
    row["throughput_ips"] = 1e3 / row["latency"]["mean_ms"] if row["latency"] else None
    row["timing"] = {"model_s": model_s, "warmup_s": warm_s, "cold_start_s": cold_now, "computed_images": n_computed,
                     "cached_images": row["n_images"] - n_computed}
    if "peak_rss_mb" not in row and runner is not None:
        row["peak_rss_mb"] = None
    if row["n_images"] == 0:
        row["failed"] = True
    from studio.metrics import HIGHER_IS_BETTER

    higher = HIGHER_IS_BETTER.get(cfg.quality_metric, True)
    scored.sort(key=lambda t: t[0], reverse=not higher)
    worst = scored[:WORST_PER_VARIANT] if ranks_on_quality(row) else []
    _emit(progress, stage="variant", variant=variant.id, done=index + 1, total=n_variants,
          message=f"{variant.id} done ({len(row['errors'])} errors)")
    return row, csv_rows, scores, worst


def _worst_gallery(worst: list[tuple[float, Any, np.ndarray]], metric: str, memo: _ImageMemo) -> list[dict]:
    from studio.visuals import error_overlay

    items = []
    for value, sample, alpha in worst:
        try:
            overlay = error_overlay(memo.get(sample), alpha, sample.mask())
        except StudioError:
            continue
        items.append({"image": sample.id, "metric": metric, "value": value, "png": report.thumbnail_b64(overlay)})
    return items


def aggregate_rows(rows: list[dict[str, Any]], per_image: dict[str, dict], n_boot: int, seed: int) -> None:
    from studio.metrics import ImageScore, aggregate

    for r in rows:
        s = per_image.get(r["id"])
        if s:
            agg = aggregate([ImageScore.from_json(v) for v in s.values()], n_boot=n_boot, seed=seed)
            r["metrics"] = {k: v for k, v in agg.items() if isinstance(v, dict)}


def run_suite(cfg: SuiteConfig, progress: Progress | None = None, show_bars: bool = True,
              n_boot: int = 1000, keep_loaded: bool = False) -> dict[str, Any]:
    """Run the benchmark and write per_image.csv, summary.json, scores.json and report.html to cfg.out.

    `keep_loaded` leaves the runners in the shared pool (the app); the CLI frees each model
    after its variant so a sweep holds one at a time."""
    from studio.data import open_dataset

    t_start = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = open_dataset(cfg.dataset, limit=cfg.limit, seed=cfg.seed)
    zoo = load_zoo()
    variants = zoo.select(cfg.models) if cfg.models else inventory.installed_variants()
    ds_flags = []
    if getattr(dataset, "unpaired", None):
        ds_flags.append(f"{len(dataset.unpaired)} unpaired files skipped")
    summary: dict[str, Any] = {
        "created": time.strftime("%Y-%m-%d %H:%M:%S"), "config": cfg.to_json(), "environment": environment(cfg),
        "dataset": {"name": dataset.name, "root": str(dataset.root) if dataset.root else None,
                    "n_images": len(dataset), "catalog_name": dataset.catalog_name, "flags": ds_flags},
        "variants": [],
    }
    memo = _ImageMemo()
    csv_rows: list[dict] = []
    per_image: dict[str, dict] = {}
    worst_all: dict[str, list[dict]] = {}
    cold_s = 0.0
    for i, v in enumerate(variants):
        t_v = time.perf_counter()
        try:
            row, rows, scores, worst = run_variant(v, dataset, cfg, memo, progress, i, len(variants), show_bars)
        except Exception as exc:  # one failing variant never takes the others down
            row = {"id": v.id, "family": v.family, "failed": True, "n_images": 0, "flags": [],
                   "errors": [{"image": None, "error": f"{type(exc).__name__}: {exc}"}]}
            rows, scores, worst = [], {}, []
        finally:
            if not keep_loaded:
                engine.DEFAULT_POOL.drop(v.id)
        cold_s += (row.get("timing") or {}).get("cold_start_s", 0.0)
        row["wall_s"] = time.perf_counter() - t_v
        summary["variants"].append(row)
        csv_rows += rows
        if scores:
            per_image[v.id] = scores
        if worst:
            worst_all[v.id] = _worst_gallery(worst, cfg.quality_metric, memo)
        aggregate_rows([row], per_image, n_boot, cfg.seed)
        report.write_csv(out / "per_image.csv", csv_rows)
        report.write_summary(out / "summary.json", summary)  # partial results survive a kill

    summary["per_image_scores"] = per_image
    rec = recommend(summary, cfg.budget_p95_ms, cfg.budget_memory_mb, cfg.price_per_hour, cfg.quality_metric)
    summary["recommendation"] = rec
    model_s = sum((r.get("timing") or {}).get("model_s", 0.0) + (r.get("timing") or {}).get("warmup_s", 0.0)
                  for r in summary["variants"])
    _emit(progress, stage="report", done=len(variants), total=len(variants), message="writing the report")
    report.write_csv(out / "per_image.csv", csv_rows)
    from studio.fileio import atomic_write_bytes

    atomic_write_bytes(out / "scores.json", json.dumps(per_image).encode())
    report.write_html(out / "report.html", summary, worst_all)
    wall = time.perf_counter() - t_start
    summary["run"] = {"wall_s": wall, "cold_start_s": cold_s, "model_s": model_s,
                      "overhead_ratio": (wall - cold_s) / model_s if model_s > 0 else None,
                      "all_ran": all(not r.get("errors") and not r.get("failed") for r in summary["variants"])}
    report.write_summary(out / "summary.json", summary)
    return summary


def load_summary(path: str | Path) -> dict[str, Any]:
    """A past run's summary.json (or its folder), with per-image scores when they were kept."""
    p = Path(path)
    if p.is_dir():
        p = p / "summary.json"
    summary = json.loads(p.read_text())
    scores = p.parent / "scores.json"
    if scores.is_file():
        summary["per_image_scores"] = json.loads(scores.read_text())
    return summary


def list_runs(results_dir: str | Path | None = None) -> list[Path]:
    """summary.json files under the results folder, newest first."""
    root = Path(results_dir) if results_dir else settings.results_dir()
    if not root.is_dir():
        return []
    found = [p for p in root.glob("**/summary.json") if "cache" not in p.parts]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def exit_code(summary: dict[str, Any]) -> int:
    """0 when every variant ran on every image, 1 otherwise."""
    return 0 if summary.get("run", {}).get("all_ran") else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use eval/run.py")
