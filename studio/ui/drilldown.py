"""The Benchmark tab's per-image drill-down: each variant's worst images with their error
overlay, and the images where no model is confident.

A mean hides its images: one image can carry a variant's whole deficit. So for each variant the
tab lists its worst images by the run's ranking metric, each with its share of the variant's
loss (how much of 1 − mean, or of the error, that one image holds) and the overlay against the
reference (the mask, or the reference model's matte in a labels-free run).

"No model is confident" is read from the mattes themselves, not from a score: a matte is
*unsure* when it is faint (even the brightest of the pixels it marks, their 99th percentile,
stay below FAINT_PEAK: the model never says "this is foreground") or grey (of the pixels it marks at all, alpha > 0.05,
more than GREY_SHARE are between 0.1 and 0.9: undecided rather than an edge). A tiny but crisp
object is neither. An image is flagged when every trained variant's matte of it is unsure.

Predictions come from the prediction cache the run filled (`VariantRow.cache_key`): nothing
runs again. The images come from the run's dataset; an uploaded zip is gone after its run, so
the app builds the drill-down of its own runs right after them, into the run's folder
(`drilldown/`), and later reads it back from there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from studio.fileio import atomic_write_json

if TYPE_CHECKING:
    from studio.bench.results import Summary

WORST = 6  # images shown per variant
FAINT_PEAK = 0.5  # the 99th percentile of what a matte marks (alpha > 0.05) below this: faint
GREY_SHARE = 0.5  # of the pixels a matte marks (alpha > 0.05), the undecided (0.1..0.9) share above this: grey
MAX_SCAN = 400  # images read for the confidence flags (each variant's matte of each)
THUMB = 420  # px, longest side of a drill-down thumbnail
FOLDER = "drilldown"
INDEX = "index.json"


def _higher(metric: str) -> bool:
    from studio.bench.recommend import higher_is_better

    return higher_is_better(metric)


def worst(summary: Summary, variant_id: str, n: int = WORST) -> list[dict[str, Any]]:
    """The variant's n worst images by the ranking metric, worst first: {image, value, share},
    `share` being the image's part of the variant's total loss (1 - value for a score in [0, 1],
    the value itself for an error)."""
    metric = summary.quality_metric
    higher = _higher(metric)
    scores = summary.per_image_scores.get(variant_id) or {}
    vals = {k: (v.get("values") or {}).get(metric) for k, v in scores.items()}
    vals = {k: float(v) for k, v in vals.items() if v is not None}
    if not vals:
        return []
    loss = {k: max(0.0, 1.0 - v) if higher else max(0.0, v) for k, v in vals.items()}
    total = sum(loss.values())
    order = sorted(vals, key=lambda k: (vals[k] if higher else -vals[k], k))
    return [{"image": k, "value": vals[k], "share": loss[k] / total if total > 0 else 0.0} for k in order[:n]]


def confidence(alpha: np.ndarray) -> dict[str, float]:
    """{peak, grey} of the pixels a matte marks at all (alpha > 0.05): how bright its brightest are
    (the 99th percentile: a tiny object counts as much as a large one), and the share it leaves
    undecided. A matte that marks nothing has peak 0."""
    a = np.asarray(alpha, dtype=np.float32).reshape(-1)
    if a.size and a.max() > 1.0:  # 8-bit levels
        a = a / 255.0
    marked = a[a > 0.05]
    if marked.size == 0:
        return {"peak": 0.0, "grey": 0.0}
    peak = float(np.percentile(marked, 99))
    grey = float(((marked > 0.1) & (marked < 0.9)).mean())
    return {"peak": peak, "grey": grey}


def unsure(conf: dict[str, float]) -> str | None:
    """Why a matte is not confident ("faint", "grey"), or None when it is."""
    if conf["peak"] < FAINT_PEAK:
        return f"faint (brightest {conf['peak']:.2f} < {FAINT_PEAK:g})"
    if conf["grey"] > GREY_SHARE:
        return f"grey ({conf['grey']:.0%} of what it marks is undecided)"
    return None


def _trained_rows(summary: Summary) -> list[Any]:
    return [r for r in summary.variants if r.cache_key and not r.untrained and not r.failed]


def _cached(row: Any, sample: Any) -> np.ndarray | None:
    from studio.prediction_cache import PredictionCache

    try:
        hit = PredictionCache(row.cache_key).get(sample.content_hash)
    except Exception:  # an unreadable sample or cache entry: no picture, no flag
        return None
    return hit.alpha if hit is not None else None


def _thumb(rgb: np.ndarray) -> np.ndarray:
    from PIL import Image

    img = Image.fromarray(rgb)
    img.thumbnail((THUMB, THUMB))
    return np.asarray(img)


def _overlay(row: Any, sample: Any, ref_row: Any | None) -> np.ndarray | None:
    """The variant's error overlay on one image against the run's reference (mask or model)."""
    from studio.visuals import error_overlay

    alpha = _cached(row, sample)
    if alpha is None:
        return None
    image = sample.image()
    if ref_row is not None:
        from studio.metrics import agreement_levels, agreement_reference

        ref_alpha = _cached(ref_row, sample)
        if ref_alpha is None:
            return None
        return error_overlay(image, agreement_levels(alpha), agreement_reference(ref_alpha))
    mask = sample.mask()
    if mask is None:
        return None
    return error_overlay(image, alpha, mask)


def open_samples(summary: Summary) -> dict[str, Any]:
    """The run's images by id (its dataset opened again: the ids are what the scores are keyed by)."""
    from studio.data import open_dataset

    ds = open_dataset(summary.config.get("dataset"), unlabelled=bool(summary.reference_id))
    return {s.id: s for s in ds}


