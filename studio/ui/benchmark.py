"""The Benchmark tab's handlers: run `studio.bench.run_suite`, show its summary, re-recommend.

The app adds no second benchmark: it fills a `SuiteConfig`, forwards the suite's progress
events to the progress bar, and renders the summary it returns (or a past one from disk)
through `studio.bench.table.summary_table`, the cells the terminal and the report show too.

A labels-free run (`SuiteConfig.reference`): the user's images, masks or not, scored against a
reference model. Its numbers are agreement with that model, and every output here says so;
the images of a mixed folder that do have masks are scored against them in a block apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio import settings
from studio.fileio import temp_dir_beside
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
DECISION_KEYS = ("mark", "variant", "p95", "memory", "size", "cost", "flags")  # + the quality metric
OPTIONAL_COLUMNS: list[tuple[str, str]] = [
    ("images run", "images"), ("failed images", "errors"), ("p50 ms", "p50"), ("p99 ms", "p99"),
    ("img/s", "ips"), ("cold start s", "cold"),
    ("maxF", "fmeasure_max"), ("S", "smeasure"), ("meanE", "emeasure_mean"), ("SSIM", "ssim"),
    ("MAE", "mae"), ("bIoU", "boundary_iou"), ("Dice", "dice"), ("wF", "wfmeasure"), ("meanF", "fmeasure_mean"),
    ("maxE", "emeasure_max"), ("IoU", "iou"), ("SAD (matting)", "sad"), ("MSE (matting)", "mse"),
    ("Grad (matting)", "grad"), ("Conn (matting)", "conn"),
]
DEFAULT_COLUMNS = ["images"]
NON_METRIC_KEYS = {"mark", "variant", "images", "errors", "p50", "p95", "p99", "ips", "cold", "memory", "size",
                   "cost", "flags"}
# Widths that keep the decision columns inside a 1440 px window (the flags column takes the rest).
COLUMN_WIDTHS = {"mark": "34px", "variant": "270px", "images": "70px", "errors": "56px", "p50": "68px",
                 "p95": "68px", "p99": "68px", "ips": "62px", "cold": "66px", "memory": "72px", "size": "72px",
                 "cost": "76px"}
METRIC_WIDTH = "118px"  # "IoU agreement" on two lines beside the sort button
MUTED_STYLE = "color: var(--body-text-color-subdued); font-style: italic; opacity: 0.7"

ProgressFn = Callable[..., Any]


# --- datasets -----------------------------------------------------------------------------

def catalogue_choices() -> list[str]:
    """Datasets to offer: `studio.data.catalogue.local_choices` (the catalogue is optional for the app)."""
    try:
        from studio.data.catalogue import local_choices

        return local_choices()
    except Exception:  # a broken catalogue file must not break the page
        return []


def resolve_dataset(source: str, name: str | None, zip_file: Any, workdir: Path,
                    folder: str | None = None) -> str | None:
    """The `dataset` value for SuiteConfig: None (embedded), a catalogue name, or a folder."""
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
        return _local_folder(folder)
    if source == SOURCE_CATALOGUE:
        name = (name or "").strip()
        if not name:
            raise UploadError("choose a catalogue dataset, or type a folder that holds im/ and gt/")
        looks_like_path = "/" in name or name.startswith(".")
        return _local_folder(name) if looks_like_path else name
    raise UploadError(f"unknown dataset source {source!r}; one of: {', '.join(SOURCES)}")


def _local_folder(name: str) -> str:
    if settings.on_spaces():
        raise UploadError("on the hosted app, datasets come from the catalogue or an uploaded zip")
    if not Path(name).expanduser().is_dir():
        raise UploadError(f"{name}: no such folder")
    return str(Path(name).expanduser())


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

def progress_adapter(progress: ProgressFn | None, n_variants: int) -> Callable[[dict[str, Any]], None]:
    """Turn the suite's events into one bar over all variants (images advance it in between).

    Every event's message shows at once ("loading isnet-general-use …"); events that say what is
    happening without moving the run on (loading, skipped) keep the bar where it is."""
    state = {"variant_index": 0, "frac": 0.0}
    # a Ray cluster runs variants side by side: each variant's share of the bar follows its own
    # images (events that name their variant), so interleaved events never make the bar jump
    shares: dict[str, float] = {}

    def on_event(ev: dict[str, Any]) -> None:
        if progress is None:
            return
        stage = ev.get("stage")
        done, total = ev.get("done") or 0, ev.get("total") or 0
        n = max(n_variants, 1)
        vid = ev.get("variant")
        if stage == "variant":
            state["variant_index"] = done
            if vid:
                shares[vid] = 1.0
            frac = max(done / n, sum(shares.values()) / n)
        elif stage == "image" and total and vid:
            shares[vid] = done / total
            frac = sum(shares.values()) / n
        elif stage == "image" and total:
            frac = (state["variant_index"] + done / total) / n
        elif stage == "cold_start":
            frac = done / n
        elif stage == "report":
            frac = 1.0
        else:
            frac = state["frac"]
        state["frac"] = frac = min(max(frac, 0.0), 1.0)
        desc = str(ev.get("message") or stage or "")
        if stage == "loading":
            desc += f" ({min(state['variant_index'] + 1, n)} of {n})"
        progress(frac, desc=desc)

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
                             "column_widths": [COLUMN_WIDTHS.get(cols[i].key, METRIC_WIDTH)
                                               for i in keep if cols[i].key != "flags"]}
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


def recommendation_markdown(rec: dict[str, Any], summary: Summary) -> str:
    """The recommendation card: the sentence, the best-scoring variant and why it was not
    picked, the equivalent set, and what was left out."""
    ds = summary.dataset
    env = summary.environment
    ref = summary.reference_id
    lines = []
    if ref:
        lines.append(f"**No ground truth: scores are agreement with `{ref}`**, not accuracy.")
    if rec.get("best"):
        lines.append(f"### ★ Recommended: `{rec['best']}`")
        lines.append(rec.get("sentence") or rec.get("reason", ""))
        best_scoring = rec.get("best_scoring")
        if rec.get("why_not_best"):
            lines.append(rec["why_not_best"])
        elif best_scoring:
            lines.append(f"Best-scoring: `{best_scoring}`, the recommendation itself.")
        eq = rec.get("equivalent") or []
        if eq:
            what = f"agreement with {ref}" if ref else rec.get("metric", "iou")
            parts = []
            for e in eq:
                if e["id"] == best_scoring:
                    parts.append(f"`{e['id']}` (best-scoring)")
                elif e.get("ci95"):
                    lo, hi = e["ci95"]
                    parts.append(f"`{e['id']}` ({e.get('diff', 0):+.4f}, 95 % CI {lo:+.4f} … {hi:+.4f})")
                else:
                    parts.append(f"`{e['id']}`")
            lines.append(f"**Equivalent** ({what}, within {rec.get('tolerance', 0):g} of the best-scoring), "
                         "cheapest first: " + ", ".join(parts))
        facts = [f"ranked by **{rec.get('metric', 'iou')}**", f"tolerance {rec.get('tolerance', 0):g}",
                 f"budgets: {rec.get('budgets_text') or 'no budget given'}"]
        if rec.get("cost_per_1000") is not None:
            facts.append(f"**${rec['cost_per_1000']:.4f} per 1,000 images**")
        lines.append(" · ".join(facts))
    else:
        lines.append("### No recommendation")
        lines.append(f"{rec.get('sentence') or rec.get('reason') or 'no variant fits'} "
                     f"(budgets: {rec.get('budgets_text') or 'no budget given'}).")
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


def render(summary: Summary, run_path: Path | None, p95: Any = None, memory: Any = None,
           price: Any = None, extra: list[str] | None = None) -> tuple:
    """(recommendation markdown, Pareto figure, table, files, run id, public summary)."""
    from studio.bench.plots import pareto_figure
    from studio.bench.table import metric_label

    rec = _recommend(summary, p95, memory, price)
    fig = pareto_figure(summary, recommendation=rec)
    # in the app's narrower column: labels may overhang the axes, the legend goes underneath
    fig.update_traces(cliponaxis=False, selector={"mode": "markers+text"})
    fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0}, height=560,
                      margin={"l": 70, "r": 40, "t": 60, "b": 40})
    # many variants crowd the plot: name only the ones the decision is about (the frontier, the
    # recommended, the best-scoring, the reference); the legend and hover name the rest
    named = {*rec.get("pareto", []), rec.get("best"), rec.get("best_scoring"), summary.reference_id}
    if len(summary.variants) > 6:
        for trace in fig.data:
            if trace.mode == "markers+text" and trace.text and trace.text[0] not in named:
                trace.mode = "markers"
    metric = metric_label(summary.quality_metric)
    if summary.reference_id:  # the axis names the metric and what it is measured against
        what = f"{metric}: agreement with {summary.reference_id}"
        fig.update_layout(title={"text": f"{what} (not accuracy) vs p95 latency — marker size = model size"},
                          yaxis={"title": {"text": f"{what} (mean, 95 % CI)"}})
    files = []
    if run_path is not None:
        files = [str(run_path.parent / n) for n in ("report.html", "summary.json", "per_image.csv")
                 if (run_path.parent / n).is_file()]
    public = summary.to_json()
    public["recommendation"] = rec
    return (recommendation_markdown(rec, summary), fig, summary_table(summary, rec, extra=extra), files,
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


# --- runs on disk ---------------------------------------------------------------------------

def run_id(path: Path) -> str:
    """A run's name: its summary.json relative to the results folder."""
    try:
        return str(Path(path).resolve().relative_to(settings.results_dir().resolve()))
    except ValueError:
        return str(path)


