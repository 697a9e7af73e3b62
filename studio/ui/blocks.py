"""The Blocks layout (Gradio components and events). Handlers live in `studio.ui.compare`,
`.benchmark` and `.models`; this module only places components and wires events to them (turning
user errors into gr.Error), one function per tab (`compare_tab`, `benchmark_tab`, `models_tab`;
the Arena's is `arena_blocks.arena_tab`).

Every event has an `api_name`. Inference (`compare`, `benchmark`) shares one queue slot
(`concurrency_id="inference"`, limit 1): parallel users wait their turn instead of
sharing CPU cores, which would corrupt each other's timings.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from studio import engine, jobs, labels, settings
from studio.data.sources import catalogue_choices as dataset_choices
from studio.errors import StudioError
from studio.ui import benchmark as bench_h
from studio.ui import compare as compare_h
from studio.ui import models as models_h
from studio.ui import space, theme, variants
from studio.ui.arena_blocks import arena_tab, from_link
from studio.ui.uploads import UploadError

INFERENCE = "inference"  # the one queue slot every timed function shares
ERROR_TITLE = "Cannot do that"


def user_errors(fn: Callable) -> Callable:
    """Show the errors a user can act on as gr.Error (a clear toast), for plain and generator
    handlers alike. The wrapper keeps the signature Gradio inspects (progress, request)."""

    def convert(exc: Exception) -> gr.Error:
        return gr.Error(str(exc), title=ERROR_TITLE, print_exception=False)

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args: Any, **kwargs: Any):
            try:
                yield from fn(*args, **kwargs)
            except (UploadError, StudioError) as exc:
                raise convert(exc) from None
        return gen

    @functools.wraps(fn)
    def plain(*args: Any, **kwargs: Any):
        try:
            return fn(*args, **kwargs)
        except (UploadError, StudioError) as exc:
            raise convert(exc) from None
    return plain


# --- Compare ----------------------------------------------------------------------------------

def _compare_outputs(out: tuple) -> tuple:
    gallery, slider, picker, table, rows, files, status, state = out
    line, _, notes = status.partition("\n")  # the line goes in the sticky bar, the notes under the table
    per_row = 3 if state.get("with_reference") else 2
    ref = state.get("reference_id")
    label = (f"Timings (ms) and {labels.agreement_with(ref)} (no mask: not accuracy)" if ref
             else "Timings (ms) and metrics")
    return (
        gr.Gallery(value=gallery, columns=per_row),
        gr.ImageSlider(value=slider, label=compare_h.slider_label(compare_h.ORIGINAL, picker["value"])),
        gr.Dropdown(choices=compare_h.picker_choices(state), value=picker["value"]),
        gr.Dataframe(value={k: v for k, v in table.items() if k != "column_widths"}, label=label,
                     column_widths=table.get("column_widths") or None),
        rows,
        files,
        line,
        state,
        state.get("tables") or None,
        gr.Dropdown(choices=compare_h.left_choices(state), value=compare_h.ORIGINAL),
        notes.strip(),
    )


@user_errors
def compare(image: Any, reference: Any = None, variant_ids: list[str] | None = None,
            reference_variant: str | None = None):
    """Compare variants on one image. Streams: gallery, slider, slider picker, table,
    JSON rows (one per variant: id, timings, metrics when a reference is given), downloads,
    status, state, and the results as CSV and JSON. Without a mask, `reference_variant`
    scores every variant against that model's matte (agreement, not accuracy)."""
    for out in compare_h.compare(image, reference, variant_ids, reference_variant):
        yield _compare_outputs(out)


def show_slider(variant_id: str | None, state: dict | None, left: str | None = compare_h.ORIGINAL):
    """The slider: `left` (the original, or another model: A against B) against `variant_id`."""
    return gr.ImageSlider(value=compare_h.slider_for(variant_id, state, left),
                          label=compare_h.slider_label(left, variant_id))


def select_result(state: dict | None, left: str | None, evt: gr.SelectData):
    vid = compare_h.variant_at(evt.index if isinstance(evt.index, int) else 0, state)
    return gr.Dropdown(value=vid), show_slider(vid, state, left)


def reference_note(reference: Any, reference_variant: str | None):
    """Under the Compare inputs: what the metrics will be measured against."""
    if reference:
        return "<sub>Metrics and error overlays: against the uploaded mask.</sub>"
    if reference_variant:
        return (f"<sub>No mask: metrics and error overlays are <b>{labels.agreement_with(reference_variant)}</b>, "
                "not accuracy.</sub>")
    return "<sub>No mask and no reference model: timings only.</sub>"


@user_errors
def load_sample(sample_id: str | None):
    from studio.ui import samples

    if not sample_id:
        return gr.skip(), gr.skip()
    img, mask = samples.sample_files(sample_id)
    return str(img), str(mask)


def sample_choices():
    from studio.ui import samples

    try:
        return gr.Dropdown(choices=samples.sample_ids())
    except Exception as exc:  # the sample is a convenience; the page must still work
        return gr.Dropdown(choices=[], info=f"embedded sample unavailable: {exc}")


# --- Benchmark --------------------------------------------------------------------------------

def _bench_table(table: dict[str, Any], public: dict[str, Any] | None) -> gr.Dataframe:
    value = {k: v for k, v in table.items() if k != "column_widths"}
    return gr.Dataframe(value=value, label=bench_h.table_label(public),
                        column_widths=table.get("column_widths") or None)


