"""The app helps decide: default selection, labels-free runs, agreement wording, the decision
columns, memory without cold start, progress, untrained variants greyed, Compare against a
reference model, CSV/JSON downloads, the recommendation card and its export button.

Plain handler calls: no browser, no server. Models are either GrabCut (no weights, fast) or
faked at `compare.infer`, so these stay fast.
"""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio import inventory, labels
from studio.bench.results import Latency, Summary, VariantRow, reference_variant
from studio.matte import Matte
from studio.ui import benchmark as bench_h
from studio.ui import compare as compare_h
from studio.ui import variants
from studio.ui.uploads import UploadError
from tests.conftest import pretend_untrained, synthetic_photo

# --- default selection ------------------------------------------------------------------------------


def _with_untrained(monkeypatch, vid: str = "inspyrenet-fast"):
    return pretend_untrained(monkeypatch, vid, flag=True)


def test_default_selection_is_inventory_default_variants_in_zoo_order():
    want = [v.id for v in inventory.default_variants()]
    assert variants.default_ids() == want
    assert compare_h.engine_default_variants() == want
    refs = {v.id for v in inventory.installed_variants(include_references=True)} - {
        v.id for v in inventory.installed_variants()}
    assert not refs & set(variants.default_ids())  # no parity references


def test_an_untrained_checkpoint_is_opt_in_in_its_own_labelled_group(monkeypatch):
    vid = _with_untrained(monkeypatch)
    assert vid not in variants.default_ids()
    groups = variants.grouped(installed_only=True)
    assert list(groups) == variants.families() and list(groups)[-1] == variants.UNTRAINED_GROUP
    untrained = groups[variants.UNTRAINED_GROUP]
    assert [i for _, i in untrained] == [vid] and labels.UNTRAINED in untrained[0][0]
    assert all(i != vid for fam, items in groups.items() if fam != variants.UNTRAINED_GROUP for _, i in items)
    assert "opt-in" in variants.family_label(variants.UNTRAINED_GROUP)
    assert vid not in [i for _, i in variants.reference_choices()]  # never a reference


def test_the_default_reference_is_isnet_general_use_when_installed(monkeypatch):
    """Whatever this machine has installed: the rule on known pickers."""
    def offer(*ids: str) -> None:
        monkeypatch.setattr(variants, "reference_choices", lambda: [(i, i) for i in ids])

    offer("u2netp", "isnet-general-use", "grabcut")
    assert variants.default_reference() == "isnet-general-use"  # not merely the first
    offer("u2netp", "grabcut")
    assert variants.default_reference() == "u2netp"  # without it: the first trained one
    offer()
    assert variants.default_reference() is None


# --- progress -----------------------------------------------------------------------------------------

def test_progress_says_what_is_loading_at_once_and_never_jumps_ahead():
    from studio.ui.progress import ProgressLine

    seen = []
    line = ProgressLine(2, size_of=lambda vid: 176.2 if vid == "isnet-general-use" else None)
    cb = bench_h.progress_adapter(lambda frac, desc="": seen.append((round(frac, 3), desc)), 2, line)
    cb({"stage": "loading", "variant": "isnet-general-use", "message": "loading isnet-general-use …"})
    assert seen[-1] == (0.0, "loading isnet-general-use (176 MB)…")
    cb({"stage": "image", "variant": "isnet-general-use", "done": 1, "total": 2})
    cb({"stage": "skipped", "variant": "u2net", "message": "skipped u2net: not installed"})
    assert seen[-1][0] == 0.25 and "skipped u2net" in line.markdown()  # a note, not progress
    cb({"stage": "variant", "variant": "isnet-general-use", "done": 1, "total": 2})
    cb({"stage": "loading", "variant": "grabcut", "message": "loading grabcut …"})
    assert seen[-1] == (0.5, "loading grabcut…")
    cb({"stage": "report", "done": 2, "total": 2, "message": "writing the report"})
    assert seen[-1] == (1.0, "writing the report")


def test_the_benchmark_handler_says_something_before_the_suite_starts(monkeypatch, tmp_path):
    seen = []

    def no_suite(cfg, **kw):
        raise UploadError("stop here")

    monkeypatch.setattr("studio.bench.run_suite", no_suite)
    with pytest.raises(UploadError, match="stop here"):
        bench_h.benchmark(variants=["grabcut"], out=tmp_path / "run",
                          progress=lambda f, desc="": seen.append(desc))
    assert seen[0] == "opening the dataset …" and seen[1].startswith("starting: 1 variants")


