"""How the inspyrenet backend applies a variant's torch load-time options.

- `precision: fp16 | bf16`: the model and its input in that dtype (CUDA only);
- `options.quantize_linear: int8`: dynamic int8 of every `nn.Linear` (the Swin backbone's
  attention and MLP layers), CPU only (PyTorch's dynamic quantized kernels are CPU kernels);
- `options.compile: true` (or a mode such as `max-autotune`): `torch.compile` the model.

These are derived variants of the quantization lab (`kind: torch` recipes), but applying them
is part of running the model, so they live with the backend.
"""

from __future__ import annotations

import warnings
from typing import Any

from studio.errors import ModelError
from studio.zoo import TorchOptions, Variant

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def torch_dtype(variant: Variant):
    import torch

    name = DTYPES.get(variant.precision, "float32")
    return getattr(torch, name)


def check_options(variant: Variant) -> None:
    """Refuse option combinations that cannot run, with the reason (each value alone was
    checked when the zoo was read)."""
    opts: TorchOptions = variant.options  # type: ignore[assignment]
    half = variant.precision in ("fp16", "bf16")
    if half and opts.quantize_linear:
        raise ModelError(f"{variant.id}: dynamic int8 Linear runs on CPU in fp32, not with {variant.precision}")
    if opts.jit and (half or opts.quantize_linear or opts.compile):
        raise ModelError(f"{variant.id}: jit (TorchScript) cannot be combined with other torch build options")


def check_device(variant: Variant, device: str) -> None:
    cuda = device.startswith("cuda")
    if variant.precision in ("fp16", "bf16") and not cuda:
        raise ModelError(f"{variant.id}: {variant.precision} InSPyReNet needs a CUDA device, got {device!r}")
    if variant.options.quantize_linear and cuda:  # type: ignore[attr-defined]
        raise ModelError(f"{variant.id}: dynamic int8 Linear is a CPU build; run it with device cpu")


def apply_options(model: Any, variant: Variant, device: str) -> Any:
    """The model with the variant's dtype, dynamic int8 Linear and compile applied."""
    import torch

    check_options(variant)
    check_device(variant, device)
    opts: TorchOptions = variant.options  # type: ignore[assignment]
    if variant.precision in ("fp16", "bf16"):
        model = model.to(torch_dtype(variant))
    if opts.quantize_linear == "int8":
        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch marks its eager quantization as deprecated
            model = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    mode = opts.compile
    if mode:
        model = torch.compile(model, mode=None if mode is True or mode == "default" else mode)
    return model
