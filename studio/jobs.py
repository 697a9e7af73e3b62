"""Fetches and builds in the background, and their thread-safe progress (the Models tab polls it).

- `TRACKER` records every job (a fetch or a build, queued, running, done or failed) with its
  latest step (bytes of which file, from where). Any thread writes to it; the Models tab's
  `gr.Timer` reads a snapshot every second or so. Its `generation` grows when a job ends, so
  the pickers refresh after a fetch or build finishes.
- `WORKER` is one daemon thread that runs queued jobs in order, so downloads never compete
  with each other for the link or the disk.
- `start_after_served(demo)` queues the prefetch set (`settings.prefetch_set()`: STUDIO_PREFETCH,
  else on a Space `settings.DEFAULT_SPACE_PREFETCH`, else nothing) once the app answers HTTP 200
  on `/`, so start-up never waits for a download.

Importing this module costs nothing: weights, the zoo and the builds load inside the jobs.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from studio import settings
from studio.weights.progress import Step

KEEP_FINISHED = 30  # finished jobs kept for the status panel


@dataclass
class Job:
    """One fetch or build. Mutated only by `Tracker` under its lock; read through snapshots."""

    id: int
    kind: str  # fetch | build
    variant: str
    origin: str  # prefetch | user
    untrained: bool = False
    state: str = "queued"  # queued | running | done | failed | skipped
    step: Step | None = None  # the latest step of a fetch
    message: str = ""  # the latest build message, or how it ended
    log: list[str] = field(default_factory=list)  # finished stages: "✓ file …", "✗ source: why"
    queued_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    rate: float | None = None  # bytes per second of the current step
    result: Any = None  # Installed / BuildRecord, or the exception
    _mark: tuple[str, str, int, float] | None = None  # (file, action, done, t) where the rate is measured from
    done_event: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "skipped")


class Tracker:
    """Every job the app has run or will run, safe to update from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: list[Job] = []
        self._next = 1
        self._generation = 0
        self.served_at: float | None = None  # when the page first answered 200 (prefetch waits for it)

    def add(self, kind: str, variant: str, origin: str, untrained: bool = False) -> Job:
        with self._lock:
            job = Job(self._next, kind, variant, origin, untrained)
            self._next += 1
            self._jobs.append(job)
            finished = [j for j in self._jobs if j.finished]
            for old in finished[:-KEEP_FINISHED]:
                self._jobs.remove(old)
            return job

    def start(self, job: Job) -> None:
        with self._lock:
            job.state, job.started_at = "running", time.time()

    def step(self, job: Job, step: Step) -> None:
        """A fetch's progress callback (`studio.weights.progress.Report`)."""
        now = time.time()
        with self._lock:
            if step.action == "installed":
                job.log.append(f"✓ {step.file}, {step.done / 1e6:.1f} MB, from {step.what}")
            elif step.action == "source-failed":
                job.log.append(f"✗ {step.file}: {step.what}")
            mark = job._mark
            if mark is None or mark[:2] != (step.file, step.action) or step.done < mark[2]:
                job._mark, job.rate = (step.file, step.action, step.done, now), None
            elif now - mark[3] > 0.5:
                job.rate = (step.done - mark[2]) / (now - mark[3])
            job.step = step

    def say(self, job: Job, message: str) -> None:
        """A build's progress callback (`studio.quant.builds.build(progress=...)`)."""
        with self._lock:
            if job.message:
                job.log.append(job.message)
            job.message = message

    def finish(self, job: Job, state: str, message: str = "", result: Any = None) -> None:
        with self._lock:
            if job.kind == "build" and job.message:  # the build's last word (its agreement) stays
                job.log.append(job.message)
            job.state, job.finished_at, job.result = state, time.time(), result
            job.message, job.step, job.rate = message, None, None
            self._generation += 1
        job.done_event.set()

    @property
    def generation(self) -> int:
        """Grows by one whenever a job ends (the pickers refresh when it changes)."""
        with self._lock:
            return self._generation

    def busy(self) -> bool:
        with self._lock:
            return any(not j.finished for j in self._jobs)

    def snapshot(self) -> list[Job]:
        """Copies of every job, oldest first, safe to read without the lock."""
        with self._lock:
            return [dataclasses.replace(j, log=list(j.log)) for j in self._jobs]

    def clear(self) -> None:
        """Forget finished jobs (tests)."""
        with self._lock:
            self._jobs = [j for j in self._jobs if not j.finished]


# --- running jobs ----------------------------------------------------------------------------


def run_fetch(job: Job, tracker: Tracker, console: bool = True) -> None:
    """Fetch one variant's weights file; the tracker gets every step."""
    from studio import weights

    tracker.start(job)
    try:
        res = weights.pull([job.variant], untrained=job.untrained, progress=console,
                           report=lambda s: tracker.step(job, s))[job.variant]
    except Exception as exc:  # pull reports per variant; anything else is a bug worth showing
        res = exc
    if isinstance(res, Exception):
        tracker.finish(job, "failed", str(res), res)
    else:
        tracker.finish(job, "done", f"{res.size / 1e6:.1f} MB from {res.source}", res)


