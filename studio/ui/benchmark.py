"""The Benchmark tab's handlers: run `studio.bench.run_suite`, show its summary, re-recommend.

The app adds no second benchmark: it fills a `SuiteConfig`, forwards the suite's progress
events to the progress bar, and renders the summary it returns (or a past one from disk)
through `studio.bench.table.summary_table`, the cells the terminal and the report show too.

A labels-free run (`SuiteConfig.reference`): the user's images, masks or not, scored against a
reference model. Its numbers are agreement with that model, and every output here says so;
the images of a mixed folder that do have masks are scored against them in a block apart.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio import engine, settings
from studio.data import DatasetError
from studio.data.sources import folder_or_name, local_folder
from studio.fileio import temp_dir_beside
from studio.ui.progress import ProgressLine
from studio.ui.uploads import UploadError, clean_dir, extract_dataset_zip, upload_path

if TYPE_CHECKING:  # the app starts without importing the benchmark
    from studio.bench.results import Summary

SOURCE_EMBEDDED = "Embedded sample"
SOURCE_CATALOGUE = "Catalogue dataset / folder"
SOURCE_ZIP = "Upload a zip (im/ + gt/)"
SOURCE_IMAGES = "Your images, no masks (zip or folder)"
SOURCES = [SOURCE_EMBEDDED, SOURCE_CATALOGUE, SOURCE_ZIP, SOURCE_IMAGES]
GROUND_TRUTH = ""  # the reference picker's value for "the dataset's masks"
GROUND_TRUTH_LABEL = "the dataset's masks (ground truth)"

# The Benchmark table: the decision columns always show; the rest behind the column picker.
DECISION_KEYS = ("mark", "variant", "speedup", "p95", "memory", "size", "cost", "flags")  # + the quality metric
OPTIONAL_COLUMNS: list[tuple[str, str]] = [
    ("images run", "images"), ("failed images", "errors"), ("p50 ms", "p50"), ("p99 ms", "p99"),
    ("img/s", "ips"), ("cold start s", "cold"),
    ("maxF", "fmeasure_max"), ("S", "smeasure"), ("meanE", "emeasure_mean"), ("SSIM", "ssim"),
    ("MAE", "mae"), ("bIoU", "boundary_iou"), ("Dice", "dice"), ("wF", "wfmeasure"), ("meanF", "fmeasure_mean"),
    ("maxE", "emeasure_max"), ("IoU", "iou"), ("SAD (matting)", "sad"), ("MSE (matting)", "mse"),
    ("Grad (matting)", "grad"), ("Conn (matting)", "conn"),
]
DEFAULT_COLUMNS = ["images"]
NON_METRIC_KEYS = {"mark", "variant", "speedup", "images", "errors", "p50", "p95", "p99", "ips", "cold",
                   "memory", "size", "cost", "flags"}
# Widths that keep the decision columns inside a 1440 px window; the flags column wraps in what is
# left (a long flag wraps instead of pushing the table past the window). On a phone the table
# scrolls inside its own box.
COLUMN_WIDTHS = {"mark": "34px", "variant": "240px", "speedup": "72px", "images": "64px", "errors": "56px", "p50": "68px",
                 "p95": "68px", "p99": "68px", "ips": "62px", "cold": "66px", "memory": "72px", "size": "72px",
                 "cost": "76px", "flags": "190px"}
METRIC_WIDTH = "118px"  # "IoU agreement" on two lines beside the sort button
MUTED_STYLE = "color: var(--body-text-color-subdued); font-style: italic; opacity: 0.7"

ProgressFn = Callable[..., Any]


# --- datasets -----------------------------------------------------------------------------

def resolve_dataset(source: str, name: str | None, zip_file: Any, workdir: Path,
                    folder: str | None = None) -> str | None:
    """The `dataset` value for SuiteConfig: None (embedded), a catalogue name, or a folder
    (read by `studio.data.sources`, as the Arena reads it: no server folders on a hosted app)."""
    if source == SOURCE_EMBEDDED or not source:
        return None
    if source == SOURCE_ZIP:
        return str(extract_dataset_zip(zip_file, workdir / "zip"))
    if source == SOURCE_IMAGES:
        if upload_path(zip_file) is not None:
            return str(images_root(extract_dataset_zip(zip_file, workdir / "zip", masks_required=False)))
        folder = (folder or "").strip()
        if not folder:
            raise UploadError("upload a zip of your images, or type a folder of images on this machine")
        return _dataset(local_folder, folder)
    if source == SOURCE_CATALOGUE:
        name = (name or "").strip()
        if not name:
            raise UploadError("choose a catalogue dataset, or type a folder that holds im/ and gt/")
        return _dataset(folder_or_name, name)
    raise UploadError(f"unknown dataset source {source!r}; one of: {', '.join(SOURCES)}")


def _dataset(read: Callable[[str], str], text: str) -> str:
    try:
        return read(text)
    except DatasetError as exc:
        raise UploadError(str(exc)) from None


def images_root(folder: Path) -> Path:
    """The folder of an extracted zip that `studio.data` opens: itself, or its one top folder
    (a zip of a folder of images). The layout itself is `studio.data.layout.detect`'s call."""
    from studio.data.layout import DatasetError, detect

    try:
        detect(folder)
        return folder
    except DatasetError as exc:
        children = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__MACOSX"))]
        if len(children) == 1:
            try:
                detect(children[0])
                return children[0]
            except DatasetError:
                pass
        raise UploadError(f"the zip: {exc}".replace(str(folder), "the zip")) from None


