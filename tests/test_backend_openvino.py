"""The openvino backend and the NNCF build: plumbing on a tiny model, IS-Net in the slow set.

The tiny model is made here (a 3x3 convolution and a sigmoid at 32x32, with a second output the
runner must prune), so these tests need no weights."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from studio import settings
from studio.backends import create_runner, run_checked
from studio.zoo import BACKENDS, OpenVinoOptions, Variant, ZooError, load_zoo

SIZE = 32


def tiny_onnx(path: Path, seed: int = 0) -> Path:
    """input [1,3,32,32] -> Conv(3->1, 3x3) -> Sigmoid -> `output`; the conv's map is a second output."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.normal(0, 0.5, (1, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.array([0.1], np.float32), "b")
    nodes = [helper.make_node("Conv", ["input", "w", "b"], ["logits"], pads=[1, 1, 1, 1], name="/conv/Conv"),
             helper.make_node("Sigmoid", ["logits"], ["output"], name="/Sigmoid")]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, SIZE, SIZE]),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1, SIZE, SIZE])], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def tiny_variant(backend: str = "openvino", **options) -> Variant:
    return Variant(id=f"tiny-{backend}", family="tiny", backend=backend, input_size=(SIZE, SIZE),
                   preprocess={"mean": [0.5, 0.5, 0.5], "std": [1.0, 1.0, 1.0], "scale": "255", "resize": "bilinear"},
                   postprocess={"activation": "none", "normalize": "minmax", "resize": "bilinear"},
                   options=options or None)


