"""InSPyReNet (PyTorch) builds: the ONNX export. The load-time options (dtype, dynamic int8
Linear, torch.compile) are applied by the backend (`studio.backends.torch_options`).

On an untrained checkpoint these builds are honest for latency and memory only; the flag
flows from the checkpoint's record into the build's and onto every report.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

from studio.zoo import Variant


def load_model(checkpoint: Path, mode: str):
    """transparent-background's own InSPyReNet for a mode, with the checkpoint's weights."""
    import torch

    from studio.backends.inspyrenet import new_model

    model, base_size = new_model(mode)
    model.load_state_dict(torch.load(str(checkpoint), map_location="cpu", weights_only=True), strict=True)
    return model.eval(), base_size


def export_onnx(variant: Variant, recipe, source: Path, dest: Path, progress: Any = True) -> dict:
    """Export the source InSPyReNet checkpoint to ONNX at a fixed size (input `input`,
    output `output`, the min-max normalised saliency map the Remover returns).

    `exporter: torchscript` is torch's TorchScript tracer; `dynamo` is torch.export with
    onnxscript's translation, which handles the fast model at its native 384 (there the last
    Swin stage is a single window, and the TorchScript exporter fails on the empty slice of
    its shifted-window mask)."""
    import torch

    from studio.zoo import load_zoo

    src = load_zoo().get(variant.derived_from or "")
    mode = src.options.mode
    model, base = load_model(source, mode)
    size = recipe.params.get("input_size") or (list(variant.input_size) if isinstance(variant.input_size, tuple) else base)
    h, w = int(size[1]), int(size[0])
    exporter = recipe.params.get("exporter", "torchscript")
    torch.manual_seed(0)
    x = torch.rand(1, 3, h, w)
    if progress:
        print(f"exporting {src.id} to ONNX at {w}x{h} ({exporter}, opset {recipe.params['opset']}) …", flush=True)
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            torch.onnx.export(model, (x,), str(dest), input_names=["input"], output_names=["output"],
                              opset_version=int(recipe.params["opset"]), dynamo=True, external_data=False,
                              optimize=True, verbose=False)
        else:
            torch.onnx.export(model, (x,), str(dest), input_names=["input"], output_names=["output"],
                              opset_version=int(recipe.params["opset"]), do_constant_folding=True,
                              dynamo=False)
    import onnx

    m = onnx.load(str(dest))
    strip_metadata(m)
    m.producer_name = "matting-studio"
    m.producer_version = ""
    onnx.save(m, str(dest))
    return {"notes": f"exported at {w}x{h} from {src.id} (mode {mode}, {exporter} exporter)"}


def strip_metadata(model) -> None:
    """Drop what the exporter records about where it ran (stack traces with this machine's
    paths, FX node dumps): it is not the model, and it would make the bytes machine-dependent."""
    def clear(items) -> None:
        for item in items:
            del item.metadata_props[:]
            if hasattr(item, "doc_string"):
                item.doc_string = ""

    del model.metadata_props[:]
    model.doc_string = ""
    g = model.graph
    del g.metadata_props[:]
    clear(g.node)
    clear(g.value_info)
    clear(g.input)
    clear(g.output)
    clear(g.initializer)
    for f in model.functions:
        del f.metadata_props[:]
        clear(f.node)
