"""One maker per recipe kind: source file in, artifact file out (deterministically)."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from studio import settings
from studio.fileio import publish, temp_beside
from studio.recipe import Recipe
from studio.zoo import Variant

QUANT_TYPES = {"uint8": "QUInt8", "int8": "QInt8"}
# Activations asked for per calibration run, in MB (the statistics do not depend on it): IS-Net
# at 1024 needs about two runs per image; a Swin transformer's attention maps would otherwise
# all be alive at once (OOM-killed at 384 on a 23 GB machine).
CALIBRATION_BATCH_MB = 3072


def make(variant: Variant, recipe: Recipe, source: Path, dest: Path, progress: Any = True,
         threads: int = 0) -> dict[str, Any]:
    """Write the artifact of `recipe` applied to `source` at `dest`; return extra facts."""
    return MAKERS[recipe.kind](variant, recipe, source, dest, progress=progress, threads=threads)


def _save(model: onnx.ModelProto, dest: Path) -> None:
    model.producer_name = "matting-studio"
    model.producer_version = ""
    onnx.save(model, str(dest))


def make_fp32_upcast(variant, recipe, source, dest, **_) -> dict:
    from studio.weights.upcast import upcast_fp16_model_file

    upcast_fp16_model_file(source, dest)  # byte-identical to the pinned `weights pull` upcast
    return {}


def make_fp16(variant, recipe, source, dest, **_) -> dict:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    p = recipe.params
    model = onnx.load(str(source))
    if p["outputs"]:
        from studio.quant.graph import prune_outputs

        prune_outputs(model, p["outputs"])
    # A source that was itself converted (IS-Net: the fp16 upcast) already has the Cast nodes,
    # and their tensors, that the converter names for the graph's inputs and outputs: a second
    # conversion would define those names twice.
    taken = ("graph_input_cast", "graph_output_cast")
    io_names = {v.name for v in [*model.graph.input, *model.graph.output]}
    rename = {o: f"source_{o}" for n in model.graph.node for o in n.output
              if o.startswith(taken) and o not in io_names}
    for node in model.graph.node:
        if node.name.startswith(taken):
            node.name = f"source_{node.name}"
        node.input[:] = [rename.get(x, x) for x in node.input]
        node.output[:] = [rename.get(x, x) for x in node.output]
    for vi in model.graph.value_info:
        vi.name = rename.get(vi.name, vi.name)
    kw = {"keep_io_types": bool(p["keep_io_types"])}
    if p["op_block_list"] is not None:
        kw["op_block_list"] = list(p["op_block_list"])
    model = convert_float_to_float16(model, **kw)
    _save(model, dest)
    return {}


def make_int8_dynamic(variant, recipe, source, dest, **_) -> dict:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from studio.quant.graph import _quiet_logging, prepare

    p = recipe.params
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        pre = prepare(source, Path(tmp) / "pre.onnx", p["outputs"])
        with _quiet_logging():
            quantize_dynamic(str(pre), str(Path(tmp) / "q.onnx"), op_types_to_quantize=p["op_types"],
                             per_channel=bool(p["per_channel"]), reduce_range=bool(p["reduce_range"]),
                             weight_type=getattr(QuantType, QUANT_TYPES[p["weights"]]),
                             nodes_to_exclude=list(p["nodes_in_float"]))
        _save(onnx.load(str(Path(tmp) / "q.onnx")), dest)
    return {}


# --- int8 static -----------------------------------------------------------------------------


def calibration_dir() -> Path:
    return settings.builds_dir() / "calibration"


def prepared_model(source: Path, outputs: list[str] | None, folder: Path) -> Path:
    """The prepared (pre-processed, pruned) source, cached by source hash and outputs."""
    from studio.quant.graph import prepare
    from studio.weights.store import hash_file

    sha = hash_file(source, ("sha256",))["sha256"]
    tag = hashlib.sha256(json.dumps([sha, outputs or []]).encode()).hexdigest()[:16]
    path = folder / f"prepared-{tag}.onnx"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            out = prepare(source, Path(tmp) / "p.onnx", outputs)
            out.replace(path)
    return path


def calibration_stats(variant: Variant, recipe: Recipe, prepared: Path, progress: Any = True,
                      threads: int = 0):
    """Per-tensor min/max and histograms on the recipe's calibration images, computed once
    and cached: changing only the method or the percentile reuses them."""
    from studio.quant.calibrate import collect_stats, load_stats, save_stats
    from studio.quant.images import ImageSet, feeds
    from studio.weights.store import hash_file

    cal = recipe.params["calibration"]
    images = ImageSet.from_dict(cal)
    fp = images.fingerprint()
    prep_sha = hash_file(prepared, ("sha256",))["sha256"]
    key = hashlib.sha256(json.dumps(
        {"model": prep_sha, "images": fp["content_sha256"], "preprocess": variant.preprocess.to_dict(),
         "input_size": list(variant.input_size), "num_bins": int(cal["num_bins"])},
        sort_keys=True).encode()).hexdigest()
    path = calibration_dir() / f"stats-{key[:16]}.npz"
    if path.is_file():
        return load_stats(path), fp
    samples = images.samples()
    input_name = onnx.load(str(prepared), load_external_data=False).graph.input[0].name
    bar = _bar(progress, total=len(samples) * 2, desc="calibrate")
    try:
        stats = collect_stats(
            prepared, lambda: feeds(samples, input_name, tuple(variant.input_size), variant.preprocess),
            num_bins=int(cal["num_bins"]), threads=threads, progress=lambda phase, n: bar.update(1),
            max_batch_mb=CALIBRATION_BATCH_MB)
    finally:
        bar.close()
    tmp = temp_beside(path)
    save_stats(stats, tmp)
    publish(tmp, path)
    return stats, fp


def calibration_ranges(variant: Variant, recipe: Recipe, prepared: Path, progress: Any = True,
                       threads: int = 0):
    """Activation ranges for a recipe's calibration settings (from the cached stats)."""
    from studio.quant.calibrate import ranges_from_stats

    cal = recipe.params["calibration"]
    stats, fp = calibration_stats(variant, recipe, prepared, progress, threads)
    return ranges_from_stats(stats, cal["method"], float(cal["percentile"])), fp