def photo(h: int = 48, w: int = 64, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_the_backend_table_names_openvino_and_its_options():
    assert BACKENDS["openvino"].runtime == "openvino"
    assert BACKENDS["openvino"].options is OpenVinoOptions
    assert OpenVinoOptions() == OpenVinoOptions(precision="f32", hint="latency", streams=None, cache=True)
    v = tiny_variant(precision="bf16", cache=False)
    assert v.runtime == "openvino" and v.options.precision == "bf16" and v.options.cache is False


@pytest.mark.parametrize("bad", [{"precision": "int4"}, {"hint": "fastest"}, {"streams": 0}, {"cache": "yes"},
                                 {"threads": 2}])
def test_options_are_checked_when_the_zoo_is_read(bad):
    with pytest.raises(ZooError, match="tiny-openvino"):
        tiny_variant(**bad)


def test_runner_compiles_with_the_variants_settings_and_prunes_side_outputs(tmp_path):
    model = tiny_onnx(tmp_path / "tiny.onnx")
    runner = create_runner(tiny_variant(), model, "cpu", threads=1)
    try:
        assert len(runner.compiled.outputs) == 1  # the side map is never computed
        assert runner.compiled.get_property("INFERENCE_NUM_THREADS") == 1
        assert str(runner.compiled.get_property("INFERENCE_PRECISION_HINT")) in ("<Type: 'float32'>", "f32")
        assert str(runner.compiled.get_property("PERFORMANCE_HINT")).endswith("LATENCY")
        m = run_checked(runner, photo())
    finally:
        runner.close()
    assert m.alpha.shape == (48, 64) and m.alpha.dtype == np.float32
    assert m.alpha.min() >= 0.0 and m.alpha.max() <= 1.0
    assert set(m.timings) >= {"preprocess", "inference", "postprocess"}


def test_runner_agrees_with_onnx_runtime_on_the_same_file(tmp_path):
    model = tiny_onnx(tmp_path / "tiny.onnx")
    img = photo()
    got = {}
    for backend in ("openvino", "onnx"):
        r = create_runner(tiny_variant(backend), model, "cpu", threads=1)
        got[backend] = run_checked(r, img).alpha
        r.close()
    assert np.abs(got["openvino"] - got["onnx"]).max() <= 1.0 / 255 + 1e-6  # one 8-bit level at most


def test_compiled_model_cache_lives_under_the_models_folder(tmp_path):
    model = tiny_onnx(tmp_path / "tiny.onnx", seed=2)  # weights no other test compiles: a new blob
    cache = settings.openvino_cache_dir()
    assert cache.parent == settings.cache_dir()
    before = set(cache.rglob("*")) if cache.is_dir() else set()
    create_runner(tiny_variant(), model, "cpu", threads=1).close()
    assert set(cache.rglob("*")) - before, "compiling with cache: true wrote nothing to the cache"
    uncached = tmp_path / "other.onnx"
    tiny_onnx(uncached, seed=3)
    before = set(cache.rglob("*"))
    create_runner(tiny_variant(cache=False), uncached, "cpu", threads=1).close()
    assert set(cache.rglob("*")) == before


def test_zoo_has_the_openvino_variants():
    zoo = load_zoo()
    fp32, ref = zoo.get("isnet-general-use-ov"), zoo.get("isnet-general-use")
    assert fp32.runtime == "openvino" and ref.runtime == "onnxruntime"
    assert fp32.file == ref.file  # the same model file on another runtime
    assert fp32.options.precision == "f32"
    q = zoo.get("isnet-general-use-ov-int8")
    assert q.is_build and q.derived_from == "isnet-general-use" and q.recipe.kind == "nncf-int8"
    assert q.recipe.params["calibration"]["dataset"] == "embedded"  # builds on a fresh clone


def test_the_nncf_recipe_is_the_searched_one():
    """The recipe file holds the search's best knobs (eval/quant/openvino/): a default NNCF run
    (min/max ranges, nothing ignored) misses the agreement budget."""
    p = load_zoo().get("isnet-general-use-ov-int8").recipe.params
    assert (p["preset"], p["activations_range"], p["fast_bias_correction"]) == ("performance", "mean_quantile", True)
    assert p["ignored_scope"]["patterns"] == ["^/Resize_5$", "^/Sigmoid$", "^/conv_in/", "^/side1/", "^/stage6/"]
    assert p["calibration"] == {"dataset": "embedded", "part": "all", "count": 24, "seed": 0}


# OpenVINO's ONNX reader names an op that makes a graph output after that output: the tiny
# model's /Sigmoid is `output` in the ov.Model that NNCF matches patterns against.
BUILD = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from studio.recipe import Recipe
    from studio.quant.makers import make
    sys.path.insert(0, {tests!r})
    from test_backend_openvino import tiny_variant
    recipe = Recipe.from_dict({{"kind": "nncf-int8", "calibration": {{"dataset": "embedded", "part": "all",
                               "count": 4, "seed": 0}}, "outputs": ["output"],
                               "ignored_scope": {{"patterns": ["^output$"]}}}})
    out = Path(sys.argv[1])
    made = make(tiny_variant(), recipe, Path(sys.argv[2]), out / "model.xml", progress=False)
    print(json.dumps(made["notes"]))
""")


@pytest.mark.slow
def test_nncf_build_gives_the_same_bytes_in_two_processes(tmp_path):
    source = tiny_onnx(tmp_path / "tiny.onnx")
    code = BUILD.format(tests=str(Path(__file__).parent))
    digests = []
    for i in range(2):
        out = tmp_path / f"run{i}"
        out.mkdir()
        res = subprocess.run([sys.executable, "-c", code, str(out), str(source)], capture_output=True, text=True,
                             timeout=600, cwd=settings.REPO_ROOT)
        assert res.returncode == 0, res.stderr[-3000:]
        assert json.loads(res.stdout.strip().splitlines()[-1])["ignored_nodes"] == 1
        digests.append(((out / "model.xml").read_bytes(), (out / "model.bin").read_bytes()))
    assert digests[0] == digests[1]
    assert b"FakeQuantize" in digests[0][0]  # it did quantize


@pytest.mark.slow
def test_isnet_on_openvino_agrees_with_onnx_runtime(isnet_weights):
    from studio import engine
    from studio.data import open_dataset

    samples = list(open_dataset(None, limit=3))
    ious = []
    for s in samples:
        a = engine.predict("isnet-general-use-ov", s.image()).alpha
        b = engine.predict("isnet-general-use", s.image()).alpha
        inter = np.count_nonzero((a > 0.5) & (b > 0.5))
        union = np.count_nonzero((a > 0.5) | (b > 0.5))
        ious.append(inter / union if union else 1.0)
    assert min(ious) > 0.995, ious
