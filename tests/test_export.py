"""`studio export`: the bundle writer, and the server template's copy of the studio's image path.

The template (studio/export/templates/serve.py) duplicates the studio's loader and the onnx
backend's pre- and postprocessing, because the bundle runs without the studio. These tests feed
both the same inputs and require identical arrays. The fast tests use a tiny ONNX model; the
real-model and subprocess tests are in tests/test_export_server.py (slow).
"""

from __future__ import annotations

import ast
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.backends import onnx as studio_onnx
from studio.errors import ImageError, StudioError
from studio.export import ExportError, check_exportable, export_bundle
from studio.export import bundle as bundle_mod
from studio.export.coldstart import multipart, server_timing
from studio.imageio import alpha_to_uint8, load_image
from studio.zoo import Variant, load_zoo

TEMPLATE = bundle_mod.TEMPLATE
STDLIB = set(sys.stdlib_module_names)


@pytest.fixture(scope="module")
def serve():
    return bundle_mod.load_template(TEMPLATE, "serve_under_test")


def _bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture
def rgb():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:45, 0:60]
    base = np.stack([xx * 4, yy * 5, (xx + yy) * 2], axis=2) + rng.integers(0, 30, (45, 60, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


# --- the template imports nothing heavy at start, and nothing of the studio or torch ever ---------

def test_template_imports_only_the_standard_library_at_start():
    tree = ast.parse(TEMPLATE.read_text())
    top, anywhere = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            roots = {n.split(".")[0] for n in names}
            anywhere |= roots
            if node in tree.body:
                top |= roots
    assert top <= STDLIB | {"__future__"}, top - STDLIB
    assert not anywhere & {"studio", "torch", "rembg", "cv2", "scipy", "skimage"}
    assert anywhere - STDLIB - {"__future__"} == {"numpy", "PIL", "onnxruntime"}


# --- the duplicated image path agrees with the studio's ---------------------------------------------

def _image_cases(rgb: np.ndarray) -> dict[str, bytes]:
    base = Image.fromarray(rgb)
    rgba = np.dstack([rgb, (np.arange(60)[None, :].repeat(45, 0) * 4).astype(np.uint8)])
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    pal = base.convert("P")
    pal.info["transparency"] = 0
    return {
        "rgb-png": _bytes(base),
        "rgb-jpeg": _bytes(base, "JPEG", quality=90),
        "rgba": _bytes(Image.fromarray(rgba, "RGBA")),
        "la": _bytes(Image.fromarray(rgba, "RGBA").convert("LA")),
        "gray": _bytes(base.convert("L")),
        "one-bit": _bytes(base.convert("1")),
        "palette": _bytes(base.convert("P")),
        "palette-transparent": _bytes(pal),
        "cmyk-jpeg": _bytes(base.convert("CMYK"), "JPEG"),
        "ycbcr-jpeg": _bytes(base.convert("YCbCr"), "JPEG"),
        "gray16": _bytes(Image.fromarray(np.asarray(base.convert("L")).astype(np.uint16) * 257)),
        "int32-tiff": _bytes(base.convert("I"), "TIFF"),
        "float-tiff": _bytes(Image.fromarray(np.asarray(base.convert("L")).astype(np.float32) / 255, "F"), "TIFF"),
        "exif-rotated": _bytes(base, "JPEG", exif=exif.tobytes()),
        "webp": _bytes(base, "WEBP", lossless=True),
    }


def test_template_matches_studio_loading(serve, rgb):
    cap = 50_000_000
    for name, data in _image_cases(rgb).items():
        ours = serve.load_rgb(data, cap)
        studio = load_image(data)
        assert ours.dtype == np.uint8 and ours.shape == studio.shape, name
        assert np.array_equal(ours, studio), name
    assert serve.load_rgb(_image_cases(rgb)["exif-rotated"], cap).shape == (60, 45, 3)


def test_template_refuses_what_the_studio_refuses(serve, rgb, monkeypatch):
    jpeg = _bytes(Image.fromarray(np.tile(rgb, (8, 8, 1))), "JPEG")
    png = _bytes(Image.fromarray(rgb))
    bad = {"empty": b"", "text": b"this is not an image at all", "png-header-only": b"\x89PNG\r\n\x1a\n" + b"\0" * 20,
           "truncated-jpeg": jpeg[: len(jpeg) // 2], "truncated-png": png[:-40],
           "huge": _bytes(Image.new("1", (12000, 12000)))}  # 144 MP in a few KB
    for name, data in bad.items():
        with pytest.raises(ImageError):
            load_image(data)
        with pytest.raises(serve.ImageError):
            serve.load_rgb(data, 50_000_000)
        assert name  # each case refused by both
    monkeypatch.setenv("STUDIO_MAX_PIXELS", "1000")
    with pytest.raises(ImageError):
        load_image(png)
    with pytest.raises(serve.ImageError, match="over the cap"):
        serve.load_rgb(png, 1000)


CFGS = [
    ({"mean": [0.5, 0.5, 0.5], "std": [1.0, 1.0, 1.0], "scale": "max", "resize": "lanczos"},
     {"activation": "none", "normalize": "minmax", "resize": "lanczos"}),
    ({"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "scale": "255", "resize": "bilinear"},
     {"activation": "sigmoid", "normalize": "minmax", "resize": "bilinear"}),
    ({"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "scale": "1", "resize": "bicubic"},
     {"activation": "sigmoid", "normalize": "none", "resize": "bicubic"}),
]


@pytest.mark.parametrize("pre, post", CFGS)
def test_template_matches_studio_pre_and_postprocessing(serve, rgb, pre, post):
    for size in [(64, 64), (48, 80)]:
        assert np.array_equal(serve.preprocess(rgb, size, pre), studio_onnx.preprocess(rgb, size, pre))
    rng = np.random.default_rng(0)
    for pred in [rng.normal(0, 3, (32, 32)).astype(np.float32), np.full((32, 32), 0.3, np.float32),
                 rng.random((16, 24)).astype(np.float32)]:
        ours = serve.postprocess(pred, (60, 45), post)
        studio = studio_onnx.postprocess(pred, (60, 45), post)
        assert ours.dtype == np.uint8 and ours.shape == (45, 60)
        assert np.array_equal(ours, alpha_to_uint8(studio))  # the studio's alpha is ours / 255, exactly
        assert np.array_equal(ours.astype(np.float32) * (1.0 / 255.0), studio)


def test_zoo_presets_are_what_the_template_knows(serve):
    """Every resize and scale the zoo's ONNX variants name is one the template implements."""
    for v in load_zoo().variants.values():
        if v.backend == "onnx":
            assert v.preprocess.get("resize", "lanczos") in serve.RESAMPLE_NAMES, v.id
            assert v.postprocess.get("resize", "lanczos") in serve.RESAMPLE_NAMES, v.id
            assert v.preprocess.get("scale", "max") in ("max", "255", "1"), v.id


# --- the HTTP pieces --------------------------------------------------------------------------------

def test_multipart_parsing(serve):
    payload = b"\x89PNG\r\n--not-a-boundary\r\n\r\n" + bytes(range(256)) * 4
    body, ctype = multipart({"om": "true", "bgc": "1,2,3,4"}, payload, "a b.png")
    fields, files = serve.parse_multipart(body, ctype)
    assert fields == {"om": "true", "bgc": "1,2,3,4"} and files == {"file": payload}
    # as requests/curl send it: a preamble-free body, a quoted boundary, a filename with a quote
    b = "XyZ-123"
    raw = (f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="x\\"y.jpg"\r\n'
           f"Content-Type: image/jpeg\r\n\r\n").encode() + b"DATA\r\n" + f"--{b}--\r\n".encode()
    assert serve.parse_multipart(raw, f'multipart/form-data; boundary="{b}"')[1] == {"file": b"DATA"}
    for broken in [raw[:-12], b"no boundary here", b""]:
        with pytest.raises(serve.HTTPError) as exc:
            serve.parse_multipart(broken, f"multipart/form-data; boundary={b}")
        assert exc.value.status == 400
    with pytest.raises(serve.HTTPError):
        serve.parse_multipart(raw, "multipart/form-data")


def test_booleans_and_colours_read_as_rembg_reads_them(serve):
    for v in ["true", "True", "1", "on", "yes", "t", "y"]:
        assert serve.parse_bool("om", v) is True
    for v in ["false", "0", "off", "no", "f", "n", "", None]:
        assert serve.parse_bool("om", v) is False
    with pytest.raises(serve.HTTPError) as exc:
        serve.parse_bool("om", "maybe")
    assert exc.value.status == 422
    assert serve.parse_color("0,255,0,255") == (0, 255, 0, 255)
    for bad in ["1,2,3", "a,b,c,d", "0,0,0,256"]:
        with pytest.raises(serve.HTTPError):
            serve.parse_color(bad)


def test_bounded_gate(serve):
    gate = serve.Gate(workers=1, queue=1)
    assert gate.enter() and gate.enter()
    assert not gate.enter()  # full: the handler answers 503
    assert gate.retry_after() >= 1
    gate.leave(0.5)
    assert gate.enter()


def test_server_timing_header():
    assert server_timing("decode;dur=12.5, inference;dur=300") == {"decode": 0.0125, "inference": 0.3}
    assert server_timing(None) == {}


# --- the exporter -------------------------------------------------------------------------------------

@pytest.mark.parametrize("vid, why", [("isnet-general-use-via-rembg", "rembg"),
                                      ("inspyrenet-fast", "torch"), ("grabcut", "GrabCut")])
def test_non_onnx_variants_are_refused_with_the_reason(vid, why, tmp_path):
    v = load_zoo().get(vid)
    with pytest.raises(ExportError, match="ONNX") as exc:
        check_exportable(v)
    assert why in str(exc.value)
    from studio.cli import main

    assert main(["export", vid, str(tmp_path / "b")]) == 2
    assert not (tmp_path / "b").exists()


def _tiny_model(path: Path, size: int = 32) -> Path:
    """A 1-conv ONNX model with IS-Net's interface: input [1,3,S,S] -> output [1,1,S,S]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((1, 3, 3, 3), 0.1, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["conv"], pads=[1, 1, 1, 1]),
         helper.make_node("Sigmoid", ["conv"], ["output"])],
        "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, size, size])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A tiny ONNX variant with the artifact resolver pointed at its file."""
    from types import SimpleNamespace

    from studio import artifacts, inventory

    model = _tiny_model(tmp_path / "tiny.onnx")
    rec = SimpleNamespace(path=str(model), sha256=bundle_mod.sha256_of(model))
    monkeypatch.setattr(artifacts, "require", lambda v, verify=True: rec)
    monkeypatch.setattr(inventory, "describe", lambda v: SimpleNamespace(untrained=False, flags=[]))

    def make(precision: str = "fp32") -> Variant:
        return Variant(id=f"tiny-{precision}", family="tiny", backend="onnx", precision=precision,
                       input_size=(32, 32), preprocess=dict(CFGS[0][0]), postprocess=dict(CFGS[0][1]),
                       file="tiny.onnx", license="MIT")
    return make


def test_export_writes_every_file(tiny, tmp_path):
    res = export_bundle(tiny("fp32"), tmp_path / "bundle", check=False)
    names = set(res.files)
    assert {"model.onnx", "model.json", "serve.py", "requirements.txt", "Dockerfile", "README.md",
            "Dockerfile.cuda", "requirements-cuda.txt"} == names
    d = tmp_path / "bundle"
    cfg = json.loads((d / "model.json").read_text())
    assert cfg["input_size"] == [32, 32] and cfg["preprocess"] == CFGS[0][0]
    assert cfg["postprocess"] == CFGS[0][1] and cfg["model_sha256"] == bundle_mod.sha256_of(d / "model.onnx")
    assert cfg["ort"]["saved_optimization"] == bundle_mod.SAVE_LEVEL
    assert (d / "serve.py").read_bytes() == TEMPLATE.read_bytes()
    pins = bundle_mod.runtime_pins()
    reqs = (d / "requirements.txt").read_text()
    for name, version in pins.items():
        assert f"{name}=={version}" in reqs
    assert "torch" not in reqs and "studio" not in reqs
    assert f"onnxruntime-gpu[cuda,cudnn]=={pins['onnxruntime']}" in (d / "requirements-cuda.txt").read_text()
    docker = (d / "Dockerfile").read_text()
    assert "FROM python:" in docker and '"--host", "0.0.0.0"' in docker and "requirements.txt" in docker
    assert '"--device", "cuda"' in (d / "Dockerfile.cuda").read_text()
    readme = (d / "README.md").read_text()
    assert "not measured yet" in readme and "eval/run.py --models tiny-fp32" in readme
    assert "/api/remove" in readme and "om=true" in readme
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle")]  # no work folder left


def test_the_variants_ort_settings_travel_with_it(tiny, tmp_path):
    from dataclasses import replace

    v = replace(tiny(), options={"ort": {"graph_optimization": "disable", "allow_spinning": False,
                                         "execution_mode": "sequential"}})
    export_bundle(v, tmp_path / "b", check=False)
    cfg = json.loads((tmp_path / "b" / "model.json").read_text())
    assert cfg["ort"]["saved_optimization"] == "disable" and cfg["ort"]["load_optimization"] == "disable"
    assert cfg["ort"]["session"] == {"allow_spinning": False, "execution_mode": "sequential"}
    assert (tmp_path / "b" / "model.onnx").read_bytes() == (tmp_path / "tiny.onnx").read_bytes()
    plan = bundle_mod.ort_plan(replace(tiny(), options={"ort": {"graph_optimization": "extended"}}))
    assert plan["saved_optimization"] == bundle_mod.SAVE_LEVEL and plan["load_optimization"] == "extended"


def test_int8_builds_get_no_gpu_image(tiny, tmp_path):
    res = export_bundle(tiny("int8-static"), tmp_path / "b", check=False)
    assert "Dockerfile.cuda" not in res.files and not res.cuda
    assert "No GPU image" in (tmp_path / "b" / "README.md").read_text()


def test_export_refuses_to_overwrite(tiny, tmp_path):
    d = tmp_path / "b"
    export_bundle(tiny(), d, check=False)
    with pytest.raises(ExportError, match="--force"):
        export_bundle(tiny(), d, check=False)
    (d / "marker").write_text("old")
    export_bundle(tiny(), d, check=False, force=True)
    assert not (d / "marker").exists() and (d / "serve.py").is_file()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "thesis.tex").write_text("precious")
    with pytest.raises(ExportError, match="no bundle"):
        export_bundle(tiny(), other, check=False, force=True)
    assert (other / "thesis.tex").read_text() == "precious"


def test_readme_takes_the_latest_benchmark_figures(tiny, tmp_path, monkeypatch):
    results = tmp_path / "results"
    run = results / "run1"
    run.mkdir(parents=True)
    row = {"id": "tiny-fp32", "n_images": 24, "n_scored": 24, "flags": [],
           "metrics": {"iou": {"mean": 0.9123, "ci95": [0.9, 0.92]}},
           "latency": {"p50_ms": 812.0, "p95_ms": 901.0, "mean_ms": 830.0},
           "cold_start": {"total_s": 2.5}, "peak_rss_mb": 640.0, "calibrated_on": 16,
           "metrics_held_out": {"iou": {"mean": 0.8765, "ci95": [0.85, 0.9]}}}
    (run / "summary.json").write_text(json.dumps({
        "created": "2026-01-01 10:00:00", "dataset": {"name": "embedded"}, "config": {},
        "environment": {"cpu": "Test CPU", "cpu_count": 2, "threads": 2, "device": "cpu"},
        "variants": [row]}))
    monkeypatch.setenv("STUDIO_RESULTS", str(results))
    fig = bundle_mod.benchmark_figures("tiny-fp32")
    assert fig["latency_ms"]["p50_ms"] == 812.0 and fig["run"].endswith("summary.json")
    export_bundle(tiny(), tmp_path / "b", check=False)
    readme = (tmp_path / "b" / "README.md").read_text()
    assert "0.9123" in readme and "p50 812 ms" in readme and "run1/summary.json" in readme
    assert "calibrated on 16" in readme and "0.8765" in readme and "ground truth" in readme
    assert bundle_mod.benchmark_figures("other") is None


def test_ui_export_refuses_non_onnx_and_zips(tmp_path):
    from studio.ui import export as ui_export

    with pytest.raises(StudioError, match="ONNX"):
        ui_export.export_zip("grabcut")
    with pytest.raises(StudioError):
        ui_export.export_zip("")
    folder = tmp_path / "b"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"\0" * 100)
    (folder / "serve.py").write_text("print()")
    z = ui_export.zip_folder(folder, tmp_path / "b.zip", "v1")
    with zipfile.ZipFile(z) as zf:
        assert sorted(zf.namelist()) == ["v1/model.onnx", "v1/serve.py"]
        assert zf.getinfo("v1/model.onnx").compress_type == zipfile.ZIP_STORED


def test_server_in_process_on_a_tiny_model(tiny, tmp_path, rgb):
    """The HTTP layer without a subprocess: rembg's fields, errors, the queue (the real model and
    the process are in tests/test_export_server.py)."""
    import threading

    import requests

    export_bundle(tiny(), tmp_path / "b", check=False)
    serve = bundle_mod.load_template(tmp_path / "b" / "serve.py", "serve_tiny")
    args = serve.parse_args(["--port", "0", "--quiet", "--queue", "0"])
    cfg = serve.read_config(str(tmp_path / "b" / "model.json"))
    args.max_pixels = cfg["max_pixels"]
    model = serve.Model(cfg, args)
    model.load()
    server = serve.make_server(args, cfg, model)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        png = _bytes(Image.fromarray(rgb))
        r = requests.post(f"{url}/api/remove", files={"file": ("x.png", png)}, data={"om": "true"}, timeout=30)
        assert r.status_code == 200 and r.headers["Content-Type"] == "image/png"
        mask = Image.open(io.BytesIO(r.content))
        assert mask.mode == "L" and mask.size == (60, 45)
        r = requests.post(f"{url}/api/remove", files={"file": ("x.png", png)}, timeout=30)
        cut = np.asarray(Image.open(io.BytesIO(r.content)))
        assert cut.shape == (45, 60, 4) and np.array_equal(cut[..., :3], rgb)
        assert np.array_equal(cut[..., 3], np.asarray(mask))
        raw = requests.post(f"{url}/api/remove", data=png, headers={"Content-Type": "image/png"}, timeout=30)
        assert raw.status_code == 200 and raw.content == r.content
        bad = requests.post(f"{url}/api/remove", files={"file": ("x.jpg", b"garbage")}, timeout=30)
        assert bad.status_code == 400 and "not a usable image" in bad.json()["detail"]
        assert requests.get(f"{url}/healthz", timeout=30).json()["status"] == "ok"
        # the queue full: with capacity 1 taken, the next request is told to come back
        assert model.session is not None and server.RequestHandlerClass.gate.enter()
        busy = requests.post(f"{url}/api/remove", files={"file": ("x.png", png)}, timeout=30)
        assert busy.status_code == 503 and int(busy.headers["Retry-After"]) >= 1
        server.RequestHandlerClass.gate.leave(None)
        assert requests.post(f"{url}/api/remove", files={"file": ("x.png", png)}, timeout=30).status_code == 200
    finally:
        server.shutdown()
        server.server_close()
