"""One progress line for a benchmark run: the step that is running, how far the run is, and
an ETA from the per-image times measured so far in this run.

`ProgressLine.event` takes the suite's progress events (`studio.bench.suite`: stages loading,
image, variant, timing, cold_start, skipped, report); `fraction` never jumps ahead (variants
that run side by side on a cluster advance it by their own images); `markdown` is the line the
page shows (sticky, one place) and `short` what a `gr.Progress` bar shows to API callers.

Plain Python with an injectable clock, so the ETA is tested on synthetic events.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SizeOf = Callable[[str], float | None]


def model_size_mb(variant_id: str) -> float | None:
    """The variant's artifact size on disk (MB), for "loading X (176 MB)…"; None when unknown."""
    from studio.inventory import describe

    try:
        return describe(variant_id).size_mb
    except Exception:  # a progress line must never fail a run
        return None


def duration(seconds: float) -> str:
    """"45 s", "3 min 05 s", "1 h 02 min": what a person reads at a glance."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def loading_text(variant_id: str, size_mb: float | None) -> str:
    return f"loading {variant_id}" + (f" ({size_mb:,.0f} MB)" if size_mb else "") + "…"


@dataclass
class _Job:
    """One suite job: a variant's pass over the images (the agreement floor is a job of its own)."""

    name: str
    loading_at: float | None = None
    last_at: float | None = None  # the latest image event
    done: int = 0
    total: int | None = None
    per_image: list[float] = field(default_factory=list)  # seconds between consecutive images
    load_s: float | None = None  # loading -> first image, less one image's time
    finished: bool = False


