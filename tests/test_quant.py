"""The quantization lab: recipes, the builds cache, determinism, the engine path, the
sensitivity search and the CLI, on a tiny synthetic ONNX model (seconds, no real weights)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import textwrap
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from studio import artifacts, engine, inventory, labels
from studio.cli import main as cli
from studio.errors import NotBuilt, StudioError
from studio.pool import RunnerPool
from studio.quant import builds
from studio.recipe import Recipe, RecipeError, load_recipe_file, write_recipe_file
from studio.weights import store
from studio.zoo import load_zoo

HEAD = "/head/Conv"


def tiny_model(seed: int = 0) -> onnx.ModelProto:
    """conv 3->8, relu, conv 8->8, relu, a 1x1 head 8->1, sigmoid.

    The head is the fragile node: its one output channel has an outlier weight (1000) on an
    input channel that is always 0 (bias -1 before a ReLU), so its int8 weight scale rounds
    every useful weight to 0. Quantized alone it destroys the output; kept in float it costs
    nothing."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.5, (8, 3, 3, 3)).astype(np.float32)
    b1 = rng.normal(0, 0.1, 8).astype(np.float32)
    w2 = rng.normal(0, 0.3, (8, 8, 3, 3)).astype(np.float32)
    b2 = rng.normal(0, 0.1, 8).astype(np.float32)
    w2[7] *= 0.003  # (not 0: an all-zero channel gives ORT a zero weight scale)
    b2[7] = -1.0
    wh = rng.normal(0, 0.8, (1, 8, 1, 1)).astype(np.float32)
    wh[0, 7] = 1000.0
    bh = np.zeros(1, np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in
             [(w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"), (wh, "wh"), (bh, "bh")]]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="/block1/conv/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="/block1/relu/Relu"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="/block2/conv/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="/block2/relu/Relu"),
        helper.make_node("Conv", ["r2", "wh", "bh"], ["logits"], name=HEAD),
        helper.make_node("Sigmoid", ["logits"], ["output"], name="/Sigmoid"),
    ]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, 32, 32])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="test")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


TINY = {"family": "tiny", "backend": "onnx", "input_size": [32, 32], "license": "MIT (test)",
        "preprocess": {"mean": [0.5, 0.5, 0.5], "std": [1.0, 1.0, 1.0], "scale": "255", "resize": "bilinear"},
        "postprocess": {"activation": "none", "normalize": "minmax", "resize": "bilinear"}}
CAL = {"dataset": "embedded", "count": 4, "seed": 0, "method": "minmax"}


def derived(vid: str, recipe: dict, precision: str = "int8-static", source: str = "tiny") -> dict:
    return {"id": vid, **TINY, "precision": precision, "file": f"{vid}.onnx", "derived_from": source,
            "recipe": recipe}


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """A cache and a zoo of their own: the tiny model installed as variant `tiny`, and
    derived variants of it in zoo.d."""
    cache, zoo_dir = tmp_path / "cache", tmp_path / "zoo"
    (zoo_dir / "zoo.d").mkdir(parents=True)
    monkeypatch.setenv("STUDIO_CACHE", str(cache))
    monkeypatch.setenv("STUDIO_ZOO", str(zoo_dir / "zoo.yaml"))
    main = {"files": {"tiny.onnx": {"size_mb_approx": 0.01, "sources": [{"url": "http://127.0.0.1:9/tiny.onnx"}]}},
            "variants": [{"id": "tiny", **TINY, "precision": "fp32", "file": "tiny.onnx"}]}
    (zoo_dir / "zoo.yaml").write_text(json.dumps(main))
    docs = {"variants": [
        derived("tiny-int8-static", {"kind": "int8-static", "calibration": CAL}),
        derived("tiny-int8-static-headfloat",
                {"kind": "int8-static", "calibration": CAL, "quantize": {"nodes_in_float": [HEAD]}}),
        derived("tiny-int8-dynamic", {"kind": "int8-dynamic", "check": {"count": 2}}, "int8-dynamic"),
        derived("tiny-fp16", {"kind": "fp16", "check": {"count": 2}}, "fp16"),
    ]}
    (zoo_dir / "zoo.d" / "tiny.yaml").write_text(json.dumps(docs))
    load_zoo.cache_clear()
    with store.staging("tiny.onnx") as tmp:
        onnx.save(tiny_model(), str(tmp))
        store.commit(tmp, "tiny.onnx", source="test")
    yield zoo_dir
    load_zoo.cache_clear()


