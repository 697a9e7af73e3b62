"""OpenCV GrabCut: a classical floor that needs no weights.

Initialisation: a rectangle inset `margin` (a fraction of each side) from the borders, so
GrabCut assumes the subject is roughly centred and does not touch the frame. It runs
`iterations` rounds at `max_side` pixels on the long side, and the hard mask is
upsampled bilinearly, which softens edges over about one source pixel. The RNG is seeded
so runs repeat.
"""

from __future__ import annotations

import cv2
import numpy as np

from studio.backends.base import Runner, Stopwatch
from studio.errors import ModelError
from studio.matte import Matte
from studio.zoo import GrabCutOptions


class GrabCutRunner(Runner):
    def __init__(self, variant, weights=None, device="cpu", threads=0, weights_sha256=None):
        super().__init__(variant, weights, device, threads, weights_sha256)
        if device != "cpu":
            raise ModelError("GrabCut runs on the CPU only")
        opts: GrabCutOptions = variant.options  # type: ignore[assignment]
        self.margin = opts.margin
        self.iterations = opts.iterations
        self.max_side = opts.max_side

    def predict(self, image: np.ndarray) -> Matte:
        sw = Stopwatch()
        h, w = image.shape[:2]
        with sw("preprocess"):
            scale = min(1.0, self.max_side / max(h, w))
            small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                               interpolation=cv2.INTER_AREA) if scale < 1 else image
            bgr = np.ascontiguousarray(small[..., ::-1])
            sh, sw_ = bgr.shape[:2]
            mx, my = max(1, round(sw_ * self.margin)), max(1, round(sh * self.margin))
            rect = (mx, my, max(1, sw_ - 2 * mx), max(1, sh - 2 * my))
        with sw("inference"):
            mask = np.zeros((sh, sw_), np.uint8)
            if sw_ > 2 * mx + 1 and sh > 2 * my + 1:
                cv2.setRNGSeed(0)
                bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
                try:
                    cv2.grabCut(bgr, mask, rect, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_RECT)
                except cv2.error:  # a flat image has no colour model to fit: nothing is foreground
                    mask[:] = cv2.GC_BGD
        with sw("postprocess"):
            fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.float32)
            alpha = cv2.resize(fg, (w, h), interpolation=cv2.INTER_LINEAR) if scale < 1 else fg
        return Matte(alpha=alpha, variant=self.variant.id, timings=sw.timings)
