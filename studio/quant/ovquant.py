"""OpenVINO builds: an ONNX model read by OpenVINO, post-training quantized by NNCF, saved as IR.

    model = source_model(onnx_path, outputs=["output"])       # ov.Model, side outputs pruned
    q = quantize(model, inputs, params)                       # NNCF's quantize() with a recipe's params
    save_ir(q, dest_xml)                                      # model.xml + model.bin, byte-stable

`params` is the `nncf-int8` recipe's parameters (`studio.recipe`): preset, ignored scope
(names, regex patterns, op types), bias correction, subset size, overflow fix, SmoothQuant on
convolutions, the activation range estimator and the quantizer propagation rule. Every NNCF
object is made here, so the recipe stays plain data (and hashable).

Heavy imports (openvino, nncf) are inside the functions: `studio.quant` is imported by the app.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any


def source_model(onnx_path: Path, outputs: list[str] | None = None) -> Any:
    """The ONNX file as an `ov.Model` (OpenVINO's converter folds the traced shape arithmetic),
    keeping only `outputs` (by tensor name) so that pruned side maps cost nothing."""
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    if outputs:
        keep = set(outputs)
        names = [r for r in model.get_results() if not keep & set(r.output(0).get_names())
                 and not keep & set(r.input_value(0).get_names())]
        missing = keep - {n for r in model.get_results() for n in r.input_value(0).get_names()}
        if missing:
            from studio.recipe import RecipeError

            raise RecipeError(f"outputs names tensors the model does not output: {sorted(missing)}")
        for r in names:
            model.remove_result(r)
        model.validate_nodes_and_infer_types()
    return model


def _advanced(params: dict[str, Any]) -> Any:
    from nncf import OverflowFix
    from nncf.common.quantization.quantizer_propagation.structs import QuantizerPropagationRule
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
        QuantizationParameters,
    )
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    kw: dict[str, Any] = {
        "overflow_fix": OverflowFix(params["overflow_fix"]) if params["overflow_fix"] else None,
        "disable_bias_correction": not params["bias_correction"],
        "quantizer_propagation_rule": QuantizerPropagationRule[params["propagation"].upper()],
        # -1 switches SmoothQuant off for that op type (NNCF's convention)
        "smooth_quant_alphas": AdvancedSmoothQuantParameters(convolution=float(params["smooth_quant"]),
                                                             matmul=-1.0),
    }
    if params["activations_range"]:
        kw["activations_range_estimator_params"] = getattr(RangeEstimatorParametersSet,
                                                           params["activations_range"].upper())
    if params["weights_per_channel"] is not None:
        kw["weights_quantization_params"] = QuantizationParameters(per_channel=bool(params["weights_per_channel"]))
    return AdvancedQuantizationParameters(**kw)


def quantize(model: Any, inputs: Iterable[Any], params: dict[str, Any], count: int) -> Any:
    """NNCF post-training quantization of `model` on `inputs` (model feeds), as `params` say."""
    import nncf

    scope = params["ignored_scope"]
    ignored = nncf.IgnoredScope(names=list(scope["names"]), patterns=list(scope["patterns"]),
                                types=list(scope["types"]), validate=False)
    return nncf.quantize(
        model, nncf.Dataset(list(inputs)),
        preset=nncf.QuantizationPreset(params["preset"]),
        target_device=nncf.TargetDevice[params["target_device"].upper()],
        subset_size=int(params["subset_size"] or count),
        fast_bias_correction=bool(params["fast_bias_correction"]),
        model_type=nncf.ModelType(params["model_type"]) if params["model_type"] else None,
        ignored_scope=ignored,
        advanced_parameters=_advanced(params),
    )


def save_ir(model: Any, dest_xml: Path) -> Path:
    """Write `model` as IR (`dest_xml` and the .bin beside it), weights kept in fp32: the
    default fp16 compression would move the float layers the recipe keeps for quality."""
    import openvino as ov

    ov.save_model(model, str(dest_xml), compress_to_fp16=False)
    return dest_xml


def ignored_nodes(model: Any, scope: dict[str, list[str]]) -> list[str]:
    """The node names an ignored scope matches in `model`, as NNCF matches them (patterns with
    `re.search`): a pattern that matches nothing would silently quantize the node it meant to keep."""
    import re

    out = []
    pats = [re.compile(p) for p in scope.get("patterns") or []]
    names, types = set(scope.get("names") or []), set(scope.get("types") or [])
    for op in model.get_ordered_ops():
        n = op.get_friendly_name()
        if n in names or op.get_type_name() in types or any(p.search(n) for p in pats):
            out.append(n)
    return out