# --- progress --------------------------------------------------------------------------------

def progress_adapter(progress: ProgressFn | None, n_variants: int,
                     line: ProgressLine | None = None) -> Callable[[dict[str, Any]], None]:
    """Turn the suite's events into one bar over all model passes (images advance it in
    between) and one line of text: the step running now ("loading isnet-general-use (176 MB)…")
    and an ETA from the per-image times measured so far (`studio.ui.progress.ProgressLine`)."""
    line = line or ProgressLine(n_variants)

    def on_event(ev: dict[str, Any]) -> None:
        line.event(ev)
        if progress is not None:
            progress(line.frac, desc=line.short())

    return on_event


# --- rendering a summary ------------------------------------------------------------------

def visible_columns(summary: Summary, extra: list[str] | None = None) -> tuple[list[str], set[str], bool]:
    """(metric columns, other column keys, p99) the table shows: the decision columns, what the
    column picker adds, and the columns a run makes relevant (cold start measured, errors)."""
    quality = summary.quality_metric
    extra = list(DEFAULT_COLUMNS if extra is None else extra)
    metrics = [quality, *[k for k in extra if k not in NON_METRIC_KEYS and k != quality]]
    keys = set(DECISION_KEYS) | {k for k in extra if k in NON_METRIC_KEYS}
    if any(r.cold_start for r in summary.variants):
        keys.add("cold")
    if any(r.errors for r in summary.variants):
        keys.add("errors")
    return metrics, keys, "p99" in keys


def summary_table(summary: Summary, rec: dict[str, Any] | None = None,
                  metrics: list[str] | None = None, extra: list[str] | None = None) -> dict[str, Any]:
    """The summary as a Dataframe value (the same cells as the terminal and the report).

    `extra`: the column picker's keys (None: the defaults); `metrics` (older callers) adds metric
    columns. An untrained variant's quality cells are greyed (`Cell.muted`). In a labels-free run
    the metric headers say "agreement". `column_widths` is for the layout, not the value."""
    from studio.bench.table import summary_table as cells

    if metrics:
        extra = [*(DEFAULT_COLUMNS if extra is None else extra), *metrics, "p99"]
    metric_keys, keys, p99 = visible_columns(summary, extra)
    cols, rows = cells(summary, rec, metrics=metric_keys, p99=p99)
    keep = [i for i, c in enumerate(cols) if c.key in keys or c.key in metric_keys]
    headers = [cols[i].header for i in keep]  # "IoU agreement" against a reference variant (bench.table)
    data, styling = [], []
    for r in rows:
        # numbers stay numbers (the Dataframe sorts them); labels keep their words
        data.append([r[i].value if cols[i].numeric else r[i].text for i in keep])
        styling.append([MUTED_STYLE if r[i].muted else "" for i in keep])
    value: dict[str, Any] = {"headers": headers, "data": data,
                             "column_widths": [COLUMN_WIDTHS.get(cols[i].key, METRIC_WIDTH) for i in keep]}
    if any(any(row) for row in styling):
        value["metadata"] = {"display_value": None, "styling": styling}
    return value


def table_label(summary: Summary | dict[str, Any] | None) -> str:
    """The Benchmark table's title: what the quality numbers are measured against."""
    ref = _reference_id(summary)
    base = "Summary: ★ recommended, ≈ equivalent to the best-scoring"
    if ref:
        return f"{base} · quality = agreement with {ref} (no ground truth), not accuracy"
    return f"{base} · quality against the reference masks"


def _reference_id(summary: Summary | dict[str, Any] | None) -> str | None:
    if summary is None:
        return None
    ref = summary.get("reference") if isinstance(summary, dict) else summary.reference
    return ref.get("id") if ref and ref.get("kind") == "variant" else None


def ground_truth_table(summary: Summary) -> dict[str, Any]:
    """A labels-free run's images that have masks, scored against them (`metrics_gt`), apart."""
    from studio.bench.table import metric_label
    from studio.metrics.conventions import HEADLINE_METRICS

    rows = [r for r in summary.variants if r.metrics_gt]
    headers = ["variant", "images with masks", *(metric_label(m) for m in HEADLINE_METRICS)]
    data, styling = [], []
    for r in rows:
        n = len(summary.per_image_gt_scores.get(r.id) or {}) or summary.dataset.get("n_with_masks")
        cells = []
        for m in HEADLINE_METRICS:
            mean = (r.metrics_gt.get(m) or {}).get("mean")
            cells.append(None if mean is None else round(float(mean), 4))
        label = r.id + ("  ⚠ untrained" if r.untrained else "") + ("  (reference)" if r.is_reference else "")
        data.append([label, n, *cells])
        styling.append(["", "", *([MUTED_STYLE if r.untrained else ""] * len(cells))])
    value: dict[str, Any] = {"headers": headers, "data": data}
    if any(r.untrained for r in rows):
        value["metadata"] = {"display_value": None, "styling": styling}
    return value


def ground_truth_heading(summary: Summary) -> str:
    ds = summary.dataset
    return (f"**Against the masks** — {ds.get('n_with_masks', '?')} of {ds.get('n_images', '?')} images have masks: "
            "scored against them apart (accuracy, not agreement)")