def build(summary: Summary, out: Path, samples: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the drill-down of a run under `out` (thumbnails and index.json) and return the index:
    {"metric", "higher_is_better", "reference", "variants": {id: [{image, value, share, png}]},
    "unconfident": [{image, png, why: {variant: reason}}], "scanned", "rule"}."""
    from studio.imageio import encode_png

    samples = open_samples(summary) if samples is None else samples
    out.mkdir(parents=True, exist_ok=True)
    ref_row = summary.row(summary.reference_id) if summary.reference_id else None
    metric = summary.quality_metric
    index: dict[str, Any] = {"metric": metric, "higher_is_better": _higher(metric),
                             "reference": summary.reference_id, "variants": {}, "unconfident": [],
                             "rule": (f"a matte is unsure when faint (the 99th percentile of what it marks below {FAINT_PEAK:g}) or "
                                      f"grey (over {GREY_SHARE:.0%} of what it marks between 0.1 and 0.9); an image "
                                      "is flagged when every trained model's matte is unsure")}
    k = 0
    for row in summary.variants:
        if row.untrained or row.is_reference or not row.cache_key:
            continue
        items = []
        for w in worst(summary, row.id):
            s = samples.get(w["image"])
            pic = _overlay(row, s, ref_row) if s is not None else None
            png = None
            if pic is not None:
                png = f"{k:03d}.png"
                (out / png).write_bytes(encode_png(_thumb(pic)))
                k += 1
            items.append({**w, "png": png})
        index["variants"][row.id] = items
    rows = _trained_rows(summary)
    ids = sorted({i for r in rows for i in (summary.per_image_scores.get(r.id) or {})})[:MAX_SCAN]
    index["scanned"] = len(ids)
    for image_id in ids:
        s = samples.get(image_id)
        if s is None:
            continue
        why: dict[str, str] = {}
        best: tuple[float, np.ndarray] | None = None
        for r in rows:
            alpha = _cached(r, s)
            if alpha is None:
                continue
            conf = confidence(alpha)
            reason = unsure(conf)
            if reason is None:
                why = {}
                break
            why[r.id] = reason
            if best is None or conf["peak"] > best[0]:
                best = (conf["peak"], alpha)
        if why and best is not None:
            from studio.visuals import composite

            png = f"{k:03d}.png"
            (out / png).write_bytes(encode_png(_thumb(composite(s.image(), best[1]))))
            k += 1
            index["unconfident"].append({"image": image_id, "png": png, "why": why})
    atomic_write_json(out / INDEX, index)
    return index


def read(folder: Path) -> dict[str, Any] | None:
    """A drill-down written by `build`, or None."""
    try:
        return json.loads((folder / INDEX).read_text())
    except (OSError, ValueError):
        return None


def gallery(index: dict[str, Any], folder: Path, variant_id: str | None) -> list[tuple[str, str]]:
    """(thumbnail, caption) of a variant's worst images, worst first."""
    from studio.bench.table import metric_label

    label = metric_label(index["metric"]) + (" agreement" if index.get("reference") else "")
    out = []
    for w in (index.get("variants") or {}).get(variant_id or "", []):
        if w.get("png"):
            out.append((str(folder / w["png"]), f"{w['image']} · {label} {w['value']:.4f} · "
                                                 f"{w['share']:.0%} of its loss"))
    return out


def flagged(index: dict[str, Any], folder: Path) -> list[tuple[str, str]]:
    """(thumbnail, caption) of the images no model is confident on."""
    return [(str(folder / u["png"]), f"{u['image']}: " + "; ".join(f"{v} {r}" for v, r in u["why"].items()))
            for u in index.get("unconfident") or []]