def test_the_app_runs_one_model_at_a_time(monkeypatch, tmp_path):
    seen: dict = {}

    def fake_suite(cfg, progress=None, show_bars=True, keep_loaded=False, **kw):
        seen["keep_loaded"] = keep_loaded
        raise UploadError("stop here")

    monkeypatch.setattr("studio.bench.run_suite", fake_suite)
    with pytest.raises(UploadError, match="stop here"):
        bench_h.benchmark(variants=["grabcut"], out=tmp_path / "run")
    assert seen == {"keep_loaded": False}


# --- a labels-free run (GrabCut as both reference and candidate: fast, no weights) ---------------------

def _images(folder: Path, n: int, masks: int = 0) -> Path:
    (folder / "im").mkdir(parents=True)
    if masks:
        (folder / "gt").mkdir()
    for i in range(n):
        img, mask = synthetic_photo(seed=i)
        Image.fromarray(img).save(folder / "im" / f"p{i}.png")
        if i < masks:
            Image.fromarray((mask * 255).astype(np.uint8)).save(folder / "gt" / f"p{i}.png")
    return folder


def _zip_of_images(tmp_path: Path, n: int = 2) -> Path:
    z = tmp_path / "photos.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for i in range(n):
            img, _ = synthetic_photo(seed=i)
            p = tmp_path / f"p{i}.png"
            Image.fromarray(img).save(p)
            zf.write(p, f"my photos/p{i}.png")  # one top folder, images alone
    return z


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_RESULTS", str(tmp_path / "results"))
    return tmp_path / "results"


def test_images_alone_need_a_reference_model(results, tmp_path):
    with pytest.raises(UploadError, match="need a reference model"):
        bench_h.benchmark(source=bench_h.SOURCE_IMAGES, folder=str(tmp_path), variants=["grabcut"])
    with pytest.raises(UploadError, match="upload a zip of your images, or type a folder"):
        bench_h.benchmark(source=bench_h.SOURCE_IMAGES, variants=["grabcut"], reference="grabcut")


def test_a_zip_of_images_in_one_folder_opens_through_the_layout_detector(tmp_path):
    z = _zip_of_images(tmp_path)
    ds = bench_h.resolve_dataset(bench_h.SOURCE_IMAGES, None, str(z), tmp_path / "work")
    assert Path(ds).name == "my photos"
    from studio.data import open_dataset

    opened = open_dataset(ds, unlabelled=True)
    assert len(opened) == 2 and not opened.has_references
    bad = tmp_path / "empty.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("notes/readme.txt", "no images here")
    with pytest.raises(UploadError, match="the zip"):
        bench_h.resolve_dataset(bench_h.SOURCE_IMAGES, None, str(bad), tmp_path / "work2")


def test_labels_free_run_from_a_zip_says_agreement_everywhere(results, tmp_path):
    z = _zip_of_images(tmp_path, n=2)
    md, fig, table, files, run, public = bench_h.benchmark(
        source=bench_h.SOURCE_IMAGES, zip_file=str(z), variants=["grabcut"], reference="grabcut", limit=0,
        warmup=0)
    assert public["reference"] == {"kind": "variant", "id": "grabcut"}
    assert "agreement with `grabcut`" in md and "not accuracy" in md
    iou_header = next(h for h in table["headers"] if h.startswith("IoU"))
    assert iou_header == "IoU agreement"
    assert "agreement with grabcut" in bench_h.table_label(public)
    assert "accuracy" not in bench_h.table_label(public).replace("not accuracy", "")
    assert "agreement with grabcut" in fig.layout.yaxis.title.text
    assert "agreement with grabcut" in fig.layout.title.text
    d = bench_h.details(run)
    assert "agreement with grabcut" in d["notes"]
    assert d["gt_table"] is None and d["gt_heading"] == ""  # no masks: no ground-truth block
    # the layout: the table's label and widths follow in the details step; the API gets the plain table
    pytest.importorskip("gradio")
    from studio.ui import blocks

    assert "column_widths" not in blocks._bench_outputs((md, fig, table, files, run, public))[2]
    table_update, notes, *_rest, export_btn, _note, rec_variant, judge = blocks.bench_details(
        run, None, None, None, None)
    assert "agreement with grabcut" in table_update.label and table_update.column_widths
    assert rec_variant == "grabcut" and export_btn.interactive is False  # GrabCut has no model file
    assert judge.visible is False  # the reference against itself: nothing disagrees
    # the column picker: the same run's table with p99 and wF (nothing reruns)
    more, notes = blocks.bench_columns(run, None, None, None, ["p99", "wfmeasure"], public)
    assert {"p99 ms", "wF agreement"} <= set(more.value["headers"]) and "wF = weighted F-measure" in notes