def tensor_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Known tensor shapes of a model (the prepared model carries them all)."""
    g = model.graph
    return {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in [*g.value_info, *g.input, *g.output]}


def quantize_static_model(prepared: Path, ranges, quant: dict[str, Any], dest: Path,
                          shapes: dict[str, list[int]] | None = None) -> None:
    """ORT's quantize_static on precomputed ranges (no calibration run inside ORT)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    from studio.quant.graph import _quiet_logging

    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(ranges.tensors_data(), cache)
        out = Path(tmp) / "q.onnx"
        with _quiet_logging():
            quantize_static(
                str(prepared), str(out), None,
                quant_format=QuantFormat.QDQ if quant["format"] == "qdq" else QuantFormat.QOperator,
                op_types_to_quantize=quant["op_types"],
                per_channel=bool(quant["per_channel"]),
                reduce_range=bool(quant["reduce_range"]),
                activation_type=getattr(QuantType, QUANT_TYPES[quant["activations"]]),
                weight_type=getattr(QuantType, QUANT_TYPES[quant["weights"]]),
                nodes_to_exclude=list(quant["nodes_in_float"]),
                calibrate_method=CalibrationMethod.MinMax,
                extra_options=dict(quant["extra_options"] or {}),
                calibration_cache_path=str(cache),
            )
        model = onnx.load(str(out))
        if shapes is None and quant["nodes_in_float"]:
            shapes = tensor_shapes(onnx.load(str(prepared), load_external_data=False))
        isolate_float_nodes(model, list(quant["nodes_in_float"]), shapes)
        _save(model, dest)


