"""Variants as typed data: parsed once when the zoo is read, with errors that name the variant and
the key; the backend table decides which runner, runtime and options a variant gets."""

from __future__ import annotations

import dataclasses
import json
import sys
import types
from pathlib import Path

import pytest

from studio import backends
from studio.backends.base import Runner
from studio.cli import main as cli
from studio.matte import Matte
from studio.prepost import Postprocess, Preprocess
from studio.recipe import Recipe
from studio.zoo import (
    BACKENDS,
    Backend,
    GrabCutOptions,
    NoOptions,
    OnnxOptions,
    OrtOptions,
    TorchOptions,
    Variant,
    ZooError,
    load_zoo,
    parse_zoo,
)


def _doc(**variant) -> list[dict]:
    return [{"variants": [{"id": "v1", "family": "f", "backend": "onnx", **variant}]}]


def test_every_shipped_variant_is_typed():
    expected = {"onnx": OnnxOptions, "rembg": NoOptions, "inspyrenet": TorchOptions, "opencv": GrabCutOptions}
    for v in load_zoo().variants.values():
        assert isinstance(v.preprocess, Preprocess) and isinstance(v.postprocess, Postprocess), v.id
        assert isinstance(v.options, expected.get(v.backend, BACKENDS[v.backend].options)), v.id
        assert v.recipe is None or isinstance(v.recipe, Recipe), v.id
        assert v.runtime == BACKENDS[v.backend].runtime
    # the shipped CPU pick runs its QDQ file on OpenVINO; the same build on ONNX Runtime keeps its settings
    cpu, ort_cpu = load_zoo().get("isnet-general-use-cpu"), load_zoo().get("isnet-general-use-cpu-ort")
    assert cpu.runtime == "openvino" and cpu.options.precision == "f32"
    assert ort_cpu.options.ort.optimized_model is True and ort_cpu.options.ort.level == "all"
    for v in (cpu, ort_cpu):
        assert v.recipe.kind == "int8-static" and v.recipe.file.name == "isnet-general-use-cpu.yaml"
    assert cpu.recipe == ort_cpu.recipe  # one build, two runtimes
    assert load_zoo().get("inspyrenet-fast-compile").options.compile is True
    assert load_zoo().get("grabcut").options == GrabCutOptions(margin=0.05, iterations=5, max_side=512)
    assert load_zoo().get("isnet-general-use").preprocess.scale == "max"


@pytest.mark.parametrize("variant, message", [
    ({"preprocess": {"scael": "max"}}, "variant v1: preprocess: unknown key 'scael'"),
    ({"preprocess": {"scale": "256"}}, "variant v1: preprocess.scale must be one of max, 255, 1"),
    ({"postprocess": {"activation": "relu"}}, "variant v1: postprocess.activation"),
    ({"options": {"ort": {"spin": True}}}, "variant v1: options.ort: unknown key 'spin'"),
    ({"options": {"mode": "fast"}}, "variant v1: options: unknown key 'mode'"),  # an InSPyReNet key on onnx
    ({"options": {"ort": {"allow_spinning": "no"}}}, "variant v1: options.ort.allow_spinning must be true or false"),
    ({"backend": "inspyrenet", "options": {"mode": "turbo"}}, "variant v1: options.mode must be one of"),
    ({"backend": "opencv", "options": {"margin": 0.7}}, "variant v1: options.margin"),
    ({"backend": "rembg", "options": {"x": 1}}, "variant v1: options: unknown key 'x'"),
    ({"recipe": {"kind": "fp16", "keep_io": True}, "derived_from": "v0"}, "variant v1: recipe.*unknown key 'keep_io'"),
    ({"recipe": {"kind": "int9"}, "derived_from": "v0"}, "variant v1: recipe kind must be one of"),
    ({"recipe": {"file": "eval/quant/recipes/none-such.yaml"}, "derived_from": "v0"}, "variant v1: recipe file"),
    ({"backend": "tensorflow"}, "variant v1: backend must be one of onnx"),
    ({"inputsize": [32, 32]}, "variant v1: unknown key 'inputsize'"),
])
def test_an_unknown_or_invalid_key_names_the_variant_and_the_key(variant, message):
    with pytest.raises(ZooError, match=message):
        parse_zoo(_doc(**variant))


