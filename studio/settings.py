"""Every setting the studio reads from the environment, in one place, with its default.

Folders are functions (read on each call), so a test or `studio --cache-dir` that changes the
environment is seen at once. Nothing here imports more than the standard library.

| variable | default | what |
|---|---|---|
| STUDIO_CACHE | models/ | weights, builds and the npm tarball |
| STUDIO_ZOO | models/zoo.yaml | the zoo manifest (`zoo.d/` beside it is merged) |
| STUDIO_RESULTS | eval/results/ | benchmark runs, the prediction cache, the arena database |
| STUDIO_DATA | datasets/data/ | downloaded datasets |
| STUDIO_CATALOG | datasets/catalog.yaml | the dataset catalogue |
| STUDIO_SHARED | ../shared | the team's shared folder (may be absent) |
| STUDIO_WEIGHTS_PATH | (none) | extra folders searched for weights files, `:`-separated |
| STUDIO_MIRROR | (none) | base URL that stands in for the release hosts (`studio.weights.mirror`) |
| STUDIO_POOL_BUDGET_MB | 3000 | summed weight sizes the runner pool keeps loaded |
| STUDIO_MAX_UPLOAD_MB | 25 | the app's upload cap |
| STUDIO_MAX_ZIP_MB | 1024 | uncompressed cap of an uploaded dataset zip |
| STUDIO_MAX_PIXELS | 50,000,000 | the largest image decoded |
| STUDIO_DEVICE | (per backend) | force the app's device (cpu, cuda) |
| STUDIO_RAY_ADDRESS | (none) | the app's Benchmark tab submits to this Ray cluster |
| STUDIO_ARENA_DB | eval/results/arena.sqlite | the blind A/B votes |
| STUDIO_PREFETCH | (Space: the default set) | variants the app fetches in the background at start |
| SPACE_ID | (set by Hugging Face) | running on a Space |
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

DEFAULT_POOL_BUDGET_MB = 3000.0
DEFAULT_MAX_UPLOAD_MB = 25.0
DEFAULT_MAX_ZIP_MB = 1024.0
DEFAULT_MAX_PIXELS = 50_000_000


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else None


def _path(name: str, default: Path) -> Path:
    value = _env(name)
    return Path(value).expanduser() if value else default


def _float(name: str, default: float) -> float:
    value = _env(name)
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a number") from None


# --- folders ------------------------------------------------------------------------------------

def cache_dir() -> Path:
    """Root of downloaded weights and built artifacts."""
    return _path("STUDIO_CACHE", REPO_ROOT / "models").resolve()


def weights_dir() -> Path:
    return cache_dir() / "weights"


def builds_dir() -> Path:
    return cache_dir() / "builds"


def zoo_path() -> Path:
    return _path("STUDIO_ZOO", REPO_ROOT / "models" / "zoo.yaml")


def results_dir() -> Path:
    return _path("STUDIO_RESULTS", REPO_ROOT / "eval" / "results")


def data_dir() -> Path:
    return _path("STUDIO_DATA", REPO_ROOT / "datasets" / "data")


def catalog_path() -> Path:
    return _path("STUDIO_CATALOG", REPO_ROOT / "datasets" / "catalog.yaml")


def shared_dir() -> Path:
    return _path("STUDIO_SHARED", REPO_ROOT.parent / "shared")


def weights_search_path() -> list[Path]:
    return [Path(p).expanduser() for p in (_env("STUDIO_WEIGHTS_PATH") or "").split(os.pathsep) if p]


def arena_db_path() -> Path:
    return _path("STUDIO_ARENA_DB", results_dir() / "arena.sqlite")


# --- network --------------------------------------------------------------------------------

def mirror_url() -> str | None:
    """A base URL that replaces the release hosts' (for a local mirror, or tests)."""
    value = _env("STUDIO_MIRROR")
    return value.rstrip("/") if value else None


def ray_address() -> str | None:
    return _env("STUDIO_RAY_ADDRESS")


# --- limits -----------------------------------------------------------------------------------

def pool_budget_mb() -> float:
    return _float("STUDIO_POOL_BUDGET_MB", DEFAULT_POOL_BUDGET_MB)


def max_upload_mb() -> float:
    return _float("STUDIO_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB)


def max_zip_mb() -> float:
    return _float("STUDIO_MAX_ZIP_MB", DEFAULT_MAX_ZIP_MB)


def max_pixels() -> int:
    return int(_float("STUDIO_MAX_PIXELS", DEFAULT_MAX_PIXELS))


# --- where the app runs ---------------------------------------------------------------------

def on_spaces() -> bool:
    """Hugging Face sets SPACE_ID in every Space's environment."""
    return _env("SPACE_ID") is not None


def forced_device() -> str | None:
    return _env("STUDIO_DEVICE")


def server_name() -> str:
    """0.0.0.0 on a Space (its proxy must reach us), loopback locally (no LAN exposure).
    GRADIO_SERVER_NAME still wins, as Gradio documents."""
    return _env("GRADIO_SERVER_NAME") or ("0.0.0.0" if on_spaces() else "127.0.0.1")


def prefetch_ids() -> list[str] | None:
    """Variants to fetch in the background at app start: STUDIO_PREFETCH (`none` for none),
    else None (the app's own default: the Space set on a Space, nothing locally)."""
    value = _env("STUDIO_PREFETCH")
    if value is None:
        return None
    if value.lower() in ("none", "0", "off"):
        return []
    return [v for v in value.replace(",", " ").split() if v]