def table_notes(summary: Summary, rec: dict[str, Any], extra: list[str] | None = None) -> str:
    """What the table's cells cannot say: the legend, how memory was measured, calibration
    images and their held-out scores, timings from another sitting, greyed untrained numbers."""
    from studio.bench.table import columns, legend

    metric_keys, keys, p99 = visible_columns(summary, extra)
    cols = [c for c in columns(tuple(metric_keys), p99=p99) if c.key in keys or c.key in metric_keys]
    lines = legend(cols, summary.reference_id)
    sources: dict[str, list[str]] = {}
    for r in summary.variants:
        sources.setdefault(r.memory_source or "not measured", []).append(r.id)
    if len(sources) == 1:
        lines.append(f"mem MB: {next(iter(sources))} (every variant)")
    else:
        lines.append("mem MB: " + "; ".join(f"{src}: {', '.join(ids)}" for src, ids in sources.items()))
    metric = summary.quality_metric
    for r in summary.variants:
        if r.calibrated_on:
            held = (r.metrics_held_out.get(metric) or {}).get("mean")
            q = r.quality(metric)
            lines.append(f"{r.id}: calibrated on {r.calibrated_on} of these images; "
                         + (f"{metric} on the held-out images {held:.4f} (all images {q:.4f})" if held is not None
                            and q is not None else "no held-out images in this run"))
        if r.latency and not (r.timing or {}).get("this_sitting", True):
            lines.append(f"{r.id}: timed in an earlier sitting")
    if any(r.untrained for r in summary.variants):
        lines.append("Greyed numbers: untrained weights (latency and memory only); their quality is noise, "
                     "not a score.")
    return "\n".join(f"<sub>{line}</sub><br>" for line in lines)


def _anchor_id(rec: dict[str, Any], summary: Summary) -> str | None:
    """What every candidate is measured against on the card: the reference (its floor) in a
    labels-free run, else the best-scoring variant."""
    return summary.reference_id if rec.get("floor") else rec.get("best_scoring")


def _speed_vs(summary: Summary, a: str, b: str) -> dict[str, Any] | None:
    """{median, ci95, interleaved} speed-up of a over b: the run's interleaved timing, else the
    ratio of p95s (timed one after another: no CI)."""
    from studio.bench.recommend import speed

    sp = speed(summary, a, b)
    if sp is not None:
        return {"median": sp["median"], "ci95": sp["ci95"], "interleaved": True}
    ra, rb = summary.row(a), summary.row(b)
    if ra is not None and rb is not None and ra.p95_ms and rb.p95_ms:
        return {"median": rb.p95_ms / ra.p95_ms, "ci95": None, "interleaved": False}
    return None


def candidates(rec: dict[str, Any], summary: Summary) -> list[dict[str, Any]]:
    """Every eligible variant against the anchor (`_anchor_id`): speed-up (with its CI), Δ of the
    ranking metric in its better direction (with its paired-bootstrap CI), memory, and the verdict:
    equivalent, undecided (with the images that would settle it) or not. Fastest first."""
    from studio.bench.recommend import images_needed, paired_difference

    anchor = _anchor_id(rec, summary)
    if not anchor or summary.row(anchor) is None:
        return []
    metric, tol = rec.get("metric", summary.quality_metric), float(rec.get("tolerance") or 0.0)
    sign = 1.0 if rec.get("higher_is_better", True) else -1.0
    excluded = {e["id"] for e in rec.get("excluded") or []}
    equivalent = {e["id"] for e in rec.get("equivalent") or []}
    out = []
    for r in summary.variants:
        if r.id == anchor or r.id in excluded or r.untrained:
            continue
        try:
            comp = paired_difference(summary, r.id, anchor, metric)
        except (KeyError, TypeError, ValueError):  # e.g. preference: votes, not paired per image
            comp = None
        if comp is None:
            continue
        lo, hi = sorted(sign * x for x in comp["ci95"])
        diff = sign * comp["diff"]
        if r.id in equivalent or lo >= -tol:
            verdict, need = "equivalent", None
        elif diff >= -tol:
            verdict, need = "undecided", images_needed(diff, comp.get("sd"), tol, comp["n_images"])
        else:
            verdict, need = "not equivalent", None
        out.append({"id": r.id, "diff": diff, "ci95": [lo, hi], "n_images": comp["n_images"],
                    "speed": _speed_vs(summary, r.id, anchor), "memory_mb": r.memory_mb, "verdict": verdict,
                    "images_needed": need, "recommended": r.id == rec.get("recommended")})
    out.sort(key=lambda e: -((e["speed"] or {}).get("median") or 0.0))
    return out


def _speed_words(sp: dict[str, Any] | None) -> str:
    if not sp:
        return "speed not measured"
    m = sp["median"]
    how = f" (95 % CI {sp['ci95'][0]:.2f}–{sp['ci95'][1]:.2f})" if sp.get("ci95") else " (p95 ratio, not interleaved)"
    return (f"{m:.2f}× faster" if m >= 1 else f"{1 / m:.2f}× slower") + how


def _mem(mb: float | None) -> str:
    return f"{mb:,.0f} MB" if mb is not None else "memory not measured"


