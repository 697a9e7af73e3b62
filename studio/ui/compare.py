"""The Compare tab's handlers: one image, several variants, results streamed as each finishes.

Plain functions: `compare_one` does one variant (engine + visuals + metrics), `compare`
is the generator the Run button and the `compare` API call. Tests call both directly.

Without a mask, a *reference variant* can stand in for one: it runs first, and every other
variant's error overlay and metrics are measured against its matte. Those numbers are
agreement with that variant, never accuracy, and every output says so.
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
from studio.fileio import atomic_write_json, atomic_write_text
from studio.matte import TIMING_KEYS, Matte
from studio.ui import outputs, space
from studio.ui import variants as variants_ui
from studio.ui.uploads import UploadError, read_image, read_mask
from studio.zoo import load_zoo

COLD_NOTE_MS = 50.0  # below this a "load" is just a pool lookup or a weightless model
TIMING_COLUMNS = ["pre", "infer", "post", "total"]
# the table's widths: every headline metric fits beside the timings in the Compare column at 1440 px
COLUMN_WIDTHS = ["220px", *(["70px"] * len(TIMING_COLUMNS))]
METRIC_WIDTH = "78px"  # "0.9854" in bold (the column's best) on one line
MUTED_STYLE = "color: var(--body-text-color-subdued); font-style: italic; opacity: 0.7"
BEST_STYLE = "font-weight: 700; background: rgba(34, 197, 94, 0.20)"  # the best value of its column
TABLE_FILES = ("compare_results.csv", "compare_results.json")


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
    untrained: bool = False  # random weights: its metrics are noise, shown greyed
    is_reference: bool = False  # the reference variant the others are scored against

    def row(self) -> dict[str, Any]:
        """One JSON-serialisable row of the `compare` API's table."""
        return {
            "id": self.id,
            "status": "ok" if self.ok else "failed",
            "error": self.error,
            "flags": list(self.flags),
            "untrained": self.untrained,
            "is_reference": self.is_reference,
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


def score(alpha: np.ndarray, reference: np.ndarray, agreement: bool = False) -> dict[str, float | None]:
    """Every metric of `studio.metrics` for one prediction against its reference: a mask, or
    (`agreement`) a reference model's matte, scored as the suite scores it."""
    # lazy: keeps scipy/skimage out of app start-up
    from studio.metrics import score_agreement, score_image

    sc = score_agreement(alpha, reference) if agreement else score_image(alpha, reference)
    return {k: _finite(v) for k, v in sc.values.items()}


def levels(alpha: np.ndarray) -> np.ndarray:
    """A matte's 8-bit levels, rounded exactly as the metrics round it (so scoring the levels
    gives the same numbers as scoring the float matte), at a quarter of its memory."""
    from studio.metrics.inputs import to_u8  # lazy, as in `score`

    return to_u8(alpha, "matte")


@space.gpu(duration=120)
def infer(variant_id: str, image: np.ndarray) -> tuple[Matte, float, bool]:
    """(matte, seconds spent loading, whether it was a cold load): `engine.infer` on the app's
    device for the variant's backend.

    The app's only way to a model (Compare, and the Arena's cut-outs): on ZeroGPU this is the
    function that gets the GPU.
    """
    return engine.infer(variant_id, image, device=space.device_for(load_zoo().get(variant_id).backend))


def _run(variant_id: str, image: np.ndarray, folder: Path) -> tuple[VariantResult, np.ndarray | None]:
    """Run one variant and write its cut-out, mask and checkerboard PNGs. Returns the result
    and the matte's 8-bit levels (None when it failed); never raises."""
    try:
        v = load_zoo().get(variant_id)
        info = inventory.describe(v)
    except StudioError as exc:
        return VariantResult(variant_id, ok=False, error=str(exc)), None
    flags, untrained = info.flags, info.untrained
    try:
        matte, load_s, cold = infer(v.id, image)
    except StudioError as exc:
        return VariantResult(v.id, ok=False, error=str(exc), flags=flags, untrained=untrained), None
    except Exception as exc:  # a crash in one model must not stop the others
        return VariantResult(v.id, ok=False, error=f"{type(exc).__name__}: {exc}", flags=flags,
                             untrained=untrained), None

    timings = {k: matte.timings.get(k, 0.0) * 1000.0 for k in TIMING_KEYS}
    timings["total"] = sum(timings.values())
    res = VariantResult(v.id, ok=True, flags=flags, cold=cold, load_ms=load_s * 1000.0,
                        timings_ms=timings, untrained=untrained)
    stem = outputs.safe_name(v.id)
    # Everything below uses the 8-bit levels (what the PNGs and the metrics keep anyway):
    # the float matte of a 50 MP upload alone is 200 MB.
    alpha = levels(matte.alpha)
    del matte
    res.files["cutout"] = outputs.write_png(folder, f"{stem}_cutout.png", visuals.cutout_rgba(image, alpha))
    res.files["mask"] = outputs.write_png(folder, f"{stem}_mask.png", alpha)  # grayscale PNG
    res.files["checkerboard"] = outputs.write_png(folder, f"{stem}_on_checkerboard.png",
                                                  visuals.composite(image, alpha))
    return res, alpha


def _score_into(res: VariantResult, image: np.ndarray, alpha: np.ndarray, reference: np.ndarray,
                folder: Path, agreement: bool = False) -> None:
    """The error overlay and metrics of one finished variant against the reference (a mask,
    or with `agreement` a reference model's matte: both normalised alike first)."""
    stem = outputs.safe_name(res.id)
    if agreement:  # `reference` comes prepared by `run_reference`
        from studio.metrics import agreement_levels

        alpha = agreement_levels(alpha)
    res.files["errors"] = outputs.write_png(folder, f"{stem}_errors.png", visuals.error_overlay(image, alpha, reference))
    try:
        res.metrics = score(alpha, reference, agreement)
    except Exception as exc:  # metrics failing is reported, the cut-out still shows
        res.error = f"metrics failed: {type(exc).__name__}: {exc}"


def compare_one(variant_id: str, image: np.ndarray, reference: np.ndarray | None,
                folder: Path, agreement: bool = False) -> VariantResult:
    """Run one variant and write its PNGs; any failure becomes a failed result, not a raise.

    `reference` is a mask as float [0, 1] or as 8-bit levels (what `compare` passes);
    `agreement`: it is a reference model's mask from `run_reference`, so this variant's
    matte is normalised alike before scoring."""
    res, alpha = _run(variant_id, image, folder)
    if alpha is not None and reference is not None:
        _score_into(res, image, alpha, reference, folder, agreement)
    return res


def run_reference(variant_id: str, image: np.ndarray, folder: Path) -> tuple[VariantResult, np.ndarray | None]:
    """Run the reference variant: (its result, its matte prepared once as the mask every other
    variant is scored against (`studio.metrics.agreement_reference`), or None).

    Its own row is scored as the suite scores a reference: against itself, as a perfect copy
    would be, i.e. the ceiling every other variant is measured up to."""
    res, alpha = _run(variant_id, image, folder)
    res.is_reference = True
    if alpha is None:
        return res, None
    from studio.metrics import agreement_reference

    reference = agreement_reference(alpha)
    _score_into(res, image, alpha, reference, folder, agreement=True)
    return res, reference


def table_headers(metric_names: list[str]) -> list[str]:
    """Timings in ms (preprocess, inference, postprocess, total), then the metrics by their usual
    names. A cold model load is noted beside the variant, not added to its timings."""
    from studio.metrics.conventions import METRIC_LABELS

    return ["variant", *(f"{c} ms" for c in TIMING_COLUMNS), *(METRIC_LABELS.get(m, m) for m in metric_names)]


def result_label(r: VariantResult) -> str:
    """A variant as the table, captions and slider picker name it (untrained ones say so)."""
    return variants_ui.label(r.id, r.untrained) + ("  (reference)" if r.is_reference else "")


def table(results: list[VariantResult], with_reference: bool) -> tuple[list[str], list[list[Any]]]:
    """The Dataframe: timings in ms, then the headline metrics (when a reference was given)."""
    names: list[str] = []
    if with_reference:
        present = {k for r in results if r.metrics for k in r.metrics}
        from studio.metrics.conventions import HEADLINE_METRICS

        names = [m for m in HEADLINE_METRICS if m in present]
    rows = []
    for r in results:
        label = result_label(r)
        if not r.ok:
            rows.append([f"{label}  ✗ failed", *([None] * len(TIMING_COLUMNS)), *([None] * len(names))])
            continue
        t = r.timings_ms
        timing_cells = [t["preprocess"], t["inference"], t["postprocess"], t["total"]]
        metric_cells = [(r.metrics or {}).get(m) for m in names]
        cold = r.cold and r.load_ms >= COLD_NOTE_MS
        rows.append([label + (f" · cold {r.load_ms / 1000:.1f} s" if cold else ""),
                     *[round(x, 1) for x in timing_cells],
                     *[None if x is None else round(x, 4) for x in metric_cells]])
    return table_headers(names), rows


def _metric_keys(headers: list[str]) -> list[str | None]:
    """Each column's metric key (None for the variant and timing columns)."""
    from studio.metrics.conventions import METRIC_LABELS

    by_label = {v: k for k, v in METRIC_LABELS.items()}
    first_metric = 1 + len(TIMING_COLUMNS)
    return [None if j < first_metric else by_label.get(h, h) for j, h in enumerate(headers)]


def number_text(value: float | None, metric: str | None, ms_decimals: int = 1) -> str:
    """One format per column: milliseconds with the column's decimals (`ms_format`), every
    metric with four."""
    if value is None:
        return ""
    return f"{value:,.{ms_decimals}f}" if metric is None else f"{value:.4f}"


def ms_decimals(values: list[Any]) -> int:
    """A timing column's one format: a decimal while every value is under 100 ms, else none."""
    nums = [v for v in values if isinstance(v, int | float)]
    return 1 if nums and max(nums) < 100 else 0


def best_rows(results: list[VariantResult], rows: list[list[Any]], headers: list[str]) -> list[set[int]]:
    """Per column, the rows holding its best value (lowest time; best metric in its own
    direction). Untrained, failed and reference rows never count: their numbers are not a
    contest (noise, missing, or the reference against itself)."""
    from studio.metrics import HIGHER_IS_BETTER

    keys = _metric_keys(headers)
    out: list[set[int]] = [set() for _ in headers]
    contenders = [i for i, r in enumerate(results) if r.ok and not r.untrained and not r.is_reference]
    for j in range(1, len(headers)):
        vals = {i: rows[i][j] for i in contenders if isinstance(rows[i][j], int | float)}
        if len(vals) < 2:
            continue
        higher = keys[j] is not None and HIGHER_IS_BETTER.get(keys[j], True)
        best = max(vals.values()) if higher else min(vals.values())
        out[j] = {i for i, v in vals.items() if v == best}
    return out


def table_value(results: list[VariantResult], with_reference: bool) -> dict[str, Any]:
    """The Dataframe value: `table`, each column in one number format, its best value
    highlighted, and an untrained variant's metrics greyed (random weights: noise, not scores).
    The cells stay numbers, so sorting by a column sorts by value."""
    headers, rows = table(results, with_reference)
    value: dict[str, Any] = {"headers": headers, "data": rows,
                             "column_widths": [*COLUMN_WIDTHS, *([METRIC_WIDTH] * (len(headers) - len(COLUMN_WIDTHS)))]}
    if not rows:
        return value
    first_metric = 1 + len(TIMING_COLUMNS)
    keys = _metric_keys(headers)
    best = best_rows(results, rows, headers)
    decimals = [ms_decimals([row[j] for row in rows]) for j in range(len(headers))]
    display, styling = [], []
    for i, (r, row) in enumerate(zip(results, rows, strict=True)):
        display.append([row[0], *(number_text(row[j], keys[j], decimals[j]) for j in range(1, len(headers)))])
        styles = []
        for j in range(len(headers)):
            st = MUTED_STYLE if (r.untrained and j >= first_metric) else ""
            if i in best[j]:
                st = BEST_STYLE
            styles.append(st)
        styling.append(styles)
    value["metadata"] = {"display_value": display, "styling": styling}
    return value


def gallery(results: list[VariantResult], with_reference: bool,
            reference_id: str | None = None) -> list[tuple[str, str]]:
    """One row per variant: cut-out on a checkerboard, mask, and the error overlay."""
    items: list[tuple[str, str]] = []
    for r in results:
        if not r.ok:
            continue
        items.append((str(r.files["checkerboard"]), result_label(r)))
        items.append((str(r.files["mask"]), "mask"))
        if with_reference and "errors" in r.files:
            iou = (r.metrics or {}).get("iou")
            if r.is_reference:
                caption = "the reference itself"
            elif reference_id:
                # the number first: a narrow thumbnail truncates the end of its caption
                caption = (f"IoU {iou:.3f}: " if iou is not None else "") + labels.agreement_with(reference_id)
            else:
                caption = "errors" + (f" · IoU {iou:.3f}" if iou is not None else "")
            if r.untrained and not r.is_reference:
                caption += " (untrained: not a score)"
            items.append((str(r.files["errors"]), caption))
    return items


def downloads(results: list[VariantResult]) -> list[str]:
    return [str(r.files[k]) for r in results if r.ok for k in ("cutout", "mask")]


def write_tables(results: list[VariantResult], folder: Path, image_name: str,
                 reference: dict[str, Any] | None) -> list[str]:
    """compare_results.csv and .json: one row per variant, timings and every metric."""
    import csv
    import io

    from studio.metrics.conventions import METRIC_NAMES

    present = [m for m in METRIC_NAMES if any(r.metrics and m in r.metrics for r in results)]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["variant", "status", "error", "untrained", "is_reference", "reference", "cold_load", "load_ms",
                *(f"{k}_ms" for k in (*TIMING_KEYS, "total")), *present])
    ref_text = _reference_text(reference)
    for r in results:
        t = r.timings_ms
        w.writerow([r.id, "ok" if r.ok else "failed", r.error or "", r.untrained, r.is_reference,
                    ref_text if r.metrics else "", r.cold, round(r.load_ms, 3),
                    *(round(t[k], 3) if k in t else "" for k in (*TIMING_KEYS, "total")),
                    *("" if (r.metrics or {}).get(m) is None else r.metrics[m] for m in present)])
    csv_path, json_path = (folder / n for n in TABLE_FILES)
    atomic_write_text(csv_path, buf.getvalue())
    atomic_write_json(json_path, {"image": image_name, "reference": reference,
                                  "metrics_are": ref_text or "no reference: timings only",
                                  "rows": [r.row() for r in results]})
    return [str(csv_path), str(json_path)]


