"""InSPyReNet through transparent-background's `Remover`.

The Remover is built with the variant's mode, resize policy and jit flag, on a local
checkpoint. `predict` runs the same steps as `Remover.process(img, type='map')` (its own
transform, its model, bilinear resize back) but times them separately and keeps the
float map instead of rounding to 8 bits. fp16 and bf16 are supported on CUDA; dynamic int8
Linear (CPU) and torch.compile come from the variant's options (studio.quant.torchbuild).
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from studio import settings
from studio.backends.base import Runner, Stopwatch
from studio.errors import ModelError
from studio.matte import Matte
from studio.zoo import TorchOptions


def quiet_import_transparent_background():
    """Import the package without its GUI warning (flet is not installed here)."""
    os.environ.setdefault("TRANSPARENT_BACKGROUND_FILE_PATH", str(settings.cache_dir()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import transparent_background

    return transparent_background


def new_model(mode: str):
    """(transparent-background's own InSPyReNet for a mode, randomly initialised, its base size)."""
    import yaml

    tb = quiet_import_transparent_background()
    cfg = yaml.safe_load((Path(tb.__file__).parent / "config.yaml").read_text())[mode]
    from transparent_background.InSPyReNet import InSPyReNet_SwinB

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.meshgrid's indexing notice inside the package
        model = InSPyReNet_SwinB(depth=64, pretrained=False, threshold=None, base_size=cfg["base_size"])
    return model, tuple(cfg["base_size"])


def jit_dir_for(weights: Path, sha256: str) -> Path:
    """A folder per checkpoint hash: Remover caches its traced model beside the ckpt, keyed
    only by mode and device, so checkpoints must not share a folder."""
    folder = settings.cache_dir() / "inspyrenet" / sha256[:16]
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / weights.name
    if not link.exists():
        try:
            link.symlink_to(weights.resolve())
        except OSError:
            import shutil

            shutil.copyfile(weights, link)
    return link


class InSPyReNetRunner(Runner):
    def __init__(self, variant, weights, device="cpu", threads=0, weights_sha256: str | None = None):
        super().__init__(variant, weights, device, threads, weights_sha256)
        import torch

        quiet_import_transparent_background()
        from transparent_background import Remover

        if threads > 0:
            torch.set_num_threads(threads)
        opts: TorchOptions = variant.options  # type: ignore[assignment]
        self.half = variant.precision in ("fp16", "bf16")
        if self.half and not device.startswith("cuda"):
            raise ModelError(f"{variant.id}: {variant.precision} InSPyReNet needs a CUDA device, got {device!r}")
        if self.half and opts.jit:
            raise ModelError(f"{variant.id}: {variant.precision} and jit cannot be combined")
        ckpt = jit_dir_for(weights, weights_sha256) if opts.jit and weights_sha256 else weights
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Remover warns about dynamic resize in fast mode
            self.remover = Remover(mode=opts.mode, jit=opts.jit, device=device, ckpt=str(ckpt),
                                   resize=opts.resize)
        # torch build options (fp16/bf16, dynamic int8 Linear, torch.compile)
        from studio.backends.torch_options import apply_options, torch_dtype

        self.dtype = torch_dtype(variant) if self.half else None
        self.remover.model = apply_options(self.remover.model, variant, device)
        self.torch = torch

    def predict(self, image: np.ndarray) -> Matte:
        torch = self.torch
        sw = Stopwatch()
        h, w = image.shape[:2]
        cuda = self.device.startswith("cuda")
        with sw("preprocess"):
            x = self.remover.transform(Image.fromarray(image)).unsqueeze(0).to(self.remover.device)
            if self.dtype is not None:
                x = x.to(self.dtype)
        with sw("inference"), torch.no_grad():
            pred = self.remover.model(x)
            if cuda:
                torch.cuda.synchronize()
        with sw("postprocess"), torch.no_grad():
            pred = torch.nn.functional.interpolate(pred.float(), (h, w), mode="bilinear", align_corners=True)
            alpha = pred.squeeze().cpu().numpy()
        return Matte(alpha=alpha, variant=self.variant.id, timings=sw.timings)

    def close(self) -> None:
        self.remover = None
        if self.device.startswith("cuda"):
            self.torch.cuda.empty_cache()
