"""The Compare tab's handlers: one image, several variants, results streamed as each finishes.

Plain functions: `compare_one` does one variant (engine + visuals + metrics), `compare`
is the generator the Run button and the `compare` API call. Tests call both directly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from studio import engine, inventory, labels, visuals
from studio.errors import StudioError
from studio.matte import TIMING_KEYS, Matte
from studio.pool import DEFAULT_POOL
from studio.ui import outputs, space
from studio.ui.uploads import UploadError, read_image, read_mask
from studio.zoo import load_zoo

COLD_NOTE_MS = 50.0  # below this a "load" is just a pool lookup or a weightless model
TIMING_COLUMNS = ["pre", "infer", "post", "total"]


@dataclass
class VariantResult:
    """What one variant gave on one image: the API row plus the PNGs on disk."""

    id: str
    ok: bool
    error: str | None = None
    flags: list[str] = field(default_factory=list)
    cold: bool = False
    load_ms: float = 0.0
    timings_ms: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float | None] | None = None
    files: dict[str, Path] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """One JSON-serialisable row of the `compare` API's table."""
        return {
            "id": self.id,
            "status": "ok" if self.ok else "failed",
            "error": self.error,
            "flags": list(self.flags),
            "cold_load": self.cold,
            "load_ms": round(self.load_ms, 3),
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
            "metrics": self.metrics,
        }