def test_a_mixed_folder_shows_its_masked_images_apart(results, tmp_path):
    folder = _images(tmp_path / "mixed", n=3, masks=2)
    md, _fig, _table, _files, run, public = bench_h.benchmark(
        source=bench_h.SOURCE_CATALOGUE, dataset=str(folder), variants=["grabcut"], reference="grabcut",
        limit=0, warmup=0)
    assert public["dataset"]["n_images"] == 3 and public["dataset"]["n_with_masks"] == 2
    assert "(2 with masks)" in md
    d = bench_h.details(run)
    assert "2 of 3 images have masks" in d["gt_heading"] and "accuracy, not agreement" in d["gt_heading"]
    gt = d["gt_table"]
    assert gt["headers"][:3] == ["variant", "images with masks", "IoU"]
    row = gt["data"][0]
    assert row[0].startswith("grabcut") and row[1] == 2
    want = public["variants"][0]["metrics_gt"]["iou"]["mean"]
    assert row[2] == pytest.approx(want, abs=1e-4)


def test_memory_shows_without_cold_start_and_a_memory_budget_works(results, tmp_path):
    folder = _images(tmp_path / "ds", n=2, masks=2)
    _md, _fig, table, _files, run, public = bench_h.benchmark(
        source=bench_h.SOURCE_CATALOGUE, dataset=str(folder), variants=["grabcut"], limit=0, warmup=1,
        cold_start=False)
    row = public["variants"][0]
    assert row["cold_start"] is None and row["memory_mb"] is not None and row["memory_source"]
    mem_col = table["headers"].index("mem MB")
    assert table["data"][0][mem_col] is not None
    assert row["memory_source"] in bench_h.details(run)["notes"]
    # the budget on a known figure: GrabCut holds no model, so its measured growth can round to
    # nothing; the run's summary is given 100 MB, and the budget re-ranks that run from disk
    summary_path = results / run
    summary = json.loads(summary_path.read_text())
    summary["variants"][0]["memory_mb"] = 100.0
    summary_path.write_text(json.dumps(summary))
    md, *_ = bench_h.rerecommend(run, memory=101)
    assert "Recommended: `grabcut`" in md and "no memory figure" not in md
    md, _f, _t, _files, _r, pub = bench_h.rerecommend(run, memory=50)
    assert "No recommendation" in md and "no memory figure" not in md
    assert pub["recommendation"]["excluded"][0]["why"].startswith("memory")


def test_forget_unmeasured_reloads_models_compare_loaded(monkeypatch):
    """A model Compare loaded (no load-memory figure) is unloaded before a run, so the run
    measures it; one the benchmark measured stays loaded. GrabCut, loaded for real."""
    from studio import engine
    from studio.bench import executor

    measured: dict[tuple, float] = {}
    monkeypatch.setattr(executor, "load_memory", measured.get)
    engine.get_runner("grabcut")  # as Compare loads it
    measured[("grabcut", "cpu", 0)] = 12.0
    bench_h._forget_unmeasured(["grabcut", "u2net"], "cpu", 0)
    assert engine.is_loaded("grabcut", "cpu", 0)  # measured: kept
    measured.clear()
    bench_h._forget_unmeasured(["grabcut", "u2net"], "cpu", 0)
    assert not engine.is_loaded("grabcut")  # unmeasured: unloaded, to be measured by the run


# --- the table: decision columns, column picker, greyed untrained quality -----------------------------