def _bench_outputs(out: tuple) -> tuple:
    """The table goes out as a plain value (what API callers read); its label and column widths
    follow in `bench_details`."""
    md, fig, table, files, run, public = out
    return md, fig, {k: v for k, v in table.items() if k != "column_widths"}, files, run, public


@user_errors
def benchmark(source: str, dataset: str | None, zip_file: Any, variant_ids: list[str] | None,
              limit: float | None, warmup: float | None, repeats: float | None, cold_start: bool,
              p95: float | None, memory: float | None, price: float | None, reference: str | None = None,
              folder: str | None = None, columns: list[str] | None = None,
              progress: gr.Progress = gr.Progress()):  # noqa: B008 (Gradio's documented pattern)
    """Run the benchmark suite; returns recommendation, Pareto plot, table, report files,
    run id and summary.json. `reference`: a variant id to score against (labels-free), or blank
    for the dataset's masks; `folder`: a folder of images (the images-only source)."""
    return _bench_outputs(bench_h.benchmark(source, dataset, zip_file, variant_ids, limit, warmup, repeats,
                                            cold_start, p95, memory, price, progress=progress,
                                            reference=reference, folder=folder, extra=columns))


@user_errors
def benchmark_page(source: str, dataset: str | None, zip_file: Any, variant_ids: list[str] | None,
                   limit: float | None, warmup: float | None, repeats: float | None, cold_start: bool,
                   p95: float | None, memory: float | None, price: float | None, reference: str | None = None,
                   folder: str | None = None, columns: list[str] | None = None, theme_mode: str | None = None):
    """The Run button: `benchmark` with the page's one progress line streamed (the step running
    now, and an ETA from the per-image times measured so far), then the results. The run goes on
    in a worker thread; this generator redraws the line every second and when an event arrives."""
    from studio.ui.progress import ProgressLine, duration

    line = ProgressLine(len(variant_ids or []) or 1)
    line.say("opening the dataset…")
    got: dict[str, Any] = {}

    def work() -> None:
        try:
            got["out"] = bench_h.benchmark(source, dataset, zip_file, variant_ids, limit, warmup, repeats,
                                           cold_start, p95, memory, price, reference=reference, folder=folder,
                                           extra=columns, line=line, dark=theme_mode == "dark")
        except BaseException as exc:  # handed to the page below
            got["error"] = exc

    worker = threading.Thread(target=work, name="benchmark-run", daemon=True)
    worker.start()
    skip = (gr.skip(),) * 6
    while worker.is_alive():
        yield (line.markdown(), *skip)
        worker.join(timeout=1.0)
    if "error" in got:
        exc = got["error"]
        yield (f"✗ **The run stopped**: {exc}", *skip)
        raise exc
    out = _bench_outputs(got["out"])
    line.end(f"✓ **Done** in {duration(line.elapsed_s())}: the recommendation, table and plot are below.")
    yield (line.markdown(), *out)


def theme_of(mode: str | None) -> bool:
    return (mode or "").strip().lower() == "dark"


@user_errors
def recommend(run: str, p95: float | None, memory: float | None, price: float | None,
              columns: list[str] | None = None, theme_mode: str | None = None):
    return _bench_outputs(bench_h.rerecommend(run, p95, memory, price, columns, dark=theme_of(theme_mode)))


@user_errors
def open_run(run: str | None, p95: float | None, memory: float | None, price: float | None,
             columns: list[str] | None = None, theme_mode: str | None = None):
    if not run:
        raise UploadError("choose a past run first")
    return _bench_outputs(bench_h.open_run(run, p95, memory, price, columns, dark=theme_of(theme_mode)))


@user_errors
def bench_details(run: str, p95: float | None, memory: float | None, price: float | None,
                  columns: list[str] | None = None):
    """Beside the table: its notes, the masks block of a labels-free run, the export button."""
    d = bench_h.details(run, p95, memory, price, columns)
    ex = d["export"]
    gt = d["gt_table"]
    table = gr.Dataframe(label=bench_h.table_label(d["public"]), column_widths=d["column_widths"] or None)
    return (table, d["notes"], d["gt_heading"],
            gr.Dataframe(value=gt, visible=True) if gt else gr.Dataframe(value=None, visible=False),
            gr.Button(value=ex["label"], visible=ex["visible"], interactive=ex["enabled"]), ex["note"],
            ex["variant"] or "", gr.Button(visible=bench_h.judge_state(run)))


def drilldown(run: str, variant_id: str | None = None):
    """The drill-down after a run (or a variant picked): the variant picker, its worst images,
    the images no model is confident on, and the note."""
    d = bench_h.drilldown_view(run, variant_id)
    return (gr.Dropdown(choices=d["choices"], value=d["variant"]), d["worst"] or None,
            gr.Gallery(value=d["flagged"] or None, visible=bool(d["flagged"])), d["note"])


@user_errors
def judge_disagreements(run: str):
    """The card's "Judge the disagreements blind": the Arena tab on the run's disagreement set."""
    from studio.ui.arena_blocks import prefill

    got = bench_h.disagreement_set(run)
    return prefill(got["spec"], got["variants"], got["note"])