def _finite(x: Any) -> float | None:
    """A JSON number: NaN and infinities (e.g. a metric undefined on an empty mask) become null."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def score(alpha: np.ndarray, reference: np.ndarray) -> dict[str, float | None]:
    """Every metric of `studio.metrics` for one prediction against its reference."""
    from studio.metrics import score_image  # lazy: keeps scipy/skimage out of app start-up

    return {k: _finite(v) for k, v in score_image(alpha, reference).values.items()}


def levels(alpha: np.ndarray) -> np.ndarray:
    """A matte's 8-bit levels, rounded exactly as the metrics round it (so scoring the levels
    gives the same numbers as scoring the float matte), at a quarter of its memory."""
    from studio.metrics.inputs import to_u8  # lazy, as in `score`

    return to_u8(alpha, "matte")


@space.gpu(duration=120)
def infer(variant_id: str, image: np.ndarray) -> tuple[Matte, float, bool]:
    """(matte, seconds spent loading, whether it was a cold load) through the shared pool.

    The only function that touches a model: on ZeroGPU it is the one that gets the GPU.
    """
    v = load_zoo().get(variant_id)
    device = space.device_for(v.backend)
    loaded = DEFAULT_POOL.keys()  # a method of the pool, not a dict view
    cold = not any(k[0] == v.id and k[1] == device for k in loaded)
    t0 = time.perf_counter()
    runner = engine.get_runner(v, device=device)
    load_s = time.perf_counter() - t0
    return engine.run_runner(runner, image), load_s, cold


def compare_one(variant_id: str, image: np.ndarray, reference: np.ndarray | None,
                folder: Path) -> VariantResult:
    """Run one variant and write its PNGs; any failure becomes a failed result, not a raise.

    `reference` is a mask as float [0, 1] or as 8-bit levels (what `compare` passes)."""
    try:
        v = load_zoo().get(variant_id)
        flags = inventory.describe(v).flags
    except StudioError as exc:
        return VariantResult(variant_id, ok=False, error=str(exc))
    try:
        matte, load_s, cold = infer(v.id, image)
    except StudioError as exc:
        return VariantResult(v.id, ok=False, error=str(exc), flags=flags)
    except Exception as exc:  # a crash in one model must not stop the others
        return VariantResult(v.id, ok=False, error=f"{type(exc).__name__}: {exc}", flags=flags)

    timings = {k: matte.timings.get(k, 0.0) * 1000.0 for k in TIMING_KEYS}
    timings["total"] = sum(timings.values())
    res = VariantResult(v.id, ok=True, flags=flags, cold=cold, load_ms=load_s * 1000.0,
                        timings_ms=timings)
    stem = outputs.safe_name(v.id)
    # Everything below uses the 8-bit levels (what the PNGs and the metrics keep anyway):
    # the float matte of a 50 MP upload alone is 200 MB.
    alpha = levels(matte.alpha)
    del matte
    res.files["cutout"] = outputs.write_png(folder, f"{stem}_cutout.png", visuals.cutout_rgba(image, alpha))
    res.files["mask"] = outputs.write_png(folder, f"{stem}_mask.png", alpha)  # grayscale PNG
    res.files["checkerboard"] = outputs.write_png(folder, f"{stem}_on_checkerboard.png",
                                                  visuals.composite(image, alpha))
    if reference is not None:
        res.files["errors"] = outputs.write_png(folder, f"{stem}_errors.png",
                                                visuals.error_overlay(image, alpha, reference))
        try:
            res.metrics = score(alpha, reference)
        except Exception as exc:  # metrics failing is reported, the cut-out still shows
            res.error = f"metrics failed: {type(exc).__name__}: {exc}"
    return res


def table_headers(metric_names: list[str]) -> list[str]:
    """Timings in ms (preprocess, inference, postprocess, total), then the metrics by their usual
    names. A cold model load is noted beside the variant, not added to its timings."""
    from studio.metrics.conventions import METRIC_LABELS

    return ["variant", *(f"{c} ms" for c in TIMING_COLUMNS), *(METRIC_LABELS.get(m, m) for m in metric_names)]


def table(results: list[VariantResult], with_reference: bool) -> tuple[list[str], list[list[Any]]]:
    """The Dataframe: timings in ms, then the headline metrics (when a reference was given)."""
    names: list[str] = []
    if with_reference:
        present = {k for r in results if r.metrics for k in r.metrics}
        from studio.metrics.conventions import HEADLINE_METRICS

        names = [m for m in HEADLINE_METRICS if m in present]
    rows = []
    for r in results:
        label = r.id + ("  ⚠ untrained" if labels.UNTRAINED in r.flags else "")
        if not r.ok:
            rows.append([f"{label}  ✗ failed", *([None] * len(TIMING_COLUMNS)), *([None] * len(names))])
            continue
        t = r.timings_ms
        timing_cells = [t["preprocess"], t["inference"], t["postprocess"], t["total"]]
        metric_cells = [(r.metrics or {}).get(m) for m in names]
        cold = r.cold and r.load_ms >= COLD_NOTE_MS
        rows.append([label + (f" · cold {r.load_ms / 1000:.1f} s" if cold else ""),
                     *[round(x, 1) if x < 10 else round(x) for x in timing_cells],
                     *[None if x is None else round(x, 4) for x in metric_cells]])
    return table_headers(names), rows


def gallery(results: list[VariantResult], with_reference: bool) -> list[tuple[str, str]]:
    """One row per variant: cut-out on a checkerboard, mask, and the error overlay."""
    items: list[tuple[str, str]] = []
    for r in results:
        if not r.ok:
            continue
        items.append((str(r.files["checkerboard"]), r.id))
        items.append((str(r.files["mask"]), "mask"))
        if with_reference and "errors" in r.files:
            iou = (r.metrics or {}).get("iou")
            tail = f" · IoU {iou:.3f}" if iou is not None else ""
            items.append((str(r.files["errors"]), f"errors{tail}"))
    return items


def downloads(results: list[VariantResult]) -> list[str]:
    return [str(r.files[k]) for r in results if r.ok for k in ("cutout", "mask")]


def status_markdown(results: list[VariantResult], pending: list[str], total: int,
                    elapsed_s: float) -> str:
    done = len(results)
    failed = [r for r in results if not r.ok]
    lines = []
    if pending:
        lines.append(f"**Running `{pending[0]}`…** — {done} of {total} done, {elapsed_s:.1f} s elapsed")
    else:
        ok = done - len(failed)
        lines.append(f"**✓ Done** — {ok} of {total} variants ran in {elapsed_s:.1f} s"
                     if not failed else
                     f"**⚠ Done** — {ok} of {total} variants ran, {len(failed)} failed ({elapsed_s:.1f} s)")
    for r in failed:
        lines.append(f"- ✗ `{r.id}`: {r.error}")
    if any(r.cold and r.load_ms >= COLD_NOTE_MS for r in results if r.ok):
        lines.append("\n<sub>“cold N s”: the model was loaded for this run (N s, not part of the timings). "
                     "Run again for warm timings.</sub>")
    if results and any(r.metrics for r in results):
        lines.append("<sub>maxF: max F-measure (β² = 0.3) · S: S-measure · meanE: mean E-measure · "
                     "bIoU: boundary IoU; every metric is in the JSON rows.</sub>")
    return "\n".join(lines)


@dataclass
class CompareState:
    """What the slider picker needs between events (kept per browser session)."""

    original: str | None = None
    with_reference: bool = False
    cutouts: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"original": self.original, "with_reference": self.with_reference,
                "cutouts": dict(self.cutouts)}


def _outputs(results: list[VariantResult], with_reference: bool, state: CompareState,
             status: str, slider_variant: str | None) -> tuple:
    headers, rows = table(results, with_reference)
    slider = None
    if slider_variant and state.original:
        slider = (state.original, state.cutouts[slider_variant])
    return (
        gallery(results, with_reference),
        slider,
        {"choices": list(state.cutouts), "value": slider_variant},
        {"headers": headers, "data": rows},
        [r.row() for r in results],
        downloads(results),
        status,
        state.as_dict(),
    )


def compare(image: Any, reference: Any = None, variants: list[str] | None = None) -> Iterator[tuple]:
    """Run each chosen variant on one image, yielding the outputs after each finishes.

    Yields (gallery, slider, slider picker, table, rows, downloads, status, state). The
    picker and table are plain dicts here; the layout turns them into component updates.
    Raises UploadError for an unusable image or mask, or no variant named, before any
    model runs: an empty choice is an error, never "every installed variant".
    """
    if isinstance(variants, str):  # an API caller may send "a, b" instead of a list
        variants = [v for v in variants.replace(",", " ").split() if v]
    ids = list(dict.fromkeys(variants or []))
    if not ids:
        installed = engine_default_variants()
        raise UploadError(
            "no variants chosen: tick at least one model (API callers: pass a list of variant ids"
            + (f"; installed here: {', '.join(installed)})" if installed
               else "; none is installed here: fetch weights on the Models tab)"))
    rgb, _name = read_image(image)
    h, w = rgb.shape[:2]
    ref = read_mask(reference, size=(w, h), levels=True)  # 8-bit: a quarter of a float mask
    ref_alpha = ref[0] if ref else None
    folder = outputs.new_dir("compare")
    state = CompareState(original=str(outputs.write_png(folder, "original.png", rgb)),
                         with_reference=ref is not None)
    results: list[VariantResult] = []
    t0 = time.perf_counter()
    slider_variant: str | None = None
    yield _outputs(results, ref is not None, state, status_markdown(results, ids, len(ids), 0.0), None)
    for i, vid in enumerate(ids):
        res = compare_one(vid, rgb, ref_alpha, folder)
        results.append(res)
        if res.ok:
            state.cutouts[res.id] = str(res.files["checkerboard"])
            slider_variant = slider_variant or res.id
        status = status_markdown(results, ids[i + 1:], len(ids), time.perf_counter() - t0)
        yield _outputs(results, ref is not None, state, status, slider_variant)


def engine_default_variants() -> list[str]:
    """Every installed variant, in zoo order: the Compare tab's default."""
    return [v.id for v in inventory.installed_variants()]


def slider_for(variant_id: str | None, state: dict[str, Any] | None) -> tuple[str, str] | None:
    """The (original, cut-out) pair the image slider shows for one finished variant."""
    if not state or not variant_id or variant_id not in (state.get("cutouts") or {}):
        return None
    return state["original"], state["cutouts"][variant_id]


def variant_at(index: int, state: dict[str, Any] | None) -> str | None:
    """Which variant a click on gallery item `index` belongs to (one gallery row each)."""
    if not state:
        return None
    order = list(state.get("cutouts") or {})
    per_row = 3 if state.get("with_reference") else 2
    i = index // per_row
    return order[i] if 0 <= i < len(order) else None
