"""The fp16 -> fp32 upcast of an ONNX graph: how the fp32 IS-Net is derived offline from the npm
fp16 build (deterministic, so its sha256 is pinned in the zoo). Also a quant recipe kind."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper


def _upcast_tensor(t: onnx.TensorProto) -> None:
    if t.data_type == TensorProto.FLOAT16:
        arr = numpy_helper.to_array(t).astype(np.float32)
        t.CopyFrom(numpy_helper.from_array(arr, t.name))


def upcast_fp16_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every fp16 initializer, Constant, Cast target and value type becomes fp32."""
    g = model.graph
    for init in g.initializer:
        _upcast_tensor(init)
    for node in g.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT16:
                attr.i = TensorProto.FLOAT
            if attr.type == onnx.AttributeProto.TENSOR:
                _upcast_tensor(attr.t)
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        tt = vi.type.tensor_type
        if tt.elem_type == TensorProto.FLOAT16:
            tt.elem_type = TensorProto.FLOAT
    return model


def topological_sort(model: onnx.ModelProto) -> onnx.ModelProto:
    """Order nodes so each comes after its inputs' producers (IMG.LY's graphs are not
    sorted; ONNX Runtime tolerates that, the checker and quantization tools do not)."""
    g = model.graph
    ready = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    pending = list(g.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        rest = []
        for node in pending:
            if all(i in ready for i in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ValueError(f"graph has a cycle or a missing input near {rest[0].name}")
        pending = rest
    del g.node[:]
    g.node.extend(ordered)
    return model


def upcast_fp16_model_file(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    model = topological_sort(upcast_fp16_model(onnx.load(str(src))))
    onnx.checker.check_model(model)
    onnx.save(model, str(dest))
    return Path(dest)
