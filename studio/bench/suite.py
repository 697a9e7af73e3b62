"""The benchmark run: dataset × variants -> cached predictions -> scores, one timing phase, decision.

The driver plans one job per variant (`studio.bench.plan`), lets an executor (local, or Ray) run
the models, writes every matte to the prediction cache the moment it arrives (so a killed run
resumes), scores from the cache against the run's reference (`studio.bench.scoring`): the
ground-truth masks, or a reference variant's mattes (a labels-free run, where scores are
agreement, not accuracy, judged against the agreement floor).

Latencies come from one interleaved timing phase in this sitting (`studio.timing`):
rounds x timing images, every candidate once per round in a shuffled order, so a load that
changes by the minute falls on all of them alike. Cached mattes serve quality; old timings never.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from studio import timing
from studio.bench import coldstart, labelsfree, report
from studio.bench.config import SuiteConfig
from studio.bench.environment import environment
from studio.bench.executor import Executor, ImageResult, JobReport, LocalExecutor, TimingRequest
from studio.bench.plan import Plan, hold_out, plan_floor, plan_variant, select
from studio.bench.recommend import default_tolerance, higher_is_better, recommend, speed_verdict
from studio.bench.results import Latency, Summary, reference_variant
from studio.bench.scoring import IMAGE_MEMO_BYTES, ImageMemo, score_plan, worst_gallery
from studio.bench.store import close_sitting, open_sitting
from studio.errors import StudioError
from studio.fileio import atomic_write_json
from studio.prediction_cache import JsonCache, cache_root

Progress = Callable[[dict[str, Any]], None]
SIZE_TO_MEMORY = 3.0  # a model's memory when loaded, per MB on disk, before it was measured
BUNDLE_KEYS = ("listening_s", "first_answer_s", "first_request_s", "warm_request_s", "interpreter_s",
               "peak_rss_mb", "phases_s")


def _emit(progress: Progress | None, **event: Any) -> None:
    if progress is not None:
        progress(event)


def make_executor(name: str, keep_loaded: bool = False, **options: Any) -> Executor:
    """The executor a config names. Ray is imported only when asked for (here, in the driver:
    `studio.bench.ray_executor` builds on `studio.bench.executor`, so the choice cannot live there)."""
    if name == "local":
        return LocalExecutor(keep_loaded=keep_loaded)
    if name == "ray":
        from studio.bench.ray_executor import RayExecutor

        return RayExecutor(**options)
    raise StudioError(f"unknown executor {name!r}: local or ray")


def run_suite(cfg: SuiteConfig, progress: Progress | None = None, show_bars: bool = True,
              n_boot: int = 1000, keep_loaded: bool = False, executor: Executor | None = None) -> Summary:
    """Run the benchmark and write per_image.csv, summary.json, scores.json and report.html to cfg.out.

    `keep_loaded` leaves the runners in the shared pool (the app); the CLI frees each model
    after its variant so a sweep holds one at a time. `executor`: one made by the caller (and
    closed by it); default: the one `cfg.executor` names, closed at the end."""
    return SuiteRun(cfg, progress, show_bars, n_boot, keep_loaded, executor).go()


class SuiteRun:
    """One run of the suite: its plans, the callbacks the executor calls, and the outputs."""

    def __init__(self, cfg: SuiteConfig, progress: Progress | None, show_bars: bool, n_boot: int,
                 keep_loaded: bool, executor: Executor | None):
        self.cfg, self.progress, self.show_bars, self.n_boot = cfg, progress, show_bars, n_boot
        self.keep_loaded = keep_loaded
        self.owned = executor is None  # made here: closed here (a local Ray cluster is shut down)
        self.executor: Executor | None = executor
        self.out = Path(cfg.out)
        self.plans: list[Plan] = []
        self.by_name: dict[str, Plan] = {}
        self.ref_plan: Plan | None = None
        self.floor_plan: Plan | None = None
        self.memo = ImageMemo()
        # the reference's mask of each image, read and prepared once for every variant (a uint8
        # mask is a third of the RGB image's bytes)
        self.reference_alpha = ImageMemo(self._load_reference, IMAGE_MEMO_BYTES / 3).get
        self.csv_rows: list[dict] = []
        self.worst: dict[str, list[dict]] = {}
        self.bars: dict[str, Any] = {}
        self.one_bar = False

    # --- the run ------------------------------------------------------------------------------
    def go(self) -> Summary:
        from studio.data import open_dataset

        cfg = self.cfg
        t_start = time.perf_counter()
        dataset = open_dataset(cfg.dataset, limit=None if cfg.held_out else cfg.limit, seed=cfg.seed,
                               unlabelled=bool(cfg.reference))
        if not cfg.reference and not dataset.has_references:
            raise StudioError(f"{dataset.name}: no reference masks; score against a model instead with "
                              "--reference VARIANT (e.g. --reference isnet-general-use)")
        variants, skipped = select(cfg)
        held = hold_out(dataset, variants, cfg) if cfg.held_out else None
        if held is not None:
            dataset = held[0]
        if self.executor is None:
            self.executor = make_executor(cfg.executor, keep_loaded=self.keep_loaded, address=cfg.ray_address)
        try:
            summary = self._run(dataset, variants, skipped, held, t_start)
        except BaseException:
            if self.owned:
                self.executor.close()
            raise
        if self.owned:
            self.executor.close()  # after the wall time: shutting a local Ray cluster down is teardown
        return summary

    def _run(self, dataset: Any, variants: list, skipped: list[dict[str, str]], held: tuple | None,
             t_start: float) -> Summary:
        cfg, ex = self.cfg, self.executor
        assert ex is not None
        where = ex.describe()  # joins a Ray cluster: an unreachable one fails here, before anything is written
        self.out.mkdir(parents=True, exist_ok=True)
        self.sitting = open_sitting(self.out, cfg)
        self.summary = summary = Summary(
            created=time.strftime("%Y-%m-%d %H:%M:%S"), config=cfg.to_json(),
            environment=environment(cfg, where),
            dataset={"name": dataset.name, "root": str(dataset.root) if dataset.root else None,
                     "n_images": len(dataset), "n_with_masks": sum(1 for s in dataset if s.has_reference),
                     "catalog_name": dataset.catalog_name, "held_out": held[1] if held else None,
                     "flags": ([f"{len(dataset.unpaired)} unpaired files skipped"] if dataset.unpaired else [])
                     + ([f"held out: {held[1]['excluded']} calibration images excluded"] if held else [])},
            reference=reference_variant(cfg.reference) if cfg.reference else {"kind": "ground_truth"},
            skipped=skipped,
            run={"sitting": self.sitting["id"], "sitting_started": self.sitting["started"],
                 "resumed": self.sitting["resumed"]},
        )
        for s in skipped:
            _emit(self.progress, stage="skipped", variant=s["id"], message=f"skipped {s['id']}: {s['why']}")
        self.plans = [plan_variant(v, dataset, cfg) for v in variants]
        self.by_name = {p.name: p for p in self.plans}
        if cfg.reference:
            self.ref_plan = self.by_name[cfg.reference]
            self.ref_plan.row.is_reference = True
            self.ref_plan.row.add_flag("reference")
            self.floor_plan = plan_floor(self.ref_plan, cfg)
            if self.floor_plan is not None:
                self.by_name[self.floor_plan.name] = self.floor_plan
        for i, p in enumerate(self.plans):
            t_cold = time.perf_counter()
            self._cold_start(p, i, len(self.plans))
            p.cold_wall_s = time.perf_counter() - t_cold
            summary.upsert(p.row)

        self._execute()
        if ex.run_stats():  # workers, retries, lost nodes (Ray)
            summary.run["executor"] = ex.run_stats()
        self._score_ready()
        self._time()
        self._disagreements()
        attach_preference(summary)
        summary.recommendation = recommend(summary, cfg.budget_p95_ms, cfg.budget_memory_mb, cfg.price_per_hour,
                                           cfg.quality_metric, cfg.tolerance)
        _emit(self.progress, stage="report", done=len(self.plans), total=len(self.plans),
              message="writing the report")
        atomic_write_json(self.out / "scores.json", {"reference": summary.reference,
                                                     "scores": summary.per_image_scores,
                                                     "gt_scores": summary.per_image_gt_scores}, indent=None)
        wall = time.perf_counter() - t_start
        cold_s = sum(r.timing.get("cold_start_s", 0.0) for r in summary.variants)
        model_s = sum(r.timing.get("model_s", 0.0) + r.timing.get("warmup_s", 0.0) + r.timing.get("floor_model_s", 0.0)
                      for r in summary.variants)
        timing_s = sum(sum(r.get("ms", {}).values()) for r in (summary.run.get("timing") or {}).get("samples", [])) / 1e3
        model_s += timing_s  # the timing phase's runs are model time too
        summary.run.update({"wall_s": wall, "cold_start_s": cold_s, "model_s": model_s, "timing_s": timing_s,
                            "overhead_ratio": (wall - cold_s) / model_s if model_s > 0 else None,
                            "all_ran": all(not r.errors and not r.failed for r in summary.variants)})
        self._write_partial()
        report.write_html(self.out / "report.html", summary, self.worst)
        close_sitting(self.out, self.sitting)
        return summary

    # --- the quality phase --------------------------------------------------------------------
    def _execute(self) -> None:
        ex = self.executor
        assert ex is not None
        plans = [*self.plans, *([self.floor_plan] if self.floor_plan else [])]
        # the floor runs right after its reference, so a local run keeps the runner loaded
        if self.floor_plan is not None and self.ref_plan is not None:
            plans.remove(self.floor_plan)
            plans.insert(plans.index(self.ref_plan) + 1, self.floor_plan)
        jobs = [p.job for p in plans if p.job is not None and not p.row.failed]
        for p in plans:  # failed before running: nothing to execute
            if p.job is None or p.row.failed:
                p.report = p.report or JobReport(p.name)
        # a cluster runs variants side by side: one bar for all its images (tqdm on the driver)
        self.one_bar = self.show_bars and ex.one_bar
        if self.one_bar:
            self.bars["*"] = tqdm(total=sum(j.n_images for j in jobs), desc=f"{ex.name}", unit="img", leave=True,
                                  dynamic_ncols=True)
        try:
            ex.run(jobs, self.memo.get, self._on_image, self._on_job_done, self._on_event)
        finally:
            for bar in self.bars.values():
                bar.close()
            self.bars.clear()

    def _on_image(self, res: ImageResult) -> None:
        p = self.by_name[res.variant_id]
        assert p.cache is not None
        if res.error is not None:
            p.image_errors[res.sample_id] = res.error
        else:
            sample = next(s for s in p.samples if s.id == res.sample_id)
            if res.store:
                p.cache.put(sample.content_hash, res.alpha, res.runs, sitting=self.sitting["id"], node=res.node)
            else:
                p.cache.retime(sample.content_hash, res.runs, self.sitting["id"], res.node)
                p.retimed[res.sample_id] = res.runs
        bar = self.bars.get("*" if self.one_bar else res.variant_id)
        if bar is not None:
            bar.update(1)

    def _on_job_done(self, rep: JobReport) -> None:
        p = self.by_name[rep.variant_id]
        p.report = rep
        if rep.error:
            p.row.failed = True
            p.row.errors.append({"image": None, "error": rep.error})
        bar = self.bars.pop(rep.variant_id, None)
        if bar is not None:
            bar.close()
        done = sum(1 for q in self.plans if q.report is not None or q.job is None)
        _emit(self.progress, stage="variant", variant=p.variant.id, done=done, total=len(self.plans),
              message=f"{rep.variant_id} done" + (f": failed: {rep.error}" if rep.error else ""))
        self._score_ready()

    def _on_event(self, **ev: Any) -> None:
        name = ev.get("variant")
        if self.one_bar and ev.get("stage") == "cluster":
            self.bars["*"].set_postfix_str(str(ev.get("message") or ""), refresh=True)
        if (ev.get("stage") == "loading" and self.show_bars and not self.one_bar and name in self.by_name
                and name not in self.bars):
            p = self.by_name[name]
            what = name if not p.is_floor else f"{p.variant.id} (floor: ±1 grey-level noise)"
            idx = self.plans.index(self.ref_plan if p.is_floor else p)
            self.bars[name] = tqdm(total=p.job.n_images if p.job else 0, desc=f"[{idx + 1}/{len(self.plans)}] {what}",
                                   unit="img", leave=True, dynamic_ncols=True)
        if ev.get("stage") == "timing" and self.show_bars:
            bar = self.bars.get("timing")
            if bar is None and ev.get("total"):
                bar = self.bars["timing"] = tqdm(total=ev["total"], desc="interleaved timing", unit="round",
                                                 leave=True, dynamic_ncols=True)
            if bar is not None:
                bar.n = int(ev.get("done") or 0)
                if ev.get("load") is not None:
                    bar.set_postfix_str(f"load {ev['load']}", refresh=False)
                bar.refresh()
        _emit(self.progress, **ev)

    # --- scoring ------------------------------------------------------------------------------
    def _load_reference(self, sample: Any) -> np.ndarray | None:
        from studio.metrics import agreement_reference

        p = self.ref_plan
        entry = p.cache.get(sample.content_hash) if p is not None and p.cache is not None else None
        return agreement_reference(entry.alpha) if entry is not None else None

    def _score_ready(self) -> None:
        """Score every finished variant; the reference first (and only once its floor is done),
        since the others are scored against its mattes."""
        ref, floor = self.ref_plan, self.floor_plan
        ref_done = ref is None or ref.scored or ref.row.failed
        for p in self.plans:
            if p.scored or not p.finished:
                continue
            if p is ref:
                if floor is not None and not floor.finished:
                    continue
            elif not ref_done:
                continue
            got = score_plan(p, self.cfg, self.summary, self.sitting["id"], self.reference_alpha, self.n_boot,
                             floor=floor if p is ref else None)
            self.csv_rows.extend(got.csv_rows)
            if got.worst:
                self.worst[p.variant.id] = worst_gallery(got.worst, self.cfg.quality_metric, self.memo)
            self._write_partial()
            if p is ref:
                ref_done = True
                if floor is not None:  # the floor's failed images are the reference row's errors
                    p.row.errors += [{"image": k, "error": f"floor (noisy input): {e}"}
                                     for k, e in floor.image_errors.items()]
                    if floor.report is not None and floor.report.error:
                        p.row.errors.append({"image": None, "error": f"floor: {floor.report.error}"})

    def _write_partial(self) -> None:
        report.write_csv(self.out / "per_image.csv", self.csv_rows)
        report.write_summary(self.out / "summary.json", self.summary)  # partial results survive a kill

    # --- the timing phase ---------------------------------------------------------------------
    def _anchor(self, candidates: list[Plan]) -> Plan:
        """What every variant's speed is paired with: the reference, else the best-scoring."""
        if self.ref_plan is not None and self.ref_plan in candidates:
            return self.ref_plan
        metric = self.cfg.quality_metric
        sign = 1.0 if higher_is_better(metric) else -1.0
        ranked = [p for p in candidates if p.row.ranks_on_quality and p.row.quality(metric) is not None]
        if not ranked:
            return candidates[0]
        return max(ranked, key=lambda p: sign * (p.row.quality(metric) or 0.0))

    def _time(self) -> None:
        """The interleaved timing phase: rounds x timing images over every variant that ran."""
        cfg, ex, summary = self.cfg, self.executor, self.summary
        assert ex is not None
        candidates = [p for p in self.plans if not p.row.failed and p.row.n_images > 0]
        if cfg.timing_images <= 0 or cfg.timing_rounds <= 0 or not candidates:
            return
        anchor = self._anchor(candidates)
        usable = [s for s in anchor.samples
                  if all(s.id not in p.image_errors and any(x.id == s.id for x in p.samples) for p in candidates)]
        images = []
        for s in usable[: cfg.timing_images]:
            try:
                images.append((s.id, self.memo.get(s)))
            except StudioError:
                continue
        if not images:
            return
        memory = {p.variant.id: p.row.memory_mb or ((p.row.model_size_mb or 0.0) * SIZE_TO_MEMORY or None)
                  for p in candidates}
        req = TimingRequest([p.variant for p in candidates], images, anchor.variant.id, rounds=cfg.timing_rounds,
                            device=cfg.device, threads=cfg.threads, seed=cfg.seed, warmup=max(1, cfg.warmup),
                            memory_mb=memory)
        _emit(self.progress, stage="timing", done=0, total=len(images) * cfg.timing_rounds,
              message=f"interleaved timing: {len(candidates)} variants, {cfg.timing_rounds} rounds × "
                      f"{len(images)} images")
        record = ex.time_interleaved(req, self._on_event)
        bar = self.bars.pop("timing", None)
        if bar is not None:
            bar.close()
        summary.run["timing"] = record
        apply_timing(summary, record)


    # --- labels-free: the disagreement set -----------------------------------------------------
    def _disagreements(self) -> None:
        if self.ref_plan is None:
            return
        found = find_disagreements(self.summary, {s.id: s for s in self.ref_plan.samples})
        if found is not None:
            self.summary.run["disagreements"] = found

    # --- cold start ---------------------------------------------------------------------------
    def _cold_start(self, plan: Plan, index: int, total: int) -> None:
        cfg, ex = self.cfg, self.executor
        assert ex is not None
        if not cfg.cold_start or not plan.samples or plan.row.failed:
            return
        v, row, sitting = plan.variant, plan.row, self.sitting["id"]
        cold = _measured(f"{row.cache_key}-{sitting}", cfg, f"{v.id} in a fresh process",
                         lambda: ex.measure_cold_start(v.id, _cold_image(plan, self.memo), cfg.device, cfg.threads),
                         plan, self.progress, index, total)
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
        if cfg.bundle_cold_start and v.backend in ("onnx", "openvino") and not v.requires:
            bundle = _measured(f"bundle-{row.cache_key}-{sitting}", cfg, f"{v.id}'s exported server",
                               lambda: _measure_bundle(plan, self.memo), plan, self.progress, index, total)
            if bundle is not None:
                row.bundle_cold_start = {k: bundle.get(k) for k in BUNDLE_KEYS}


