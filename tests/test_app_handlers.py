"""The app's handlers as plain functions: no browser, no server, no Gradio import."""

from __future__ import annotations

import json
import math
import stat
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio import settings
from studio.ui import benchmark as bench_h
from studio.ui import compare as compare_h
from studio.ui import models as models_h
from studio.ui import space, uploads, variants
from studio.ui.uploads import UploadError
from tests.conftest import make_folder, pretend_untrained, synthetic_photo


@pytest.fixture
def files(tmp_path):
    img, mask = synthetic_photo()
    ip, mp = tmp_path / "photo.png", tmp_path / "photo_mask.png"
    Image.fromarray(img).save(ip)
    Image.fromarray((mask * 255).astype(np.uint8)).save(mp)
    return ip, mp


# --- uploads -----------------------------------------------------------------------------------

def test_upload_path_accepts_every_shape_gradio_passes(tmp_path):
    p = tmp_path / "a.png"
    assert uploads.upload_path(None) is None
    assert uploads.upload_path("") is None
    assert uploads.upload_path(str(p)) == (p, "a.png")
    assert uploads.upload_path({"path": str(p), "orig_name": "mine.png"}) == (p, "mine.png")
    obj = types.SimpleNamespace(path=str(p), orig_name="x.jpg")
    assert uploads.upload_path(obj) == (p, "x.jpg")
    with pytest.raises(UploadError):
        uploads.upload_path({"url": "https://example.invalid/a.png"})


def test_read_image_names_the_users_file_not_the_temp_path(tmp_path):
    bad = tmp_path / "0123abcd" / "tmpfile"
    bad.parent.mkdir()
    bad.write_bytes(b"this is text, not pixels")
    with pytest.raises(UploadError) as e:
        uploads.read_image({"path": str(bad), "orig_name": "holiday.jpg"})
    msg = str(e.value)
    assert msg.startswith("image holiday.jpg:") and "not an image format" in msg
    assert str(bad) not in msg


def test_truncated_image_is_refused_clearly(files, tmp_path):
    ip, _ = files
    cut = tmp_path / "cut.png"
    cut.write_bytes(ip.read_bytes()[:2000])
    with pytest.raises(UploadError, match="truncated or corrupt"):
        uploads.read_image(str(cut))


def test_upload_over_the_size_cap_is_refused(files, monkeypatch):
    ip, _ = files
    monkeypatch.setenv("STUDIO_MAX_UPLOAD_MB", "0.001")
    with pytest.raises(UploadError, match="over the upload cap of 0.001 MB"):
        uploads.read_image(str(ip))


def test_image_over_the_pixel_cap_is_refused(files, monkeypatch):
    ip, _ = files
    monkeypatch.setenv("STUDIO_MAX_PIXELS", "1000")
    with pytest.raises(UploadError, match="over the cap"):
        uploads.read_image(str(ip))


def test_no_image_is_a_clear_error():
    with pytest.raises(UploadError, match="no image"):
        uploads.read_image(None)


def test_mask_of_another_size_is_refused(files, tmp_path):
    small = tmp_path / "small.png"
    Image.new("L", (10, 10)).save(small)
    with pytest.raises(UploadError) as e:
        uploads.read_mask(str(small), size=(320, 240))
    assert "reference mask small.png" in str(e.value) and "320x240" in str(e.value)
    assert uploads.read_mask(None, size=(320, 240)) is None


# --- dataset zips ---------------------------------------------------------------------------------

def _zip(path, entries: dict[str, bytes], links: dict[str, str] | None = None):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def test_zip_with_im_gt_one_level_down_is_found(tmp_path, files):
    from studio.data import open_dataset

    ip, mp = files
    z = _zip(tmp_path / "set.zip", {"myset/im/a.png": ip.read_bytes(), "myset/gt/a.png": mp.read_bytes(),
                                    "__MACOSX/myset/._a.png": b"junk"})
    root = uploads.extract_dataset_zip(str(z), tmp_path / "out")
    assert root == (tmp_path / "out").resolve() and (root / "myset" / "im" / "a.png").is_file()
    assert not (tmp_path / "out" / "__MACOSX" / "myset" / "._a.png").exists()
    ds = open_dataset(root)  # what the benchmark does with it: the one layout detector
    assert [s.id for s in ds] == ["a"] and ds[0].mask_path.parent.name == "gt"


