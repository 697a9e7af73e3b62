"""Labels-free runs: the agreement floor, the disagreement set, and the blind A/B round on it.

Without ground truth every score is agreement with a reference variant. Three rules keep that
honest (DESIGN.md, "References"):

- **The floor.** The reference run again on the same images with +-1 grey level of uniform
  noise added to every pixel (`perturb`), scored against its own clean mattes: what "agrees"
  means for this model on these images. The reference's row holds the floor, not a perfect 1.0,
  and candidates are judged against it, never against 1.0.
- **The disagreement set.** The images where a cheaper candidate agrees with the reference less
  than the floor does on that image, by more than the tolerance: what a person should judge.
- **Back to people.** `write_arena_set` writes those images as an arena set (a folder of images
  the app's Arena tab and `studio.arena.images.open_set` read); the votes on that set come back as
  preference (`studio.arena.ratings.preference(..., image_hashes=...)`), labelled as preference.
"""

from __future__ import annotations

import hashlib
import shutil
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from studio.bench.results import Summary

FLOOR_SUFFIX = "~floor"  # the floor job's name: the reference's id with this suffix
FLOOR_NOISE = 1  # grey levels
FLOOR_WORDS = "the reference against itself under ±1 grey-level input noise"
FLOOR_FLAG = "agreement floor: " + FLOOR_WORDS  # the reference row's flag
ARENA_FOLDER = "disagreements"
MAX_ARENA_IMAGES = 48  # the most disagreeing images first; a person judges a few dozen, not hundreds
APP_URL = "http://127.0.0.1:7860/"


def perturb(image: np.ndarray, key: str, levels: int = FLOOR_NOISE) -> np.ndarray:
    """The image with uniform integer noise in [-levels, +levels] on every channel, clipped to
    uint8; seeded by `key` (the sample id), so a resumed run perturbs the same way."""
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    noise = rng.integers(-levels, levels + 1, size=image.shape, dtype=np.int16)
    return np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def floor_scores(summary: Summary) -> dict[str, Any]:
    """Per-image scores of the floor: the reference's row in a labels-free run."""
    ref = summary.reference_id
    return summary.per_image_scores.get(ref, {}) if ref else {}


def disagreements(summary: Summary, metric: str, tolerance: float, candidates: Iterable[str],
                  higher: bool = True) -> list[dict[str, Any]]:
    """The images where a candidate agrees with the reference less than the floor does on that
    image by more than `tolerance` (in the metric's better direction), most disagreeing first:
    [{"image", "gap", "by": {candidate: gap}}]."""
    floor = floor_scores(summary)
    sign = 1.0 if higher else -1.0
    found: dict[str, dict[str, float]] = {}
    for cid in candidates:
        for image, sc in (summary.per_image_scores.get(cid) or {}).items():
            f = (floor.get(image) or {}).get("values", {}).get(metric)
            c = (sc.get("values") or {}).get(metric)
            if f is None or c is None:
                continue
            gap = sign * (float(f) - float(c))
            if gap > tolerance:
                found.setdefault(image, {})[cid] = round(gap, 6)
    out = [{"image": k, "gap": max(v.values()), "by": v} for k, v in found.items()]
    out.sort(key=lambda e: (-e["gap"], e["image"]))
    return out


def _arena_file(sample: Any) -> tuple[str, bytes | Path]:
    """(file name, bytes or the file to copy) of a sample as the arena set holds it: the image
    file itself (its bytes, so its content hash is the benchmark's), or a PNG of the pixels."""
    if sample.image_path is not None:
        return Path(sample.image_path).name, Path(sample.image_path)
    from studio.imageio import encode_png

    return f"{sample.id}.png", encode_png(sample.image())


def arena_hash(sample: Any) -> str:
    """The content hash the arena records votes under for this sample (see `_arena_file`)."""
    _, data = _arena_file(sample)
    return sample.content_hash if isinstance(data, Path) else hashlib.sha256(data).hexdigest()


def write_arena_set(summary: Summary, out: str | Path, samples: dict[str, Any] | None = None,
                    limit: int = MAX_ARENA_IMAGES) -> dict[str, Any]:
    """Write the run's disagreement set as an arena set: `out/disagreements/`, a folder of images
    (the arena opens it as a set spec; `studio.arena.images.open_set`). `samples`: id -> Sample (default: the run's
    dataset opened again). Returns {"spec", "n_images", "variants", "link", "hashes"}; n_images 0
    (nothing written) when nothing disagrees."""
    from studio.fileio import atomic_write_bytes

    dis = (summary.run.get("disagreements") or {})
    ids = [e["image"] for e in dis.get("images") or []][:limit]
    variants = [summary.reference_id, *(dis.get("candidates") or [])]
    if not ids:
        return {"spec": None, "n_images": 0, "variants": variants, "link": None, "hashes": {}}
    if samples is None:
        samples = _open_run_samples(summary)
    folder = Path(out) / ARENA_FOLDER
    if folder.is_dir():
        shutil.rmtree(folder)  # the set is this run's disagreements, nothing older
    folder.mkdir(parents=True)
    hashes = {}
    for i in ids:
        s = samples[i]
        name, data = _arena_file(s)
        if isinstance(data, Path):
            shutil.copyfile(data, folder / name)
            (folder / name).chmod(0o644)
        else:
            atomic_write_bytes(folder / name, data)
        hashes[i] = arena_hash(s)
    spec = str(folder.resolve())
    return {"spec": spec, "n_images": len(ids), "variants": variants, "link": arena_link(spec, variants),
            "hashes": hashes}


def _open_run_samples(summary: Summary) -> dict[str, Any]:
    from studio.data import open_dataset

    ds = open_dataset(summary.config.get("dataset"), unlabelled=True)
    return {s.id: s for s in ds}


def arena_link(spec: str, variants: Iterable[str], base: str = APP_URL) -> str:
    """The app's address with the set and the variants to judge as query parameters
    (`?arena_set=SPEC&variants=A,B`): what the Arena tab opens with."""
    query = urllib.parse.urlencode({"arena_set": spec, "variants": ",".join(v for v in variants if v)})
    return f"{base}?{query}"