def apply_timing(summary: Summary, record: dict[str, Any]) -> None:
    """Each row's latency from the interleaved phase's record (p50/p95 of its rounds), its speed
    ratio against the anchor (median of per-round ratios, bootstrap CI), and a memory figure
    from the phase's loads where the row has none."""
    anchor = record.get("anchor")
    for row in summary.variants:
        ms = [r["ms"][row.id] for r in record.get("samples") or [] if row.id in (r.get("ms") or {})]
        err = (record.get("errors") or {}).get(row.id)
        if err:
            row.errors.append({"image": None, "error": f"timing phase: {err}"})
        if not ms:
            continue
        stats = timing.percentiles_ms([x / 1e3 for x in ms])
        assert stats is not None
        row.latency = Latency(**stats, n_samples=len(ms), node=record.get("node"),
                              inference_p50_ms=row.latency.inference_p50_ms if row.latency else None,
                              preprocess_p50_ms=row.latency.preprocess_p50_ms if row.latency else None,
                              postprocess_p50_ms=row.latency.postprocess_p50_ms if row.latency else None)
        row.latency_by_node = {}
        row.mixed_nodes = False
        row.throughput_ips = 1e3 / stats["mean_ms"] if stats["mean_ms"] else None
        row.timing["interleaved"] = True
        row.timing["timed_rounds"] = len(ms)
        speed = timing.record_speed(record, row.id, anchor) if anchor and anchor != row.id else None
        row.timing["speedup_vs"] = {"anchor": anchor, **speed} if speed else None
        mem = (record.get("memory_mb") or {}).get(row.id)
        if row.memory_mb is None and mem is not None:
            row.memory_mb, row.memory_source = mem, record.get("memory_source")


