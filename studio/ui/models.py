"""The Models tab's handlers: the zoo table, fetching weights and building declared builds
(both with progress), the background-job status panel, and what the pool holds.

The jobs themselves run in `studio.jobs` (a queue and its tracker); these handlers queue them
and poll the tracker."""

from __future__ import annotations

import html
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from studio import engine, jobs, labels, settings
from studio.weights.progress import Step
from studio.zoo import load_zoo

ZOO_HEADERS = ["variant", "installed", "size MB", "precision", "input", "backend", "licence", "training data",
               "notes / how to get it"]
ZOO_COLUMN_WIDTHS = ["15%", "7%", "6%", "8%", "8%", "6%", "15%", "12%", "23%"]


def zoo_table() -> dict[str, Any]:
    """`studio models` as a Dataframe value (the same rows: `studio.cli.models.zoo_rows`)."""
    from studio.inventory import zoo_rows

    data = []
    for r in zoo_rows():
        status = "✓ untrained" if r["installed"] and r["untrained"] else ("✓" if r["installed"] else "—")
        how = r["notes"] if r["installed"] else " · ".join(x for x in (f"fetch: {r['where']}", r["notes"]) if x)
        data.append([r["id"], status, r["size_mb"], r["precision"], r["input"], r["backend"], r["license"],
                     ", ".join(r["trained_on"]) or "—", how])
    return {"headers": ZOO_HEADERS, "data": data}


def fetchable() -> list[tuple[str, str]]:
    """(label, id) of variants whose weights are not here yet."""
    from studio.inventory import describe

    out = []
    zoo = load_zoo()
    for v in zoo.variants.values():
        if not v.file or v.is_build:  # builds are made, not fetched: see `buildable`
            continue
        info = describe(v)
        if info.installed and not info.untrained:
            continue
        wf = zoo.file_of(v)
        size = f"~{wf.expected_mb:.0f} MB" if wf and wf.expected_mb else "size unknown"
        label = f"{v.id}  ·  {size}" + ("  ·  installed untrained" if info.untrained else "")
        out.append((label, v.id))
    return out


def fetch(variant_ids: list[str] | None, untrained: bool = False,
          progress: Callable[..., Any] | None = None, worker: jobs.Worker | None = None,
          poll: float = 0.25) -> str:
    """Queue each variant on the background worker (behind any prefetch), follow it on
    `progress` until it ends, and report each: the status panel shows the same jobs."""
    ids = list(variant_ids or [])
    if not ids:
        return "Choose at least one variant to fetch."
    worker = worker or jobs.WORKER
    queued = worker.submit(ids, origin="user", untrained=bool(untrained))
    for i, job in enumerate(queued):
        while not job.done_event.wait(poll):
            if progress is not None:
                frac, desc = _progress_of(job, worker.tracker)
                progress((i + (frac or 0.0)) / len(queued), desc=desc)
    lines = []
    for job in queued:
        res = job.result
        if isinstance(res, Exception) or job.state == "failed":
            msg = str(res or job.message).replace("\n", "\n  ")
            lines.append(f"- ✗ `{job.variant}`: {msg}")
        elif job.state == "skipped":
            lines.append(f"- ✗ `{job.variant}`: {job.message}")
        else:
            kind = f" ({labels.UNTRAINED})" if getattr(res, "untrained", False) else ""
            lines.append(f"- ✓ `{job.variant}`: {res.size / 1e6:.1f} MB from {res.source}{kind}")
    ok = sum(j.state == "done" for j in queued)
    return f"**Fetched {ok} of {len(queued)}.**\n\n" + "\n".join(lines)


def _progress_of(job: jobs.Job, tracker: jobs.Tracker) -> tuple[float | None, str]:
    now = next((j for j in tracker.snapshot() if j.id == job.id), job)
    if now.state == "queued":
        return 0.0, f"{job.variant}: queued behind other fetches"
    step = now.step
    if step is None:
        return None, f"{job.variant}: {now.message or 'starting'}"
    return step.fraction, f"{job.variant}: {_describe_step(step)}"


def buildable() -> list[tuple[str, str]]:
    """(label, id) of the declared builds (models/zoo.d) that are not built here yet."""
    from studio.inventory import describe

    zoo = load_zoo()
    out = []
    for v in zoo.variants.values():
        if not v.is_build or describe(v).installed:
            continue
        src = zoo.variants.get(v.derived_from or "")
        note = f"from {v.derived_from}"
        if src is not None and not describe(src).installed:
            wf = zoo.file_of(src)
            size = f", ~{wf.expected_mb:.0f} MB" if wf and wf.expected_mb else ""
            note += " (built first)" if src.is_build else f" (fetched first{size})"
        elif src is not None and describe(src).untrained:
            note += " (untrained source: latency only)"
        if v.requires:
            note += f" · needs {v.requires}"
        out.append((f"{v.id}  ·  {note}", v.id))
    return out