@user_errors
def bench_columns(run: str, p95: float | None, memory: float | None, price: float | None,
                  columns: list[str] | None, public: dict | None):
    """The column picker: the same run's table with other columns (nothing reruns)."""
    if not run:
        return gr.skip(), gr.skip()
    table = bench_h.table_for(run, p95, memory, price, columns)
    return _bench_table(table, public), bench_h.details(run, p95, memory, price, columns)["notes"]


@user_errors
def export_model(variant_id: str | None, progress: gr.Progress = gr.Progress()):  # noqa: B008
    """The recommendation card's "Export this model": a zip of the serving bundle."""
    return gr.File(value=bench_h.export_model(variant_id, progress=progress), visible=True)


def list_runs():
    runs = bench_h.past_runs()
    return gr.Dropdown(choices=runs, value=runs[0][1] if runs else None)


def catalogue_choices():
    return gr.Dropdown(choices=dataset_choices())


def dataset_source(source: str, reference: str | None = None):
    """Show the inputs a source needs; images without masks get a reference model picked."""
    images = source == bench_h.SOURCE_IMAGES
    label = "Zip of images (masks optional: im/ + gt/ or images alone)" if images else "Zip with im/ and gt/ folders"
    ref = reference or ""
    if images and not ref:
        ref = variants.default_reference() or ""
    return (gr.Dropdown(visible=source == bench_h.SOURCE_CATALOGUE),
            gr.File(visible=source in (bench_h.SOURCE_ZIP, bench_h.SOURCE_IMAGES), label=label),
            gr.Textbox(visible=images and not settings.on_spaces()),
            gr.Dropdown(value=ref))


# --- Models -----------------------------------------------------------------------------------

@user_errors
def fetch_weights(variant_ids: list[str] | None, untrained: bool,
                  progress: gr.Progress = gr.Progress()):  # noqa: B008
    """Queue the fetches on the background worker and follow them (the status panel too)."""
    return models_h.fetch(variant_ids, untrained, progress=progress)


@user_errors
def build_variant(variant_id: str | None, progress: gr.Progress = gr.Progress()):  # noqa: B008
    """Build a declared build (models/zoo.d) here, with its messages as progress."""
    return models_h.build(variant_id, progress=progress)


def _inventory_updates(snap: models_h.Snapshot, to_fetch_now: list[str] | None, bench_now: list[str] | None,
                       build_now: str | None, shown: list[str] | None,
                       current_groups: tuple[list[str] | None, ...]) -> dict[str, Any]:
    """Every picker, the header and the zoo table for the inventory as it is now. What the user
    picked stays picked; newly installed default variants join the selections."""
    before = {vid for g in current_groups if g for vid in g}
    shown_before = set(shown or [])
    fresh = [vid for vid in snap.defaults if vid not in shown_before]  # newly installed defaults
    boxes = [gr.CheckboxGroup(choices=items, visible=bool(items),
                              value=[vid for _, vid in items if vid in before or vid in fresh])
             for items in snap.groups.values()]
    installed_ids = {vid for _, vid in snap.installed}
    bench_value = [vid for vid in (bench_now or []) if vid in installed_ids]
    bench_value += [vid for vid in fresh if vid not in bench_value]
    still = {vid for _, vid in snap.fetchable}
    builds = {vid for _, vid in snap.buildable}
    return {
        "header": theme.header_html(len(snap.installed), snap.n_zoo, _device()),
        "zoo": snap.zoo,
        "to_fetch": gr.Dropdown(choices=snap.fetchable, value=[v for v in (to_fetch_now or []) if v in still],
                                multiselect=True),
        "bench": gr.Dropdown(choices=snap.installed, value=bench_value, multiselect=True),
        "shown": [vid for _, vid in snap.installed],
        "boxes": boxes,
        "to_build": gr.Dropdown(choices=snap.buildable, value=build_now if build_now in builds else None),
    }


def _device() -> str:
    return "ZeroGPU + CPU" if space.zerogpu_available() and settings.on_spaces() else "CPU"


def weights_tick(seen: int, to_fetch_now: list[str] | None, bench_now: list[str] | None,
                 build_now: str | None, shown: list[str] | None, *current_groups: list[str] | None):
    """The Models tab's timer: the background-job panel; and, when a job has ended since this
    page last looked (or on its first tick), the header, zoo table and every picker."""
    gen = jobs.TRACKER.generation
    if gen == seen:  # nothing ended: redraw the panel while something runs, else nothing
        status = models_h.status_html() if jobs.TRACKER.busy() else gr.skip()
        return (status, gen, gr.skip(), *[gr.skip()] * (5 + len(current_groups)), gr.skip())
    u = _inventory_updates(models_h.snapshot(), to_fetch_now, bench_now, build_now, shown, current_groups)
    return (models_h.status_html(), gen, u["header"], u["zoo"], u["to_fetch"], u["bench"], models_h.pool_status(),
            u["shown"], *u["boxes"], u["to_build"])