# --- recipes --------------------------------------------------------------------------------------


def test_recipe_defaults_order_and_notes_do_not_change_the_hash():
    a = Recipe.from_dict({"kind": "int8-static"})
    b = Recipe.from_dict({"kind": "int8-static", "calibration": {"method": "percentile", "count": 16},
                          "quantize": {"per_channel": True}, "notes": {"why": "anything"}})
    assert a.canonical() == b.canonical() and a.digest() == b.digest()
    c = Recipe.from_dict({"kind": "int8-static", "quantize": {"nodes_in_float": ["b", "a", "a"]}})
    d = Recipe.from_dict({"kind": "int8-static", "quantize": {"nodes_in_float": ["a", "b"]}})
    assert c.digest() == d.digest() and c.params["quantize"]["nodes_in_float"] == ["a", "b"]
    assert a.digest() != Recipe.from_dict({"kind": "int8-static", "calibration": {"percentile": 99.99}}).digest()
    assert a.digest({"source_sha256": "x"}) != a.digest({"source_sha256": "y"})


@pytest.mark.parametrize("raw, match", [
    ({"kind": "int9"}, "kind must be one of"),
    ({"kind": "int8-static", "calibraton": {}}, "unknown key 'calibraton'"),
    ({"kind": "int8-static", "calibration": {"method": "mean"}}, "method must be one of"),
    ({"kind": "int8-static", "calibration": {"count": 0}}, "at least 1"),
    ({"kind": "int8-static", "quantize": "fast"}, "expected a mapping"),
])
def test_bad_recipes_say_which_key(raw, match):
    with pytest.raises(RecipeError, match=match):
        Recipe.from_dict(raw)


def test_recipe_file_roundtrip_is_deterministic(tmp_path):
    r = Recipe.from_dict({"kind": "int8-static", "quantize": {"nodes_in_float": ["/x", "/a"]},
                          "notes": {"search": {"kept": ["/a"]}}})
    p1 = write_recipe_file(r, tmp_path / "a.yaml", "# header")
    p2 = write_recipe_file(load_recipe_file(p1), tmp_path / "b.yaml", "# header")
    assert p1.read_bytes() == p2.read_bytes()
    back = load_recipe_file(p1)
    assert back.digest() == r.digest() and back.notes == r.notes
    assert Recipe.from_dict({"file": str(p1)}).digest() == r.digest()


# --- builds -------------------------------------------------------------------------------------


def test_derived_variant_needs_a_build_then_resolves_through_the_engine(lab, photo):
    v = load_zoo().get("tiny-int8-static")
    assert artifacts.installed(v) is None
    assert not inventory.describe(v).installed
    assert inventory.describe(v).pull_command == "studio build tiny-int8-static"
    with pytest.raises(NotBuilt, match="studio build tiny-int8-static"):
        artifacts.require(v)
    rec = builds.build(v, progress=False)
    inst = artifacts.require(v)
    assert inst.path == rec.path and inst.sha256 == rec.sha256 and inst.size == rec.size > 0
    assert not inst.untrained
    assert inventory.describe(v).installed
    image, _ = photo
    matte = engine.predict("tiny-int8-static", image, pool=RunnerPool())
    assert matte.alpha.shape == image.shape[:2] and matte.variant == "tiny-int8-static"
    # the build recorded its size, time, and agreement with the source on as many images as it
    # calibrated on, none of them calibration images
    assert rec.build_seconds > 0 and rec.agreement["n"] == 4
    assert 0 <= rec.agreement["iou_mean"] <= 1 and rec.agreement["mae_mean"] >= 0
    assert rec.calibration["dataset"] == "embedded" and len(rec.calibration["ids"]) == 4
    assert rec.agreement["set"]["part"] == "held-out"
    assert not set(rec.agreement["ids"]) & set(rec.calibration["ids"])
    # readable like any installed file: the build folder 0755, its files and the calibration cache 0644
    from studio import settings

    folder = Path(rec.path).parent
    assert folder.stat().st_mode & 0o777 == 0o755
    assert {p.stat().st_mode & 0o777 for p in folder.iterdir()} == {0o644}
    stats = list((settings.builds_dir() / "calibration").rglob("*.npz"))
    assert stats and {p.stat().st_mode & 0o777 for p in stats} == {0o644}


