"""Where the studio keeps things: one place, overridable by environment variables."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def cache_dir() -> Path:
    """Root of downloaded weights and built artifacts (`STUDIO_CACHE`, default `models/`)."""
    return Path(os.environ.get("STUDIO_CACHE", REPO_ROOT / "models")).expanduser().resolve()


def weights_dir() -> Path:
    return cache_dir() / "weights"


def builds_dir() -> Path:
    return cache_dir() / "builds"


def zoo_path() -> Path:
    return Path(os.environ.get("STUDIO_ZOO", REPO_ROOT / "models" / "zoo.yaml"))


def results_dir() -> Path:
    return Path(os.environ.get("STUDIO_RESULTS", REPO_ROOT / "eval" / "results"))


def data_dir() -> Path:
    """Downloaded datasets (`STUDIO_DATA`, default `datasets/data/`)."""
    return Path(os.environ.get("STUDIO_DATA", REPO_ROOT / "datasets" / "data"))


def shared_dir() -> Path:
    """The team's shared folder beside the checkout (`../shared`), which may be absent."""
    return Path(os.environ.get("STUDIO_SHARED", REPO_ROOT.parent / "shared"))
