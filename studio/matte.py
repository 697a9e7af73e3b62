"""The one output contract of every backend."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TIMING_KEYS = ("preprocess", "inference", "postprocess")


@dataclass
class Matte:
    """An alpha matte: float32 in [0, 1] at the input's height and width.

    `timings` holds seconds for preprocess, inference and postprocess; `variant` is the
    zoo id that made it.
    """

    alpha: np.ndarray
    variant: str
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        a = np.asarray(self.alpha, dtype=np.float32)
        if a.ndim != 2:
            raise ValueError(f"a matte is 2-D, got shape {a.shape}")
        # A clean float32 matte (every backend's usual output) is kept as given: two
        # full-size copies of a 50 MP matte would cost 400 MB. min/max are NaN-propagating,
        # so NaN and infinities take the cleaning path too.
        if a.size and not (float(a.min()) >= 0.0 and float(a.max()) <= 1.0):
            a = np.clip(np.nan_to_num(a, nan=0.0), 0.0, 1.0)
        self.alpha = a
        for key in TIMING_KEYS:
            self.timings.setdefault(key, 0.0)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as Pillow counts."""
        return self.alpha.shape[1], self.alpha.shape[0]

    @property
    def total_s(self) -> float:
        return float(sum(self.timings[k] for k in TIMING_KEYS))
