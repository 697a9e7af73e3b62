"""`studio export`: the bundle writer, and the code the bundle runs.

The bundle's pre/post-processing and image decoding are `studio/prepost.py` itself, copied beside
its serve.py; the studio's loader and onnx backend import the same module. These tests check
that the copy is the module, that the module stands alone (numpy and Pillow, nothing of the
studio), and that the studio's paths go through it. The fast tests use a tiny ONNX model; the
real-model and subprocess tests are in tests/test_export_server.py (slow).
"""

from __future__ import annotations

import ast
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio import prepost
from studio.backends import onnx as studio_onnx
from studio.errors import ImageError, StudioError
from studio.export import ExportError, check_exportable, export_bundle
from studio.export import bundle as bundle_mod
from studio.export.coldstart import server_timing
from studio.imageio import alpha_to_uint8, load_image
from studio.zoo import Variant, load_zoo
from tests.conftest import tiny_onnx_model

TEMPLATE = bundle_mod.TEMPLATE
PREPOST = Path(prepost.__file__)
STDLIB = set(sys.stdlib_module_names)


@pytest.fixture(scope="module")
def serve(tmp_path_factory):
    """serve.py as the bundle holds it: beside its prepost.py."""
    import shutil

    folder = tmp_path_factory.mktemp("template")
    shutil.copyfile(TEMPLATE, folder / "serve.py")
    shutil.copyfile(PREPOST, folder / "prepost.py")
    return bundle_mod.load_template(folder / "serve.py", "serve_under_test")


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


# --- the template and prepost import nothing heavy at start, and nothing of the studio ever ---------

def _imports(path: Path) -> tuple[set[str], set[str]]:
    """(module roots imported at module level, module roots imported anywhere) of a file."""
    tree = ast.parse(path.read_text())
    top, anywhere = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            roots = {n.split(".")[0] for n in names}
            anywhere |= roots
            if node in tree.body:
                top |= roots
    return top, anywhere


def test_template_imports_only_the_standard_library_and_prepost_at_start():
    top, anywhere = _imports(TEMPLATE)
    assert top <= STDLIB | {"__future__", "prepost"}, top - STDLIB
    assert not anywhere & {"studio", "torch", "rembg", "cv2", "scipy", "skimage"}
    assert {"numpy", "PIL", "onnxruntime", "openvino", "prepost"} <= anywhere


def test_prepost_stands_alone():
    """numpy and Pillow only, imported on first use: the bundle imports it before its port is
    open, and runs where the studio is not installed."""
    top, anywhere = _imports(PREPOST)
    assert top <= STDLIB | {"__future__"}, top - STDLIB
    assert anywhere - STDLIB - {"__future__"} == {"numpy", "PIL"}


def test_the_studio_runs_prepost_itself():
    """One copy: the loader and the onnx backend call prepost's functions, not their own."""
    from studio import imageio

    assert studio_onnx.preprocess is prepost.preprocess and studio_onnx.postprocess is prepost.postprocess
    assert imageio.to_rgb is prepost.to_rgb and imageio.alpha_to_uint8 is prepost.alpha_to_uint8
    for name in ("preprocess", "postprocess", "to_rgb", "array_to_uint8"):
        assert f"def {name}(" not in Path(studio_onnx.__file__).read_text()
        assert f"def {name}(" not in Path(imageio.__file__).read_text()
        assert f"def {name}(" not in TEMPLATE.read_text()


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


def test_decode_is_the_studio_loader(rgb):
    """The bundle decodes an upload with prepost.decode; the studio's load_image gives the same
    pixels (it adds only the file checks and the file name to the messages)."""
    cap = 50_000_000
    for name, data in _image_cases(rgb).items():
        ours = prepost.decode(data, cap)
        assert ours.dtype == np.uint8 and ours.shape[2] == 3, name
        assert np.array_equal(ours, load_image(data)), name
    assert prepost.decode(_image_cases(rgb)["exif-rotated"], cap).shape == (60, 45, 3)
    gray16 = prepost.decode(_image_cases(rgb)["gray16"], cap)
    assert np.array_equal(gray16[..., 0], np.asarray(Image.fromarray(rgb).convert("L")))  # by bit depth