def _reference_text(reference: dict[str, Any] | None) -> str:
    if not reference:
        return ""
    if reference.get("kind") == "variant":
        return labels.agreement_with(reference["id"])
    return "against the reference mask"


# Seconds each variant last took here (load included when it was loaded for that run): the
# Compare line's ETA comes from these, measured in this app, never from a guess.
_seconds: dict[str, float] = {}


def step_text(variant_id: str) -> str:
    """What runs next: "loading isnet-general-use (176 MB)…" when it is not loaded yet."""
    from studio.ui.progress import loading_text, model_size_mb

    if engine.is_loaded(variant_id, space.device_for(_backend(variant_id))):
        return f"running {variant_id}…"
    return loading_text(variant_id, model_size_mb(variant_id))[:-1] + ", then running it…"


def _backend(variant_id: str) -> str:
    try:
        return load_zoo().get(variant_id).backend
    except StudioError:
        return ""


def eta_s(pending: list[str]) -> float | None:
    """Seconds the pending variants should take, when each has run here before (else None)."""
    if not pending or any(v not in _seconds for v in pending):
        return None
    return sum(_seconds[v] for v in pending)


def status_markdown(results: list[VariantResult], pending: list[str], total: int,
                    elapsed_s: float, reference_id: str | None = None) -> str:
    """The one progress line (then the notes): the step running now, how far, and the time left."""
    from studio.ui.progress import duration

    done = len(results)
    failed = [r for r in results if not r.ok]
    lines = []
    if pending:
        eta = eta_s(pending)
        left = f" · ~{duration(eta)} left (from these models' last runs here)" if eta is not None else ""
        lines.append(f"▸ **{step_text(pending[0])}** — {done} of {total} done, {duration(elapsed_s)} elapsed{left}")
    else:
        ok = done - len(failed)
        lines.append(f"**✓ Done** — {ok} of {total} variants ran in {elapsed_s:.1f} s"
                     if not failed else
                     f"**⚠ Done** — {ok} of {total} variants ran, {len(failed)} failed ({elapsed_s:.1f} s)")
    if reference_id:
        lines.append(f"\nNo mask: metrics and error overlays are **{labels.agreement_with(reference_id)}** "
                     f"(its matte stands in for the mask), not accuracy.")
    for r in failed:
        lines.append(f"- ✗ `{r.id}`: {r.error}")
    if any(r.cold and r.load_ms >= COLD_NOTE_MS for r in results if r.ok):
        lines.append("\n<sub>“cold N s”: the model was loaded for this run (N s, not part of the timings). "
                     "Run again for warm timings.</sub>")
    if any(r.untrained for r in results):
        lines.append(f"<sub>⚠ untrained variants: {labels.UNTRAINED}; their metrics are greyed (noise, "
                     "not scores).</sub>")
    if results and any(r.metrics for r in results):
        lines.append("\n<sub>maxF: max F-measure (β² = 0.3) · S: S-measure · meanE: mean E-measure · "
                     "bIoU: boundary IoU · best value per column highlighted; click a header to sort. Every "
                     "metric is in the JSON rows and the CSV/JSON download.</sub>")
    return "\n".join(lines)