# --- labels-free: the disagreement set and its preference ------------------------------------------

def find_disagreements(summary: Summary, samples: dict[str, Any]) -> dict[str, Any] | None:
    """A labels-free run's disagreement set: the images where a candidate cheaper than the
    reference agrees with it less than the floor does, beyond the tolerance (`labelsfree`),
    with the content hash the arena will record votes under. None for a run against masks."""
    ref = summary.reference_id
    ref_row = summary.row(ref) if ref else None
    if ref_row is None or not ref_row.agreement_floor:
        return None
    metric = summary.quality_metric
    tol = summary.config.get("tolerance")
    tol = default_tolerance(metric) if tol is None else float(tol)
    cheaper = [r.id for r in summary.variants
               if r.id != ref and r.ranks_on_quality and speed_verdict(summary, r.id, ref) == 1]
    images = labelsfree.disagreements(summary, metric, tol, cheaper, higher_is_better(metric))
    hashes = {}
    for e in images[: labelsfree.MAX_ARENA_IMAGES]:
        s = samples.get(e["image"])
        if s is not None:
            try:
                hashes[e["image"]] = labelsfree.arena_hash(s)
            except StudioError:
                continue
    return {"metric": metric, "tolerance": tol, "candidates": cheaper, "images": images,
            "n_images": len(images), "of": len(summary.per_image_scores.get(ref) or {}), "hashes": hashes,
            "rule": f"images where a candidate faster than {ref} scores {metric} agreement more than {tol:g} below "
                    f"the floor ({labelsfree.FLOOR_WORDS}) on that image"}


