"""Graph surgery the quantization recipes need: preparing a model for the quantizer,
pruning outputs nobody reads, naming activation tensors and grouping nodes into blocks."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import onnx
from onnx import TensorProto

FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16}


def prune_outputs(model: onnx.ModelProto, keep: Iterable[str]) -> onnx.ModelProto:
    """Keep only the named graph outputs and the nodes they depend on.

    IS-Net returns its six side maps and six feature maps besides `output`; the runner reads
    only the first, so the other outputs' resizes and sigmoids are wasted work."""
    keep = list(keep)
    g = model.graph
    have = [o.name for o in g.output]
    missing = [k for k in keep if k not in have]
    if missing:
        raise ValueError(f"graph has no output {missing[0]!r} (has {have})")
    outs = [o for o in g.output if o.name in keep]
    del g.output[:]
    g.output.extend(outs)
    needed = set(keep)
    live: list[onnx.NodeProto] = []
    for node in reversed(g.node):
        if any(o in needed for o in node.output):
            live.append(node)
            needed.update(node.input)
    live.reverse()
    del g.node[:]
    g.node.extend(live)
    inits = [t for t in g.initializer if t.name in needed]
    del g.initializer[:]
    g.initializer.extend(inits)
    vis = [v for v in g.value_info if v.name in needed]
    del g.value_info[:]
    g.value_info.extend(vis)
    return model


def prepare(src: str | os.PathLike, dest: str | os.PathLike, outputs: list[str] | None = None) -> Path:
    """The model the quantizer and the calibrator both see: shapes inferred, constants folded
    and fused by ORT's basic optimizer (ORT's `quant_pre_process`), outputs pruned."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    dest = Path(dest)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        mid = Path(tmp) / "pre.onnx"
        # quant_pre_process logs and prints; the build shows its own progress instead
        with contextlib.redirect_stdout(io.StringIO()), _quiet_logging():
            quant_pre_process(str(src), str(mid), skip_symbolic_shape=True)
        model = onnx.load(str(mid))
    if outputs:
        prune_outputs(model, outputs)
    # ORT's optimizer names nothing after time or address, but it does stamp its own
    # producer; keep the file's bytes a function of the inputs alone.
    model.producer_name = "matting-studio"
    model.producer_version = ""
    onnx.save(model, str(dest))
    return dest


@contextlib.contextmanager
def _quiet_logging():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def activation_tensors(model: onnx.ModelProto) -> list[str]:
    """Float tensors computed at run time (not weights), in node order, graph input first."""
    g = model.graph
    inits = {t.name for t in g.initializer}
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.value_info, *g.input, *g.output]}
    if any(o not in types for n in g.node for o in n.output if o):
        from onnx import shape_inference

        inferred = shape_inference.infer_shapes(model).graph
        types.update({v.name: v.type.tensor_type.elem_type for v in inferred.value_info})
    seen: set[str] = set()
    out: list[str] = []
    for name in [i.name for i in g.input] + [o for n in g.node for o in n.output]:
        if name and name not in inits and name not in seen and types.get(name) in FLOAT_TYPES:
            seen.add(name)
            out.append(name)
    return out


def with_outputs(model: onnx.ModelProto, names: Iterable[str]) -> onnx.ModelProto:
    """A copy of the model that also returns the named tensors (for calibration)."""
    names = list(names)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    have = {o.name for o in g.output}
    vis = {v.name: v for v in [*g.value_info, *g.input]}
    if any(n not in vis and n not in have for n in names):
        from onnx import shape_inference

        vis.update({v.name: v for v in shape_inference.infer_shapes(m).graph.value_info})
    for name in names:
        if name not in have:
            g.output.append(vis[name])
            have.add(name)
    return m


def block_of(node_name: str) -> str:
    """The module a node came from: `/stage1/rebnconv1/conv_s1/Conv` -> `stage1`.

    PyTorch's exporter names nodes by module path; the first part is the block."""
    parts = [p for p in node_name.split("/") if p]
    return parts[0] if len(parts) > 1 else "(top)"


def nodes_of_type(model: onnx.ModelProto, op_types: Iterable[str]) -> list[str]:
    types = set(op_types)
    return [n.name for n in model.graph.node if n.op_type in types]


def ensure_node_names(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give unnamed nodes a stable name (op type and index), so recipes can refer to them."""
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"
    return model