class ProgressLine:
    """The state of one run as its events arrive. `n_jobs`: the passes the suite will make
    (variants, plus the floor of a labels-free run); corrected by the events' own totals."""

    def __init__(self, n_jobs: int, clock: Callable[[], float] = time.monotonic,
                 size_of: SizeOf | None = model_size_mb, floor_suffix: str = "~floor"):
        self.n_jobs = max(1, int(n_jobs))
        self.clock = clock
        self.size_of = size_of
        self.floor_suffix = floor_suffix
        self.started = clock()
        self.jobs: dict[str, _Job] = {}
        self.step = "starting…"
        self.frac = 0.0
        self.finished_jobs = 0
        self.timing_done = 0
        self.timing_total: int | None = None
        self.timing_steps: list[float] = []
        self.timing_last: float | None = None
        self.note = ""  # a one-off note (a skipped variant) shown beside the step
        # the interleaved timing phase to come, as the handler plans it: steps (rounds x images),
        # each running every timed variant once
        self.timing_planned = 0
        self.n_timed = 0
        self._shares: dict[str, float] = {}
        self._variant_index = 0
        self.ended = False
        # the run's thread sends events while the page's thread reads the line
        self.lock = threading.RLock()

    # --- events -----------------------------------------------------------------------------
    def say(self, text: str) -> None:
        """A step the handler itself names (opening the dataset, starting)."""
        self.step = text

    def event(self, ev: dict[str, Any]) -> None:
        with self.lock:
            self._event(ev)

    def _event(self, ev: dict[str, Any]) -> None:
        now = self.clock()
        stage = ev.get("stage")
        name = ev.get("variant")
        done, total = int(ev.get("done") or 0), int(ev.get("total") or 0)
        self.note = ""
        if stage == "loading" and name:
            job = self._job(name)
            job.loading_at = now
            self.step = self._loading_step(name)
        elif stage == "image":
            job = self._job(name or "?")
            if job.last_at is not None and done > job.done:
                job.per_image.append((now - job.last_at) / (done - job.done))
            elif job.loading_at is not None and done > 0:
                job.load_s = now - job.loading_at  # corrected below once an image time is known
            job.done, job.total, job.last_at = done, total or job.total, now
            who = self._display(name) if name else "images"
            self.step = f"{who}: image {done} of {total}" if total else f"{who}: image {done}"
        elif stage == "variant":
            if name:
                self._job(name).finished = True
            self.finished_jobs = max(self.finished_jobs, done)
            if total:
                self.n_jobs = max(self.n_jobs, total)
            self.step = f"{self._display(name)} done" if name else self.step
        elif stage == "timing":
            if total:
                self.timing_total = total
            if self.timing_last is not None and done > self.timing_done:
                self.timing_steps.append((now - self.timing_last) / (done - self.timing_done))
            if self.timing_last is None or done > self.timing_done:
                self.timing_done, self.timing_last = done, now
            what = f"{self.timing_done} of {self.timing_total} steps" if self.timing_total else "starting"
            self.step = f"interleaved timing (every model once per image and round): {what}"
            if name:  # the phase loads a model it no longer holds
                self.step += " · " + self._loading_step(name)
            if ev.get("load") is not None:
                self.step += f" · load {ev['load']}"
        elif stage == "cold_start":
            self.step = f"cold start of {self._display(name)} in a fresh process" if name else "cold start"
        elif stage == "report":
            self.step = "writing the report"
        elif stage == "skipped":
            self.note = str(ev.get("message") or f"skipped {name}")
        elif ev.get("message"):
            self.step = str(ev["message"])
        self._advance(stage, name, done, total)

    def end(self, text: str) -> None:
        self.ended = True
        self.frac = 1.0
        self.step = text

    # --- what the page shows ----------------------------------------------------------------
    def _job(self, name: str) -> _Job:
        if name not in self.jobs:
            self.jobs[name] = _Job(name)
        return self.jobs[name]

    def _base(self, name: str) -> str:
        return name[: -len(self.floor_suffix)] if name.endswith(self.floor_suffix) else name

    def _display(self, name: str | None) -> str:
        if not name:
            return ""
        base = self._base(name)
        return f"{base} (agreement floor: ±1 grey-level noise)" if base != name else base

    def _loading_step(self, name: str) -> str:
        base = self._base(name)
        size = self.size_of(base) if self.size_of else None
        text = loading_text(base, size)
        return text[:-1] + " for the agreement floor…" if base != name else text

    def _advance(self, stage: str | None, name: str | None, done: int, total: int) -> None:
        """The bar: variants in order, each one's images moving it within its share."""
        n = self.n_jobs
        frac = self.frac
        if stage == "variant":
            self._variant_index = done
            if name:
                self._shares[name] = 1.0
            frac = max(done / n, sum(self._shares.values()) / n)
        elif stage == "image" and total and name:
            self._shares[name] = done / total
            frac = sum(self._shares.values()) / n
        elif stage == "image" and total:
            frac = (self._variant_index + done / total) / n
        elif stage == "cold_start":
            frac = done / n
        elif stage == "report":
            frac = 1.0
        self.frac = min(max(frac, 0.0), 1.0)

    def per_image_s(self) -> float | None:
        """The typical measured seconds per image over the jobs so far (None before any)."""
        meds = [statistics.median(j.per_image) for j in self.jobs.values() if j.per_image]
        return statistics.median(meds) if meds else None

    def eta_s(self) -> float | None:
        """Seconds left, from the per-image times measured in this run: the images left of the
        jobs under way at their own pace, the jobs not started at the typical pace (plus a
        typical load), and the interleaved timing phase (every candidate once per step)."""
        typical = self.per_image_s()
        if typical is None or self.ended:
            return None
        loads = [max(0.0, j.load_s - (statistics.median(j.per_image) if j.per_image else typical))
                 for j in self.jobs.values() if j.load_s is not None]
        load = statistics.median(loads) if loads else 0.0
        left = 0.0
        images = None
        for j in self.jobs.values():
            pace = statistics.median(j.per_image) if j.per_image else typical
            if j.total:
                images = j.total
            if not j.finished and j.total:
                left += (j.total - j.done) * pace
        not_started = max(0, self.n_jobs - len(self.jobs))
        if images:
            left += not_started * (images * typical + load)
        if self.timing_total:
            step = statistics.median(self.timing_steps) if self.timing_steps else \
                sum(statistics.median(j.per_image) for j in self.jobs.values() if j.per_image)
            left += (self.timing_total - self.timing_done) * step
        elif self.timing_planned and self.n_timed:
            paces = [statistics.median(j.per_image) for j in self.jobs.values()
                     if j.per_image and not j.name.endswith(self.floor_suffix)]
            step = sum(paces) + max(0, self.n_timed - len(paces)) * typical
            left += self.timing_planned * step
        return left

    def elapsed_s(self) -> float:
        return self.clock() - self.started

    def markdown(self) -> str:
        """The one line the page shows."""
        with self.lock:
            return self._markdown()

    def _markdown(self) -> str:
        if self.ended:
            return self.step
        parts = [f"▸ **{self.step}**"]
        if self.jobs:
            parts.append(f"{min(self.finished_jobs, self.n_jobs)} of {self.n_jobs} model passes done")
        parts.append(f"{duration(self.elapsed_s())} elapsed")
        eta = self.eta_s()
        parts.append(f"**~{duration(eta)} left** (from the per-image times measured so far)" if eta is not None
                     else "time left: known after the first images")
        line = " · ".join(parts)
        return line + (f"<br><sub>{self.note}</sub>" if self.note else "")

    def short(self) -> str:
        """For a gr.Progress bar (API callers): the step and the ETA."""
        with self.lock:
            eta = self.eta_s()
        return self.step + (f" (~{duration(eta)} left)" if eta is not None else "")