def test_decode_refuses_what_the_studio_refuses(rgb, monkeypatch):
    # decode() sets Pillow's process-wide bomb limit to its cap: put it back after this test's tiny
    # caps, or later tests in this process cannot open a 512x512 image
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    jpeg = _bytes(Image.fromarray(np.tile(rgb, (8, 8, 1))), "JPEG")
    png = _bytes(Image.fromarray(rgb))
    bad = {"empty": b"", "text": b"this is not an image at all", "png-header-only": b"\x89PNG\r\n\x1a\n" + b"\0" * 20,
           "truncated-jpeg": jpeg[: len(jpeg) // 2], "truncated-png": png[:-40],
           "huge": _bytes(Image.new("1", (12000, 12000)))}  # 144 MP in a few KB
    why = {"empty": "empty", "text": "not an image", "png-header-only": "not an image",
           "truncated-jpeg": "truncated", "truncated-png": "truncated|corrupt", "huge": "over the cap"}
    for name, data in bad.items():
        with pytest.raises(ImageError, match=why[name]):
            load_image(data)
        with pytest.raises(prepost.ImageError, match=why[name]):
            prepost.decode(data, 50_000_000)
    # the size from the header alone, for admitting work by pixels; None where decoding would refuse
    assert prepost.peek_size(png) == (60, 45) and prepost.peek_size(b"junk") is None
    monkeypatch.setenv("STUDIO_MAX_PIXELS", "1000")
    with pytest.raises(ImageError, match="STUDIO_MAX_PIXELS"):
        load_image(png)
    with pytest.raises(prepost.ImageError, match="over the cap of 0 MP.*--max-pixels"):
        prepost.decode(png, 1000, "--max-pixels raises it")


CFGS = [
    ({"mean": [0.5, 0.5, 0.5], "std": [1.0, 1.0, 1.0], "scale": "max", "resize": "lanczos"},
     {"activation": "none", "normalize": "minmax", "resize": "lanczos"}),
    ({"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "scale": "255", "resize": "bilinear"},
     {"activation": "sigmoid", "normalize": "minmax", "resize": "bilinear"}),
    ({"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "scale": "1", "resize": "bicubic"},
     {"activation": "sigmoid", "normalize": "none", "resize": "bicubic"}),
]


@pytest.mark.parametrize("pre, post", CFGS)
def test_pre_and_postprocessing(rgb, pre, post):
    p, q = prepost.Preprocess.from_dict(pre), prepost.Postprocess.from_dict(post)
    assert p.to_dict() == pre and q.to_dict() == post  # the settings round-trip through model.json
    for size in [(64, 64), (48, 80)]:
        x = prepost.preprocess(rgb, size, p)
        assert x.shape == (1, 3, size[1], size[0]) and x.dtype == np.float32
        resized = np.asarray(Image.fromarray(rgb).resize(size, {"lanczos": Image.Resampling.LANCZOS,
                                                                "bilinear": Image.Resampling.BILINEAR,
                                                                "bicubic": Image.Resampling.BICUBIC}[p.resize]))
        top = resized.max() if p.scale == "max" else float(p.scale)
        want = (resized.astype(np.float64) / top - np.asarray(p.mean)) / np.asarray(p.std)
        assert np.allclose(x[0].transpose(1, 2, 0), want, rtol=1e-5, atol=1e-5)
    rng = np.random.default_rng(0)
    for pred in [rng.normal(0, 3, (32, 32)).astype(np.float32), np.full((32, 32), 0.3, np.float32),
                 rng.random((16, 24)).astype(np.float32)]:
        levels = prepost.postprocess(pred, (60, 45), q)
        assert levels.dtype == np.uint8 and levels.shape == (45, 60)
    flat = prepost.postprocess(np.full((8, 8), 0.3, np.float32), (8, 8), prepost.Postprocess())
    assert (flat == 77).all()  # a constant output keeps its value (round(0.3 * 255)), no division by 0


def test_settings_refuse_unknown_and_invalid_keys():
    with pytest.raises(prepost.ConfigError, match="unknown key 'sclae'"):
        prepost.Preprocess.from_dict({"sclae": "max"})
    with pytest.raises(prepost.ConfigError, match="preprocess.scale must be one of"):
        prepost.Preprocess.from_dict({"scale": "256"})
    with pytest.raises(prepost.ConfigError, match="mean must be three numbers"):
        prepost.Preprocess.from_dict({"mean": [0.5, 0.5]})
    with pytest.raises(prepost.ConfigError, match="std must not be 0"):
        prepost.Preprocess.from_dict({"std": [1, 0, 1]})
    with pytest.raises(prepost.ConfigError, match="postprocess.activation"):
        prepost.Postprocess.from_dict({"activation": "softmax"})
    assert prepost.Preprocess.from_dict({"scale": 255}).scale == "255"  # YAML's unquoted 255


def test_the_onnx_runner_is_prepost_on_the_model(tiny, tmp_path, rgb):
    """The studio's alpha is the bundle's 8-bit matte / 255, exactly."""
    import onnxruntime as ort

    from studio.backends import create_runner

    v = tiny()
    runner = create_runner(v, tmp_path / "tiny.onnx")
    alpha = runner.predict(rgb).alpha
    sess = ort.InferenceSession(str(tmp_path / "tiny.onnx"), providers=["CPUExecutionProvider"])
    pred = sess.run(None, {"input": prepost.preprocess(rgb, v.input_size, v.preprocess)})[0]
    levels = prepost.postprocess(pred[0, 0], (60, 45), v.postprocess)
    assert np.array_equal(alpha_to_uint8(alpha), levels)
    assert np.array_equal(levels.astype(np.float32) * np.float32(1.0 / 255.0), alpha)


# --- the HTTP pieces --------------------------------------------------------------------------------

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


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A tiny ONNX variant with the artifact resolver pointed at its file."""
    from types import SimpleNamespace

    from studio import artifacts, inventory

    model = tiny_onnx_model(tmp_path / "tiny.onnx")
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
    assert {"model.onnx", "model.json", "serve.py", "prepost.py", "requirements.txt", "Dockerfile", "README.md",
            "Dockerfile.cuda", "requirements-cuda.txt"} == names
    d = tmp_path / "bundle"
    cfg = json.loads((d / "model.json").read_text())
    assert cfg["input_size"] == [32, 32] and cfg["preprocess"] == CFGS[0][0]
    assert cfg["postprocess"] == CFGS[0][1] and cfg["model_sha256"] == bundle_mod.sha256_of(d / "model.onnx")
    assert cfg["ort"]["saved_optimization"] == bundle_mod.SAVE_LEVEL
    assert (d / "serve.py").read_bytes() == TEMPLATE.read_bytes()
    assert (d / "prepost.py").read_bytes() == PREPOST.read_bytes()  # the studio's module, not a copy of it
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
    # what the bundle's user needs, nothing of the machine that made it (issue 22)
    assert "/api/remove" in readme and "om=true" in readme and "--max-inflight-mp" in readme
    assert "## Measured" not in readme and "—" not in readme and "eval/run.py" not in readme
    assert str(tmp_path) not in readme and str(Path.home()) not in readme and "/work/" not in readme
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
    assert "0.9123" in readme and "p50 812 ms" in readme and "peak memory (RSS): 640 MB" in readme
    assert "calibrated on 16" in readme and "0.8765" in readme and "ground truth" in readme
    assert "summary.json" not in readme and str(tmp_path) not in readme  # no path of the machine that made it
    assert "—" not in readme  # a figure that was not measured is left out, not shown as a dash
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


# --- the OpenVINO runtime -------------------------------------------------------------------------------

def tiny_two_output_onnx(path: Path, size: int = 32) -> Path:
    """The tiny model with a second output (as IS-Net has its side maps): the bundle keeps the first."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.linspace(-0.3, 0.4, 27, dtype=np.float32).reshape(1, 3, 3, 3), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["conv"], pads=[1, 1, 1, 1]),
         helper.make_node("Sigmoid", ["conv"], ["output"]), helper.make_node("Relu", ["conv"], ["side"])],
        "tiny2", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, size, size]),
         helper.make_tensor_value_info("side", TensorProto.FLOAT, [1, 1, size, size])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.fixture