def _fake_summary(reference: str | None = None) -> Summary:
    """Three variants with real per-image scores: best, a faster equivalent, and an untrained one."""
    from studio.metrics import aggregate, score_image

    rng = np.random.default_rng(0)
    gts = [(rng.random((48, 64)) > 0.5).astype(np.float32) for _ in range(6)]
    preds = {
        "best": [g for g in gts],
        "fast": [np.where(rng.random(g.shape) < 0.001, 1 - g, g) for g in gts],
        "noise": [rng.random(g.shape).astype(np.float32) for g in gts],
    }
    s = Summary(created="now", config={"quality_metric": "iou"}, environment={"device": "cpu", "cpu": "x"},
                dataset={"name": "t", "n_images": 6, "n_with_masks": 6},
                reference=reference_variant(reference) if reference else {"kind": "ground_truth"})
    for vid, p95, untrained in (("best", 900.0, False), ("fast", 300.0, False), ("noise", 100.0, True)):
        scores = {f"i{k}": score_image(p, g) for k, (p, g) in enumerate(zip(preds[vid], gts, strict=True))}
        s.per_image_scores[vid] = {k: v.to_json() for k, v in scores.items()}
        agg = {k: v for k, v in aggregate(list(scores.values()), n_boot=200).items() if isinstance(v, dict)}
        s.variants.append(VariantRow(
            id=vid, n_images=6, n_scored=6, untrained=untrained, metrics=agg, model_size_mb=40.0,
            flags=[labels.UNTRAINED] if untrained else [], latency=Latency(p50_ms=p95 * 0.9, p95_ms=p95, p99_ms=p95 * 1.1),
            throughput_ips=1000 / p95, memory_mb=500.0, memory_source="peak RSS growth while loading, in-process",
            metrics_gt=agg if reference else {}))
    return s


def test_the_decision_columns_are_there_and_the_rest_behind_the_picker():
    s = _fake_summary()
    t = bench_h.summary_table(s, {})
    assert t["headers"] == ["", "variant", "imgs", "IoU", "p95 ms", "speed ×", "mem MB", "size MB", "$/1k",
                            "flags"]
    # every column has a width; the flags wrap in theirs (a long flag never widens the table)
    assert len(t["column_widths"]) == len(t["headers"]) and t["column_widths"][-1] == bench_h.COLUMN_WIDTHS["flags"]
    more = bench_h.summary_table(s, {}, extra=["p99", "wfmeasure", "sad", "p50"])
    assert more["headers"] == ["", "variant", "IoU", "wF", "SAD", "p50 ms", "p95 ms", "speed ×", "p99 ms",
                               "mem MB", "size MB", "$/1k", "flags"]
    picker = {key for _, key in bench_h.OPTIONAL_COLUMNS}
    assert {"p99", "wfmeasure", "sad", "mse", "grad", "conn"} <= picker


def test_untrained_quality_is_greyed_not_presented_as_a_score():
    s = _fake_summary()
    t = bench_h.summary_table(s, {}, extra=["smeasure"])
    styling = t["metadata"]["styling"]
    heads = t["headers"]
    for r, row in enumerate(t["data"]):
        untrained = row[1].startswith("noise")
        for c in (heads.index("IoU"), heads.index("S")):
            assert bool(styling[r][c]) == untrained
        assert not styling[r][heads.index("p95 ms")]  # latency is real for every variant
    assert labels.UNTRAINED_SHORT in t["data"][2][1]
    assert "Greyed numbers" in bench_h.table_notes(s, {})


def test_the_recommendation_card_names_the_best_scoring_and_the_equivalents():
    from studio.bench import recommend

    s = _fake_summary()
    rec = recommend(s)
    md = bench_h.recommendation_markdown(rec, s)
    assert rec["best"] == "fast" and rec["best_scoring"] == "best"
    assert "Recommended: `fast`" in md and rec["sentence"] in md
    assert "Best-scoring: best" in md and "not picked because" in md
    assert "the recommendation itself" not in md.replace("— the recommendation itself", "")
    assert "Best-scoring: `best`, the recommendation itself" not in md
    # every eligible variant against the best-scoring, with speed, Δ and its CI, memory, verdict
    assert "| ★ `fast` |" in md and "equivalent |" in md and "500 MB" in md
    assert "noise" in md and "latency only" in md  # excluded, with why
    ref = _fake_summary(reference="best")
    md_ref = bench_h.recommendation_markdown(recommend(ref), ref)
    assert "agreement with `best`" in md_ref