def build(variant_id: str | None, progress: Callable[..., Any] | None = None,
          tracker: jobs.Tracker | None = None) -> str:
    """Build a declared build here (`studio.jobs.build_here`, in this handler's thread, which
    holds the inference slot): its source's weights first, then the build; every message goes
    to `progress` and to the status panel."""
    if not variant_id:
        return "Choose a build first."
    if progress is not None:
        progress(None, desc=f"{variant_id}: starting")

    def say(msg: str) -> None:
        if progress is not None:
            progress(None, desc=f"{variant_id}: {msg}")

    job = jobs.build_here(variant_id, say=say, tracker=tracker)
    rec = job.result
    agree = ""
    if getattr(rec, "agreement", None):
        a = rec.agreement
        agree = (f" Agreement with {rec.source.get('variant')}: IoU {a['iou_mean']:.4f} "
                 f"on {labels.check_images(a)}.")
    untrained = f" ({labels.UNTRAINED})" if rec.untrained else ""
    return (f"**Built `{variant_id}`**{untrained}: {rec.size / 1e6:.1f} MB, sha256 `{rec.sha256[:16]}…`. "
            f"{build_times(job.started_at, job.finished_at, rec)}{agree}")


def build_times(started_at: float | None, finished_at: float | None, rec: Any) -> str:
    """Wall time of the whole job, and where it went: the build itself and the agreement check
    after it (a build of this job ends at `rec.created_at`; an older build was reused)."""
    from studio.ui.progress import duration

    wall = (finished_at - started_at) if started_at and finished_at else None
    made_now = started_at is not None and (rec.created_at or 0) >= started_at
    parts = []
    if wall is not None:
        parts.append(f"**{duration(wall)} wall time**")
    if made_now:
        parts.append(f"the build itself {duration(rec.build_seconds)}")
        if finished_at and getattr(rec, "agreement", None):
            parts.append(f"the agreement check {duration(max(0.0, finished_at - rec.created_at))}")
        rest = (wall - rec.build_seconds - max(0.0, (finished_at or 0) - rec.created_at)) if wall else 0.0
        if rest >= 1:
            parts.append(f"fetching the source and loading {duration(rest)}")
    else:
        parts.append(f"already built earlier (that build took {duration(rec.build_seconds)})")
    return "In " + ", ".join(parts) + "."


# --- what every page's refresh shows --------------------------------------------------------------