def test_zip_in_duts_layout_is_accepted_as_eval_run_reads_it(tmp_path, files):
    """DUTS's own layout (X-Image/ + X-Mask/, one folder down): read by `eval/run.py
    --dataset`, so the app takes it too (one detector for every front)."""
    from studio.data import open_dataset

    ip, mp = files
    z = _zip(tmp_path / "duts.zip", {"DUTS-TE/DUTS-TE-Image/a.jpg": ip.read_bytes(),
                                     "DUTS-TE/DUTS-TE-Mask/a.png": mp.read_bytes()})
    root = uploads.extract_dataset_zip(str(z), tmp_path / "out")
    ds = open_dataset(root)
    assert len(ds) == 1 and ds[0].mask_path.parent.name == "DUTS-TE-Mask"


def test_zip_whose_names_do_not_pair_says_so_without_server_paths(tmp_path, files):
    ip, mp = files
    z = _zip(tmp_path / "pairs.zip", {"im/cat.png": ip.read_bytes(), "gt/cat_mask.png": mp.read_bytes()})
    with pytest.raises(UploadError) as err:
        uploads.extract_dataset_zip(str(z), tmp_path / "out")
    msg = str(err.value)
    assert msg.startswith("pairs.zip: no image has a reference mask of the same name"), msg
    assert "im/cat.png has no mask in gt/" in msg and "gt/cat_mask.png has no image in im/" in msg
    assert str(tmp_path) not in msg and "/tmp" not in msg


def test_zip_of_images_alone_asks_for_references(tmp_path, files):
    ip, _ = files
    z = _zip(tmp_path / "loose.zip", {"a.png": ip.read_bytes(), "b.png": ip.read_bytes()})
    with pytest.raises(UploadError, match="loose.zip: images .* but no reference masks") as err:
        uploads.extract_dataset_zip(str(z), tmp_path / "out")
    assert str(tmp_path) not in str(err.value)