def test_export_button_state(monkeypatch):
    import importlib.util

    assert bench_h.export_state(None)["visible"] is False
    grab = bench_h.export_state("grabcut")
    assert grab["visible"] and not grab["enabled"] and "cannot be exported" in grab["note"]
    isnet = bench_h.export_state("isnet-general-use")
    assert isnet["enabled"] and isnet["label"].startswith("Export isnet-general-use")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "studio.ui.export" else real(name, *a))
    gone = bench_h.export_state("isnet-general-use")
    assert not gone["enabled"] and not gone["visible"] and "not available" in gone["note"]
    with pytest.raises(UploadError, match="no recommended model"):
        bench_h.export_model(None)


def test_export_model_zips_the_bundle_once_per_artifact(monkeypatch, isnet_weights):
    """The card's button through the real zip code: the model stored (not deflated), the other
    files deflated, under one top folder; the same artifact again is the same zip, not a second
    bundle. Only writing the bundle (`studio export`, tested in test_export) is stood in for."""
    import zipfile
    from types import SimpleNamespace

    import studio.export as export_pkg
    import studio.ui.export as export_ui

    written = []

    def bundle(variant_id, out, check=True):
        written.append((variant_id, check))
        out.mkdir(parents=True)
        (out / "model.onnx").write_bytes(bytes(range(256)) * 64)
        (out / "serve.py").write_text("print('serving')\n" * 50)
        return SimpleNamespace(dir=out)

    monkeypatch.setattr(export_pkg, "export_bundle", bundle)
    monkeypatch.setattr(export_ui, "_ZIPS", {})  # this process's cache of zips, empty for the test
    said = []
    path = bench_h.export_model("isnet-general-use", progress=lambda frac, desc: said.append(desc))
    with zipfile.ZipFile(path) as zf:
        kinds = {i.filename: i.compress_type for i in zf.infolist()}
        assert zf.read("isnet-general-use/model.onnx") == bytes(range(256)) * 64
    assert kinds == {"isnet-general-use/model.onnx": zipfile.ZIP_STORED,
                     "isnet-general-use/serve.py": zipfile.ZIP_DEFLATED}
    assert said == ["isnet-general-use: writing the bundle", "isnet-general-use: zipping"]
    assert written == [("isnet-general-use", True)]  # checked against the studio
    assert bench_h.export_model("isnet-general-use") == path and len(written) == 1


# --- Compare: a reference model, untrained labels, CSV/JSON -------------------------------------------

def _fake_infer(mattes: dict[str, np.ndarray]):
    def infer(variant_id, image):
        alpha = mattes[variant_id]
        return Matte(alpha=alpha, timings={"preprocess": 0.001, "inference": 0.01, "postprocess": 0.001},
                     variant=variant_id), 0.0, False
    return infer


@pytest.fixture
def photo_file(tmp_path):
    img, mask = synthetic_photo()
    p = tmp_path / "photo.png"
    Image.fromarray(img).save(p)
    return p, mask


def test_compare_against_a_reference_model(photo_file, monkeypatch):
    path, mask = photo_file
    shifted = np.roll(mask, 6, axis=1)
    monkeypatch.setattr(compare_h, "infer", _fake_infer({"isnet-general-use": mask, "grabcut": shifted}))
    outs = list(compare_h.compare(str(path), None, ["grabcut"], reference_variant="isnet-general-use"))
    gallery, _slider, picker, table, rows, _dl, status, state = outs[-1]
    assert [r["id"] for r in rows] == ["isnet-general-use", "grabcut"]  # the reference runs first
    assert rows[0]["is_reference"] and not rows[1]["is_reference"]
    ref_levels = compare_h.levels(mask)
    want = compare_h.score(compare_h.levels(shifted), ref_levels, agreement=True)
    assert rows[1]["metrics"] == want and want["iou"] < 1.0
    assert rows[0]["metrics"]["iou"] == 1.0  # the reference against itself: the ceiling
    assert state["reference_id"] == "isnet-general-use" and state["with_reference"]
    assert "agreement with isnet-general-use" in status and "not accuracy" in status
    captions = [c for _, c in gallery]
    assert captions[2] == "the reference itself"
    assert captions[5].startswith("IoU ") and captions[5].endswith(": agreement with isnet-general-use")
    assert table["headers"][5] == "IoU"
    # downloads: one row per variant, timings and metrics, in CSV and JSON
    csv_path, json_path = state["tables"]
    with open(csv_path) as f:
        got = list(csv.DictReader(f))
    assert [r["variant"] for r in got] == ["isnet-general-use", "grabcut"]
    assert float(got[1]["iou"]) == pytest.approx(want["iou"])
    assert float(got[1]["total_ms"]) == pytest.approx(12.0)  # the fake's 1 + 10 + 1 ms
    assert got[1]["reference"] == "agreement with isnet-general-use"
    js = json.loads(Path(json_path).read_text())
    assert js["reference"] == {"kind": "variant", "id": "isnet-general-use"}
    assert js["rows"] == rows and js["metrics_are"] == "agreement with isnet-general-use"