def page_refresh(seen: str | None, to_fetch_now: list[str] | None, bench_now: list[str] | None,
                 build_now: str | None, shown: list[str] | None, compare_ref: str | None, bench_ref: str | None,
                 *current_groups: list[str] | None):
    """On every page load and tab change: the inventory as it is on disk now (a fetch or build made
    anywhere: this app, another one, `studio build` in a terminal). Nothing changes on the page
    when the inventory is what this page last showed (`seen`, an `inventory_key`)."""
    snap = models_h.snapshot()
    if snap.key == seen:
        return (gr.skip(),) * (10 + len(current_groups))
    u = _inventory_updates(snap, to_fetch_now, bench_now, build_now, shown, current_groups)
    refs = [vid for _, vid in snap.references]
    compare_refs = gr.Dropdown(choices=[("none (timings only)", ""), *snap.references],
                               value=compare_ref if compare_ref in refs else "")
    bench_refs = gr.Dropdown(choices=[(bench_h.GROUND_TRUTH_LABEL, bench_h.GROUND_TRUTH),
                                      *((labels.agreement_with(vid), vid) for vid in refs)],
                             value=bench_ref if bench_ref in refs else bench_h.GROUND_TRUTH)
    return (snap.key, u["header"], u["zoo"], u["to_fetch"], u["bench"], u["shown"], u["to_build"], compare_refs,
            bench_refs, models_h.pool_status(), *u["boxes"])


def refresh_models(shown: list[str] | None, *current_groups: list[str] | None):
    """After a fetch: the zoo table, the fetch list, and every variant picker, updated."""
    current_choice_ids = list(shown or [])
    groups = variants.grouped(installed_only=True)
    before = set(variants.merge(*current_groups))
    shown_before = set(current_choice_ids)
    defaults = set(variants.default_ids())
    updates = []
    for items in groups.values():
        ids = [vid for _, vid in items]
        # keep the user's choices; newly installed default variants join the selection
        value = [vid for vid in ids if vid in before or (vid not in shown_before and vid in defaults)]
        updates.append(gr.CheckboxGroup(choices=items, value=value, visible=bool(items)))
    bench_choices = [(c.label, c.id) for c in variants.choices() if c.installed]
    return (models_h.zoo_table(), gr.Dropdown(choices=models_h.fetchable(), value=[], multiselect=True),
            gr.Dropdown(choices=bench_choices, value=variants.default_ids(), multiselect=True),
            models_h.pool_status(), variants.installed_ids(), *updates)


def pool_status():
    return models_h.pool_status()


def select_variants(*groups: list[str] | None):
    return variants.merge(*groups)


# --- the layout: one function per tab --------------------------------------------------------------
# Each places its tab (call inside `gr.Tabs()`), wires the events that stay inside it, and returns
# the components other tabs or the page need (the Models tab refreshes the others' pickers).


@dataclass
class CompareTab:
    tab: gr.Tab
    family_boxes: list[gr.CheckboxGroup]  # one picker per family (the inventory refresh redraws them)
    shown_ids: gr.State  # the ids the pickers offered, so newly installed ones can be told apart
    sample: gr.Dropdown
    reference_model: gr.Dropdown
    run: Any  # the Run button's event (chains that follow a comparison hang on it)


@dataclass
class BenchmarkTab:
    tab: gr.Tab
    variants: gr.Dropdown
    reference: gr.Dropdown
    past: gr.Dropdown
    catalogue: gr.Dropdown
    run_id: gr.Textbox
    judge: gr.Button
    run: Any  # the Run button's event


@dataclass
class ModelsTab:
    tab: gr.Tab
    zoo: gr.Dataframe
    to_fetch: gr.Dropdown
    to_build: gr.Dropdown
    pool: gr.Markdown


