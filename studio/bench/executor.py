"""Executors run a benchmark's inference; the driver (`studio.bench.suite`) does the rest.

The driver plans one `Job` per variant: the images to predict (not cached yet) and the cached
images to time again (latencies come from this sitting only). An executor runs the jobs and
hands back every `ImageResult` and one `JobReport` per job through callbacks, in any order.
The driver alone writes the prediction cache and the outputs, so a run started on one
executor resumes on another.

`LocalExecutor` runs the jobs in this process, one variant at a time, through the engine's
pooled runners. The Ray executor (`studio.bench.ray_executor`) spreads them over a cluster.
Both satisfy `Executor`, the protocol the driver calls; both time the candidates of a run in one
interleaved phase (`time_candidates`, on one machine) after the quality jobs are done.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from studio import timing
from studio.bench.environment import cpu_name
from studio.bench.labelsfree import FLOOR_SUFFIX, perturb
from studio.errors import StudioError
from studio.memory import PeakGrowth, release_freed_memory
from studio.zoo import Variant


@dataclass
class Job:
    variant: Variant
    key: str  # the prediction cache key (variant fingerprint)
    compute: list[Any]  # samples to predict, time and store
    retime: list[Any]  # cached samples to predict and time again (their mattes are not stored)
    device: str = "cpu"
    threads: int = 0
    warmup: int = 1
    repeats: int = 1
    measure_memory: bool = True
    # grey levels of uniform noise added to every input (the agreement floor: the reference run
    # on its images under +-1 grey level); 0 for the variant's own job
    input_noise: int = 0

    @property
    def n_images(self) -> int:
        return len(self.compute) + len(self.retime)

    @property
    def name(self) -> str:
        """What results and reports are routed by: the variant id (the floor job: with a suffix)."""
        return self.variant.id + (FLOOR_SUFFIX if self.input_noise else "")


@dataclass
class ImageResult:
    variant_id: str
    sample_id: str
    alpha: np.ndarray | None  # None for a failed image
    runs: list[dict[str, float]] = field(default_factory=list)  # timings of each timed repeat
    store: bool = True  # False: a re-timing of a cached image
    node: str = ""
    error: str | None = None
    timed_at: float = 0.0


@dataclass
class JobReport:
    variant_id: str
    node: str = ""
    load_s: float = 0.0
    warmup_s: float = 0.0
    memory_mb: float | None = None
    memory_source: str | None = None
    error: str | None = None  # the variant could not run at all (load failure)
    load_average: list[float] = field(default_factory=list)  # at the start and the end of the job
    nodes: list[str] = field(default_factory=list)  # every node kind that ran part of it
    # one entry per worker that loaded the model (Ray: per worker, so per node): node, load_s,
    # warmup_s, memory_mb; empty for the local executor (load_s above is its one load)
    loads: list[dict[str, Any]] = field(default_factory=list)


OnImage = Callable[[ImageResult], None]
OnJobDone = Callable[[JobReport], None]
OnEvent = Callable[..., None]


def node_kind() -> str:
    """This machine in words, for latency quoted per node kind: CPU model and core count."""
    return f"{cpu_name()} ×{usable_cpus()}"


def usable_cpus() -> int:
    """CPUs this process may use: the machine's, less what an affinity mask or a cgroup quota
    (a container, a Kubernetes pod) takes away; os.cpu_count() alone reports the host's."""
    n = os.cpu_count() or 1
    with contextlib.suppress(AttributeError, OSError):
        n = min(n, len(os.sched_getaffinity(0)))
    with contextlib.suppress(OSError, ValueError):
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    return n


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


# --- memory of a loaded model ------------------------------------------------------------------

MEMORY_SOURCE_INPROCESS = "peak RSS growth while loading and warming up the model, in-process"
MEMORY_SOURCE_LOAD_ONLY = "peak RSS growth while loading the model (no warm-up run), in-process"


# --- the local executor -----------------------------------------------------------------------

_LOAD_MEMORY: dict[tuple, float] = {}  # pool key -> memory measured when it was loaded


def load_memory(key: tuple) -> float | None:
    """The memory measured when the runner of pool key (variant, device, threads) was loaded."""
    return _LOAD_MEMORY.get(key)