def isolate_float_nodes(model: onnx.ModelProto, names: list[str],
                        shapes: dict[str, list[int]] | None = None) -> int:
    """Make nodes kept in float stay float when ONNX Runtime loads the model.

    A node the quantizer leaves in float still sits between DequantizeLinear (its quantized
    producers) and QuantizeLinear (its quantized consumers). At session start ORT then
    re-quantizes it: its graph transformers turn DQ -> Concat/Add/... -> Q into the QLinear
    op, and `WeightBiasQuantization` gives a float Conv after a DQ per-tensor int8 weights,
    coarser than the per-channel ones the quantizer would have chosen. Those rules match a
    DQ with a scalar scale only, so each float node gets its own DQ with the same scale
    repeated per channel (axis 1): the same numbers, but nothing for ORT to fuse.
    Returns how many inputs were isolated."""
    from onnx import numpy_helper, shape_inference

    keep = set(names)
    if not keep:
        return 0
    g = model.graph
    producers = {o: n for n in g.node for o in n.output}
    inits = {t.name: t for t in g.initializer}
    shapes = dict(shapes or {})
    shapes.update(tensor_shapes(model))

    def shape_of(dq: onnx.NodeProto) -> list[int] | None:
        q = producers.get(dq.input[0])
        original = q.input[0] if q is not None and q.op_type == "QuantizeLinear" else None
        for name in (dq.output[0], dq.input[0], original):
            if name and shapes.get(name):
                return shapes[name]
        return None

    if any(shape_of(producers[i]) is None for n in g.node if n.name in keep for i in n.input
           if i in producers and producers[i].op_type == "DequantizeLinear"):
        shapes.update(tensor_shapes(shape_inference.infer_shapes(model)))
    made: dict[str, str] = {}
    new_nodes: list[tuple[int, onnx.NodeProto]] = []
    count = 0
    for idx, node in enumerate(g.node):
        if node.name not in keep:
            continue
        for i, name in enumerate(node.input):
            dq = producers.get(name)
            if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] in inits:
                continue  # weights and biases stay as they are; only activations matter
            shape = shape_of(dq)
            if not shape or len(shape) < 2 or not shape[1] or dq.input[1] not in inits:
                continue
            scale = numpy_helper.to_array(inits[dq.input[1]])
            if scale.size != 1:
                continue
            if name not in made:
                channels = shape[1]
                tag = f"{dq.output[0]}_float_{channels}"
                s_name, z_name = f"{tag}_scale", f"{tag}_zero_point"
                g.initializer.append(numpy_helper.from_array(np.full(channels, scale.reshape(()), scale.dtype), s_name))
                dq_inputs = [dq.input[0], s_name]
                if len(dq.input) > 2 and dq.input[2] in inits:
                    zp = numpy_helper.to_array(inits[dq.input[2]])
                    g.initializer.append(numpy_helper.from_array(np.full(channels, zp.reshape(()), zp.dtype), z_name))
                    dq_inputs.append(z_name)
                iso = onnx.helper.make_node("DequantizeLinear", dq_inputs, [f"{tag}_out"], name=f"{tag}_DequantizeLinear",
                                            axis=1)
                new_nodes.append((idx, iso))
                made[name] = iso.output[0]
            node.input[i] = made[name]
            count += 1
    for offset, (idx, n) in enumerate(new_nodes):
        g.node.insert(idx + offset, n)
    return count


def make_int8_static(variant, recipe, source, dest, progress=True, threads=0) -> dict:
    p = recipe.params
    prepared = prepared_model(source, p["outputs"], calibration_dir())
    check_nodes(prepared, p["quantize"]["nodes_in_float"])
    if recipe.ranges_path is not None:
        ranges, fp = committed_ranges(recipe, prepared)
    else:
        ranges, fp = calibration_ranges(variant, recipe, prepared, progress, threads)
    quantize_static_model(prepared, ranges, p["quantize"], dest)
    return {"calibration": fp}