def _delta(e: dict[str, Any], what: str) -> str:
    lo, hi = e["ci95"]
    return f"Δ{what} {e['diff']:+.4f} (95 % CI {lo:+.4f} … {hi:+.4f})"


def budget_cost(rec: dict[str, Any], summary: Summary, price: float | None = None) -> str:
    """What the budgets cost against the best model without them: the quality given up (paired
    Δ with its CI) and the speed gained. Empty without a budget."""
    from studio.bench import recommend
    from studio.bench.recommend import paired_difference

    b = rec.get("budgets") or {}
    if not (b.get("p95_ms") or b.get("memory_mb")) or not rec.get("recommended"):
        return ""
    free = recommend(summary, price_per_hour=price, tolerance=rec.get("tolerance"))
    best = free.get("best_scoring")
    pick = rec["recommended"]
    budgets = rec.get("budgets_text") or ""
    if not best:
        return ""
    if best == pick:
        return f"**Cost of the budget** ({budgets}): none — the best model `{best}` fits it."
    sign = 1.0 if rec.get("higher_is_better", True) else -1.0
    metric = rec.get("metric", summary.quality_metric)
    comp = paired_difference(summary, pick, best, metric)
    sp = _speed_vs(summary, pick, best)
    if comp is None:
        return f"**Cost of the budget** ({budgets}): `{pick}` instead of the best model `{best}`."
    lo, hi = sorted(sign * x for x in comp["ci95"])
    return (f"**Cost of the budget** ({budgets}): `{pick}` instead of the best model `{best}`: "
            f"Δ{metric} {sign * comp['diff']:+.4f} (95 % CI {lo:+.4f} … {hi:+.4f}), {_speed_words(sp)}.")


def candidates_table(rows: list[dict[str, Any]], anchor: str, what: str) -> str:
    """The card's table: every eligible variant against the anchor, fastest first."""
    if not rows:
        return ""
    head = (f"| variant | speed vs {anchor} | Δ{what} (95 % CI) | memory | verdict |\n"
            "|---|---|---|---|---|")
    body = []
    for e in rows:
        sp = e["speed"]
        speed = (f"{sp['median']:.2f}×" + (f" ({sp['ci95'][0]:.2f}–{sp['ci95'][1]:.2f})" if sp.get("ci95") else ""))\
            if sp else "—"
        lo, hi = e["ci95"]
        verdict = e["verdict"]
        if verdict == "undecided" and e.get("images_needed"):
            verdict = f"undecided: {e['images_needed']:,} images would settle it"
        name = f"★ `{e['id']}`" if e["recommended"] else f"`{e['id']}`"
        mem = f"{e['memory_mb']:,.0f} MB" if e["memory_mb"] is not None else "—"
        body.append(f"| {name} | {speed} | {e['diff']:+.4f} ({lo:+.4f} … {hi:+.4f}) | {mem} | {verdict} |")
    return head + "\n" + "\n".join(body)