def run_path(run: str) -> Path:
    """The summary.json of a run id; refuses anything outside the results folder."""
    if not run:
        raise UploadError("no benchmark run yet: run one, or open a past run")
    root = settings.results_dir().resolve()
    p = (root / run).resolve()
    if p.is_dir():
        p = p / "summary.json"
    if not p.is_relative_to(root):
        raise UploadError(f"{run}: not a run under {root}")
    if not p.is_file():
        raise UploadError(f"{run}: no summary.json there")
    return p


def past_runs() -> list[tuple[str, str]]:
    """(label, run id) of every summary.json under eval/results, newest first."""
    import json

    from studio.bench import list_runs

    out = []
    for p in list_runs():
        try:
            s = json.loads(p.read_text())
            ds = (s.get("dataset") or {}).get("name", "?")
            label = (f"{run_id(p.parent)} — {len(s.get('variants', []))} variants on {ds} "
                     f"({(s.get('dataset') or {}).get('n_images', '?')} images), {s.get('created', '')}")
        except (OSError, ValueError):
            label = f"{run_id(p.parent)} (unreadable)"
        out.append((label, run_id(p)))
    return out


def _load(run: str) -> Summary:
    from studio.bench import load_summary

    p = run_path(run)
    try:
        return load_summary(p)
    except (OSError, ValueError) as exc:
        raise UploadError(f"{run}: cannot read it ({exc})") from None


