"""Where an npm package's tarball is kept, where the registry publishes it, and its integrity."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from studio import settings

__all__ = ["integrity_of", "npm_cache_dir", "npm_cache_file", "npm_tarball_url", "split_spec"]


def npm_cache_dir() -> Path:
    return settings.cache_dir() / "npm"


def split_spec(spec: str) -> tuple[str, str]:
    """'@scope/name@1.2.3' -> ('@scope/name', '1.2.3')."""
    name, sep, version = spec.rpartition("@")
    if not sep or not name:
        raise RuntimeError(f"npm spec {spec!r} needs an exact version (name@x.y.z)")
    return name, version


def npm_cache_file(spec: str) -> Path:
    """Where the tarball of `spec` is kept (the name `npm pack` gives it, scope folded in)."""
    stem = spec.lstrip("@").replace("/", "-").replace("@", "-")
    return npm_cache_dir() / f"{stem}.tgz"


def npm_tarball_url(spec: str) -> str:
    """The registry's tarball URL of an exact version: `REGISTRY/NAME/-/BASENAME-VERSION.tgz`."""
    name, version = split_spec(spec)
    return f"{settings.npm_registry()}/{name}/-/{name.split('/')[-1]}-{version}.tgz"


def integrity_of(path: Path, algorithm: str = "sha512") -> str:
    """npm's Subresource Integrity string of a file (`sha512-<base64>`)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return f"{algorithm}-{base64.b64encode(h.digest()).decode()}"