def attach_preference(summary: Summary, db_path: str | Path | None = None) -> None:
    """Each row's human preference from the arena's blind votes among the run's trained
    variants (ratings are relative to that set); rows without votes get none. A labels-free
    run's disagreement set gets the preference on its images alone (what feeds its decision)."""
    from studio.arena.ratings import preference

    ids = [r.id for r in summary.variants if not r.untrained]
    try:
        prefs = preference(ids, db_path=db_path) if ids else {}
        dis = summary.run.get("disagreements") or {}
        if dis.get("hashes") and dis.get("candidates"):
            dis["preference"] = preference([summary.reference_id, *dis["candidates"]], db_path=db_path,
                                           image_hashes=list(dis["hashes"].values()))
    except Exception as exc:  # a broken votes file must not break a benchmark
        summary.run["preference_error"] = f"{type(exc).__name__}: {exc}"
        return
    for r in summary.variants:
        p = prefs.get(r.id)
        r.preference = p if p and p.get("votes") else None


# --- cold start ------------------------------------------------------------------------------------

def _measured(key: str, cfg: SuiteConfig, what: str, measure: Callable[[], dict], plan: Plan,
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


def _cold_image(plan: Plan, memo: ImageMemo) -> Path:
    """The image cold starts answer: the first sample's file (the embedded sample: a PNG of it)."""
    first = plan.samples[0]
    if first.image_path is not None:
        return Path(first.image_path)
    from PIL import Image

    assert plan.cache is not None
    path = plan.cache.dir / "_coldstart_input.png"
    if not path.is_file():
        Image.fromarray(memo.get(first)).save(path)
    return path


def _measure_bundle(plan: Plan, memo: ImageMemo) -> dict:
    """The exported serving bundle's cold start (`studio export`): exec -> first answer -> warm."""
    from studio.export.bundle import export_bundle
    from studio.export.coldstart import measure_bundle

    bundle = cache_root() / "bundles" / str(plan.row.cache_key)
    if not (bundle / "model.json").is_file():
        export_bundle(plan.variant, bundle, force=True, check=False)
    return {k: x for k, x in measure_bundle(bundle, _cold_image(plan, memo)).items() if k in BUNDLE_KEYS}


def exit_code(summary: Summary) -> int:
    """0 when every variant ran on every image, 1 otherwise."""
    return 0 if summary.run.get("all_ran") else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use eval/run.py")
