"""Executors run a benchmark's inference; the driver (`studio.bench.suite`) does the rest.

The driver plans one `Job` per variant: the images to predict (not cached yet) and the cached
images to time again (latencies come from this sitting only). An executor runs the jobs and
hands back every `ImageResult` and one `JobReport` per job through callbacks, in any order.
The driver alone writes the prediction cache and the outputs, so a run started on one
executor resumes on another.

`LocalExecutor` runs the jobs in this process, one variant at a time, through the engine's
pooled runners. The Ray executor (`studio.bench.ray_executor`) spreads them over a cluster.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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

    @property
    def n_images(self) -> int:
        return len(self.compute) + len(self.retime)


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
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu} ×{usable_cpus()}"


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
    report = JobReport(v.id, node=node, load_average=load_average(), nodes=[node])
    samples = [(s, True) for s in job.compute] + [(s, False) for s in job.retime]
    if not samples:
        return report
    on_event(stage="loading", variant=v.id, message=f"loading {v.id} …")
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
        res = ImageResult(v.id, sample.id, None, store=store, node=node)
        try:
            image = image_of(sample)
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
        on_event(stage="image", variant=v.id, done=i + 1, total=len(samples),
                 message=f"{v.id}: {i + 1}/{len(samples)} images")
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


class LocalExecutor:
    """In this process, one variant after the other, through the engine's shared pool."""

    name = "local"

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
        for job in jobs:
            loaded = engine.DEFAULT_POOL.has((job.variant.id, job.device, job.threads))
            try:
                report = run_job(job, image_of, on_image, on_event,
                                 lambda v, d, t: engine.get_runner(v, d, t), node, loaded_before=loaded)
            finally:
                if not self.keep_loaded:
                    engine.DEFAULT_POOL.drop(job.variant.id)
                    release_freed_memory()
            on_job_done(report)