def _patch_declared_size(path, new_size: int) -> None:
    """Make the zip's one member declare `new_size` uncompressed bytes, in both headers."""
    data = bytearray(path.read_bytes())
    local, central = data.index(b"PK\x03\x04"), data.index(b"PK\x01\x02")
    data[local + 22:local + 26] = new_size.to_bytes(4, "little")
    data[central + 24:central + 28] = new_size.to_bytes(4, "little")
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
@pytest.mark.parametrize("lie", ["smaller", "larger"])
def test_zip_member_lying_about_its_size_is_a_clear_error(tmp_path, files, method, lie):
    ip, _ = files
    real = ip.read_bytes()
    z = tmp_path / "liar.zip"
    with zipfile.ZipFile(z, "w", method) as zf:
        zf.writestr("im/a.png", real)
    _patch_declared_size(z, len(real) // 2 if lie == "smaller" else len(real) * 2)
    with pytest.raises(UploadError) as err:
        uploads.extract_dataset_zip(str(z), tmp_path / "out")
    msg = str(err.value)
    assert msg.startswith("liar.zip: ") and "damaged" in msg, msg
    assert str(tmp_path) not in msg


def test_zip_with_a_corrupt_member_is_a_clear_error(tmp_path, files):
    ip, mp = files
    z = _zip(tmp_path / "crc.zip", {"im/a.png": ip.read_bytes(), "gt/a.png": mp.read_bytes()})
    data = bytearray(z.read_bytes())
    data[60] ^= 0xFF  # a byte of the first member's data: its CRC no longer matches
    z.write_bytes(bytes(data))
    with pytest.raises(UploadError, match=r"crc.zip: the zip is damaged and cannot be read \(Bad CRC-32"):
        uploads.extract_dataset_zip(str(z), tmp_path / "out")


@pytest.mark.parametrize("name", ["../evil.png", "/abs/evil.png", "im/../../evil.png"])
def test_zip_slip_is_refused(tmp_path, name):
    z = _zip(tmp_path / "bad.zip", {name: b"x"})
    with pytest.raises(UploadError, match="outside the archive"):
        uploads.extract_dataset_zip(str(z), tmp_path / "out")
    assert not (tmp_path / "evil.png").exists()


def test_zip_symlink_is_refused(tmp_path):
    z = _zip(tmp_path / "link.zip", {}, links={"im/a.png": "/etc/passwd"})
    with pytest.raises(UploadError, match="symbolic link"):
        uploads.extract_dataset_zip(str(z), tmp_path / "out")


def test_zip_over_the_uncompressed_cap_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_MAX_ZIP_MB", "1")
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("im/zeros.bin", b"\0" * 3_000_000)  # compresses to a few KB
    with pytest.raises(UploadError, match="uncompressed, over the cap"):
        uploads.extract_dataset_zip(str(tmp_path / "bomb.zip"), tmp_path / "out")


def test_zip_without_the_layout_or_not_a_zip(tmp_path):
    z = _zip(tmp_path / "flat.zip", {"notes/readme.txt": b"x"})
    with pytest.raises(UploadError, match="flat.zip: no dataset layout found. Expected im/ \\+ gt/") as err:
        uploads.extract_dataset_zip(str(z), tmp_path / "out")
    assert str(tmp_path) not in str(err.value)
    notzip = tmp_path / "n.zip"
    notzip.write_bytes(b"hello")
    with pytest.raises(UploadError, match="not a zip"):
        uploads.extract_dataset_zip(str(notzip), tmp_path / "out2")


# --- compare ----------------------------------------------------------------------------------------

def _drain(gen):
    return list(gen)


def test_compare_streams_one_update_per_variant_and_a_failure_does_not_stop_the_rest(files):
    ip, mp = files
    outs = _drain(compare_h.compare(str(ip), str(mp), ["grabcut", "u2net", "no-such-model"]))
    assert len(outs) == 4  # the start, then one per variant
    gallery, slider, picker, table, rows, downloads, status, state = outs[-1]
    by_id = {r["id"]: r for r in rows}
    assert by_id["grabcut"]["status"] == "ok"
    assert by_id["u2net"]["status"] == "failed" and "studio weights pull u2net" in by_id["u2net"]["error"]
    assert by_id["no-such-model"]["status"] == "failed" and "unknown model variant" in by_id["no-such-model"]["error"]
    assert "2 failed" in status
    # the table is JSON-serialisable as is (no NaN, no numpy types)
    json.dumps(rows, allow_nan=False)
    g = by_id["grabcut"]
    assert set(g["timings_ms"]) == {"preprocess", "inference", "postprocess", "total"}
    assert math.isclose(g["timings_ms"]["total"], sum(g["timings_ms"][k] for k in ("preprocess", "inference",
                                                                                   "postprocess")), rel_tol=1e-3)
    # gallery: cut-out, mask, errors for the one variant that ran (its caption carries the row's
    # IoU; that IoU equals studio.metrics' is test_compare_metrics_equal_studio_metrics); every file a PNG
    captions = [c for _, c in gallery]
    assert captions == ["grabcut", "mask", f"errors · IoU {g['metrics']['iou']:.3f}"]
    for path, _ in gallery:
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.rsplit("/", 1)[-1] for p in downloads) == ["grabcut_cutout.png", "grabcut_mask.png"]
    assert Image.open(downloads[0]).mode == "RGBA"
    assert slider == (state["original"], state["cutouts"]["grabcut"])
    assert picker == {"choices": ["grabcut"], "value": "grabcut"}
    headers = table["headers"]
    assert headers[:5] == ["variant", "pre ms", "infer ms", "post ms", "total ms"] and "IoU" in headers
    assert "failed" in table["data"][1][0]