def compare_tab(zoo_choices: list[variants.Choice]) -> CompareTab:
    """The Compare tab: one image, the chosen models, results streamed as each finishes. Run and
    the one progress line sit in a bar that stays in view (sticky) however far the page scrolls."""
    installed = [c for c in zoo_choices if c.installed]
    default_ids = [c.id for c in installed if c.default]
    groups = variants.grouped(installed_only=True)
    with gr.Tab("Compare", id="compare") as tab:
        with gr.Row(equal_height=True, elem_id="compare-bar", elem_classes=["action-bar"]):
            status = gr.Markdown("Upload an image (or pick a sample), choose models, then **Run comparison**.",
                                 elem_id="compare-status")
            run = gr.Button("Run comparison", variant="primary", elem_classes=["run-button"],
                            elem_id="compare-run", scale=0, min_width=190)
        with gr.Row(equal_height=False, elem_classes=["stack-on-phone"]):
            with gr.Column(scale=1, min_width=260):
                image = gr.Image(label="Image", type="filepath", image_mode=None, height=190,
                                 sources=["upload", "clipboard"], elem_id="compare-image", buttons=[])
                reference = gr.Image(label="Reference mask (optional)", type="filepath",
                                     image_mode=None, height=130, sources=["upload", "clipboard"],
                                     elem_id="compare-reference", buttons=[])
                sample = gr.Dropdown(label="…or pick an image from the embedded sample",
                                     info="loads the image and its exact reference mask",
                                     choices=[], value=None, elem_id="sample-picker")
                reference_model = gr.Dropdown(
                    label="…or, without a mask, score against a model",
                    info="its matte stands in for the mask: agreement, not accuracy",
                    choices=[("none (timings only)", ""), *variants.reference_choices()], value="",
                    elem_id="compare-reference-model")
                reference_md = gr.Markdown("<sub>A reference mask (or a reference model) adds metrics and "
                                           f"error overlays. Uploads up to {settings.max_upload_mb():g} MB.</sub>",
                                           elem_id="compare-reference-note")
                with gr.Accordion("Models to compare", open=True):
                    family_boxes = []
                    for family, items in groups.items():
                        family_boxes.append(gr.CheckboxGroup(
                            choices=items, value=[vid for _, vid in items if vid in default_ids],
                            label=variants.family_label(family), visible=bool(items),
                            elem_classes=["family-group"], show_select_all=len(items) > 1,
                            info=("not selected unless you tick them: their quality is noise"
                                  if family == variants.UNTRAINED_GROUP else None)))
                    missing = len(zoo_choices) - len(installed)
                    if missing:
                        gr.Markdown(f"<sub>{missing} more variants in the zoo need weights: "
                                    "see the **Models** tab.</sub>")
                chosen = gr.Dropdown(choices=[c.id for c in zoo_choices], value=default_ids, multiselect=True,
                                     label="variants", visible=False)
            with gr.Column(scale=4, min_width=300):
                table = gr.Dataframe(label="Timings (ms) and metrics", interactive=False, wrap=True,
                                     elem_id="compare-table", buttons=["copy"], elem_classes=["scroll-table"])
                notes = gr.Markdown(elem_id="compare-notes")
                gr.HTML(theme.LEGEND_HTML)
                gallery = gr.Gallery(label="Results, one row per model", columns=3, height="auto",
                                     object_fit="contain", format="png", preview=False,
                                     elem_id="compare-gallery", buttons=["download", "fullscreen"])
                with gr.Row(equal_height=False, elem_classes=["stack-on-phone"]):
                    slider = gr.ImageSlider(label="Original ↔ cut-out (drag the handle)", format="png",
                                            type="filepath", max_height=560, scale=3, elem_id="compare-slider",
                                            min_width=260)
                    with gr.Column(scale=1, min_width=200):
                        slider_left = gr.Dropdown(label="Left of the handle", choices=[], value=None,
                                                  elem_id="slider-left",
                                                  info="the original, or another model: A against B")
                        slider_pick = gr.Dropdown(label="Right of the handle", choices=[], value=None,
                                                  elem_id="slider-pick",
                                                  info="or click a result in the gallery")
                files = gr.File(label="Downloads: cut-outs (RGBA PNG) and masks", file_count="multiple",
                                elem_id="compare-files", height=180)
                table_files = gr.File(label="Results table: CSV and JSON (one row per variant: timings, "
                                            "every metric)", file_count="multiple", elem_id="compare-tables",
                                      height=110)
                with gr.Accordion("API rows (JSON)", open=False):
                    rows_json = gr.JSON(label="one row per variant", elem_id="compare-json")
                state = gr.State({})
                shown_ids = gr.State([c.id for c in installed])  # what the pickers offered

    outputs = [gallery, slider, slider_pick, table, rows_json, files, status, state, table_files, slider_left, notes]
    gr.on([g.change for g in family_boxes], select_variants, inputs=family_boxes, outputs=chosen,
          queue=False, api_name="select_variants", show_progress="hidden")
    run_event = run.click(compare, inputs=[image, reference, chosen, reference_model], outputs=outputs,
                          api_name="compare", concurrency_id=INFERENCE, concurrency_limit=1, preprocess=False,
                          show_progress="minimal", show_progress_on=[status])
    slider_pick.input(show_slider, inputs=[slider_pick, state, slider_left], outputs=slider, api_name="show_slider",
                      queue=False, show_progress="hidden")
    slider_left.input(show_slider, inputs=[slider_pick, state, slider_left], outputs=slider,
                      api_name="show_slider_left", queue=False, show_progress="hidden")
    gallery.select(select_result, inputs=[state, slider_left], outputs=[slider_pick, slider],
                   api_name="select_result", queue=False, show_progress="hidden")
    sample.input(load_sample, inputs=sample, outputs=[image, reference], api_name="load_sample")
    gr.on([reference.change, reference_model.change], reference_note, inputs=[reference, reference_model],
          outputs=reference_md, queue=False, api_name="reference_note", show_progress="hidden")
    return CompareTab(tab, family_boxes, shown_ids, sample, reference_model, run_event)