def recommendation_markdown(rec: dict[str, Any], summary: Summary, price: float | None = None) -> str:
    """The recommendation card: the pick and its sentence; the fastest near-equivalent (always,
    with its speed-up, Δ and CI, memory); the undecided candidates and how many images would
    settle each; what a budget costs against the best model; the busy-machine sentence; every
    eligible variant against the best-scoring (or the reference's floor); what was left out."""
    ds = summary.dataset
    env = summary.environment
    ref = summary.reference_id
    metric = rec.get("metric", summary.quality_metric)
    what = f" {metric} agreement" if ref else f" {metric}"
    lines = []
    if ref:
        floor = rec.get("floor") or {}
        fl = f" Agreement is judged against the floor {floor['value']:.4f} ({floor.get('how')})." \
            if floor.get("value") is not None else ""
        lines.append(f"**No ground truth: scores are agreement with `{ref}`**, not accuracy.{fl}")
    pick = rec.get("recommended") or rec.get("best")
    rows = candidates(rec, summary)
    anchor = _anchor_id(rec, summary)
    if pick:
        lines.append(f"### ★ Recommended: `{pick}`")
        lines.append(rec.get("sentence") or rec.get("reason", ""))
        if rec.get("why_not_best"):
            lines.append(rec["why_not_best"])
        near = [e for e in rows if e["verdict"] in ("equivalent", "undecided")]
        if near:
            e = near[0]  # fastest first
            mine = " — the recommendation itself" if e["recommended"] else ""
            lines.append(f"**Fastest near-equivalent**: `{e['id']}`{mine}: {_speed_words(e['speed'])} than `{anchor}`, "
                         f"{_delta(e, what)}, {_mem(e['memory_mb'])} ({e['verdict']}).")
        elif rows:
            e = max(rows, key=lambda x: x["diff"])
            lines.append(f"**Fastest near-equivalent**: none within the {rec.get('tolerance', 0):g} tolerance of "
                         f"`{anchor}`; the nearest is `{e['id']}`: {_speed_words(e['speed'])}, {_delta(e, what)}, "
                         f"{_mem(e['memory_mb'])}.")
        for e in rec.get("undecided") or []:
            need = (f"undecided: {e['images_needed']:,} images would settle it" if e.get("images_needed")
                    else "undecided")
            sp = (f"{e['speedup']:.2f}× faster than `{e.get('vs')}`" if e.get("speedup") else "faster")
            lo, hi = e["ci95"]
            lines.append(f"**Undecided at {e.get('n_images', '?')} images**: `{e['id']}` is {sp} at Δ{what} "
                         f"{e['diff']:+.4f} (95 % CI {lo:+.4f} … {hi:+.4f}): {need} at ±{rec.get('tolerance', 0):g}.")
        if rec.get("undecided"):
            lines.append(f"<sub>{rec.get('images_needed_how', '')}</sub>")
        cost = budget_cost(rec, summary, price)
        if cost:
            lines.append(cost)
        facts = [f"ranked by **{metric}**", f"tolerance {rec.get('tolerance', 0):g}",
                 f"budgets: {rec.get('budgets_text') or 'no budget given'}"]
        if rec.get("cost_per_1000") is not None:
            facts.append(f"**${rec['cost_per_1000']:.4f} per 1,000 images**")
        lines.append(" · ".join(facts))
    else:
        lines.append("### No recommendation")
        lines.append(f"{rec.get('sentence') or rec.get('reason') or 'no variant fits'} "
                     f"(budgets: {rec.get('budgets_text') or 'no budget given'}).")
    if rec.get("busy"):
        lines.append("⚠ " + rec["busy"][0].upper() + rec["busy"][1:])
    dis = rec.get("disagreements") or {}
    if dis.get("n_images"):
        lines.append(f"**{dis['n_images']} of {dis.get('of', '?')} images** where a faster candidate disagrees with "
                     f"`{ref}` beyond the floor: judge them blind (the button below starts an Arena round on them).")
    table = candidates_table(rows, anchor or "", what) if anchor else ""
    if table:
        lines.append(f"<details open><summary>Every eligible variant against `{anchor}`"
                     + (" (its floor)" if ref else " (the best-scoring)") + "</summary>\n\n" + table + "\n</details>")
    excluded = rec.get("excluded") or []
    if excluded:
        lines.append("<details><summary>Not eligible: " + str(len(excluded)) + " variants</summary>\n\n"
                     + "\n".join(f"- `{e['id']}`: {e['why']}" for e in excluded) + "\n</details>")
    if summary.skipped:
        lines.append("<details><summary>Skipped (not installed or built here): " + str(len(summary.skipped))
                     + "</summary>\n\n" + "\n".join(f"- `{e['id']}`: {e['why']}" for e in summary.skipped)
                     + "\n</details>")
    masks = ds.get("n_with_masks")
    lines.append(f"<sub>{ds.get('name', '?')} · {ds.get('n_images', '?')} images"
                 + (f" ({masks} with masks)" if ref and masks is not None else "")
                 + f" · {env.get('device', '?')} · {env.get('cpu', '')} · {summary.created}</sub>")
    return "\n\n".join(lines)


def _num(x: Any) -> float | None:
    """A budget from a number box: blank, zero or negative mean 'no budget'."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if f > 0 else None


def _recommend(summary: Summary, p95: Any, memory: Any, price: Any) -> dict[str, Any]:
    from studio.bench import recommend

    return recommend(summary, budget_p95_ms=_num(p95), budget_memory_mb=_num(memory),
                     price_per_hour=_num(price), tolerance=summary.config.get("tolerance"))


def pareto(summary: Summary, rec: dict[str, Any], dark: bool = False) -> Any:
    """The Pareto figure as the app shows it: labels that do not overlap, units on both axes,
    the page's theme (`studio.ui.figures`)."""
    from studio.bench.plots import pareto_figure
    from studio.bench.table import metric_label
    from studio.ui import figures

    fig = pareto_figure(summary, recommendation=rec)
    fig.update_traces(cliponaxis=False, selector={"mode": "markers+text"})
    # in the app's narrower column the legend goes underneath
    # the legend above the plot, under the title: below it, it would sit on the axis title
    fig.update_layout(legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0}, height=600,
                      margin={"l": 80, "r": 40, "t": 120, "b": 60})
    # many variants crowd the plot: name only the ones the decision is about (the frontier, the
    # recommended, the best-scoring, the reference); the legend and hover name the rest
    named = {*rec.get("pareto", []), rec.get("best"), rec.get("best_scoring"), summary.reference_id}
    if len(summary.variants) > 6:
        for trace in fig.data:
            if trace.mode == "markers+text" and trace.text and trace.text[0] not in named:
                trace.mode = "markers"
    figures.spread_labels(fig)
    metric = metric_label(summary.quality_metric)
    from studio.bench.recommend import higher_is_better

    scale = "0–1, higher is better" if higher_is_better(summary.quality_metric) else "lower is better"
    if summary.reference_id:  # the axis names the metric and what it is measured against
        what = f"{metric}: agreement with {summary.reference_id}"
        fig.update_layout(title={"text": f"{what} (not accuracy) vs p95 latency — marker size = model size (MB)"})
    else:
        what = metric
        fig.update_layout(title={"text": f"{metric} vs p95 latency — marker size = model size on disk (MB)"})
    fig.update_layout(yaxis={"title": {"text": f"{what} ({scale}; mean, 95 % CI)"}},
                      xaxis={"title": {"text": "p95 latency per image (ms, log scale)"}})
    figures.apply_theme(fig, dark)
    return fig


