"""The prediction cache: one entry per (variant artifact, image content, preprocessing).

It sits below the benchmark and the arena, which both read and write it.

An entry is an 8-bit alpha PNG plus a JSON record of its timings, each written atomically
the moment it is computed, so a killed run loses at most the image in flight and a rerun
computes only what changed. Scores are always computed from the stored 8-bit alpha, so a
fresh and a resumed run give the same numbers.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studio import settings
from studio.fileio import atomic_write_bytes
from studio.imageio import alpha_to_uint8, encode_png, load_mask
from studio.zoo import Variant

CACHE_VERSION = 1


def cache_root() -> Path:
    return settings.results_dir() / "cache"


def variant_fingerprint(variant: Variant, artifact_sha256: str | None, device: str, threads: int) -> str:
    """What decides a variant's output: its weights, backend, config, and where it runs."""
    cfg = {
        "v": CACHE_VERSION, "id": variant.id, "backend": variant.backend, "precision": variant.precision,
        "input_size": variant.input_size, "preprocess": variant.preprocess.to_dict(),
        "postprocess": variant.postprocess.to_dict(), "options": variant.options.to_dict(), "artifact": artifact_sha256, "device": device, "threads": threads,
    }
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:20]


@dataclass
class CachedPrediction:
    alpha: np.ndarray  # float32 [0, 1], from the stored 8-bit PNG
    timings: dict[str, float]  # the first timed repeat
    runs: list[dict[str, float]]  # every timed repeat of the latest timing
    created_at: float
    sitting: str | None = None  # the run (sitting) the timings were taken in
    node: str | None = None  # the node kind that took them


class PredictionCache:
    def __init__(self, variant_key: str, root: Path | None = None):
        self.dir = (root or cache_root()) / variant_key
        self.dir.mkdir(parents=True, exist_ok=True)

    def _paths(self, image_hash: str) -> tuple[Path, Path]:
        return self.dir / f"{image_hash[:32]}.png", self.dir / f"{image_hash[:32]}.json"

    def get(self, image_hash: str) -> CachedPrediction | None:
        png, meta = self._paths(image_hash)
        if not (png.is_file() and meta.is_file()):
            return None
        try:
            rec = json.loads(meta.read_text())
            alpha = load_mask(png)
        except Exception:  # a damaged entry is recomputed, not trusted
            return None
        return CachedPrediction(alpha=alpha, timings=rec["timings"], runs=rec["runs"], created_at=rec["created_at"],
                                sitting=rec.get("sitting"), node=rec.get("node"))

    def put(self, image_hash: str, alpha: np.ndarray, runs: list[dict[str, float]], sitting: str | None = None,
            node: str | None = None) -> CachedPrediction:
        png, meta = self._paths(image_hash)
        q = alpha_to_uint8(alpha)
        atomic_write_bytes(png, encode_png(q))
        rec = {"timings": runs[0], "runs": runs, "created_at": time.time(), "sitting": sitting, "node": node}
        atomic_write_bytes(meta, json.dumps(rec).encode())  # the record last: it marks the entry complete
        return CachedPrediction(alpha=q.astype(np.float32) / 255.0, timings=runs[0], runs=runs,
                                created_at=rec["created_at"], sitting=sitting, node=node)

    def retime(self, image_hash: str, runs: list[dict[str, float]], sitting: str, node: str | None = None) -> None:
        """Replace an entry's timings with ones taken in this sitting (the matte stays)."""
        _, meta = self._paths(image_hash)
        try:
            rec = json.loads(meta.read_text())
        except (OSError, ValueError):
            return
        rec.update(timings=runs[0], runs=runs, sitting=sitting, node=node)
        atomic_write_bytes(meta, json.dumps(rec).encode())


class JsonCache:
    """Small JSON results (cold starts) under a key, written atomically."""

    def __init__(self, kind: str, root: Path | None = None):
        self.dir = (root or cache_root()) / kind
        self.dir.mkdir(parents=True, exist_ok=True)

    def get(self, key: str) -> dict | None:
        p = self.dir / f"{key}.json"
        try:
            return json.loads(p.read_text()) if p.is_file() else None
        except ValueError:
            return None

    def put(self, key: str, value: dict) -> None:
        atomic_write_bytes(self.dir / f"{key}.json", json.dumps(value).encode())