def benchmark_tab(installed: list[variants.Choice], theme_box: gr.Textbox) -> BenchmarkTab:
    """The Benchmark tab: the suite on a dataset, the recommendation, the Pareto plot, the per-image
    drill-down, past runs. Run and the one progress line stay in view (sticky)."""
    default_ids = [c.id for c in installed if c.default]
    with gr.Tab("Benchmark", id="benchmark") as tab:
        with gr.Row(equal_height=True, elem_id="bench-bar", elem_classes=["action-bar"]):
            bench_status = gr.Markdown("Choose a dataset and models, then **Run benchmark** (or open a past run).",
                                       elem_id="bench-status")
            bench_run = gr.Button("Run benchmark", variant="primary", elem_classes=["run-button"],
                                  elem_id="bench-run", scale=0, min_width=190)
        with gr.Row(equal_height=False, elem_classes=["stack-on-phone"]):
            with gr.Column(scale=3, min_width=280):
                source = gr.Radio(bench_h.SOURCES, value=bench_h.SOURCE_EMBEDDED, label="Dataset",
                                  elem_id="bench-source")
                catalogue = gr.Dropdown(label="Catalogue dataset or folder (im/ + gt/)",
                                        choices=[], value=None,
                                        allow_custom_value=True, visible=False)
                zip_file = gr.File(label="Zip with im/ and gt/ folders", file_types=[".zip"],
                                   visible=False, elem_id="bench-zip")
                images_folder = gr.Textbox(label="…or a folder of images on this machine", value="",
                                           placeholder="/path/to/images (masks optional)", visible=False,
                                           elem_id="bench-folder")
                bench_reference = gr.Dropdown(
                    choices=[(bench_h.GROUND_TRUTH_LABEL, bench_h.GROUND_TRUTH),
                             *((labels.agreement_with(vid), vid) for _, vid in variants.reference_choices())],
                    value=bench_h.GROUND_TRUTH, label="Score against",
                    info="a model instead of masks: every number becomes agreement with it, not accuracy",
                    elem_id="bench-reference")
                bench_variants = gr.Dropdown(choices=[(c.label, c.id) for c in installed],
                                             value=default_ids, multiselect=True,
                                             label="Models", elem_id="bench-variants",
                                             info="untrained checkpoints (⚠) are opt-in: latency and memory "
                                                  "only")
                with gr.Row():
                    # all of the embedded sample: 8 images leave the shipped builds undecided against fp32
                    limit = gr.Number(value=0, precision=0, minimum=0, label="Images (0: all)",
                                      elem_id="bench-limit", min_width=90)
                    warmup = gr.Number(value=1, precision=0, minimum=0, label="Warm-up", min_width=90)
                    repeats = gr.Number(value=1, precision=0, minimum=1, label="Repeats", min_width=90)
                cold = gr.Checkbox(value=False, label="Measure cold start (a fresh process per model; slow)",
                                   info="memory is measured either way: in-process when this is off")
                gr.Markdown("**Budgets**: changing one updates the recommendation without rerunning.")
                with gr.Row():
                    p95 = gr.Number(value=0, label="p95 ≤ ms (0: none)", minimum=0, elem_id="bench-p95",
                                    min_width=90)
                    memory = gr.Number(value=0, label="memory ≤ MB (0: none)", minimum=0, elem_id="bench-memory",
                                       min_width=90)
                    price = gr.Number(value=0, label="$ / hour (0: none)", minimum=0, elem_id="bench-price",
                                      min_width=90)
                with gr.Accordion("Past runs (eval/results)", open=True):
                    past = gr.Dropdown(label="Open a past run", choices=[], value=None, elem_id="past-runs")
                    with gr.Row():
                        open_btn = gr.Button("Open", size="sm", elem_id="open-run")
                        refresh_btn = gr.Button("Refresh list", size="sm")
            with gr.Column(scale=9, min_width=300):
                rec_md = gr.Markdown("Run the benchmark, or open a past run.", elem_id="recommendation")
                with gr.Row(equal_height=True, elem_id="export-row"):
                    judge_btn = gr.Button("Judge the disagreements blind", visible=False, size="sm",
                                          variant="primary", scale=0, min_width=260, elem_id="judge-disagreements")
                    export_btn = gr.Button("Export this model", visible=False, interactive=False, size="sm",
                                           variant="secondary", scale=0, min_width=260, elem_id="export-model")
                    export_note = gr.Markdown(elem_id="export-note")
                export_file = gr.File(label="Exported serving bundle", visible=False, elem_id="export-file",
                                      height=90)
                bench_table = gr.Dataframe(label=bench_h.table_label(None), interactive=False,
                                           wrap=True, elem_id="bench-table", buttons=["copy"], max_height=900,
                                           elem_classes=["scroll-table"])
                with gr.Accordion("More columns: p50, p99, img/s, wF, the matting metrics …", open=False,
                                  elem_id="bench-columns-box"):
                    bench_cols = gr.CheckboxGroup(bench_h.OPTIONAL_COLUMNS, value=list(bench_h.DEFAULT_COLUMNS),
                                                  label="Columns beside the decision columns",
                                                  elem_id="bench-columns")
                bench_notes = gr.Markdown(elem_id="bench-notes")
                gt_md = gr.Markdown(elem_id="bench-gt-heading")
                gt_table = gr.Dataframe(interactive=False, wrap=True, visible=False, elem_id="bench-gt-table",
                                        label="Images with masks, scored against the masks",
                                        elem_classes=["scroll-table"])
                plot = gr.Plot(label="Pareto: quality vs p95 latency", elem_id="bench-plot")
                with gr.Accordion("Per-image drill-down: each model's worst images, and the images no model "
                                  "is sure of", open=True, elem_id="drilldown"):
                    drill_pick = gr.Dropdown(label="Worst images of", choices=[], value=None,
                                             elem_id="drilldown-variant")
                    drill_note = gr.Markdown(elem_id="drilldown-note")
                    drill_worst = gr.Gallery(label="Worst images (error overlay)", columns=3, height="auto",
                                             object_fit="contain", format="png", preview=False,
                                             elem_id="drilldown-worst", buttons=["fullscreen"])
                    drill_flagged = gr.Gallery(label="No model is confident (faint or grey mattes)", columns=4,
                                               height="auto", object_fit="contain", format="png", preview=False,
                                               elem_id="drilldown-flagged", buttons=["fullscreen"], visible=False)
                report_files = gr.File(label="Report (HTML, summary.json, per-image CSV)",
                                       file_count="multiple")
                with gr.Accordion("summary.json", open=False):
                    summary_json = gr.JSON()
                run_id = gr.Textbox(label="run", visible=False)
                rec_variant = gr.Textbox(label="recommended", visible=False)
                bench_api = gr.Button(visible=False)  # the public `benchmark` endpoint

    outputs = [rec_md, plot, bench_table, report_files, run_id, summary_json]
    budgets = [p95, memory, price]
    run_inputs = [source, catalogue, zip_file, bench_variants, limit, warmup, repeats, cold, *budgets,
                  bench_reference, images_folder, bench_cols]
    details_outputs = [bench_table, bench_notes, gt_md, gt_table, export_btn, export_note, rec_variant, judge_btn]
    drill_outputs = [drill_pick, drill_worst, drill_flagged, drill_note]
    quiet = {"api_visibility": "private", "show_progress": "hidden"}
    source.change(dataset_source, inputs=[source, bench_reference],
                  outputs=[catalogue, zip_file, images_folder, bench_reference], api_name="dataset_source",
                  queue=False, show_progress="hidden")
    # the public API (gr.Progress reports to API callers); the page's button streams its own line
    bench_api.click(benchmark, inputs=run_inputs, outputs=outputs, api_name="benchmark", concurrency_id=INFERENCE,
                    concurrency_limit=1, preprocess=False)
    bench_event = bench_run.click(
        benchmark_page, inputs=[*run_inputs, theme_box], outputs=[bench_status, *outputs],
        api_visibility="private", concurrency_id=INFERENCE, concurrency_limit=1, preprocess=False,
        show_progress="hidden")
    done = bench_event.success(bench_details, inputs=[run_id, *budgets, bench_cols], outputs=details_outputs,
                               api_name="details_after_benchmark", show_progress="hidden")
    done.then(drilldown, inputs=run_id, outputs=drill_outputs, **quiet)
    bench_event.then(list_runs, outputs=past, api_name="list_runs_after_benchmark", show_progress="hidden")
    gr.on([p95.input, memory.input, price.input], recommend, inputs=[run_id, *budgets, bench_cols, theme_box],
          outputs=outputs, api_name="recommend", trigger_mode="always_last",
          show_progress="minimal").success(
        bench_details, inputs=[run_id, *budgets, bench_cols], outputs=details_outputs,
        api_name="details_after_recommend", show_progress="hidden")
    opened = open_btn.click(open_run, inputs=[past, *budgets, bench_cols, theme_box], outputs=outputs,
                            api_name="open_run").success(
        bench_details, inputs=[run_id, *budgets, bench_cols], outputs=details_outputs,
        api_name="details_after_open", show_progress="hidden")
    opened.then(drilldown, inputs=run_id, outputs=drill_outputs, **quiet)
    drill_pick.input(drilldown, inputs=[run_id, drill_pick], outputs=drill_outputs, **quiet)
    bench_cols.input(bench_columns, inputs=[run_id, *budgets, bench_cols, summary_json],
                     outputs=[bench_table, bench_notes], api_name="bench_columns", trigger_mode="always_last",
                     show_progress="hidden")
    export_btn.click(export_model, inputs=rec_variant, outputs=export_file, api_name="export_model",
                     concurrency_id=INFERENCE, concurrency_limit=1)
    refresh_btn.click(list_runs, outputs=past, api_name="list_runs", show_progress="hidden")
    return BenchmarkTab(tab, bench_variants, bench_reference, past, catalogue, run_id, judge_btn, bench_event)


