"""What a benchmark run is asked to do: one dataclass, filled from flags or a suite file."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from studio import settings
from studio.errors import StudioError


@dataclass
class SuiteConfig:
    models: list[str] | None = None  # ids, globs or families; None: every installed variant
    dataset: str | None = None  # None: the embedded sample; a catalogue name; a folder
    limit: int | None = None
    held_out: bool = False  # leave out every image a build in the run was calibrated on (before limit)
    untrained_limit: int | None = 8  # untrained variants (latency only) run on this many images
    device: str = "cpu"
    threads: int = 0  # 0: the runtime's default
    warmup: int = 1  # untimed runs before timing, per variant
    repeats: int = 1  # timed runs per image (the first one is scored)
    cold_start: bool = True
    bundle_cold_start: bool = True  # with cold_start: also the exported server's (ONNX variants)
    budget_p95_ms: float | None = None
    budget_memory_mb: float | None = None
    price_per_hour: float | None = None
    quality_metric: str = "iou"
    tolerance: float | None = None  # None: the metric's default (studio.bench.recommend)
    reference: str | None = None  # a variant id: score against its mattes (labels-free)
    # the interleaved timing phase: rounds x timing images, every variant once per round in a
    # shuffled order (0 images or rounds: no timing phase, latencies from computing the images)
    timing_images: int = 4
    timing_rounds: int = 3
    executor: str = "local"  # local | ray
    ray_address: str | None = None  # ray: an existing cluster (None: start a local one)
    out: Path = field(default_factory=lambda: settings.results_dir() / "latest")
    resume: bool = True  # reuse cached predictions (a killed run picks up where it stopped)
    seed: int = 0
    name: str = "adhoc"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["out"] = str(self.out)
        return d


def executor_from_settings() -> dict[str, Any]:
    """SuiteConfig's executor fields where the caller does not choose (the app's Benchmark tab):
    the Ray cluster at STUDIO_RAY_ADDRESS when it is set, else the local executor."""
    address = settings.ray_address()
    return {"executor": "ray", "ray_address": address} if address else {"executor": "local"}


def load_suite_file(path: str | Path) -> dict[str, Any]:
    """A named suite (`eval/suites/*.yaml`): keys are SuiteConfig fields. Unknown keys are refused."""
    p = Path(path)
    if not p.exists():
        suites = settings.REPO_ROOT / "eval" / "suites"
        candidate = suites / f"{path}.yaml"
        if not candidate.exists():
            names = ", ".join(sorted(f.stem for f in suites.glob("*.yaml"))) or "none"
            raise StudioError(f"no suite {str(path)!r}: not a file, and not in eval/suites/ "
                              f"(suites: {names})")
        p = candidate
    raw = yaml.safe_load(p.read_text()) or {}
    known = {f.name for f in fields(SuiteConfig)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"{p}: unknown keys {sorted(unknown)} (known: {sorted(known)})")
    # relative paths in a suite file are relative to the repository, not the caller's cwd
    if "out" in raw:
        raw["out"] = settings.REPO_ROOT / raw["out"]
    ds = raw.get("dataset")
    if isinstance(ds, str) and ("/" in ds or ds.startswith(".")) and not Path(ds).is_absolute():
        raw["dataset"] = str((settings.REPO_ROOT / ds).resolve())
    raw.setdefault("name", p.stem)
    return raw