def inventory_key() -> str:
    """A fingerprint of what is installed: every weights sidecar and build record under the cache
    folder (name, size, mtime). A fetch or a build made anywhere (this app, another app, `studio
    build` in a terminal) changes it; reading it is a few dozen stat calls."""
    import hashlib
    import os

    h = hashlib.sha256(f"{settings.cache_dir()}|{settings.zoo_path()}".encode())
    for root in (settings.weights_dir(), settings.builds_dir()):
        base = len(str(root).rstrip(os.sep).split(os.sep))
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            depth = len(dirpath.rstrip(os.sep).split(os.sep)) - base
            if depth >= 3:  # builds/<variant>/<key>/build.json is the deepest record
                dirnames[:] = []
            dirnames.sort()
            for name in sorted(filenames):
                if not name.endswith(".json"):
                    continue
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except OSError:
                    continue
                h.update(f"{dirpath}/{name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Snapshot:
    """The zoo as the pickers and the table show it, for one state of the inventory."""

    key: str  # `inventory_key()` when it was taken
    groups: dict[str, list[tuple[str, str]]]  # family -> installed (label, id), in zoo order
    installed: list[tuple[str, str]]
    defaults: list[str]  # installed variants picked unless the user unticks them
    references: list[tuple[str, str]]  # what a labels-free score can be measured against
    n_zoo: int
    zoo: dict[str, Any]
    fetchable: list[tuple[str, str]]
    buildable: list[tuple[str, str]]


_snapshot_lock = threading.Lock()
_snapshot: Snapshot | None = None


def snapshot() -> Snapshot:
    """The inventory as it is now, computed once per state and shared by every open page (the
    pickers of every tab, the header, the zoo table): describing the whole zoo takes a while on a
    small CPU, and every page load, tab and timer tick asks."""
    global _snapshot
    from studio.ui import variants

    key = inventory_key()
    with _snapshot_lock:
        if _snapshot is None or _snapshot.key != key:
            choices = variants.choices()
            installed = [c for c in choices if c.installed]
            groups: dict[str, list[tuple[str, str]]] = {f: [] for f in variants.families()}
            for c in installed:
                groups[variants.UNTRAINED_GROUP if c.untrained else c.family].append((c.label, c.id))
            _snapshot = Snapshot(key, groups, [(c.label, c.id) for c in installed],
                                 [c.id for c in installed if c.default],
                                 [(c.id, c.id) for c in installed if not c.untrained],  # = reference_choices()
                                 len(choices), zoo_table(), fetchable(), buildable())
        return _snapshot


# --- the status panel ----------------------------------------------------------------------------

STATE_ICONS = {"queued": "…", "running": "↓", "done": "✓", "failed": "✗", "skipped": "–"}  # no emoji font needed


def _describe_step(step: Step) -> str:
    verbs = {"download": "downloading", "assemble": "assembling", "derive": "deriving",
             "verify": "checking the checksum of", "copy": "copying", "initialise": "initialising",
             "installed": "installed", "source-failed": "trying the next source for"}
    return f"{verbs.get(step.action, step.action)} {step.file}"


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def _bar(step: Step, rate: float | None) -> str:
    if step.action == "verify":
        return f"{_mb(step.total or 0)}"
    if not step.total:
        return "<span class='ws-spin'>working…</span>" if step.action in ("derive", "initialise") else ""
    pct = 100 * (step.fraction or 0)
    extra = ""
    if rate and rate > 0:
        left = (step.total - step.done) / rate
        extra = f" · {_mb(rate)}/s · ~{left:.0f} s left"
    return (f"<progress value='{step.done}' max='{step.total}'></progress> "
            f"{_mb(step.done)} of {_mb(step.total)} ({pct:.0f} %){extra}")


def status_html(shown: list[jobs.Job] | None = None, served_at: float | None = None) -> str:
    """The background jobs as a small table: what, state, progress, and each finished stage."""
    shown = jobs.TRACKER.snapshot() if shown is None else shown
    plan = settings.prefetch_set()
    if not shown:
        where = ("this Space fetches in the background once the page is up: " + ", ".join(plan) if plan
                 else "nothing is fetched in the background here (set STUDIO_PREFETCH to change that)")
        return f"<div class='ws'><b>Background fetches</b>: none yet — {html.escape(where)}.</div>"
    busy = [j for j in shown if not j.finished]
    head = (f"<b>Background fetches and builds</b>: {len(busy)} in progress or queued, "
            f"{sum(j.state == 'done' for j in shown)} done, {sum(j.state == 'failed' for j in shown)} failed."
            if busy else "<b>Background fetches and builds</b>: all done.")
    rows = []
    for j in shown:
        what = "build" if j.kind == "build" else "fetch"
        who = "prefetch" if j.origin == "prefetch" else "requested"
        if j.state == "running" and j.step is not None:
            now = f"{html.escape(_describe_step(j.step))}<br>{_bar(j.step, j.rate)}"
        elif j.state == "running":
            now = html.escape(j.message or "starting")
        elif j.state == "queued":
            now = "queued"
        elif j.state == "failed" and j.kind == "fetch" and j.log:
            now = "not fetched: every source failed (below)"
        else:
            now = html.escape(j.message.splitlines()[0] if j.message else j.state)
            if j.started_at and j.finished_at:
                now += f" <span class='ws-dim'>({j.finished_at - j.started_at:.0f} s)</span>"
        log = "".join(f"<div class='ws-log'>{html.escape(line)}</div>" for line in j.log[-6:])
        icon = "▸" if j.state == "running" and j.kind == "build" else STATE_ICONS.get(j.state, "")
        rows.append(f"<tr class='ws-{j.state}'><td>{j.id}</td><td>{icon}</td>"
                    f"<td><code>{html.escape(j.variant)}</code><br><span class='ws-dim'>{what} · {who}</span></td>"
                    f"<td>{now}{log}</td></tr>")
    return (f"<div class='ws'>{head}<table><thead><tr><th>#</th><th></th><th>model</th><th>progress</th>"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


STATUS_CSS = """
.ws { font-size: 0.92em; }
.ws table { width: 100%; border-collapse: collapse; margin-top: 6px; border: none; }
.ws thead, .ws tbody, .ws tr { border: none; }
.ws th, .ws td { text-align: left; padding: 4px 8px; border: none; vertical-align: top;
                 border-bottom: 1px solid var(--border-color-primary); }
.ws th { font-weight: 600; }
.ws td:first-child, .ws td:nth-child(2) { width: 1.5em; }
.ws td:nth-child(3) { width: 22%; }
.ws progress { width: 45%; height: 0.9em; vertical-align: middle; }
.ws-dim, .ws-log { color: var(--body-text-color-subdued); font-size: 0.92em; }
.ws-log { margin-top: 2px; overflow-wrap: anywhere; }
.ws-failed td:nth-child(2) { color: #c0392b; }
.ws-done td:nth-child(2) { color: #1e8449; }
"""


def pool_status() -> str:
    keys = engine.loaded_models()
    used, budget = engine.pool_usage()
    held = ", ".join(f"`{k[0]}` ({k[1]})" for k in keys) or "none yet (models load on first use)"
    return (f"**Loaded models** (shared by all users, least recently used evicted first): {held}. "
            f"Weights held: {used:.0f} MB of a {budget:.0f} MB budget (`STUDIO_POOL_BUDGET_MB`).")