def render(summary: Summary, run_path: Path | None, p95: Any = None, memory: Any = None,
           price: Any = None, extra: list[str] | None = None, dark: bool = False) -> tuple:
    """(recommendation markdown, Pareto figure, table, files, run id, public summary)."""
    rec = _recommend(summary, p95, memory, price)
    fig = pareto(summary, rec, dark)
    files = []
    if run_path is not None:
        files = [str(run_path.parent / n) for n in ("report.html", "summary.json", "per_image.csv")
                 if (run_path.parent / n).is_file()]
    public = summary.to_json()
    public["recommendation"] = rec
    return (recommendation_markdown(rec, summary, _num(price)), fig, summary_table(summary, rec, extra=extra), files,
            run_id(run_path) if run_path else "", public)


def details(run: str, p95: Any = None, memory: Any = None, price: Any = None,
            extra: list[str] | None = None) -> dict[str, Any]:
    """What shows beside the table after a run or new budgets: its label and column widths, the
    notes under it, the masks block of a labels-free run, and whether the recommended model can
    be exported."""
    if not run:
        return {"notes": "", "gt_heading": "", "gt_table": None, "export": export_state(None), "public": None,
                "column_widths": None}
    summary = _load(run)
    rec = _recommend(summary, p95, memory, price)
    has_gt = bool(summary.reference_id) and any(r.metrics_gt for r in summary.variants)
    return {"notes": table_notes(summary, rec, extra), "public": {"reference": summary.reference},
            "column_widths": summary_table(summary, rec, extra=extra)["column_widths"],
            "gt_heading": ground_truth_heading(summary) if has_gt else "",
            "gt_table": ground_truth_table(summary) if has_gt else None,
            "export": export_state(rec.get("best"))}


def table_for(run: str, p95: Any = None, memory: Any = None, price: Any = None,
              extra: list[str] | None = None) -> dict[str, Any]:
    """The table again with other columns (the column picker): nothing reruns."""
    if not run:
        return {"headers": [], "data": []}
    summary = _load(run)
    return summary_table(summary, _recommend(summary, p95, memory, price), extra=extra)


# --- exporting the recommended model ----------------------------------------------------------

def export_state(variant_id: str | None) -> dict[str, Any]:
    """{"variant", "enabled", "label", "note"} for the "Export this model" button: disabled,
    with the reason, when the export module is missing or the variant's backend cannot be served."""
    import importlib.util

    if not variant_id:
        return {"variant": None, "enabled": False, "visible": False, "label": "Export this model", "note": ""}
    label = f"Export {variant_id} (serving bundle, zip)"
    if importlib.util.find_spec("studio.ui.export") is None:
        return {"variant": variant_id, "enabled": False, "visible": False, "label": label,
                "note": "<sub>Export is not available in this version of the app.</sub>"}
    try:
        from studio.export import check_exportable
        from studio.zoo import load_zoo

        check_exportable(load_zoo().get(variant_id))
    except ImportError:
        return {"variant": variant_id, "enabled": False, "visible": False, "label": label,
                "note": "<sub>Export is not available in this version of the app.</sub>"}
    except Exception as exc:  # ExportError (a StudioError): the reason is the note
        return {"variant": variant_id, "enabled": False, "visible": True, "label": label,
                "note": f"<sub>Cannot export `{variant_id}`: {exc}</sub>"}
    return {"variant": variant_id, "enabled": True, "visible": True, "label": label,
            "note": "<sub>A zip with the model, a small ONNX Runtime server and its checks "
                    "(`studio export`).</sub>"}


def export_model(variant_id: str | None, progress: ProgressFn | None = None) -> str:
    """The recommendation card's button: a zip of `studio export VARIANT`'s bundle."""
    if not variant_id:
        raise UploadError("no recommended model to export: run a benchmark first")
    try:
        from studio.ui.export import export_zip
    except ImportError:
        raise UploadError("export is not available in this version of the app") from None
    return export_zip(variant_id, progress=progress)


# --- the per-image drill-down --------------------------------------------------------------------

_drilldowns: dict[str, tuple[dict[str, Any] | None, Path | None, str]] = {}  # run id -> built one (this process)


def drilldown_of(run: str) -> tuple[dict[str, Any] | None, Path | None, str]:
    """(index, its folder, a note) of a run's drill-down: the one the app wrote beside the run, else
    one built now into a download folder when the run's images are still on this machine."""
    from studio.ui import drilldown, outputs

    if not run:
        return None, None, ""
    folder = run_path(run).parent / drilldown.FOLDER
    index = drilldown.read(folder)
    if index is not None:
        return index, folder, ""
    if run in _drilldowns:
        return _drilldowns[run]
    error = folder / "error.txt"
    if error.is_file():
        got: tuple[dict[str, Any] | None, Path | None, str] = (
            None, None, f"No drill-down for this run: {error.read_text()[:300]}")
    else:
        tmp = outputs.new_dir("drilldown")
        try:
            got = (drilldown.build(_load(run), tmp), tmp, "")
        except Exception as exc:  # e.g. an uploaded zip, gone after its run
            got = (None, None, f"No drill-down: this run's images are not on this machine any more ({exc}).")
    _drilldowns[run] = got
    return got