def run_build(job: Job, tracker: Tracker, say: Callable[[str], None] | None = None,
              console: bool = True) -> None:
    """Build one declared build: its source's weights first (with byte progress), then
    `studio.quant.builds.build` with a progress callback. Raises what the build raised."""
    from studio import weights
    from studio.quant import builds
    from studio.zoo import load_zoo

    def message(msg: str) -> None:
        tracker.say(job, msg)
        if say is not None:
            say(msg)

    tracker.start(job)
    try:
        v = load_zoo().get(job.variant)
        src = builds.source_of(v)
        if not src.is_build and src.file and weights.installed_for(src) is None:
            message(f"fetching its source {src.id} first")
            res = weights.pull([src.id], progress=console, report=lambda s: tracker.step(job, s))[src.id]
            if isinstance(res, Exception):
                raise builds.BuildError(f"{v.id}: its source {src.id} could not be fetched: {res}")
        rec = builds.build(v, progress=message)
    except Exception as exc:
        tracker.finish(job, "failed", str(exc), exc)
        raise
    tracker.finish(job, "done", f"built: {rec.size / 1e6:.1f} MB, sha256 {rec.sha256[:16]}…", rec)


def build_here(variant_id: str, say: Callable[[str], None] | None = None, tracker: Tracker | None = None) -> Job:
    """Build one declared build in the calling thread (the app's handler holds the inference
    queue slot meanwhile, so a build never overlaps a timed run), tracked like a queued job.
    Returns the finished job; raises what the build raised."""
    tracker = tracker or TRACKER
    job = tracker.add("build", variant_id, "user")
    run_build(job, tracker, say=say)
    return job


class Worker:
    """One daemon thread that runs queued jobs in order."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self._queue: queue.Queue[Job] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, variant_ids: list[str], origin: str = "user", untrained: bool = False) -> list[Job]:
        """Queue a job per id (a build for a declared build, else a fetch) and return them."""
        from studio.zoo import load_zoo

        zoo = load_zoo()
        jobs = []
        for vid in variant_ids:
            v = zoo.variants.get(vid)
            kind = "build" if v is not None and v.is_build else "fetch"
            jobs.append(self.tracker.add(kind, vid, origin, untrained))
        for job in jobs:
            self._queue.put(job)
        self._ensure_thread()
        return jobs

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True, name="studio-weights-worker")
                self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                self._one(job)
            except Exception as exc:  # the worker goes on; the job must not look busy forever
                if not job.finished:
                    self.tracker.finish(job, "failed", f"{type(exc).__name__}: {exc}", exc)
            finally:
                self._queue.task_done()

    def _one(self, job: Job) -> None:
        from studio.inventory import describe
        from studio.zoo import load_zoo

        try:
            v = load_zoo().get(job.variant)
        except Exception as exc:  # an unknown id in STUDIO_PREFETCH must not stop the rest
            self.tracker.finish(job, "failed", str(exc), exc)
            return
        if not v.needs_artifact:
            self.tracker.finish(job, "skipped", "needs no weights")
            return
        info = describe(v)
        if job.origin == "prefetch" and info.installed and not (info.untrained and not job.untrained):
            self.tracker.finish(job, "skipped", "already here")
            return
        if job.kind == "build":
            run_build(job, self.tracker)
        else:
            run_fetch(job, self.tracker)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Until every queued job has ended (tests, the simulated Space)."""
        end = None if timeout is None else time.time() + timeout
        while self.tracker.busy():
            if end is not None and time.time() > end:
                return False
            time.sleep(0.05)
        return True


TRACKER = Tracker()
WORKER = Worker(TRACKER)


def expand(patterns: list[str]) -> list[str]:
    """STUDIO_PREFETCH entries (ids, globs, families) as variant ids, in the order given; an
    unknown entry stays as it is, so its job fails with the zoo's suggestion."""
    from studio.zoo import load_zoo

    zoo = load_zoo()
    out: list[str] = []
    for pat in patterns:
        try:
            ids = [pat] if pat in zoo.variants else [v.id for v in zoo.select([pat])]
        except KeyError:
            ids = [pat]
        out += [i for i in ids if i not in out]
    return out


def start_after_served(demo: Any, ids: list[str] | None = None, worker: Worker | None = None,
                       poll: float = 0.2) -> threading.Thread | None:
    """Queue the prefetch set once `demo` is launched and its page answers 200 (a daemon
    thread waits for that); None when there is nothing to fetch."""
    ids = settings.prefetch_set() if ids is None else ids
    if not ids:
        return None
    worker = worker or WORKER

    def wait_then_fetch() -> None:
        from studio.procs import http_status

        while True:
            port = getattr(demo, "server_port", None)
            if port:
                urls = [u for u in (getattr(demo, "local_url", None), f"http://127.0.0.1:{port}/") if u]
                if any(http_status(u) == 200 for u in urls):
                    break
            time.sleep(poll)
        worker.tracker.served_at = time.time()
        chosen = expand(ids)
        print(f"[prefetch] page served (HTTP 200 at {worker.tracker.served_at:.3f}); fetching in the background, "
              f"in order: {', '.join(chosen)}", flush=True)
        worker.submit(chosen, origin="prefetch")

    t = threading.Thread(target=wait_then_fetch, daemon=True, name="studio-prefetch")
    t.start()
    return t