def test_a_faint_reference_and_an_identical_candidate_agree_fully(photo_file, monkeypatch):
    """Mattes that peak below 0.5 (a faint object): the reference must not binarise to nothing
    while the candidate, normalised as every prediction is, covers the object."""
    path, mask = photo_file
    faint = mask * 0.4
    monkeypatch.setattr(compare_h, "infer", _fake_infer({"isnet-general-use": faint, "grabcut": faint}))
    *_, rows, _dl, _status, _state = list(compare_h.compare(str(path), None, ["grabcut"],
                                                            reference_variant="isnet-general-use"))[-1]
    assert [r["metrics"]["iou"] for r in rows] == [1.0, 1.0]


def test_an_uploaded_mask_wins_over_a_reference_model(photo_file, tmp_path, monkeypatch):
    path, mask = photo_file
    mp = tmp_path / "mask.png"
    Image.fromarray((mask * 255).astype(np.uint8)).save(mp)
    monkeypatch.setattr(compare_h, "infer", _fake_infer({"grabcut": mask}))
    *_, rows, _dl, status, state = list(compare_h.compare(str(path), str(mp), ["grabcut"],
                                                          reference_variant="isnet-general-use"))[-1]
    assert [r["id"] for r in rows] == ["grabcut"] and state["reference_id"] is None
    assert rows[0]["metrics"]["iou"] == 1.0 and "uploaded mask" in status
    js = json.loads(Path(state["tables"][1]).read_text())
    assert js["reference"]["kind"] == "mask"


def test_compare_without_any_reference_still_downloads_timings(photo_file, monkeypatch):
    path, mask = photo_file
    monkeypatch.setattr(compare_h, "infer", _fake_infer({"grabcut": mask}))
    *_, state = list(compare_h.compare(str(path), None, ["grabcut"]))[-1]
    with open(state["tables"][0]) as f:
        got = list(csv.DictReader(f))
    assert got[0]["variant"] == "grabcut" and "iou" not in got[0]
    assert float(got[0]["inference_ms"]) == pytest.approx(10.0)


def test_untrained_variants_are_labelled_and_their_metrics_greyed(photo_file, monkeypatch):
    path, mask = photo_file
    vid = _with_untrained(monkeypatch, "isnet-general-use-fp16")
    monkeypatch.setattr(compare_h, "infer", _fake_infer({"isnet-general-use": mask, vid: mask}))
    gallery, _s, _p, table, rows, _d, status, state = list(
        compare_h.compare(str(path), None, [vid], reference_variant="isnet-general-use"))[-1]
    captions = [c for _, c in gallery]
    assert labels.UNTRAINED in captions[3] and "not a score" in captions[5]
    assert dict((i, lab) for lab, i in compare_h.picker_choices(state))[vid].endswith(labels.UNTRAINED)
    assert rows[1]["untrained"] is True
    styling = table["metadata"]["styling"]
    first_metric = table["headers"].index("IoU")
    assert styling[1][first_metric] and not styling[1][1] and not any(styling[0])
    assert "greyed" in status


def test_an_unknown_reference_model_is_refused_before_anything_runs(photo_file, monkeypatch):
    path, _ = photo_file
    ran = []
    monkeypatch.setattr(compare_h, "infer", lambda *a: ran.append(a))
    with pytest.raises(UploadError, match="reference model"):
        next(compare_h.compare(str(path), None, ["grabcut"], reference_variant="no-such-model"))
    assert ran == []


def test_releasing_freed_memory_never_raises():
    from studio.memory import release_freed_memory

    release_freed_memory()