def drilldown_view(run: str, variant_id: str | None = None) -> dict[str, Any]:
    """What the drill-down shows: {"choices", "variant", "worst" (gallery), "flagged" (gallery),
    "note"}. `variant_id`: the variant whose worst images show (default: the first that has any)."""
    from studio.ui import drilldown

    index, folder, note = drilldown_of(run)
    if index is None or folder is None:
        return {"choices": [], "variant": None, "worst": [], "flagged": [], "note": note}
    choices = [vid for vid, items in (index.get("variants") or {}).items() if items]
    vid = variant_id if variant_id in choices else (choices[0] if choices else None)
    flagged = drilldown.flagged(index, folder)
    metric = index["metric"]
    lines = [f"<sub>Worst images by {metric}" + (f" agreement with {index['reference']}" if index.get("reference")
                                                  else "") +
             ", each with its share of the variant's loss and its error overlay (magenta: false positive, cyan: "
             "false negative).</sub>"]
    if flagged:
        lines.append(f"**{len(flagged)} of {index.get('scanned', '?')} images where no model is confident** "
                     f"(faint or grey mattes): shown below. <sub>{index.get('rule', '')}</sub>")
    else:
        lines.append(f"<sub>Every one of the {index.get('scanned', '?')} images has at least one confident matte "
                     f"({index.get('rule', '')}).</sub>")
    return {"choices": choices, "variant": vid, "worst": drilldown.gallery(index, folder, vid),
            "flagged": flagged, "note": "\n\n".join(lines)}


# --- the disagreement set, judged blind ------------------------------------------------------------

def disagreement_set(run: str, summary: Summary | None = None) -> dict[str, Any]:
    """A labels-free run's disagreement set as an arena image set: {"spec", "variants",
    "n_images", "note"}. Written once per run (`studio.bench.labelsfree.write_arena_set`) into
    the arena's own uploads folder, so a hosted app (which refuses server folders) opens it too."""
    import hashlib

    from studio.arena import images as arena_images
    from studio.bench.labelsfree import ARENA_FOLDER, write_arena_set

    summary = summary or _load(run)
    dis = summary.run.get("disagreements") or {}
    ref = summary.reference_id
    if not ref or not dis.get("n_images"):
        raise UploadError("this run has no disagreement set: it needs a labels-free run (a reference model) in "
                          "which a faster candidate disagrees with the reference beyond the floor")
    key = hashlib.sha256(f"disagreements:{run}".encode()).hexdigest()[:16]
    dest = arena_images.uploads_dir() / key
    variants = [ref, *(dis.get("candidates") or [])]
    if not (dest / ARENA_FOLDER).is_dir():
        try:
            got = write_arena_set(summary, dest)
        except Exception as exc:
            raise UploadError(f"the images of this run are not on this machine any more ({exc})") from None
        variants = [v for v in got["variants"] if v]
    n = len([p for p in (dest / ARENA_FOLDER).iterdir() if p.is_file()])
    return {"spec": arena_images.UPLOAD_PREFIX + key, "variants": list(dict.fromkeys(variants)), "n_images": n,
            "note": f"**Disagreement set of run {run}**: {n} images where a faster candidate disagrees with "
                    f"`{ref}` beyond the floor. Judge them blind; the preference feeds the recommendation once "
                    "enough votes are in (labelled as preference)."}


def judge_state(run: str) -> bool:
    """Whether the card's "Judge the disagreements blind" button shows: a labels-free run with a
    disagreement set."""
    if not run:
        return False
    try:
        summary = _load(run)
    except UploadError:
        return False
    return bool(summary.reference_id and (summary.run.get("disagreements") or {}).get("n_images"))


# --- runs on disk ---------------------------------------------------------------------------

def run_id(path: Path) -> str:
    """A run's name: its summary.json relative to the results folder (`studio.bench.store`)."""
    from studio.bench.store import run_id as store_run_id

    return store_run_id(path)


def run_path(run: str) -> Path:
    """The summary.json of a run id; refuses anything outside the results folder."""
    from studio.bench.store import RunError
    from studio.bench.store import run_path as store_run_path

    try:
        return store_run_path(run)
    except RunError as exc:
        raise UploadError(str(exc)) from None


def past_runs() -> list[tuple[str, str]]:
    """(label, run id) of every summary.json under eval/results, newest first (`studio.bench.store`)."""
    from studio.bench.store import past_runs as store_past_runs

    return store_past_runs()


def _load(run: str) -> Summary:
    from studio.bench import load_summary

    p = run_path(run)
    try:
        return load_summary(p)
    except (OSError, ValueError) as exc:
        raise UploadError(f"{run}: cannot read it ({exc})") from None


def open_run(run: str, p95: Any = None, memory: Any = None, price: Any = None,
             extra: list[str] | None = None, dark: bool = False) -> tuple:
    return render(_load(run), run_path(run), p95, memory, price, extra, dark)


def rerecommend(run: str, p95: Any = None, memory: Any = None, price: Any = None,
                extra: list[str] | None = None, dark: bool = False) -> tuple:
    """New budgets on the current run: recompute the recommendation, nothing reruns."""
    if not run:
        return ("Run a benchmark or open a past run first.", None, {"headers": [], "data": []}, [], "", {})
    return open_run(run, p95, memory, price, extra, dark)


def new_run_dir() -> Path:
    """A fresh folder per run: named to the second for people, unique for two runs at once."""
    return temp_dir_beside(settings.results_dir() / "app" / "run", prefix=time.strftime("%Y%m%d-%H%M%S-"))