def committed_ranges(recipe: Recipe, prepared: Path):
    """The recipe's committed ranges file, checked against the recipe and the model."""
    from studio.quant.graph import activation_tensors
    from studio.quant.ranges import calibration_fingerprint, check_fits, read_ranges

    path = recipe.ranges_path
    ranges, meta = read_ranges(path)
    tensors = activation_tensors(onnx.load(str(prepared), load_external_data=False))
    check_fits(ranges, meta, recipe.params["calibration"], tensors, path)
    return ranges, calibration_fingerprint(recipe)


def make_resize_input(variant, recipe, source, dest, **_) -> dict:
    """The source at the variant's input size, every traced Resize target following it."""
    from studio.quant.resize import resize_model
    from studio.recipe import RecipeError, resize_target

    w, h = resize_target(variant.input_size, recipe, variant.id)
    if isinstance(variant.input_size, tuple) and list(variant.input_size) != [w, h]:
        raise RecipeError(f"{variant.id}: its input_size {list(variant.input_size)} is not the recipe's {[w, h]}")
    model, report = resize_model(onnx.load(str(source)), (h, w))
    _save(model, dest)
    return {"notes": report.to_json()}


def make_nncf_int8(variant, recipe, source, dest, progress=True, threads=0) -> dict:
    """NNCF post-training int8 of an ONNX source, as OpenVINO IR (`dest` is the .xml; the .bin
    is written beside it). Deterministic: the calibration images are generated or fixed, NNCF
    takes them in order, and statistics are reduced in float32 by OpenVINO on the CPU."""
    from studio.quant import ovquant
    from studio.quant.images import ImageSet, feeds

    p = recipe.params
    images = ImageSet.from_dict(p["calibration"])
    samples = images.samples()
    model = ovquant.source_model(source, p["outputs"])
    matched = ovquant.ignored_nodes(model, p["ignored_scope"])
    wanted = [*p["ignored_scope"]["names"], *p["ignored_scope"]["patterns"]]
    if wanted and not matched:
        from studio.recipe import RecipeError

        raise RecipeError(f"ignored_scope matches no node of {source.name}: {wanted[:5]}")
    name = model.inputs[0].get_any_name()
    inputs = [f[name] for f in feeds(samples, name, tuple(variant.input_size), variant.preprocess)]
    quantized = ovquant.quantize(model, inputs, p, len(inputs))
    ovquant.save_ir(quantized, dest)
    return {"calibration": images.fingerprint(samples), "notes": {"ignored_nodes": len(matched)}}


def check_nodes(model_path: Path, names: list[str]) -> None:
    """Nodes kept in float must exist: a typo would silently quantize the fragile node."""
    from studio.recipe import RecipeError

    have = {n.name for n in onnx.load(str(model_path), load_external_data=False).graph.node}
    missing = [n for n in names if n not in have]
    if missing:
        raise RecipeError(f"nodes_in_float names nodes the model does not have: {', '.join(missing[:5])}"
                          + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""))


# --- torch (InSPyReNet) ----------------------------------------------------------------------


def make_torch(variant, recipe, source, dest, **_) -> dict:
    """Torch recipes are load-time options; building only checks that they can apply here."""
    from studio.backends.torch_options import check_options

    check_options(variant)
    return {"notes": "load-time options; the artifact is the source checkpoint"}


def make_onnx_export(variant, recipe, source, dest, progress=True, **_) -> dict:
    from studio.quant.torchbuild import export_onnx

    return export_onnx(variant, recipe, source, dest, progress=progress)


def _bar(progress: Any, total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not progress, leave=False)


MAKERS = {
    "fp32-upcast": make_fp32_upcast,
    "fp16": make_fp16,
    "int8-dynamic": make_int8_dynamic,
    "int8-static": make_int8_static,
    "torch": make_torch,
    "onnx-export": make_onnx_export,
    "resize-input": make_resize_input,
    "nncf-int8": make_nncf_int8,
}