def test_compare_metrics_equal_studio_metrics(files):
    from studio.engine import predict
    from studio.imageio import load_image, load_mask
    from studio.metrics import score_image

    ip, mp = files
    rows = _drain(compare_h.compare(str(ip), str(mp), ["grabcut"]))[-1][4]
    want = score_image(predict("grabcut", load_image(ip)).alpha, load_mask(mp)).values
    got = rows[0]["metrics"]
    assert set(got) == set(want)
    for k, v in want.items():
        assert got[k] == pytest.approx(float(v), abs=1e-9), k


def test_compare_without_reference_has_no_metrics_or_overlay(files):
    ip, _ = files
    gallery, *_, rows, _files, _status, state = _drain(compare_h.compare(str(ip), None, "grabcut"))[-1]
    assert rows[0]["metrics"] is None and len(gallery) == 2
    assert state["with_reference"] is False


@pytest.mark.parametrize("chosen", [[], None, "", " , "])
def test_compare_with_no_variants_is_an_error_not_every_installed_one(files, monkeypatch, chosen):
    """An API caller that sends an empty list gets a clear error, and no model runs."""
    ip, mp = files
    ran = []
    monkeypatch.setattr(compare_h, "infer", lambda *a: ran.append(a))
    with pytest.raises(UploadError, match="no variants chosen") as err:
        next(compare_h.compare(str(ip), str(mp), chosen))
    assert "grabcut" in str(err.value)  # the message lists what is installed here
    assert ran == []


def test_compare_bad_upload_raises_before_any_model_runs(files, tmp_path, monkeypatch):
    ip, _ = files
    ran = []
    monkeypatch.setattr(compare_h, "infer", lambda *a: ran.append(a))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    with pytest.raises(UploadError, match="reference mask bad.png"):
        next(compare_h.compare(str(ip), str(bad), ["grabcut"]))
    assert ran == []


def test_a_crashing_variant_is_reported_and_the_next_one_runs(files, monkeypatch):
    ip, _ = files
    real = compare_h.infer

    def flaky(variant_id, image):
        if variant_id == "isnet-general-use":
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(variant_id, image)

    monkeypatch.setattr(compare_h, "infer", flaky)
    rows = _drain(compare_h.compare(str(ip), None, ["isnet-general-use", "grabcut"]))[-1][4]
    assert rows[0]["status"] == "failed" and "out of memory" in rows[0]["error"]
    assert rows[1]["status"] == "ok"


def test_slider_and_gallery_lookups():
    state = {"original": "o.png", "with_reference": True, "cutouts": {"a": "a.png", "b": "b.png"}}
    assert compare_h.slider_for("b", state) == ("o.png", "b.png")
    assert compare_h.slider_for("zzz", state) is None
    assert compare_h.variant_at(0, state) == "a" and compare_h.variant_at(5, state) == "b"
    assert compare_h.variant_at(6, state) is None
    assert compare_h.variant_at(2, {**state, "with_reference": False}) == "b"


# --- variant pickers -----------------------------------------------------------------------------------

def test_variant_groups_follow_the_zoo_and_merge_in_zoo_order():
    from studio.inventory import installed_variants
    from studio.zoo import load_zoo

    groups = variants.grouped(installed_only=True)
    assert list(groups) == variants.families()
    order = list(load_zoo().variants)
    for items in groups.values():
        ids = [vid for _, vid in items]
        assert ids == sorted(ids, key=order.index)
    flat = {vid for items in groups.values() for _, vid in items}
    assert set(variants.default_ids()) == {v.id for v in installed_variants()} <= flat
    merged = variants.merge(["grabcut"], ["isnet-general-use"], None)
    assert merged == sorted(merged, key=order.index)


