"""Resolution variants (`resize-input`), committed calibration ranges (builds that reproduce
anywhere) and the ONNX Runtime settings a variant carries, on tiny synthetic models (seconds)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from studio import engine, settings
from studio.errors import ModelError
from studio.pool import RunnerPool
from studio.quant import builds
from studio.quant.resize import ResizeInputError, check_resized, resize_model, rewrite_input_size
from studio.recipe import Recipe, RecipeError, resize_target
from studio.weights import store
from studio.zoo import OrtOptions, load_zoo

REPO = Path(__file__).resolve().parents[1]


def traced_unet(size: int = 32, seed: int = 0) -> onnx.ModelProto:
    """A two-level U-Net as the TorchScript exporter writes IS-Net's `_upsample_like`: each
    Resize's target is Concat(Slice(Shape(x), 0, 2), Constant([h, w])) with the traced size.

    conv 3->8 stride 2 (size/2), conv 8->8, a max-pooled quarter map resized back to size/2
    and added, a Resize to the skip's size (size) concatenated with a full-size conv of the
    input, conv 16->1; and a side output: the half-size map resized to the input size, added
    to the logits before the sigmoid."""
    rng = np.random.default_rng(seed)
    half = size // 2

    def w(*shape):
        return rng.normal(0, 0.4, shape).astype(np.float32)

    inits = [numpy_helper.from_array(a, n) for a, n in [
        (w(8, 3, 3, 3), "wd"), (np.zeros(8, np.float32), "bd"),
        (w(8, 8, 3, 3), "wm"), (np.zeros(8, np.float32), "bm"),
        (w(8, 3, 3, 3), "ws"), (np.zeros(8, np.float32), "bs"),
        (w(1, 16, 3, 3), "wo"), (np.zeros(1, np.float32), "bo"),
        (w(1, 8, 1, 1), "wside"), (np.zeros(1, np.float32), "bside"),
        (np.array([0], np.int64), "zero"), (np.array([2], np.int64), "two"),
    ]]

    def size_of(tensor: str, name: str, hw: int) -> list[onnx.NodeProto]:
        return [
            helper.make_node("Shape", [tensor], [f"{name}_shape"], name=f"{name}/Shape"),
            helper.make_node("Slice", [f"{name}_shape", "zero", "two", "zero"], [f"{name}_nc"], name=f"{name}/Slice"),
            helper.make_node("Constant", [], [f"{name}_hw"], name=f"{name}/Constant",
                             value=numpy_helper.from_array(np.array([hw, hw], np.int64))),
            helper.make_node("Concat", [f"{name}_nc", f"{name}_hw"], [f"{name}_sizes"], name=f"{name}/Concat", axis=0),
        ]

    nodes = [
        helper.make_node("Conv", ["input", "wd", "bd"], ["d"], name="/down/Conv", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["d"], ["dr"], name="/down/Relu"),
        helper.make_node("Conv", ["dr", "wm", "bm"], ["m"], name="/mid/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["m"], ["mr0"], name="/mid/Relu"),
        helper.make_node("MaxPool", ["mr0"], ["p"], name="/pool/MaxPool", kernel_shape=[2, 2], strides=[2, 2],
                         ceil_mode=1),
        *size_of("p", "/pool_up", half),
        helper.make_node("Resize", ["p", "", "", "/pool_up_sizes"], ["pu"], name="/pool_up/Resize", mode="linear",
                         coordinate_transformation_mode="half_pixel"),
        helper.make_node("Add", ["mr0", "pu"], ["mr"], name="/mid/Add"),
        *size_of("mr", "/up", size),
        helper.make_node("Resize", ["mr", "", "", "/up_sizes"], ["up"], name="/up/Resize", mode="linear",
                         coordinate_transformation_mode="half_pixel"),
        helper.make_node("Conv", ["input", "ws", "bs"], ["s"], name="/skip/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["s"], ["sr"], name="/skip/Relu"),
        helper.make_node("Concat", ["up", "sr"], ["cat"], name="/cat/Concat", axis=1),
        helper.make_node("Conv", ["cat", "wo", "bo"], ["logits"], name="/out/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["dr", "wside", "bside"], ["side"], name="/side/Conv"),
        *size_of("side", "/side_up", size),
        helper.make_node("Resize", ["side", "", "", "/side_up_sizes"], ["side_up"], name="/Resize_side",
                         mode="linear", coordinate_transformation_mode="half_pixel"),
        helper.make_node("Add", ["logits", "side_up"], ["sum"], name="/Add"),
        helper.make_node("Sigmoid", ["sum"], ["output"], name="/Sigmoid"),
    ]
    graph = helper.make_graph(nodes, "unet", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, size, size])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="test")
    model.ir_version = 8
    onnx.checker.check_model(model)
    assert half * 2 == size
    return model


UNET = {"family": "unet", "backend": "onnx", "license": "MIT (test)",
        "preprocess": {"mean": [0.5, 0.5, 0.5], "std": [1.0, 1.0, 1.0], "scale": "255", "resize": "bilinear"},
        "postprocess": {"activation": "none", "normalize": "minmax", "resize": "bilinear"}}
CAL = {"dataset": "embedded", "count": 3, "seed": 0, "method": "percentile", "percentile": 99.9, "num_bins": 256}


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """The traced U-Net installed as `unet` (32x32), with a 16x16 resolution variant and
    int8-static builds of both, one of them with a committed ranges file."""
    cache, zoo_dir = tmp_path / "cache", tmp_path / "zoo"
    (zoo_dir / "zoo.d").mkdir(parents=True)
    monkeypatch.setenv("STUDIO_CACHE", str(cache))
    monkeypatch.setenv("STUDIO_ZOO", str(zoo_dir / "zoo.yaml"))
    main = {"files": {"unet.onnx": {"size_mb_approx": 0.01, "sources": [{"url": "http://127.0.0.1:9/unet.onnx"}]}},
            "variants": [{"id": "unet", **UNET, "precision": "fp32", "input_size": [32, 32], "file": "unet.onnx"}]}
    (zoo_dir / "zoo.yaml").write_text(json.dumps(main))
    ranges = tmp_path / "recipes" / "unet-16-int8-static.ranges.json"
    docs = {"variants": [
        {"id": "unet-16", **UNET, "precision": "fp32", "input_size": [16, 16], "file": "unet-16.onnx",
         "derived_from": "unet", "recipe": {"kind": "resize-input", "input_size": [16, 16], "check": {"count": 2}}},
        {"id": "unet-16-int8-static", **UNET, "precision": "int8-static", "input_size": [16, 16],
         "file": "unet-16-int8-static.onnx", "derived_from": "unet-16",
         "recipe": {"kind": "int8-static", "calibration": {**CAL, "ranges": str(ranges)}, "outputs": ["output"]}},
        {"id": "unet-16-int8-static-images", **UNET, "precision": "int8-static", "input_size": [16, 16],
         "file": "unet-16-int8-static-images.onnx", "derived_from": "unet-16",
         "recipe": {"kind": "int8-static", "calibration": CAL, "outputs": ["output"]}},
    ]}
    (zoo_dir / "zoo.d" / "unet.yaml").write_text(json.dumps(docs))
    load_zoo.cache_clear()
    with store.staging("unet.onnx") as tmp:
        onnx.save(traced_unet(), str(tmp))
        store.commit(tmp, "unet.onnx", source="test")
    yield tmp_path
    load_zoo.cache_clear()


def run(model: onnx.ModelProto, x: np.ndarray, names: list[str] | None = None) -> list[np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(names, {"input": x})


# --- resize-input -------------------------------------------------------------------------------


def test_resize_rewrites_every_traced_target_and_proves_it():
    src = traced_unet(32)
    m, rep = resize_model(src, (16, 16))
    assert rep.resizes == 3 and len(rep.rewritten) == 3 and not rep.follow
    assert rep.checked["shape_inference"] and rep.checked["run"]["matched"]
    assert rep.checked["concats_matched"] == 1 and rep.checked["to_input_size"] == ["/up/Resize", "/Resize_side"]
    out = m.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in out] == [1, 1, 16, 16]
    y = run(m, np.zeros((1, 3, 16, 16), np.float32))[0]
    assert y.shape == (1, 1, 16, 16)
    # the same network: only the input and the targets changed, never a weight
    assert {t.name for t in m.graph.initializer} == {t.name for t in src.graph.initializer}
    for a, b in zip(m.graph.initializer, src.graph.initializer, strict=True):
        assert a.raw_data == b.raw_data


def test_changing_only_the_input_shape_is_caught():
    """The trap the rewrite exists for: a new input shape with the traced targets left at the
    old size makes the skip Concat mismatch; the check refuses it."""
    src = traced_unet(32)
    m = onnx.ModelProto()
    m.CopyFrom(src)
    rep = rewrite_input_size(m, (16, 16))
    for n in m.graph.node:  # undo the rewrite of the targets
        if n.op_type == "Constant" and n.name.endswith("/Constant"):
            n.attribute[0].t.CopyFrom(numpy_helper.from_array(np.array([32, 32], np.int64)))
    with pytest.raises(ResizeInputError):
        check_resized(src, m, rep)


def test_a_size_the_strides_cannot_reach_is_refused():
    m, _ = resize_model(traced_unet(32), (24, 24))  # mid level 12: fine
    assert [d.dim_value for d in m.graph.output[0].type.tensor_type.shape.dim] == [1, 1, 24, 24]
    with pytest.raises(ResizeInputError, match="whole size"):
        resize_model(traced_unet(32), (17, 17))  # the mid level's traced 16 would be 8.5


def test_resolution_variant_builds_deterministically_and_runs(lab, photo):
    v = load_zoo().get("unet-16")
    rec = builds.build(v, progress=False)
    assert rec.agreement["n"] == 2  # agreement with the 32x32 source on the embedded sample
    assert rec.inputs["notes"]["rewritten"] == 3 and rec.inputs["notes"]["checked"]["run"]["matched"]
    data = Path(rec.path).read_bytes()
    shutil.rmtree(settings.builds_dir())
    again = builds.build(v, progress=False, check=False)
    assert again.sha256 == rec.sha256 and Path(again.path).read_bytes() == data
    image, _ = photo
    m = engine.predict("unet-16", image, pool=RunnerPool())
    assert m.alpha.shape == image.shape[:2]
    # the key follows the size: another size is another build
    other = v.__class__(**{**vars(v), "input_size": (8, 8), "recipe": {"kind": "resize-input", "input_size": [8, 8]}})
    assert builds.key_for(other) != rec.key


def test_resize_recipe_must_match_the_variant(lab):
    v = load_zoo().get("unet-16")
    bad = v.__class__(**{**vars(v), "input_size": (8, 8)})
    with pytest.raises(RecipeError, match="not the recipe's"):
        builds.build(bad, progress=False, check=False)
    with pytest.raises(RecipeError, match="width, height"):
        Recipe.from_dict({"kind": "resize-input", "input_size": [16]})


# --- committed calibration ranges ---------------------------------------------------------------


def test_ranges_file_builds_the_same_bytes_without_the_images(lab, monkeypatch):
    zoo = load_zoo()
    from_images = builds.build(zoo.get("unet-16-int8-static-images"), progress=False, check=False)
    v = zoo.get("unet-16-int8-static")
    from studio.quant.ranges import RangesError

    with pytest.raises(RangesError, match="does not exist"):
        builds.build(v, progress=False, check=False)  # no ranges file yet
    path = builds.write_ranges(v, progress=False)
    meta = json.loads(path.read_text())
    assert meta["dataset"] == "embedded" and len(meta["images"]) == 3 and "licence" in meta
    assert all(len(i["sha256"]) == 64 for i in meta["images"])
    assert meta["regenerate"] == "studio build --write-ranges unet-16-int8-static"
    # a fresh machine without the images: nothing may open one
    shutil.rmtree(settings.builds_dir() / "unet-16-int8-static-images")
    shutil.rmtree(settings.builds_dir() / "calibration")
    from studio.quant import images

    def no_images(self):
        raise AssertionError("the build opened calibration images")

    monkeypatch.setattr(images.ImageSet, "samples", no_images)
    rec = builds.build(v, progress=False, check=False)
    assert rec.sha256 == from_images.sha256
    assert rec.calibration["ranges_sha256"] == meta["ranges_sha256"]
    assert rec.calibration["ids"] == [i["id"] for i in meta["images"]]


def test_ranges_file_is_deterministic(lab):
    v = load_zoo().get("unet-16-int8-static")
    path = builds.write_ranges(v, progress=False)
    first = path.read_bytes()
    shutil.rmtree(settings.builds_dir() / "calibration")
    assert builds.write_ranges(v, progress=False).read_bytes() == first


def test_the_key_hashes_the_ranges_not_the_path(lab, tmp_path):
    v = load_zoo().get("unet-16-int8-static")
    path = builds.write_ranges(v, progress=False)
    key = builds.key_for(v)
    moved = tmp_path / "elsewhere" / "renamed.json"
    moved.parent.mkdir()
    text = path.read_text()
    moved.write_text(text)
    same = dataclasses.replace(v, recipe=v.recipe.with_params(**{"calibration.ranges": str(moved)}))
    assert builds.key_for(same) == key  # another path, same ranges: same build
    # provenance fields are not the ranges: editing the licence line changes nothing
    moved.write_text(text.replace('"licence": "', '"licence": "(edited) '))
    assert builds.key_for(same) == key
    # a range changed (and its checksum with it, as --write-ranges would): another build
    from studio.quant.ranges import read_ranges, write_ranges

    ranges, meta = read_ranges(path)
    name = sorted(ranges.ranges)[-1]
    lo, hi = ranges.ranges[name]
    ranges.ranges[name] = (lo, hi * 1.5 + 1.0)
    write_ranges(moved, ranges, {k: v for k, v in meta.items()
                                 if k not in ("format", "method", "params", "ranges_sha256", "tensors")})
    assert builds.key_for(same) != key


def test_a_hand_edited_or_mismatched_ranges_file_is_refused(lab):
    from studio.quant.ranges import RangesError

    v = load_zoo().get("unet-16-int8-static")
    path = builds.write_ranges(v, progress=False)
    good = path.read_text()
    lines = good.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith('    "') and "[" in line)
    lines[i] = lines[i].split(":")[0] + ": [0.0, 123.0],"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RangesError, match="edited by hand"):
        builds.build(v, progress=False, check=False)
    path.write_text(good)
    other = dataclasses.replace(v, recipe=v.recipe.with_params(**{"calibration.method": "minmax"}))
    with pytest.raises(RangesError, match="minmax"):
        builds.build(other, progress=False, check=False)


def test_cli_write_ranges(lab, capsys):
    from studio.cli import main as cli

    assert cli(["build", "--write-ranges", "unet-16-int8-static"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert cli(["build", "unet-16-int8-static", "--no-check"]) == 0
    assert "ok     unet-16-int8-static" in capsys.readouterr().out
    assert cli(["build", "--write-ranges", "unet-16"]) == 2  # not int8-static: one clear line
    assert "only int8-static" in capsys.readouterr().err


# --- the shipped resolution variants --------------------------------------------------------------


SIZES = (512, 640, 768, 896)


def test_resolution_variants_are_declared_for_every_size():
    zoo = load_zoo()
    for s in SIZES:
        fp32, q = zoo.get(f"isnet-general-use-{s}"), zoo.get(f"isnet-general-use-{s}-int8-static")
        assert fp32.input_size == (s, s) and q.input_size == (s, s)
        assert fp32.derived_from == "isnet-general-use" and q.derived_from == fp32.id
        assert builds.recipe_of(fp32).kind == "resize-input"
        assert resize_target(fp32.input_size, builds.recipe_of(fp32), fp32.id) == [s, s]
        assert fp32.preprocess == zoo.get("isnet-general-use").preprocess


def test_resolution_recipes_are_the_shipped_recipe_but_for_their_ranges():
    """The int8-static recipe at each size is the shipped one: same nodes in float, same
    calibration images and method. Only the ranges file (measured at that size) differs."""
    zoo = load_zoo()
    shipped = builds.recipe_of(zoo.get("isnet-general-use-int8-static")).hashed()
    for s in SIZES:
        r = builds.recipe_of(zoo.get(f"isnet-general-use-{s}-int8-static"))
        assert r.hashed() == shipped, s
        assert r.ranges_path is not None and r.ranges_path.name == f"isnet-general-use-{s}-int8-static.ranges.json"


def test_every_committed_ranges_file_is_well_formed_and_records_its_images():
    from studio.quant.ranges import read_ranges

    for v in builds.derived_variants():
        r = builds.recipe_of(v)
        if r.ranges_path is None:
            continue
        assert r.ranges_path.is_file(), f"{v.id}: {r.ranges_path} missing (studio build --write-ranges {v.id})"
        assert r.ranges_path.stat().st_size < 200_000
        ranges, meta = read_ranges(r.ranges_path)
        cal = r.params["calibration"]
        assert ranges.method == cal["method"] and meta["dataset"] == cal["dataset"]
        assert len(meta["images"]) == cal["count"] and meta["licence"]
        if cal["dataset"] == "sod-dev":
            assert "research use only" in meta["licence"]
        assert meta["measured_on"]["input_size"] == list(v.input_size)


# --- ONNX Runtime settings from the variant ------------------------------------------------------


def test_ort_options_are_read_from_the_variant_and_checked(tmp_path, monkeypatch):
    import onnxruntime as ort

    from studio.backends import onnx as ob
    from studio.zoo import Variant, ZooError

    v = Variant(id="x", family="t", backend="onnx", options={"ort": {"allow_spinning": False, "cpu_mem_arena": False,
                                                                     "graph_optimization": "extended",
                                                                     "execution_mode": "sequential"}})
    opts = ob.session_options(2, ob.ort_options(v))
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    assert not opts.enable_cpu_mem_arena and opts.intra_op_num_threads == 2
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    # checked once, when the variant is made (the zoo is read), naming the variant and the key
    with pytest.raises(ZooError, match="variant y: options.ort: unknown key 'spin'"):
        Variant(id="y", family="t", backend="onnx", options={"ort": {"spin": True}})
    with pytest.raises(ZooError, match="variant z: options.ort.graph_optimization"):
        Variant(id="z", family="t", backend="onnx", options={"ort": {"graph_optimization": "max"}})
    # defaults stay ONNX Runtime's
    plain = ob.session_options(0, None)
    assert plain.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL and plain.enable_cpu_mem_arena


def test_a_saved_optimised_model_is_made_once_and_reused(tmp_path, monkeypatch):
    from studio.backends import onnx as ob

    monkeypatch.setenv("STUDIO_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "m.onnx"
    onnx.save(traced_unet(), str(path))
    x = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    want = ob.create_session(str(path), "cpu", 1).run(None, {"input": x})[0]
    opts = OrtOptions(optimized_model=True)
    first = ob.create_session(str(path), "cpu", 1, opts)
    saved = ob.optimized_path(str(path), "all")
    assert saved.is_file()
    stamp = saved.stat().st_mtime_ns
    second = ob.create_session(str(path), "cpu", 1, opts)
    assert saved.stat().st_mtime_ns == stamp  # loaded, not made again
    for s in (first, second):
        assert np.abs(s.run(None, {"input": x})[0] - want).max() < 1e-5


def test_shipped_ort_settings_are_valid():
    from studio.backends.onnx import ort_options

    for v in load_zoo().variants.values():
        if v.backend == "onnx":
            ort_options(v)


def test_committed_ranges_build_where_the_calibration_set_is_absent(lab, tmp_path, monkeypatch):
    """A recipe that calibrated on sod-dev builds without it (its ranges are committed); only
    the agreement check needs the images, and it is skipped with a message, not an error."""
    from studio.quant.ranges import read_ranges, write_ranges

    v = load_zoo().get("unet-16-int8-static")
    ranges, meta = read_ranges(builds.write_ranges(v, progress=False))
    sod = tmp_path / "sod.ranges.json"
    write_ranges(sod, ranges, {**{k: x for k, x in meta.items()
                                  if k not in ("format", "method", "params", "ranges_sha256", "tensors")},
                               "dataset": "sod-dev"})
    shipped_like = dataclasses.replace(v, recipe=v.recipe.with_params(
        **{"calibration.dataset": "sod-dev", "calibration.ranges": str(sod)}))
    monkeypatch.setenv("STUDIO_SHARED", str(tmp_path / "no-shared-here"))
    said: list[str] = []
    rec = builds.build(shipped_like, progress=said.append)
    assert rec.agreement is None and any("agreement check skipped" in m for m in said)
    assert rec.calibration["dataset"] == "sod-dev" and rec.sha256 == builds.build(v, progress=False, check=False).sha256


def test_tensorrt_device_is_refused_clearly_where_it_is_missing(tmp_path):
    import onnxruntime as ort

    from studio.backends import onnx as ob

    path = tmp_path / "m.onnx"
    onnx.save(traced_unet(), str(path))
    if "TensorrtExecutionProvider" in ort.get_available_providers():  # pragma: no cover - a GPU machine
        pytest.skip("TensorRT is available here")
    with pytest.raises(ModelError, match="TensorrtExecutionProvider is not available"):
        ob.create_session(str(path), "tensorrt", 0, OrtOptions(trt_fp16=True))