def test_an_agreement_measured_on_the_calibration_images_is_measured_again(lab):
    v = load_zoo().get("tiny-int8-static")
    rec = builds.build(v, progress=False)
    old = dict(rec.agreement, set={**rec.agreement["set"], "part": "calibration"})
    old["set"].pop("skip", None)
    rec.agreement = old
    builds._write_record(Path(rec.path).parent, rec)
    again = builds.build(v, progress=False)
    assert again.created_at == rec.created_at  # not rebuilt, only checked again
    assert again.agreement["set"]["part"] == "held-out"


def test_an_agreement_checked_on_another_runtime_is_checked_again_and_says_its_runtime(lab):
    """One file can run on two runtimes (isnet-general-use-cpu: the QDQ file on OpenVINO), and
    they agree with the source differently: the record says which one it was checked on, and a
    check made on another runtime than the variant's is made again (it was shown as the pick's)."""
    v = load_zoo().get("tiny-int8-static")
    rec = builds.build(v, progress=False)
    assert rec.agreement["runtime"] == "onnxruntime"
    assert labels.check_images(rec.agreement) == "4 held-out embedded images, on ONNX Runtime"
    # a record from before the runtime was written down: an ONNX file was checked on ONNX Runtime
    rec.agreement = {k: x for k, x in rec.agreement.items() if k != "runtime"}
    builds._write_record(Path(rec.path).parent, rec)
    assert "runtime" not in builds.build(v, progress=False).agreement  # the same runtime: kept
    on_openvino = dataclasses.replace(v, backend="openvino", options=None)
    again = builds.build(on_openvino, progress=False)
    assert again.created_at == rec.created_at  # not rebuilt, only checked again
    assert again.agreement["runtime"] == "openvino" and again.agreement["ids"] == rec.agreement["ids"]
    assert labels.check_images(again.agreement).endswith(", on OpenVINO")
    assert builds.build(on_openvino, progress=False).agreement == again.agreement  # and then kept


def test_the_builds_of_one_source_run_the_source_once_for_their_checks(lab, monkeypatch):
    """`studio build a b c` checks each build against the same fp32 source on the same images:
    the source runs once (make demo's three builds ran IS-Net three times, 26 s each), and
    the figures are those of a check that ran it again."""
    from studio.quant import agreement

    monkeypatch.setattr(agreement, "_SOURCE_MATTES", {})
    ran = []
    real = agreement.predict_images
    monkeypatch.setattr(agreement, "predict_images", lambda v, *a, **k: ran.append(v.id) or real(v, *a, **k))
    zoo = load_zoo()
    a = builds.build(zoo.get("tiny-int8-static"), progress=False)
    b = builds.build(zoo.get("tiny-int8-static-headfloat"), progress=False)
    assert ran == ["tiny", "tiny-int8-static", "tiny-int8-static-headfloat"]
    assert a.agreement["ids"] == b.agreement["ids"] and a.agreement["iou"] != b.agreement["iou"]
    agreement._SOURCE_MATTES.clear()
    fresh = agreement.agreement_with_source(zoo.get("tiny"), Path(builds.source_record(zoo.get("tiny")).path),
                                            zoo.get("tiny-int8-static-headfloat"), Path(b.path),
                                            zoo.get("tiny-int8-static-headfloat").recipe.check_set(), progress=False)
    assert ran[-2:] == ["tiny", "tiny-int8-static-headfloat"] and fresh == b.agreement
    # other images, or a source file fetched again (another mtime), run the source again
    src, tiny, pixels = Path(builds.source_record(zoo.get("tiny")).path), zoo.get("tiny"), [np.zeros((8, 8, 3), np.uint8)]
    agreement.source_mattes(tiny, src, "other-images", pixels, progress=False)
    agreement.source_mattes(tiny, src, "other-images", [p.copy() for p in pixels], progress=False)
    assert ran.count("tiny") == 3
    os.utime(src, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns + 10**9))
    agreement.source_mattes(tiny, src, "other-images", pixels, progress=False)
    assert ran.count("tiny") == 4