def models_tab(header: gr.HTML, compare_tab: CompareTab, bench_tab: BenchmarkTab) -> ModelsTab:
    """The Models tab: the zoo, fetches and builds with progress, the background-job panel. A job
    that ends refreshes the page's header and the other tabs' model pickers."""
    with gr.Tab("Models", id="models") as tab:
        # background fetches and builds, redrawn by the timer below
        weights_status = gr.HTML(models_h.status_html(), elem_id="weights-status",
                                 css_template=models_h.STATUS_CSS, js_on_load=None)
        weights_seen = gr.State(-1)  # the tracker generation this page shows (-1: refresh at once)
        weights_timer = gr.Timer(1.0)
        pool_md = gr.Markdown(models_h.pool_status(), elem_id="pool-status")
        zoo = gr.Dataframe(value=models_h.zoo_table(), label="Model zoo", interactive=False, wrap=True,
                           elem_id="zoo-table", buttons=["copy"], max_height=620,
                           column_widths=models_h.ZOO_COLUMN_WIDTHS, elem_classes=["scroll-table"])
        with gr.Row(equal_height=False, elem_classes=["stack-on-phone"]):
            to_fetch = gr.Dropdown(choices=models_h.fetchable(), value=[], multiselect=True, scale=4,
                                   label="Fetch weights for", min_width=240)
            untrained = gr.Checkbox(value=False, scale=2,
                                    label="InSPyReNet: untrained checkpoint (offline; latency only)", min_width=160)
            fetch_btn = gr.Button("Fetch", variant="primary", scale=1, min_width=100)
        fetch_md = gr.Markdown("<sub>Fetches run one at a time in the background: progress shows here "
                               "and in the panel at the top of this tab.</sub>")
        with gr.Row(equal_height=False, elem_classes=["stack-on-phone"]):
            # filled by the timer's first tick: describing every build would slow the start
            to_build = gr.Dropdown(choices=[], value=None, scale=4,
                                   label="Build a declared build (models/zoo.d)", elem_id="build-pick",
                                   info="its source is fetched first when missing", min_width=240)
            build_btn = gr.Button("Build", variant="primary", scale=1, elem_id="build-run", min_width=100)
        build_md = gr.Markdown("<sub>A build takes its turn with comparisons and benchmarks (they share "
                               "the CPU): progress shows here and in the panel at the top.</sub>",
                               elem_id="build-result")
        pool_btn = gr.Button("Refresh loaded-model status", size="sm")

    family_boxes, shown_ids, bench_variants = compare_tab.family_boxes, compare_tab.shown_ids, bench_tab.variants
    refreshed = [zoo, to_fetch, bench_variants, pool_md, shown_ids, *family_boxes]
    fetch_btn.click(fetch_weights, inputs=[to_fetch, untrained], outputs=fetch_md, api_name="fetch_weights",
                    concurrency_id="weights", concurrency_limit=1).then(
        refresh_models, inputs=[shown_ids, *family_boxes], outputs=refreshed, api_name="refresh_models")
    build_btn.click(build_variant, inputs=to_build, outputs=build_md, api_name="build_variant",
                    concurrency_id=INFERENCE, concurrency_limit=1).then(
        refresh_models, inputs=[shown_ids, *family_boxes], outputs=refreshed,
        api_name="refresh_models_after_build")
    weights_timer.tick(weights_tick,
                       inputs=[weights_seen, to_fetch, bench_variants, to_build, shown_ids, *family_boxes],
                       outputs=[weights_status, weights_seen, header, zoo, to_fetch, bench_variants, pool_md,
                                shown_ids, *family_boxes, to_build],
                       api_name="weights_status", queue=False, show_progress="hidden")
    pool_btn.click(pool_status, outputs=pool_md, api_name="pool_status", queue=False)
    tab.select(pool_status, outputs=pool_md, api_name="pool_status_on_open", queue=False,
               show_progress="hidden")
    return ModelsTab(tab, zoo, to_fetch, to_build, pool_md)


