"""A fixed-size ONNX model at another input size: the `resize-input` recipe.

PyTorch's TorchScript exporter traces `F.interpolate(x, size=tar.shape[2:])` as a Resize whose
`sizes` input is `Concat(Slice(Shape(x), 0, 2), Constant([h, w]))`: the batch and channels
follow the graph, the spatial target is a constant of the traced size. IS-Net has 39 such
Resizes (the U-blocks' `_upsample_like` and the side outputs upsampled to the input size).
Changing only the graph's input shape would leave every one of them at the 1024² sizes, so
the rewrite scales each constant spatial target by the same factor as the input, refusing a
size the network's strides cannot reach exactly.

It then proves the rewrite three ways:
1. ONNX shape inference (strict) of the new graph: every Resize's inferred output is the
   source's inferred output scaled by the input's factor;
2. every Concat that takes a Resize's output sees the same spatial size on all its inputs
   (the skip connection the Resize was made to match);
3. a real ONNX Runtime run of the new graph, with every Resize output exposed: the shapes
   it computes equal the inferred ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from studio.errors import StudioError

RESIZE_OPS = ("Resize", "Upsample")
# Ops whose constant inputs could encode a spatial size the rewrite does not know how to scale.
SHAPE_CONSUMERS = ("Reshape", "Expand", "Tile", "ConstantOfShape")


class ResizeInputError(StudioError):
    """The model cannot be rewritten to the asked input size; the message says why."""


@dataclass
class ResizeReport:
    source_size: tuple[int, int]  # (height, width)
    size: tuple[int, int]
    resizes: int = 0
    rewritten: list[str] = field(default_factory=list)  # Resize nodes whose target was a constant
    follow: list[str] = field(default_factory=list)  # Resize nodes that follow by scales or shapes
    checked: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"source_size": list(self.source_size), "size": list(self.size), "resizes": self.resizes,
                "rewritten": len(self.rewritten), "follow": len(self.follow), "checked": self.checked}


def _dims(vi: onnx.ValueInfoProto) -> list[int]:
    return [d.dim_value if d.HasField("dim_value") else 0 for d in vi.type.tensor_type.shape.dim]


def inferred_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Every tensor's shape by ONNX shape inference (strict: an inconsistency raises)."""
    try:
        m = shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception as exc:  # onnx raises InferenceError, ValidationError or RuntimeError
        raise ResizeInputError(f"ONNX shape inference failed on the resized graph: {exc}") from None
    g = m.graph
    return {v.name: _dims(v) for v in [*g.value_info, *g.input, *g.output]}


def _constant_array(name: str, producers: dict[str, onnx.NodeProto],
                    inits: dict[str, onnx.TensorProto]) -> tuple[np.ndarray, Any] | None:
    """The value of a constant tensor and a setter that replaces it (None if not constant)."""
    if name in inits:
        t = inits[name]

        def set_init(arr: np.ndarray, t=t) -> None:
            t.CopyFrom(numpy_helper.from_array(arr.astype(numpy_helper.to_array(t).dtype), t.name))
        return numpy_helper.to_array(t), set_init
    node = producers.get(name)
    if node is not None and node.op_type == "Constant":
        attr = next((a for a in node.attribute if a.name == "value"), None)
        if attr is None:
            return None

        def set_const(arr: np.ndarray, attr=attr) -> None:
            old = numpy_helper.to_array(attr.t)
            attr.t.CopyFrom(numpy_helper.from_array(arr.astype(old.dtype), attr.t.name))
        return numpy_helper.to_array(attr.t), set_const
    return None


def _scaled(values: np.ndarray, factors: tuple[float, float], where: str) -> np.ndarray:
    """A spatial [h, w] scaled by (fh, fw), exactly or not at all."""
    out = []
    for v, f in zip(values.tolist(), factors, strict=True):
        new = v * f
        if abs(new - round(new)) > 1e-9 or round(new) < 1:
            raise ResizeInputError(
                f"{where}: its traced target {int(v)} does not scale to a whole size at this input "
                f"size (x{f:g} = {new:g}); choose an input size the network's strides divide")
        out.append(int(round(new)))
    return np.asarray(out, dtype=values.dtype)