def test_builds_are_cached_by_recipe_and_rebuilt_when_it_changes(lab):
    v = load_zoo().get("tiny-int8-static")
    first = builds.build(v, progress=False, check=False)
    again = builds.build(v, progress=False, check=False)
    assert again.created_at == first.created_at and again.path == first.path  # not rebuilt
    changed = dataclasses.replace(v, recipe=v.recipe.with_params(**{"calibration.count": 3}))
    other = builds.build(changed, progress=False, check=False)
    assert other.key != first.key and other.path != first.path
    assert builds.installed(v).key == first.key  # the old recipe's build is still found


@pytest.mark.parametrize("vid", ["tiny-int8-static", "tiny-int8-dynamic", "tiny-fp16"])
def test_same_recipe_gives_a_byte_identical_model(lab, vid):
    from studio import settings

    v = load_zoo().get(vid)
    first = builds.build(v, progress=False, check=False)
    data = Path(first.path).read_bytes()
    shutil.rmtree(settings.builds_dir())  # calibration cache and all: a fresh machine
    second = builds.build(v, progress=False, check=False)
    assert second.sha256 == first.sha256 and Path(second.path).read_bytes() == data


def test_nodes_kept_in_float_are_honoured(lab):
    zoo = load_zoo()

    def quantized_convs(vid):
        m = onnx.load(builds.build(zoo.get(vid), progress=False, check=False).path)
        producers = {o: n.op_type for n in m.graph.node for o in n.output}
        return {n.name for n in m.graph.node if n.op_type == "Conv" and producers.get(n.input[1]) == "DequantizeLinear"}

    assert quantized_convs("tiny-int8-static") == {"/block1/conv/Conv", "/block2/conv/Conv", HEAD}
    assert quantized_convs("tiny-int8-static-headfloat") == {"/block1/conv/Conv", "/block2/conv/Conv"}
    # and keeping the fragile head in float is what saves the output
    bad = builds.build(zoo.get("tiny-int8-static"), progress=False)
    good = builds.build(zoo.get("tiny-int8-static-headfloat"), progress=False)
    assert good.agreement["iou_mean"] > 0.9 > bad.agreement["iou_mean"]


def test_a_misspelt_float_node_is_an_error(lab):
    v = load_zoo().get("tiny-int8-static")
    typo = dataclasses.replace(v, recipe=v.recipe.with_params(**{"quantize.nodes_in_float": ["/head/Cnov"]}))
    with pytest.raises(RecipeError, match="/head/Cnov"):
        builds.build(typo, progress=False, check=False)