def benchmark(source: str = SOURCE_EMBEDDED, dataset: str | None = None, zip_file: Any = None,
              variants: list[str] | None = None, limit: Any = 0, warmup: Any = 1, repeats: Any = 1,
              cold_start: bool = False, p95: Any = None, memory: Any = None, price: Any = None,
              progress: ProgressFn | None = None, out: Path | None = None, reference: str | None = None,
              folder: str | None = None, extra: list[str] | None = None, line: ProgressLine | None = None,
              dark: bool = False, **suite_options: Any) -> tuple:
    """Run the suite on a dataset and render its summary (see `render`).

    `reference`: a variant id to score against (a labels-free run; required for SOURCE_IMAGES),
    or blank for the dataset's masks. `folder`: SOURCE_IMAGES's folder when no zip is given.
    `suite_options`: further SuiteConfig fields (e.g. executor, ray_address; by default the
    executor follows the settings: `studio.bench.config.executor_from_settings`). `line`: the page's
    progress line (step and ETA), fed the same events as `progress`."""
    from studio.bench import SuiteConfig, run_suite
    from studio.bench.config import executor_from_settings

    def say(frac: float, desc: str) -> None:
        if line is not None:
            line.say(desc)
        if progress is not None:
            progress(frac, desc=desc)

    out = Path(out) if out else new_run_dir()
    work = out / "_upload"
    ok = False
    try:
        say(0.0, desc="opening the dataset …")
        ref = (reference or "").strip() or None
        if source == SOURCE_IMAGES and ref is None:
            raise UploadError("images without masks need a reference model to score against: choose one "
                              "(e.g. isnet-general-use)")
        ds = resolve_dataset(source, dataset, zip_file, work, folder)
        n_limit = int(limit) if limit not in (None, "") and int(limit) > 0 else None
        if isinstance(variants, str):
            variants = [v for v in variants.replace(",", " ").split() if v]
        chosen = list(variants) if variants else None
        if chosen is None:
            from studio.inventory import default_variants

            chosen = [v.id for v in default_variants()]
        if not chosen:
            raise UploadError("no variants chosen, and none is installed: fetch weights on the Models tab")
        runs = list(dict.fromkeys([*([ref] if ref else []), *chosen]))  # the suite runs the reference too
        if "executor" not in suite_options:
            suite_options = {**suite_options, **executor_from_settings()}
        cfg = SuiteConfig(models=chosen, dataset=ds, limit=n_limit, device="cpu", threads=0,
                          warmup=max(0, int(warmup or 0)), repeats=max(1, int(repeats or 1)),
                          cold_start=bool(cold_start), budget_p95_ms=_num(p95), budget_memory_mb=_num(memory),
                          price_per_hour=_num(price), reference=ref, out=out, resume=True, name="app",
                          **suite_options)
        if cfg.executor == "local":
            _forget_unmeasured(runs, cfg.device, cfg.threads)
        say(0.0, desc=f"starting: {len(runs)} variants" + (f", agreement with {ref}" if ref else ""))
        # the suite's passes: each variant, and the reference again under noise (the floor)
        n_jobs = len(runs) + (1 if ref else 0)
        if line is not None:
            line.n_jobs = max(line.n_jobs, n_jobs)
            n_images = int(n_limit) if n_limit else None
            line.n_timed = len(runs)
            line.timing_planned = cfg.timing_rounds * (min(cfg.timing_images, n_images) if n_images
                                                       else cfg.timing_images)
        # One model at a time, as the CLI: a dozen IS-Net builds held at once outgrow the machine.
        summary = run_suite(cfg, progress=progress_adapter(progress, n_jobs, line), show_bars=False,
                            keep_loaded=False)
        ok = True
        # what needs the images, made while an uploaded zip is still here (it goes below)
        say(1.0, desc="preparing the per-image drill-down")
        _after_run(summary, out)
    finally:
        clean_dir(work)  # the extracted zip is not kept; results are
        if not ok and not (out / "summary.json").is_file():
            clean_dir(out)  # a run that failed before writing anything leaves no empty folder
    return render(summary, out / "summary.json", p95, memory, price, extra, dark)


def _after_run(summary: Summary, out: Path) -> None:
    """The drill-down (`studio.ui.drilldown`) and, for a labels-free run, the disagreement set as
    an arena set: both need the run's images. Best effort: a run never fails for them."""
    from studio.ui import drilldown

    try:
        drilldown.build(summary, out / drilldown.FOLDER)
    except Exception as exc:  # noted where the drill-down shows
        (out / drilldown.FOLDER).mkdir(exist_ok=True)
        (out / drilldown.FOLDER / "error.txt").write_text(f"{type(exc).__name__}: {exc}")
    if (summary.run.get("disagreements") or {}).get("n_images"):
        with contextlib.suppress(Exception):  # the button says so when it is pressed
            disagreement_set(run_id(out / "summary.json"), summary)


def _forget_unmeasured(variant_ids: list[str], device: str, threads: int) -> None:
    """A model already loaded (by Compare) has no load-memory figure: unload it so the run
    loads it afresh and measures it (every row gets a memory figure without cold start)."""
    from studio.bench.executor import load_memory

    for vid in variant_ids:
        if engine.is_loaded(vid, device, threads) and load_memory((vid, device, threads)) is None:
            engine.unload(vid)
