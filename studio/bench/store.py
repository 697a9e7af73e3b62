"""The runs on disk: each run is a folder under the results folder holding summary.json (and
scores.json, per_image.csv, report.html, sitting.json). The CLI writes them; the app lists and
opens them here. A run's *sitting* (sitting.json) is what a resumed run continues: latencies
in a report all come from one sitting.

A run is named by its summary.json relative to the results folder (`run_id`); `run_path` turns
a name back into the file and refuses anything outside the results folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

from studio import settings
from studio.bench.config import SuiteConfig
from studio.bench.results import Summary
from studio.errors import StudioError
from studio.fileio import atomic_write_json

SITTING_FILE = "sitting.json"
# config fields that do not make a run another run: budgets and the decision, where the outputs
# go, how inference is spread, and the timing phase (it always runs again, in this sitting)
NOT_IN_FINGERPRINT = ("budget_p95_ms", "budget_memory_mb", "price_per_hour", "resume", "out", "tolerance",
                      "executor", "ray_address", "timing_images", "timing_rounds")


class RunError(StudioError, ValueError):
    """A run name that is not a readable run under the results folder; the message says which."""


def config_fingerprint(cfg: SuiteConfig) -> str:
    """What makes two runs the same run (budgets and output options do not)."""
    keep = {k: v for k, v in cfg.to_json().items() if k not in NOT_IN_FINGERPRINT}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


def open_sitting(out: Path, cfg: SuiteConfig) -> dict[str, Any]:
    """This run's sitting: the unfinished one in `out` with the same config (a resume), else new."""
    path = out / SITTING_FILE
    fp = config_fingerprint(cfg)
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


def close_sitting(out: Path, sitting: dict[str, Any]) -> None:
    """Mark the sitting complete: the next run in `out` is a new sitting."""
    atomic_write_json(out / SITTING_FILE, {**sitting, "complete": True})


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


def run_id(path: str | Path) -> str:
    """A run's name: its summary.json (or folder) relative to the results folder."""
    try:
        return str(Path(path).resolve().relative_to(settings.results_dir().resolve()))
    except ValueError:
        return str(path)


def run_path(run: str) -> Path:
    """The summary.json of a run name; refuses anything outside the results folder (RunError)."""
    if not run:
        raise RunError("no benchmark run yet: run one, or open a past run")
    root = settings.results_dir().resolve()
    p = (root / run).resolve()
    if p.is_dir():
        p = p / "summary.json"
    if not p.is_relative_to(root):
        raise RunError(f"{run}: not a run under {root}")
    if not p.is_file():
        raise RunError(f"{run}: no summary.json there")
    return p


def past_runs() -> list[tuple[str, str]]:
    """(label, run name) of every summary.json under the results folder, newest first."""
    out = []
    for p in list_runs():
        try:
            s = json.loads(p.read_text())
            ds = s.get("dataset") or {}
            label = (f"{run_id(p.parent)} — {len(s.get('variants', []))} variants on {ds.get('name', '?')} "
                     f"({ds.get('n_images', '?')} images), {s.get('created', '')}")
        except (OSError, ValueError):
            label = f"{run_id(p.parent)} (unreadable)"
        out.append((label, run_id(p)))
    return out