def test_untrained_flag_flows_into_torch_builds(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_CACHE", str(tmp_path))
    load_zoo.cache_clear()
    try:
        with store.staging("ckpt_fast.pth") as tmp:
            tmp.write_bytes(b"not a real checkpoint")
            store.commit(tmp, "ckpt_fast.pth", source="untrained fast", untrained=True)
        v = load_zoo().get("inspyrenet-fast-int8-linear")
        rec = artifacts.installed(v)
        assert rec is not None and rec.untrained
        info = inventory.describe(v)
        assert info.installed and info.untrained and labels.UNTRAINED in info.flags
    finally:
        load_zoo.cache_clear()


def test_calibration_does_not_depend_on_order_or_chunking(tmp_path):
    from studio.quant.calibrate import collect_stats, ranges_from_stats

    path = tmp_path / "m.onnx"
    onnx.save(tiny_model(), str(path))
    rng = np.random.default_rng(1)
    feeds = [{"input": rng.normal(0, 0.3, (1, 3, 32, 32)).astype(np.float32)} for _ in range(5)]
    a = collect_stats(path, lambda: iter(feeds), num_bins=256)
    b = collect_stats(path, lambda: iter(feeds[::-1]), num_bins=256)
    # a memory budget below one tensor: every tensor in a session (and a run) of its own
    c = collect_stats(path, lambda: iter(feeds), num_bins=256, max_batch_mb=0.001)
    for method in ("minmax", "percentile", "entropy", "mse"):
        ra, rb = ranges_from_stats(a, method, 99.9), ranges_from_stats(b, method, 99.9)
        assert ra.ranges == rb.ranges == ranges_from_stats(c, method, 99.9).ranges, method
    r = ranges_from_stats(a, "percentile", 99.9).ranges
    full = ranges_from_stats(a, "minmax").ranges
    assert r["r1"][0] == 0.0 and 0 < r["r1"][1] <= full["r1"][1]  # post-ReLU: floor stays 0


def test_search_keeps_the_fragile_node_in_float(lab, tmp_path):
    from studio.quant.search import search

    base = Recipe.from_dict({"kind": "int8-static", "calibration": CAL})
    res = search("tiny", base, budget=0.95, granularity="auto", out=tmp_path / "tiny.yaml", progress=False)
    assert res.met
    kept = res.recipe.params["quantize"]["nodes_in_float"]
    assert HEAD in kept and "/block1/conv/Conv" not in kept and "/block2/conv/Conv" not in kept
    # the fragile head is among the units kept in float, and the table lists every one of them
    assert any(HEAD in u.nodes for u in res.floated)
    assert all(u.name in res.table() for u in res.floated)
    written = load_recipe_file(tmp_path / "tiny.yaml")
    assert written.params["quantize"]["nodes_in_float"] == kept
    assert written.notes["search"]["met"] is True
    # the written recipe builds, and holds the budget on the same images
    v = load_zoo().get("tiny-int8-static")
    rec = builds.build(v.__class__(**{**vars(v), "id": "tiny-searched", "recipe": {"file": str(tmp_path / "tiny.yaml")}}),
                       progress=False)
    assert rec.agreement["iou_mean"] >= 0.95


def test_time_aware_search_prices_units_by_measured_time(lab, tmp_path, monkeypatch):
    """Cost is the measured time a unit adds in float. Faked timings make the fragile head
    cheap in one run and dear in the other: the search floats it only when it is affordable,
    and records what each unit cost."""
    from studio.quant import search as search_mod

    def fake_times(dear: bool):
        def time_models(self, paths, rounds, image=0, gap=0.0):
            extra = 1.0 if dear else 0.0005
            return {k: [0.010 + (extra if "head" in k else 0.0)] * rounds for k in paths}
        return time_models

    base = Recipe.from_dict({"kind": "int8-static", "calibration": CAL})
    monkeypatch.setattr(search_mod.Evaluator, "time_models", fake_times(dear=False))
    cheap = search_mod.search("tiny", base, budget=0.95, out=tmp_path / "cheap.yaml", progress=False)
    assert cheap.met and HEAD in cheap.recipe.params["quantize"]["nodes_in_float"]
    kept = {u.name: u.seconds for u in cheap.floated}
    assert kept and all(abs(s - 0.0005) < 1e-9 for s in kept.values())
    notes = load_recipe_file(tmp_path / "cheap.yaml").notes["search"]
    assert notes["cost"] == "time" and notes["all_int8_seconds"] == 0.01
    assert set(notes["timing_p50_s"]) == {"fp32", "all int8", "searched"}
    data = json.loads((tmp_path / "cheap.json").read_text())
    assert data["cost"] == "time" and all(u["seconds"] is not None for u in data["kept_in_float"])

    monkeypatch.setattr(search_mod.Evaluator, "time_models", fake_times(dear=True))
    dear = search_mod.search("tiny", base, budget=0.95, out=tmp_path / "dear.yaml", progress=False,
                             max_float_time=0.25)
    assert not dear.met and HEAD not in dear.recipe.params["quantize"]["nodes_in_float"]
    assert any(s.action.startswith("skip (float time") and "head" in s.unit for s in dear.steps)
    # the sensitivities were cached by the first search: the second measured none again
    calls = []
    real_score = search_mod.Evaluator.score
    monkeypatch.setattr(search_mod.Evaluator, "score",
                        lambda self, *a, **k: calls.append(k.get("only")) or real_score(self, *a, **k))
    search_mod.search("tiny", base, budget=0.9, out=tmp_path / "again.yaml", progress=False)
    assert calls and all(c is None for c in calls)
    # the MACs proxy ignores time: it floats the head whatever it costs
    macs = search_mod.search("tiny", base, budget=0.95, out=tmp_path / "macs.yaml", progress=False, cost="macs",
                             max_float_macs=1.0)
    assert macs.met and HEAD in macs.recipe.params["quantize"]["nodes_in_float"]


def test_time_models_really_times_interleaved_runs(lab, tmp_path):
    from studio.quant import search as search_mod
    from studio.quant.images import ImageSet
    from studio.quant.makers import calibration_dir, calibration_ranges, prepared_model

    v = load_zoo().get("tiny-int8-static")
    recipe = builds.recipe_of(v)
    src = artifacts.require(load_zoo().get("tiny"))
    prepared = prepared_model(Path(src.path), None, calibration_dir())
    ranges, _ = calibration_ranges(v, recipe, prepared, progress=False)
    ev = search_mod.Evaluator(v, prepared, ranges, recipe.params["quantize"], ImageSet.from_dict(CAL).samples(),
                              workdir=tmp_path)
    times = ev.time_models({"a": prepared, "b": ev.build([HEAD])}, rounds=3, gap=0.0)
    assert set(times) == {"a", "b"} and all(len(t) == 3 and min(t) > 0 for t in times.values())


# --- CLI ------------------------------------------------------------------------------------------


def test_cli_list_build_and_json(lab, capsys):
    assert cli(["build", "--list"]) == 0
    out = capsys.readouterr().out
    assert "tiny-int8-static" in out and "int8-dynamic" in out
    assert cli(["build", "tiny-int8-dynamic", "--no-check"]) == 0
    assert "ok     tiny-int8-dynamic" in capsys.readouterr().out
    assert cli(["build", "--list", "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["tiny-int8-dynamic"]["built"] and not rows["tiny-int8-static"]["built"]
    assert cli(["build", "tiny"]) == 2  # not a derived variant: one line, no traceback
    assert "not a derived variant" in capsys.readouterr().err
    assert cli(["models", "tiny-int8-dynamic", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["installed"]


def test_cli_builds_a_recipe_file(lab, tmp_path, capsys):
    path = tmp_path / "try.yaml"
    path.write_text(textwrap.dedent("""\
        kind: int8-static
        calibration: {dataset: embedded, count: 2, method: percentile, percentile: 99.9}
        quantize: {nodes_in_float: [/head/Conv]}
    """))
    assert cli(["build", "--recipe", str(path), "--from", "tiny", "--as", "tiny-try", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["variant"] == "tiny-try" and rec["agreement"]["n"] == 2
    assert rec["recipe"]["quantize"]["nodes_in_float"] == [HEAD]


def test_calibration_on_absent_shared_data_fails_clearly(lab, tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_SHARED", str(tmp_path / "nowhere"))
    v = load_zoo().get("tiny-int8-static")
    v = dataclasses.replace(v, recipe=v.recipe.with_params(**{"calibration.dataset": "sod-dev"}))
    from studio.quant.images import CalibrationDataMissing

    with pytest.raises(CalibrationDataMissing, match="sod-dev.*absent on this machine"):
        builds.build(v, progress=False)


def test_torch_build_options_refuse_what_cannot_run():
    from studio.backends.torch_options import check_device, check_options
    from studio.errors import ModelError

    zoo = load_zoo()
    with pytest.raises(ModelError, match="needs a CUDA device"):
        check_device(zoo.get("inspyrenet-base-bf16"), "cpu")
    with pytest.raises(ModelError, match="CPU build"):
        check_device(zoo.get("inspyrenet-fast-int8-linear"), "cuda")
    bad = zoo.get("inspyrenet-fast-int8-linear")
    with pytest.raises(ModelError, match="not with bf16"):
        check_options(bad.__class__(**{**vars(bad), "precision": "bf16"}))
    for v in builds.derived_variants():  # every shipped derived variant has a valid recipe
        assert builds.recipe_of(v).kind
        if v.backend == "inspyrenet":
            check_options(v)


def test_fp16_of_a_source_that_was_converted_before_loads(tmp_path):
    """IS-Net's fp32 is an upcast of an fp16 export: it already has nodes named like the Casts
    the fp16 converter adds. The build must still be a valid model."""
    import onnxruntime as ort

    from studio.quant import makers
    from studio.zoo import Variant

    model = tiny_model()
    model.graph.node[1].name = "graph_input_cast0"
    model.graph.node[-1].name = "graph_output_cast0"
    for node in model.graph.node:  # and the tensor names of those casts
        node.input[:] = [{"r1": "graph_input_cast_0", "logits": "graph_output_cast_0"}.get(x, x) for x in node.input]
        node.output[:] = [{"r1": "graph_input_cast_0", "logits": "graph_output_cast_0"}.get(x, x) for x in node.output]
    src, dest = tmp_path / "src.onnx", tmp_path / "fp16.onnx"
    onnx.save(model, str(src))
    v = Variant(**{**derived("t-fp16", {"kind": "fp16"}, "fp16"), "input_size": (32, 32)})
    makers.make(v, Recipe.from_dict({"kind": "fp16"}), src, dest, progress=False)
    names = [n.name for n in onnx.load(str(dest)).graph.node]
    assert len(names) == len(set(names))
    sess = ort.InferenceSession(str(dest), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"input": np.zeros((1, 3, 32, 32), np.float32)})[0]
    assert out.shape == (1, 1, 32, 32) and np.isfinite(out).all()


def test_a_build_onnx_runtime_refuses_is_not_recorded(lab, monkeypatch):
    from studio.quant import makers

    def broken(variant, recipe, source, dest, **_):
        Path(dest).write_bytes(b"not a model")
        return {}

    monkeypatch.setitem(makers.MAKERS, "fp16", broken)
    v = load_zoo().get("tiny-fp16")
    with pytest.raises(StudioError, match="does not load"):
        builds.build(v, progress=False, check=False)
    assert builds.installed(v) is None


def test_two_builders_of_one_build_at_once_make_it_once(lab, monkeypatch):
    """The app's jobs and a CLI `studio build` (or two test workers) may ask for the same build
    at once: one makes it, the other waits and gets that build; neither sees a half-made folder."""
    import threading

    from studio.quant import makers

    real, calls = makers.make, []

    def slow_make(*args, **kwargs):
        calls.append(1)
        time.sleep(0.5)  # the other builder arrives while this one is making
        return real(*args, **kwargs)

    monkeypatch.setattr(makers, "make", slow_make)
    v = load_zoo().get("tiny-int8-dynamic")
    records, errors = [], []

    def one() -> None:
        try:
            records.append(builds.build(v, progress=False, check=False))
        except Exception as exc:  # reported below, with the other thread's result
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(records) == 2 and len(calls) == 1
    assert records[0].sha256 == records[1].sha256 and Path(records[0].path).is_file()