def iter_job(job: Job, image_of: Callable[[Any], np.ndarray], on_event: OnEvent,
             get_runner: Callable[[Variant, str, int], Any], node: str,
             loaded_before: bool = False) -> Generator[ImageResult, None, JobReport]:
    """One job with a runner from `get_runner`: warm-up, memory, then every image, yielded as it
    is done; returns the JobReport. Shared by the local executor and the Ray workers (through
    `run_job`, or directly where results stream), so both time the same way. `loaded_before`:
    the runner is already loaded (a pool hit), so its load memory was measured earlier or not at all."""
    from studio import engine

    v = job.variant
    report = JobReport(job.name, node=node, load_average=load_average(), nodes=[node])
    samples = [(s, True) for s in job.compute] + [(s, False) for s in job.retime]
    if not samples:
        return report
    on_event(stage="loading", variant=job.name, message=f"loading {v.id} …")
    key = (v.id, job.device, job.threads)
    try:
        first = image_of(samples[0][0])
    except StudioError:
        first = None
    try:
        with PeakGrowth() as mem:
            t0 = time.perf_counter()
            runner = get_runner(v, job.device, job.threads)
            report.load_s = time.perf_counter() - t0
            if first is not None:
                t1 = time.perf_counter()
                for _ in range(max(0, job.warmup)):
                    engine.run_runner(runner, first)
                report.warmup_s = time.perf_counter() - t1
    except StudioError as exc:
        report.error = str(exc)
        return report
    if mem.mb is not None and not loaded_before:
        _LOAD_MEMORY[key] = mem.mb
    if key in _LOAD_MEMORY:
        report.memory_mb = _LOAD_MEMORY[key]
        report.memory_source = MEMORY_SOURCE_INPROCESS if job.warmup > 0 else MEMORY_SOURCE_LOAD_ONLY
    for i, (sample, store) in enumerate(samples):
        res = ImageResult(job.name, sample.id, None, store=store, node=node)
        try:
            image = image_of(sample)
            if job.input_noise:
                image = perturb(image, sample.id, job.input_noise)
            for _ in range(max(1, job.repeats)):
                m = engine.run_runner(runner, image)
                res.runs.append(m.timings)
                if res.alpha is None:
                    res.alpha = m.alpha
            res.timed_at = time.time()
        except (StudioError, OSError, MemoryError) as exc:
            res.error = str(exc)
            res.alpha = None
        yield res
        on_event(stage="image", variant=job.name, done=i + 1, total=len(samples),
                 message=f"{job.name}: {i + 1}/{len(samples)} images")
    report.load_average += load_average()
    return report


def run_job(job: Job, image_of: Callable[[Any], np.ndarray], on_image: OnImage, on_event: OnEvent,
            get_runner: Callable[[Variant, str, int], Any], node: str, loaded_before: bool = False) -> JobReport:
    """`iter_job` with each image handed to `on_image` as it is done."""
    gen = iter_job(job, image_of, on_event, get_runner, node, loaded_before=loaded_before)
    while True:
        try:
            res = next(gen)
        except StopIteration as stop:
            return stop.value
        on_image(res)


# --- the interleaved timing phase --------------------------------------------------------------

TIMING_MEMORY_SHARE = 0.5  # of the memory available now: what the timing phase may keep loaded at once


@dataclass
class TimingRequest:
    """The candidates of a run, timed against each other in one interleaved phase."""

    variants: list[Variant]
    images: list[tuple[str, np.ndarray]]  # (sample id, RGB image): the timing images
    anchor: str  # the variant every group holds (the best-scoring, or the reference)
    rounds: int = 3  # passes over the images; each pass is one round per image
    device: str = "cpu"
    threads: int = 0
    seed: int = 0
    warmup: int = 1  # untimed runs of each runner before the rounds
    memory_mb: dict[str, float | None] = field(default_factory=dict)  # per variant, to plan the groups
    budget_mb: float | None = None  # None: MemAvailable x TIMING_MEMORY_SHARE on the machine that times