THEME_JS = "() => (document.body.classList.contains('dark') ? 'dark' : 'light')"


def build_app() -> gr.Blocks:
    """The whole app: Compare, Benchmark, Models and Arena tabs over the one engine."""
    engine.set_pool_budget(settings.pool_budget_mb())
    snap = models_h.snapshot()  # the inventory as the page is built; every load checks it again
    zoo_choices = variants.choices()
    installed = [c for c in zoo_choices if c.installed]

    with gr.Blocks(title="Matting Studio", analytics_enabled=False, delete_cache=(3600, 7200),
                   fill_width=True) as demo:
        header = gr.HTML(theme.header_html(len(installed), len(zoo_choices), _device()), elem_id="studio-header-box")
        theme_box = gr.Textbox("light", visible=False, label="theme")  # light | dark, read from the page
        inventory_seen = gr.State(snap.key)  # the inventory this page shows
        with gr.Tabs(elem_id="studio-tabs") as tabs:
            cmp = compare_tab(zoo_choices)
            bench = benchmark_tab(installed, theme_box)
            mdl = models_tab(header, cmp, bench)
            arena = arena_tab()  # layout and events in studio/ui/arena_blocks.py

        # Filled after the page is served, so start-up never waits for the sample or eval/results.
        demo.load(sample_choices, outputs=cmp.sample, api_name="sample_choices", show_progress="hidden")
        demo.load(list_runs, outputs=bench.past, api_name="list_past_runs", show_progress="hidden")
        demo.load(catalogue_choices, outputs=bench.catalogue, api_name="catalogue_choices",
                  show_progress="hidden")
        # the page's theme, for the plot's template (dark mode gets a dark plot)
        gr.on([demo.load, bench.tab.select], None, js=THEME_JS, outputs=theme_box, api_visibility="private",
              show_progress="hidden")
        # every page load and every tab reads the inventory as it is now (a build made anywhere)
        refresh_inputs = [inventory_seen, mdl.to_fetch, bench.variants, mdl.to_build, cmp.shown_ids,
                          cmp.reference_model, bench.reference, *cmp.family_boxes]
        refresh_outputs = [inventory_seen, header, mdl.zoo, mdl.to_fetch, bench.variants, cmp.shown_ids,
                           mdl.to_build, cmp.reference_model, bench.reference, mdl.pool, *cmp.family_boxes]
        gr.on([demo.load, cmp.tab.select, bench.tab.select, mdl.tab.select, arena.tab.select], page_refresh,
              inputs=refresh_inputs, outputs=refresh_outputs, api_name="page_refresh", queue=False,
              show_progress="hidden")
        # after a run, the Models tab's "Loaded models" says what the run loaded
        cmp.run.then(pool_status, outputs=mdl.pool, api_visibility="private", show_progress="hidden")
        bench.run.then(pool_status, outputs=mdl.pool, api_visibility="private", show_progress="hidden")
        # a labels-free run's disagreements, judged blind: the Arena tab on that set, started
        arena_fields = [tabs, arena.source, arena.dataset, arena.limit, arena.variants, arena.set_md]
        arena.start_chain(bench.judge.click(judge_disagreements, inputs=bench.run_id, outputs=arena_fields,
                                            api_visibility="private"))
        # eval/run.py --arena prints a link: ?arena_set=SPEC&variants=A,B opens the Arena on that set
        demo.load(from_link, outputs=arena_fields, api_visibility="private", show_progress="hidden")

    demo.queue(default_concurrency_limit=4, max_size=64)
    # the Space's default set (or STUDIO_PREFETCH), queued only once the page answers 200
    jobs.start_after_served(demo)
    return demo