def test_untrained_variants_are_flagged_in_their_label(monkeypatch):
    pretend_untrained(monkeypatch)
    c = {c.id: c for c in variants.choices()}["inspyrenet-fast"]
    assert c.installed and "untrained — latency only" in c.label


# --- models ------------------------------------------------------------------------------------------

def test_zoo_table_and_fetch_list():
    from studio.zoo import load_zoo

    t = models_h.zoo_table()
    assert len(t["data"]) == len(load_zoo().variants)
    assert all(len(r) == len(t["headers"]) for r in t["data"])
    ids = [vid for _, vid in models_h.fetchable()]
    assert "u2net" in ids and "grabcut" not in ids


def test_fetch_reports_each_variant(monkeypatch):
    assert "at least one" in models_h.fetch([])
    md = models_h.fetch(["grabcut"])
    assert "✗ `grabcut`" in md and "needs no weights" in md
    assert "budget" in models_h.pool_status()


# --- benchmark (no suite run) ----------------------------------------------------------------------------

def _summary() -> dict:
    def v(vid, iou, p95, rss, flags=()):
        return {"id": vid, "n_images": 3, "n_scored": 3, "errors": [], "flags": list(flags), "failed": False,
                "metrics": {"iou": {"mean": iou, "ci95": [iou - 0.01, iou + 0.01]}},
                "latency": {"p50_ms": p95 * 0.9, "p95_ms": p95}, "throughput_ips": 1000 / p95,
                "peak_rss_mb": rss, "model_size_mb": 10.0}
    return {"created": "now", "config": {"quality_metric": "iou"}, "environment": {"device": "cpu"},
            "dataset": {"name": "embedded", "n_images": 3},
            "variants": [v("slow-good", 0.95, 900, 1200), v("fast-ok", 0.80, 100, 300),
                         v("untrained", 0.1, 50, 100, flags=["untrained — latency only"])]}


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_RESULTS", str(tmp_path / "results"))
    run = tmp_path / "results" / "app" / "r1"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps(_summary()))
    (run / "report.html").write_text("<html></html>")
    return run


def test_budgets_recompute_the_recommendation_without_rerunning(results):
    run = "app/r1/summary.json"
    md, fig, table, files, run_id, public = bench_h.rerecommend(run)
    assert "Recommended: `slow-good`" in md and run_id == run
    assert [r[0] for r in table["data"]] == ["★", "", ""]  # no per-image scores: nothing proven equivalent
    assert table["data"][2][1] == "untrained  ⚠ untrained"
    assert files == [str(results / "report.html"), str(results / "summary.json")]
    assert fig is not None and public["recommendation"]["best"] == "slow-good"
    md2, *_ = bench_h.rerecommend(run, p95=500, memory=None, price=0.9)
    assert "Recommended: `fast-ok`" in md2 and "per 1,000 images" in md2
    md3, *_ = bench_h.rerecommend(run, p95=10)
    assert "No recommendation" in md3 and "untrained" in md3
    # blank or zero budgets mean none
    assert "Recommended: `slow-good`" in bench_h.rerecommend(run, p95=0, memory="", price=None)[0]


def test_runs_outside_the_results_folder_are_refused(results, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "summary.json").write_text("{}")
    with pytest.raises(UploadError, match="not a run under"):
        bench_h.run_path("../elsewhere/summary.json")
    with pytest.raises(UploadError, match="no summary.json"):
        bench_h.run_path("app/none")
    assert [rid for _, rid in bench_h.past_runs()] == ["app/r1/summary.json"]


def test_progress_events_map_to_one_bar():
    seen = []
    cb = bench_h.progress_adapter(lambda frac, desc="": seen.append(round(frac, 3)), n_variants=2)
    for ev in [{"stage": "image", "done": 1, "total": 2}, {"stage": "variant", "done": 1, "total": 2},
               {"stage": "image", "done": 2, "total": 2}, {"stage": "variant", "done": 2, "total": 2},
               {"stage": "report", "done": 2, "total": 2}]:
        cb(ev)
    assert seen == [0.25, 0.5, 1.0, 1.0, 1.0]