def available_mb() -> float | None:
    """MemAvailable of this machine (Linux), MB."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def time_candidates(req: TimingRequest, on_event: OnEvent | None = None,
                    load: Callable[[Variant, str, int], Any] | None = None) -> dict[str, Any]:
    """Time the request's variants in interleaved rounds on this machine (`studio.timing`):
    every runner loaded where memory allows, else groups that each share the anchor; each runner
    warmed up, then rounds x images with every variant once per round, in a shuffled order.

    Returns the JSON record summary.json keeps as `run.timing`: {interleaved, rounds, images,
    anchor, groups, cores, node, load, load_max, seed, measure, samples: [{group, image, order,
    load, ms}], errors}; `ms` is preprocess + inference + postprocess, as every latency here."""
    from studio import engine

    say = on_event or (lambda **ev: None)
    load = load or (lambda v, d, t: engine.load_runner(v, d, t, verify=False)[0])
    by_id = {v.id: v for v in req.variants}
    budget = req.budget_mb
    if budget is None:
        free = available_mb()
        budget = free * TIMING_MEMORY_SHARE if free else None
    groups = timing.plan_groups(req.anchor, list(by_id), req.memory_mb, budget)
    record: dict[str, Any] = {
        "interleaved": True, "rounds": req.rounds, "images": [i for i, _ in req.images], "anchor": req.anchor,
        "groups": groups, "cores": usable_cpus(), "node": node_kind(), "seed": req.seed,
        "measure": "preprocess + inference + postprocess per image, ms (Matte.timings)",
        "memory_budget_mb": round(budget) if budget else None, "samples": [], "errors": {},
        "memory_mb": {},  # peak RSS growth while loading and warming up each runner, in-process
        "memory_source": MEMORY_SOURCE_INPROCESS}
    images = [img for _, img in req.images]
    labels = [i for i, _ in req.images]
    done = 0
    total = len(groups) * req.rounds * len(images)
    for g, ids in enumerate(groups):
        runners: dict[str, Any] = {}
        try:
            for vid in ids:
                say(stage="timing", variant=vid, done=done, total=total, message=f"timing: loading {vid} …")
                try:
                    with PeakGrowth() as mem:
                        runners[vid] = load(by_id[vid], req.device, req.threads)
                        for _ in range(max(0, req.warmup)):
                            engine.run_runner(runners[vid], images[0])
                except StudioError as exc:
                    record["errors"][vid] = str(exc)
                    continue
                if mem.mb is not None and vid not in record["memory_mb"]:
                    record["memory_mb"][vid] = round(mem.mb, 1)
            if req.anchor not in runners:
                break  # nothing to pair with: the rounds would mean nothing

            def on_round(rnd: timing.Round, n: int, g: int = g) -> None:
                nonlocal done
                done += 1
                say(stage="timing", done=done, total=total, load=rnd.load,
                    message=f"interleaved timing: round {done}/{total} (group {g + 1}/{len(groups)}, load "
                            f"{rnd.load if rnd.load is not None else '?'})")

            calls = {vid: (lambda img, r=r: engine.run_runner(r, img).timings) for vid, r in runners.items()}
            res = timing.interleave(calls, images, req.rounds, seed=req.seed + g, labels=labels, keep_going=True,
                                    on_round=on_round)
            record["errors"].update(res.errors)
            record["samples"] += timing.to_record(res, "total", group=g)
        finally:
            for r in runners.values():
                with contextlib.suppress(Exception):
                    r.close()
            runners.clear()
            release_freed_memory()
    loads = [r["load"] for r in record["samples"] if r.get("load") is not None]
    record["load"] = loads
    record["load_max"] = max(loads) if loads else None
    return record


@runtime_checkable
class Executor(Protocol):
    """What the benchmark driver (`studio.bench.suite`) asks of an executor."""

    name: str
    one_bar: bool  # the driver shows one progress bar for all variants (they run side by side)

    def describe(self) -> dict[str, Any]:
        """summary.json's executor and nodes."""
        ...

    def measure_cold_start(self, variant_id: str, image_path: str | os.PathLike, device: str,
                           threads: int) -> dict[str, Any]:
        """A fresh process to its first answer (`studio.bench.coldstart` figures, and `node`)."""
        ...

    def run(self, jobs: list[Job], image_of: Callable[[Any], np.ndarray], on_image: OnImage,
            on_job_done: OnJobDone, on_event: OnEvent) -> None:
        """Run every job; hand back each ImageResult and one JobReport per job."""
        ...

    def time_interleaved(self, req: TimingRequest, on_event: OnEvent) -> dict[str, Any]:
        """The interleaved timing phase on one machine (`time_candidates`'s record)."""
        ...

    def run_stats(self) -> dict[str, Any]:
        """What the run did beyond the results (workers, retries); {} when nothing to say."""
        ...

    def close(self) -> None:
        """Free what the executor started (a local Ray cluster); a no-op otherwise."""
        ...


class LocalExecutor:
    """In this process, one variant after the other, through the engine's shared pool."""

    name = "local"
    one_bar = False

    def __init__(self, keep_loaded: bool = False):
        self.keep_loaded = keep_loaded

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "nodes": [{"kind": node_kind(), "count": 1}]}

    def measure_cold_start(self, variant_id: str, image_path: str | os.PathLike, device: str,
                           threads: int) -> dict[str, Any]:
        """Cold start in a fresh subprocess on this machine (`studio.bench.coldstart`)."""
        from studio.bench import coldstart

        res = coldstart.measure(variant_id, image_path, device, threads)
        res["node"] = node_kind()
        return res

    def run(self, jobs: list[Job], image_of: Callable[[Any], np.ndarray], on_image: OnImage,
            on_job_done: OnJobDone, on_event: OnEvent) -> None:
        from studio import engine

        node = node_kind()
        for k, job in enumerate(jobs):
            loaded = engine.DEFAULT_POOL.has((job.variant.id, job.device, job.threads))
            try:
                report = run_job(job, image_of, on_image, on_event,
                                 lambda v, d, t: engine.get_runner(v, d, t), node, loaded_before=loaded)
            finally:
                # the next job of the same variant (the floor's noisy inputs) reuses the runner
                same_next = k + 1 < len(jobs) and jobs[k + 1].variant.id == job.variant.id
                if not self.keep_loaded and not same_next:
                    engine.DEFAULT_POOL.drop(job.variant.id)
                    release_freed_memory()
            on_job_done(report)

    def time_interleaved(self, req: TimingRequest, on_event: OnEvent) -> dict[str, Any]:
        return time_candidates(req, on_event)

    def run_stats(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        return None