def tiny_ov(tmp_path, monkeypatch):
    """A tiny OpenVINO variant, its file an ONNX model (two outputs) or an IR (.xml + .bin), with
    the artifact resolver pointed at it. Each variant gets its own id: the engine pools runners by id."""
    import uuid
    from types import SimpleNamespace

    import openvino as ov

    from studio import artifacts, inventory

    onnx_file = tiny_two_output_onnx(tmp_path / "tiny2.onnx")
    ir = tmp_path / "tiny2.xml"
    model = ov.Core().read_model(str(onnx_file))
    model.remove_result(model.get_results()[1])
    ov.save_model(model, str(ir), compress_to_fp16=False)
    files = {"onnx": onnx_file, "ir": ir}
    current: dict[str, Path] = {}
    monkeypatch.setattr(artifacts, "require", lambda v, verify=True: SimpleNamespace(
        path=str(current[v.id]), sha256=bundle_mod.sha256_of(current[v.id])))
    monkeypatch.setattr(inventory, "describe", lambda v: SimpleNamespace(untrained=False, flags=[], size_mb=0.0))

    def make(kind: str = "onnx", precision: str = "int8-static") -> Variant:  # int8: the blob ships
        vid = f"tiny-ov-{kind}-{uuid.uuid4().hex[:6]}"
        current[vid] = files[kind]
        return Variant(id=vid, family="tiny", backend="openvino", precision=precision, input_size=(32, 32),
                       preprocess=dict(CFGS[0][0]), postprocess=dict(CFGS[0][1]), file=files[kind].name,
                       license="MIT", options={"precision": "f32"})
    return make