def open_run(run: str, p95: Any = None, memory: Any = None, price: Any = None,
             extra: list[str] | None = None) -> tuple:
    return render(_load(run), run_path(run), p95, memory, price, extra)


def rerecommend(run: str, p95: Any = None, memory: Any = None, price: Any = None,
                extra: list[str] | None = None) -> tuple:
    """New budgets on the current run: recompute the recommendation, nothing reruns."""
    if not run:
        return ("Run a benchmark or open a past run first.", None, {"headers": [], "data": []}, [], "", {})
    return open_run(run, p95, memory, price, extra)


def new_run_dir() -> Path:
    """A fresh folder per run: named to the second for people, unique for two runs at once."""
    return temp_dir_beside(settings.results_dir() / "app" / "run", prefix=time.strftime("%Y%m%d-%H%M%S-"))


def benchmark(source: str = SOURCE_EMBEDDED, dataset: str | None = None, zip_file: Any = None,
              variants: list[str] | None = None, limit: Any = 8, warmup: Any = 1, repeats: Any = 1,
              cold_start: bool = False, p95: Any = None, memory: Any = None, price: Any = None,
              progress: ProgressFn | None = None, out: Path | None = None, reference: str | None = None,
              folder: str | None = None, extra: list[str] | None = None, **suite_options: Any) -> tuple:
    """Run the suite on a dataset and render its summary (see `render`).

    `reference`: a variant id to score against (a labels-free run; required for SOURCE_IMAGES),
    or blank for the dataset's masks. `folder`: SOURCE_IMAGES's folder when no zip is given.
    `suite_options`: further SuiteConfig fields (e.g. executor, ray_address)."""
    from studio.bench import SuiteConfig, run_suite

    say = progress if progress is not None else (lambda *a, **k: None)
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
        if settings.ray_address() and "executor" not in suite_options:  # the Benchmark tab on a cluster
            suite_options = {**suite_options, "executor": "ray", "ray_address": settings.ray_address()}
        cfg = SuiteConfig(models=chosen, dataset=ds, limit=n_limit, device="cpu", threads=0,
                          warmup=max(0, int(warmup or 0)), repeats=max(1, int(repeats or 1)),
                          cold_start=bool(cold_start), budget_p95_ms=_num(p95), budget_memory_mb=_num(memory),
                          price_per_hour=_num(price), reference=ref, out=out, resume=True, name="app",
                          **suite_options)
        if cfg.executor == "local":
            _forget_unmeasured(runs, cfg.device, cfg.threads)
        say(0.0, desc=f"starting: {len(runs)} variants" + (f", agreement with {ref}" if ref else ""))
        # One model at a time, as the CLI: a dozen IS-Net builds held at once outgrow the machine.
        summary = run_suite(cfg, progress=progress_adapter(progress, len(runs)), show_bars=False,
                            keep_loaded=False)
        ok = True
    finally:
        clean_dir(work)  # the extracted zip is not kept; results are
        if not ok and not (out / "summary.json").is_file():
            clean_dir(out)  # a run that failed before writing anything leaves no empty folder
    return render(summary, out / "summary.json", p95, memory, price, extra)


def _forget_unmeasured(variant_ids: list[str], device: str, threads: int) -> None:
    """A model already loaded (by Compare) has no load-memory figure: drop it from the pool so
    the run loads it afresh and measures it (every row gets a memory figure without cold start)."""
    from studio.bench.executor import load_memory
    from studio.memory import release_freed_memory
    from studio.pool import DEFAULT_POOL

    for vid in variant_ids:
        key = (vid, device, threads)
        if DEFAULT_POOL.has(key) and load_memory(key) is None:
            DEFAULT_POOL.drop(vid)
            release_freed_memory()
