"""InSPyReNet (PyTorch) builds: load-time options and an ONNX export.

Load-time options, read from the variant by the inspyrenet backend:
- `precision: fp16 | bf16`: the model and its input in that dtype (CUDA only);
- `options.quantize_linear: int8`: dynamic int8 of every `nn.Linear` (the Swin backbone's
  attention and MLP layers), CPU only (PyTorch's dynamic quantized kernels are CPU kernels);
- `options.compile: true` (or a mode such as `max-autotune`): `torch.compile` the model.

On an untrained checkpoint these builds are honest for latency and memory only; the flag
flows from the checkpoint's record into the build's and onto every report.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

from studio.errors import ModelError
from studio.zoo import Variant

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
COMPILE_MODES = (True, False, None, "default", "reduce-overhead", "max-autotune")


def torch_dtype(variant: Variant):
    import torch

    name = DTYPES.get(variant.precision, "float32")
    return getattr(torch, name)


def check_options(variant: Variant) -> None:
    """Refuse option combinations that cannot run, with the reason."""
    opts = variant.options
    half = variant.precision in ("fp16", "bf16")
    if opts.get("quantize_linear") not in (None, "int8"):
        raise ModelError(f"{variant.id}: quantize_linear must be int8 or absent")
    if opts.get("compile") not in COMPILE_MODES:
        raise ModelError(f"{variant.id}: compile must be true/false or a torch.compile mode")
    if half and opts.get("quantize_linear"):
        raise ModelError(f"{variant.id}: dynamic int8 Linear runs on CPU in fp32, not with {variant.precision}")
    if opts.get("jit") and (half or opts.get("quantize_linear") or opts.get("compile")):
        raise ModelError(f"{variant.id}: jit (TorchScript) cannot be combined with other torch build options")


def check_device(variant: Variant, device: str) -> None:
    cuda = device.startswith("cuda")
    if variant.precision in ("fp16", "bf16") and not cuda:
        raise ModelError(f"{variant.id}: {variant.precision} InSPyReNet needs a CUDA device, got {device!r}")
    if variant.options.get("quantize_linear") and cuda:
        raise ModelError(f"{variant.id}: dynamic int8 Linear is a CPU build; run it with device cpu")


def apply_options(model: Any, variant: Variant, device: str) -> Any:
    """The model with the variant's dtype, dynamic int8 Linear and compile applied."""
    import torch

    check_options(variant)
    check_device(variant, device)
    opts = variant.options
    if variant.precision in ("fp16", "bf16"):
        model = model.to(torch_dtype(variant))
    if opts.get("quantize_linear") == "int8":
        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch marks its eager quantization as deprecated
            model = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    mode = opts.get("compile")
    if mode:
        model = torch.compile(model, mode=None if mode is True or mode == "default" else mode)
    return model


# --- ONNX export -------------------------------------------------------------------------------


def load_model(checkpoint: Path, mode: str):
    """transparent-background's own InSPyReNet for a mode, with the checkpoint's weights."""
    import torch
    import yaml

    from studio.backends.inspyrenet import quiet_import_transparent_background

    tb = quiet_import_transparent_background()
    cfg = yaml.safe_load((Path(tb.__file__).parent / "config.yaml").read_text())[mode]
    from transparent_background.InSPyReNet import InSPyReNet_SwinB

    model = InSPyReNet_SwinB(depth=64, pretrained=False, threshold=None, base_size=cfg["base_size"])
    model.load_state_dict(torch.load(str(checkpoint), map_location="cpu", weights_only=True), strict=True)
    return model.eval(), tuple(cfg["base_size"])


def export_onnx(variant: Variant, recipe, source: Path, dest: Path, progress: Any = True) -> dict:
    """Export the source InSPyReNet checkpoint to ONNX at a fixed size (input `input`,
    output `output`, the min-max normalised saliency map the Remover returns)."""
    import torch

    from studio.zoo import load_zoo

    src = load_zoo().get(variant.derived_from or "")
    mode = src.options.get("mode", "base")
    model, base = load_model(source, mode)
    size = recipe.params.get("input_size") or (list(variant.input_size) if isinstance(variant.input_size, tuple) else base)
    h, w = int(size[1]), int(size[0])
    torch.manual_seed(0)
    x = torch.rand(1, 3, h, w)
    if progress:
        print(f"exporting {src.id} to ONNX at {w}x{h} (opset {recipe.params['opset']}) …", flush=True)
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(dest), input_names=["input"], output_names=["output"],
                          opset_version=int(recipe.params["opset"]), do_constant_folding=True,
                          dynamo=False)
    import onnx

    m = onnx.load(str(dest))
    m.producer_name = "matting-studio"
    m.producer_version = ""
    onnx.save(m, str(dest))
    return {"notes": f"exported at {w}x{h} from {src.id} (mode {mode})"}