def _constraint(name: str) -> str:
    for line in (Path(__file__).resolve().parents[1] / "constraints.txt").read_text().splitlines():
        if line.lower().startswith(f"{name}=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError(f"{name} is not pinned in constraints.txt")


def test_openvino_export_writes_the_ir_a_compiled_blob_and_pins_openvino(tiny_ov, tmp_path):
    import openvino as ov

    res = export_bundle(tiny_ov("onnx"), tmp_path / "b", check=False)
    d = tmp_path / "b"
    cfg = json.loads((d / "model.json").read_text())
    blob = cfg["openvino"]["compiled"]["file"]
    assert set(res.files) == {"model.xml", "model.bin", blob, "model.json", "serve.py", "prepost.py",
                              "requirements.txt", "Dockerfile", "README.md"}
    assert not res.cuda and blob.endswith(".blob") and f"ov{ov.__version__.split('-')[0]}-f32" in blob
    assert cfg["runtime"] == "openvino" and cfg["model_file"] == "model.xml" and "ort" not in cfg
    assert cfg["openvino"] | {"compiled": None} == {"version": ov.__version__.split("-")[0], "precision": "f32",
                                                     "hint": "latency", "streams": None, "compiled": None}
    assert cfg["model_sha256"] == bundle_mod.sha256_of(d / "model.xml")
    assert cfg["weights_sha256"] == bundle_mod.sha256_of(d / "model.bin")
    assert [o.get_any_name() for o in ov.Core().read_model(str(d / "model.xml")).outputs] == ["output"]
    reqs = (d / "requirements.txt").read_text()
    assert f"openvino=={_constraint('openvino')}" in reqs  # the version the repository pins and tests
    assert "onnxruntime" not in reqs and "torch" not in reqs and "studio" not in reqs
    for name, version in bundle_mod.runtime_pins("openvino").items():
        assert f"{name}=={version}" in reqs
    assert f"COPY model.xml model.bin {blob} model.json" in (d / "Dockerfile").read_text()
    readme = (d / "README.md").read_text()
    assert "without torch: OpenVINO, numpy" in readme and "`model.onnx`" not in readme and "NCHWc" not in readme
    assert str(tmp_path) not in readme and "/work/" not in readme
    # without the blob: the IR only; a float build ships none unless asked (its blob does not pay)
    res = export_bundle(tiny_ov("onnx"), tmp_path / "plain", check=False, ship_compiled=False)
    assert not [f for f in res.files if f.endswith(".blob")]
    assert json.loads((tmp_path / "plain" / "model.json").read_text())["openvino"]["compiled"] is None
    res = export_bundle(tiny_ov("onnx", "fp32"), tmp_path / "fp32", check=False)
    assert not [f for f in res.files if f.endswith(".blob")] and "Dockerfile.cuda" not in res.files
    res = export_bundle(tiny_ov("onnx", "fp32"), tmp_path / "fp32-blob", check=False, ship_compiled=True)
    assert [f for f in res.files if f.endswith(".blob")]


@pytest.mark.parametrize("kind", ["onnx", "ir"])
def test_openvino_bundle_masks_equal_the_studio_runner(tiny_ov, tmp_path, kind):
    """The bundle's own serve.py and prepost.py, on its shipped blob and on its IR compiled (the
    fallback), against the studio's openvino runner on the variant's file: the same 8-bit masks."""
    from studio import engine
    from studio.data.embedded import pair

    v = tiny_ov(kind)
    res = export_bundle(v, tmp_path / "b", check=True)
    a = res.agreement
    assert a["max_abs_diff_8bit"] == 0 and a["iou_min"] == 1.0
    assert len(a["model_files"]) == 2 and a["model_files"][1] == "model.xml"  # the blob, then the IR
    if kind == "ir":  # an IR with one output is shipped as it is
        assert (tmp_path / "b" / "model.bin").read_bytes() == (tmp_path / "tiny2.bin").read_bytes()
    # and on an image of another size, through the runtime's run() directly
    serve, cfg, rt = bundle_mod.load_bundle_runtime(tmp_path / "b")
    assert rt.level == "imported"
    img = pair(3).image
    x = serve.prepost.preprocess(img, cfg["input_size"], cfg["preprocess"])
    ours = serve.prepost.postprocess(rt.run(x)[0, 0], (img.shape[1], img.shape[0]), cfg["postprocess"])
    assert np.array_equal(ours, alpha_to_uint8(engine.predict(v, img).alpha))


def test_openvino_server_falls_back_to_compiling_a_blob_it_cannot_import(tiny_ov, tmp_path):
    """A blob of another OpenVINO build or CPU that slipped through its name: the server compiles
    the IR and says why in /healthz; a blob named for another CPU is never tried."""
    export_bundle(tiny_ov("onnx"), tmp_path / "b", check=False)
    d = tmp_path / "b"
    cfg = json.loads((d / "model.json").read_text())
    blob = d / cfg["openvino"]["compiled"]["file"]
    serve, _, good = bundle_mod.load_bundle_runtime(d)
    x = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    want = good.run(x)
    (d / blob.name.replace("-f32-", "-f32-otherisa-")).write_bytes(b"never read")
    blob.write_bytes(blob.read_bytes()[:200])  # truncated: the plugin refuses it
    _, _, rt = bundle_mod.load_bundle_runtime(d)
    assert rt.level == "compiled" and rt.model_file == "model.xml" and rt.fallback
    assert np.array_equal(rt.run(x), want)
    _, _, portable = bundle_mod.load_bundle_runtime(d, "--portable")
    assert portable.level == "compiled" and portable.fallback is None
    # --prepare writes this CPU's blob again, and a start imports it
    prepared = bundle_mod.prepare_compiled(d)
    assert prepared == blob.name
    _, _, again = bundle_mod.load_bundle_runtime(d)
    assert again.level == "imported" and np.array_equal(again.run(x), want)


def test_openvino_runs_concurrent_inferences_on_separate_requests(tiny_ov, tmp_path):
    """--workers 2: two inferences at once must not share an infer request (its output buffer)."""
    from concurrent.futures import ThreadPoolExecutor

    export_bundle(tiny_ov("onnx"), tmp_path / "b", check=False)
    _, _, rt = bundle_mod.load_bundle_runtime(tmp_path / "b")
    rng = np.random.default_rng(1)
    xs = [rng.random((1, 3, 32, 32), dtype=np.float32) for _ in range(8)]
    want = [rt.run(x) for x in xs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(rt.run, xs * 4))
    assert all(np.array_equal(g, want[i % 8]) for i, g in enumerate(got))


def test_the_openvino_server_skips_the_model_converter_and_leaves_it_importable():
    """The server's `import openvino` leaves out `openvino.tools.ovc` (two thirds of the import's
    time; a server converts nothing), and a later import of the converter still works."""
    code = (
        "import sys; sys.path[:0] = sys.argv[1:]; import serve\n"
        "ov = serve.import_openvino()\n"
        "assert 'openvino.tools.ovc' not in sys.modules and ov.Core is not None\n"
        "from openvino.tools.ovc import convert_model\n"
        "print('ok', callable(convert_model))\n")
    folders = [str(TEMPLATE.parent), str(Path(prepost.__file__).parent)]  # serve.py, prepost.py
    out = subprocess.run([sys.executable, "-c", code, *folders], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok True", out.stderr[-2000:]