def rewrite_input_size(model: onnx.ModelProto, size: tuple[int, int]) -> ResizeReport:
    """Rewrite, in place, a fixed-size model to input (height, width) `size`.

    Only the first graph input is resized; its batch and channels stay. Every Resize must
    either compute its target from shapes or scales (it follows by itself) or take a constant
    spatial target (scaled here). Anything else is refused rather than guessed."""
    g = model.graph
    if not g.input:
        raise ResizeInputError("the model has no input")
    inp = g.input[0]
    dims = _dims(inp)
    if len(dims) != 4 or not all(dims):
        raise ResizeInputError(f"input {inp.name!r} must be a fixed NCHW shape, got {dims}")
    h0, w0 = dims[2], dims[3]
    h, w = int(size[0]), int(size[1])
    factors = (h / h0, w / w0)
    report = ResizeReport((h0, w0), (h, w))

    producers = {o: n for n in g.node for o in n.output}
    inits = {t.name: t for t in g.initializer}
    for n in g.node:
        if n.op_type in SHAPE_CONSUMERS:
            shape_in = n.input[1] if len(n.input) > 1 else None
            if shape_in and _constant_array(shape_in, producers, inits) is not None:
                raise ResizeInputError(f"{n.name} ({n.op_type}) takes a constant shape; the rewrite "
                                       "cannot tell whether it encodes the input size")
    done: set[str] = set()
    for n in g.node:
        if n.op_type not in RESIZE_OPS:
            continue
        report.resizes += 1
        sizes = n.input[3] if n.op_type == "Resize" and len(n.input) > 3 else ""
        if not sizes:  # scales: the output follows the input by itself
            report.follow.append(n.name)
            continue
        const = _constant_array(sizes, producers, inits)
        if const is not None:  # a constant NCHW target
            arr, setter = const
            if arr.size != 4:
                raise ResizeInputError(f"{n.name}: constant sizes {arr.tolist()} are not NCHW")
            if sizes not in done:
                setter(np.concatenate([arr[:2], _scaled(arr[2:], factors, n.name)]))
                done.add(sizes)
            report.rewritten.append(n.name)
            continue
        cat = producers.get(sizes)
        if cat is None or cat.op_type != "Concat":
            report.follow.append(n.name)  # computed from shapes at run time
            continue
        tail = _constant_array(cat.input[-1], producers, inits)
        if tail is None:
            report.follow.append(n.name)
            continue
        arr, setter = tail
        if arr.size != 2:
            raise ResizeInputError(f"{n.name}: its target ends in a constant of {arr.size} values, not [h, w]")
        if cat.input[-1] not in done:
            setter(_scaled(arr, factors, n.name))
            done.add(cat.input[-1])
        report.rewritten.append(n.name)

    for d, value in zip(inp.type.tensor_type.shape.dim[2:], (h, w), strict=True):
        d.Clear()
        d.dim_value = value
    # Every recorded intermediate and output shape was for the old size: let inference redo them.
    del g.value_info[:]
    for out in g.output:
        out.type.tensor_type.ClearField("shape")
    return report