@dataclass
class CompareState:
    """What the slider picker and the layout need between events (kept per browser session)."""

    original: str | None = None
    with_reference: bool = False
    cutouts: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # id -> picker label (untrained say so)
    reference_id: str | None = None  # a reference variant stands in for the mask
    tables: list[str] = field(default_factory=list)  # compare_results.csv and .json

    def as_dict(self) -> dict[str, Any]:
        return {"original": self.original, "with_reference": self.with_reference,
                "cutouts": dict(self.cutouts), "labels": dict(self.labels),
                "reference_id": self.reference_id, "tables": list(self.tables)}


def _outputs(results: list[VariantResult], with_reference: bool, state: CompareState,
             status: str, slider_variant: str | None) -> tuple:
    slider = None
    if slider_variant and state.original:
        slider = (state.original, state.cutouts[slider_variant])
    return (
        gallery(results, with_reference, state.reference_id),
        slider,
        {"choices": list(state.cutouts), "value": slider_variant},
        table_value(results, with_reference),
        [r.row() for r in results],
        downloads(results),
        status,
        state.as_dict(),
    )


def compare(image: Any, reference: Any = None, variants: list[str] | None = None,
            reference_variant: str | None = None) -> Iterator[tuple]:
    """Run each chosen variant on one image, yielding the outputs after each finishes.

    Yields (gallery, slider, slider picker, table, rows, downloads, status, state). The
    picker and table are plain dicts here; the layout turns them into component updates.
    Raises UploadError for an unusable image or mask, or no variant named, before any
    model runs: an empty choice is an error, never "every installed variant".

    `reference_variant` (used only without a mask): run that variant first and score the
    others against its matte; the state's `reference_id` says so to the layout.
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
    rgb, name = read_image(image)
    h, w = rgb.shape[:2]
    ref = read_mask(reference, size=(w, h), levels=True)  # 8-bit: a quarter of a float mask
    ref_alpha = ref[0] if ref else None
    wanted_ref = (reference_variant or "").strip() or None
    ref_id = wanted_ref if ref is None else None  # an uploaded mask wins over a reference model
    if ref_id is not None:
        try:
            load_zoo().get(ref_id)
        except StudioError as exc:
            raise UploadError(f"reference model: {exc}") from None
        ids = [ref_id, *[v for v in ids if v != ref_id]]  # the reference runs first
    folder = outputs.new_dir("compare")
    state = CompareState(original=str(outputs.write_png(folder, "original.png", rgb)),
                         with_reference=ref is not None or ref_id is not None, reference_id=ref_id)
    described = {"kind": "variant", "id": ref_id} if ref_id else ({"kind": "mask", "name": ref[1]} if ref else None)
    results: list[VariantResult] = []
    t0 = time.perf_counter()
    slider_variant: str | None = None
    yield _outputs(results, state.with_reference, state,
                   status_markdown(results, ids, len(ids), 0.0, ref_id), None)
    for i, vid in enumerate(ids):
        t_variant = time.perf_counter()
        if ref_id is not None and i == 0:
            res, ref_alpha = run_reference(vid, rgb, folder)
            if ref_alpha is None:  # without its matte there is nothing to score against
                state.with_reference, state.reference_id, described = False, None, None
        else:
            res = compare_one(vid, rgb, ref_alpha, folder, agreement=state.reference_id is not None)
        results.append(res)
        if res.ok:
            _seconds[res.id] = time.perf_counter() - t_variant
            state.cutouts[res.id] = str(res.files["checkerboard"])
            state.labels[res.id] = result_label(res)
            slider_variant = slider_variant or res.id
        state.tables = write_tables(results, folder, name, described)
        status = status_markdown(results, ids[i + 1:], len(ids), time.perf_counter() - t0, state.reference_id)
        if wanted_ref and ref is not None:
            status += f"\n\n<sub>Scored against the uploaded mask; the reference model `{wanted_ref}` is used " \
                      "only when no mask is given.</sub>"
        yield _outputs(results, state.with_reference, state, status, slider_variant)


def engine_default_variants() -> list[str]:
    """What the app selects by default (installed, trained, no parity references), in zoo order."""
    return [v.id for v in inventory.default_variants()]


def picker_choices(state: dict[str, Any] | None) -> list[tuple[str, str]]:
    """(label, id) of every finished variant for the slider picker: untrained ones say so."""
    if not state:
        return []
    names = state.get("labels") or {}
    return [(names.get(vid, vid), vid) for vid in state.get("cutouts") or {}]


ORIGINAL = "original"  # the left picker's value for the uploaded image itself


def left_choices(state: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The slider's left side: the original image, or any finished variant (model against model)."""
    return [("the original image", ORIGINAL), *picker_choices(state)]


def slider_for(variant_id: str | None, state: dict[str, Any] | None,
               left: str | None = ORIGINAL) -> tuple[str, str] | None:
    """The (left, right) pair the image slider shows: the original (or another variant's cut-out,
    `left`) against one finished variant's cut-out."""
    if not state or not variant_id or variant_id not in (state.get("cutouts") or {}):
        return None
    cutouts = state["cutouts"]
    left_img = cutouts[left] if left and left != ORIGINAL and left in cutouts else state["original"]
    return left_img, cutouts[variant_id]


def slider_label(left: str | None, right: str | None) -> str:
    a = "original" if not left or left == ORIGINAL else left
    return f"{a} ↔ {right or 'cut-out'} (drag the handle)"


def variant_at(index: int, state: dict[str, Any] | None) -> str | None:
    """Which variant a click on gallery item `index` belongs to (one gallery row each)."""
    if not state:
        return None
    order = list(state.get("cutouts") or {})
    per_row = 3 if state.get("with_reference") else 2
    i = index // per_row
    return order[i] if 0 <= i < len(order) else None