def test_dataset_sources(tmp_path, monkeypatch):
    assert bench_h.resolve_dataset(bench_h.SOURCE_EMBEDDED, None, None, tmp_path) is None
    assert bench_h.resolve_dataset(bench_h.SOURCE_CATALOGUE, "DUTS-TE", None, tmp_path) == "DUTS-TE"
    assert bench_h.resolve_dataset(bench_h.SOURCE_CATALOGUE, str(tmp_path), None, tmp_path) == str(tmp_path)
    with pytest.raises(UploadError, match="no such folder"):
        bench_h.resolve_dataset(bench_h.SOURCE_CATALOGUE, str(tmp_path / "nope"), None, tmp_path)
    with pytest.raises(UploadError, match="no zip"):
        bench_h.resolve_dataset(bench_h.SOURCE_ZIP, None, None, tmp_path)
    monkeypatch.setenv("SPACE_ID", "user/space")
    with pytest.raises(UploadError, match="hosted app"):
        bench_h.resolve_dataset(bench_h.SOURCE_CATALOGUE, str(tmp_path), None, tmp_path)


@pytest.mark.slow
def test_benchmark_handler_runs_the_suite(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_RESULTS", str(tmp_path / "results"))
    seen = []
    # a folder of small synthetic photos: the handler's plumbing is the point, not GrabCut on big photos
    folder = make_folder(tmp_path / "small", n=3)
    md, fig, table, files, run_id, public = bench_h.benchmark(
        bench_h.SOURCE_CATALOGUE, str(folder), variants=["grabcut"], limit=2,
        progress=lambda f, desc="": seen.append(f))
    assert "grabcut" in md and len(table["data"]) == 1 and table["data"][0][2] == 2
    assert run_id.startswith("app/") and run_id.endswith("summary.json")
    assert {p.rsplit("/", 1)[-1] for p in files} == {"report.html", "summary.json", "per_image.csv"}
    assert seen[-1] == 1.0 and public["variants"][0]["id"] == "grabcut"
    assert bench_h.past_runs()[0][1] == run_id


# --- where it runs ----------------------------------------------------------------------------------------

def test_server_name_local_and_on_spaces(monkeypatch):
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert settings.server_name() == "127.0.0.1"
    monkeypatch.setenv("SPACE_ID", "someone/matting-studio")
    assert settings.server_name() == "0.0.0.0"


def test_gpu_decorator_is_a_no_op_without_spaces_and_wraps_with_it(monkeypatch):
    monkeypatch.delitem(sys.modules, "spaces", raising=False)
    monkeypatch.setattr(space.importlib.util, "find_spec", lambda name: None)

    def f(x):
        return x + 1

    assert space.gpu()(f) is f
    calls = []
    fake = types.ModuleType("spaces")
    fake.GPU = lambda duration: (lambda fn: calls.append(duration) or fn)
    monkeypatch.setitem(sys.modules, "spaces", fake)
    assert space.gpu(duration=30)(f)(1) == 2 and calls == [30]


def test_device_choice(monkeypatch):
    monkeypatch.delenv("STUDIO_DEVICE", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert space.device_for("inspyrenet") == "cpu"
    monkeypatch.setenv("STUDIO_DEVICE", "cuda:1")
    assert space.device_for("onnx") == "cuda:1"


def test_the_apps_output_folder_goes_when_the_app_exits():
    """The result PNGs the app serves live in one temp folder per process; it is removed when
    the process exits, so app runs do not pile folders up in the temp dir."""
    import subprocess

    code = ("from studio.ui import outputs; d = outputs.new_dir('compare'); "
            "(d / 'x.png').write_bytes(b'png'); print(outputs.root())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    root = Path(out.stdout.strip())
    assert root.name.startswith("matting-studio-") and not root.exists()