def check_resized(source: onnx.ModelProto, resized: onnx.ModelProto, report: ResizeReport,
                  run: bool = True) -> dict[str, Any]:
    """Prove that every Resize of `resized` follows the new input size (see the module doc)."""
    fh = report.size[0] / report.source_size[0]
    fw = report.size[1] / report.source_size[1]
    before = inferred_shapes(source)
    after = inferred_shapes(resized)
    resizes = [n for n in resized.graph.node if n.op_type in RESIZE_OPS]
    wrong = []
    for n in resizes:
        old, new = before.get(n.output[0]), after.get(n.output[0])
        if not old or not new or len(old) != 4 or not all(new):
            wrong.append(f"{n.name}: no inferred shape")
            continue
        want = [old[0], old[1], round(old[2] * fh), round(old[3] * fw)]
        if new != want:
            wrong.append(f"{n.name}: inferred {new}, expected {want}")
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in resized.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    concats = 0
    for n in resizes:
        for c in _concats_after(n.output[0], consumers):
            concats += 1
            spatial = {tuple(after.get(i, [])[2:]) for i in c.input}
            if len(spatial) != 1:
                wrong.append(f"{c.name}: inputs of different sizes {sorted(spatial)}")
    side = [n.name for n in resizes if before[n.output[0]][2:] == list(report.source_size)]
    for name in side:
        out = after[next(n for n in resizes if n.name == name).output[0]]
        if out[2:] != list(report.size):
            wrong.append(f"{name}: upsamples to {out[2:]}, not the input size {list(report.size)}")
    if wrong:
        raise ResizeInputError("the resized graph's Resizes do not follow the input size: " + "; ".join(wrong[:5]))
    checked: dict[str, Any] = {"shape_inference": True, "resizes": len(resizes),
                               "concats_matched": concats, "to_input_size": side}
    if run:
        checked["run"] = _run_check(resized, [n.output[0] for n in resizes], after)
    return checked


PASS_THROUGH = ("Cast", "Identity", "Relu")


def _concats_after(tensor: str, consumers: dict[str, list[onnx.NodeProto]]) -> list[onnx.NodeProto]:
    """The Concat nodes a tensor reaches through shape-keeping ops (the fp16 round trip leaves
    a Cast between IS-Net's Resizes and their Concats)."""
    out, todo, seen = [], [tensor], set()
    while todo:
        t = todo.pop()
        for c in consumers.get(t, []):
            if c.name in seen:
                continue
            seen.add(c.name)
            if c.op_type == "Concat":
                out.append(c)
            elif c.op_type in PASS_THROUGH:
                todo.extend(c.output)
    return out


def _run_check(model: onnx.ModelProto, names: list[str], inferred: dict[str, list[int]]) -> dict[str, Any]:
    """Run the model once (zeros in) with every Resize output exposed; compare the shapes."""
    import onnxruntime as ort

    from studio.quant.graph import with_outputs

    m = with_outputs(model, names)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    feed = {inp.name: np.zeros([d if isinstance(d, int) else 1 for d in inp.shape], np.float32)}
    outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed), strict=True))
    bad = [f"{k}: ran {list(outs[k].shape)}, inferred {inferred[k]}" for k in names
           if list(outs[k].shape) != inferred[k]]
    for o in model.graph.output:
        if list(outs[o.name].shape) != inferred.get(o.name):
            bad.append(f"output {o.name}: ran {list(outs[o.name].shape)}, inferred {inferred.get(o.name)}")
    if bad:
        raise ResizeInputError("ONNX Runtime computes other shapes than shape inference: " + "; ".join(bad[:5]))
    return {"tensors": len(names) + len(model.graph.output), "matched": True}


def resize_model(source: onnx.ModelProto, size: tuple[int, int], run_check: bool = True
                 ) -> tuple[onnx.ModelProto, ResizeReport]:
    """A copy of `source` at input (height, width) `size`, checked; the graph outputs carry
    their inferred shapes."""
    m = onnx.ModelProto()
    m.CopyFrom(source)
    report = rewrite_input_size(m, size)
    report.checked = check_resized(source, m, report, run=run_check)
    shapes = inferred_shapes(m)
    for out in m.graph.output:
        dims = shapes.get(out.name)
        if dims and all(dims):
            out.type.tensor_type.shape.CopyFrom(onnx.helper.make_tensor_type_proto(
                out.type.tensor_type.elem_type, dims).tensor_type.shape)
    return m, report