def test_settings_are_parsed_once_and_spelled_back_the_same():
    zoo = parse_zoo(_doc(input_size=[32, 32], preprocess={"mean": [0.5, 0.5, 0.5], "scale": "255"},
                         options={"ort": {"denormal_as_zero": True}}))
    v = zoo.get("v1")
    assert v.preprocess == Preprocess(mean=(0.5, 0.5, 0.5), scale="255")  # the rest: the defaults
    assert v.options.to_dict() == {"ort": {"denormal_as_zero": True}}  # only what was set: keys stay stable
    # a variant made in code parses its mappings the same way; replace() does too
    w = dataclasses.replace(v, options={"ort": {"graph_optimization": "basic"}})
    assert w.options == OnnxOptions(ort=OrtOptions(graph_optimization="basic"))
    assert Variant(id="g", family="c", backend="opencv").options == GrabCutOptions()
    with pytest.raises(ZooError, match="variant g: options: a opencv variant takes GrabCutOptions"):
        Variant(id="g", family="c", backend="opencv", options=OnnxOptions())


def test_the_backend_table_decides_the_runner(tmp_path, monkeypatch):
    """A new backend is one row: its runner gets the same arguments as every other runner
    (weights_sha256 included), with no special case in create_runner."""
    seen = {}

    class EchoRunner(Runner):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.update(weights=self.weights, sha=self.weights_sha256, threads=self.threads)

        def predict(self, image):
            return Matte(alpha=image[..., 0] / 255.0, variant=self.variant.id, timings={})

    module = types.ModuleType("echo_backend")
    module.EchoRunner = EchoRunner  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "echo_backend", module)
    monkeypatch.setitem(BACKENDS, "echo", Backend("echo-runtime", "echo_backend:EchoRunner", NoOptions))
    v = Variant(id="e", family="t", backend="echo")
    assert v.runtime == "echo-runtime" and isinstance(v.options, NoOptions)
    runner = backends.create_runner(v, tmp_path / "w.bin", "cpu", 2, weights_sha256="ab" * 32)
    assert isinstance(runner, EchoRunner)
    assert seen == {"weights": tmp_path / "w.bin", "sha": "ab" * 32, "threads": 2}
    # and every shipped runner class takes weights_sha256
    import inspect

    for name in [n for n in BACKENDS if n != "echo"]:
        assert "weights_sha256" in inspect.signature(backends.runner_class(name).__init__).parameters, name


def test_models_shows_the_runtime(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STUDIO_CACHE", str(tmp_path / "empty-cache"))
    assert cli(["models", "--json", "isnet-general-use", "grabcut", "inspyrenet-fast"]) == 0
    rows = {r["id"]: r["runtime"] for r in json.loads(capsys.readouterr().out)}
    assert rows == {"isnet-general-use": "onnxruntime", "grabcut": "opencv", "inspyrenet-fast": "torch"}
    assert cli(["models", "--wide", "grabcut"]) == 0
    out = capsys.readouterr().out
    assert "runtime" in out.splitlines()[0] and "opencv" in out
    assert cli(["models", "u2netp"]) == 0
    out = capsys.readouterr().out
    assert "precision/runtime" in out and "fp32 ort" in out and "ort       = ONNX Runtime" in out


def test_no_code_reads_these_settings_as_dicts():
    """The typed settings replaced `cfg.get("scale", "max")`-style reads: none is left anywhere."""
    import re

    root = Path(__file__).resolve().parents[1]
    pattern = re.compile(r"\.(preprocess|postprocess|options|recipe)\.get\(|\.(options|recipe)\[\"")
    hits = [f"{p.relative_to(root)}:{i}" for folder in ("studio", "eval", "scripts", "tests")
            for p in (root / folder).rglob("*.py") if p.name != "test_zoo_typed.py"
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, hits
