"""rembg's own session on the variant's weights: the parity reference for the onnx backend."""

from __future__ import annotations

import os
from contextlib import contextmanager

import numpy as np
from PIL import Image

from studio.backends.base import Runner, Stopwatch
from studio.backends.onnx import PROVIDERS, session_options
from studio.errors import ModelError
from studio.matte import Matte


@contextmanager
def rembg_home(folder: str):
    """Point rembg at our weights folder while a session is created (it reads U2NET_HOME)."""
    old = os.environ.get("U2NET_HOME")
    os.environ["U2NET_HOME"] = folder
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("U2NET_HOME", None)
        else:
            os.environ["U2NET_HOME"] = old


class RembgRunner(Runner):
    """rembg's `session.predict` does resize, inference and post-processing in one call, so
    its whole time is reported as inference."""

    def __init__(self, variant, weights, device="cpu", threads=0, weights_sha256=None):
        super().__init__(variant, weights, device, threads, weights_sha256)
        from rembg import new_session

        name = variant.rembg_session
        if not name:
            raise ModelError(f"{variant.id} has no rembg session")
        providers = PROVIDERS.get(device.split(":")[0])
        if providers is None:
            raise ModelError(f"device {device!r} is not supported by rembg (cpu, cuda)")
        if weights.name != f"{name}.onnx":
            raise ModelError(f"rembg expects {name}.onnx, got {weights.name}")
        with rembg_home(str(weights.parent)):
            self.session = new_session(name, providers=providers, sess_opts=session_options(threads))

    def predict(self, image: np.ndarray) -> Matte:
        sw = Stopwatch()
        pil = Image.fromarray(image)
        with sw("inference"):
            mask = self.session.predict(pil)[0]
        with sw("postprocess"):
            alpha = np.asarray(mask, dtype=np.float32) / 255.0
        return Matte(alpha=alpha, variant=self.variant.id, timings=sw.timings)

    def close(self) -> None:
        self.session = None
