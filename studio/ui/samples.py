"""The embedded sample as pickable inputs for the Compare tab (written to PNG on demand)."""

from __future__ import annotations

import functools
import threading
from pathlib import Path

from studio.imageio import alpha_to_uint8
from studio.ui import outputs

_LOCK = threading.Lock()


@functools.cache
def _dataset():
    from studio.data import open_dataset  # lazy: generating the sample takes about a second

    return open_dataset(None)


def sample_ids() -> list[str]:
    return [s.id for s in _dataset()]


def _sample(sample_id: str):
    for s in _dataset():
        if s.id == sample_id:
            return s
    raise KeyError(f"no sample {sample_id!r} in the embedded sample")


def sample_files(sample_id: str) -> tuple[Path, Path]:
    """(image PNG, reference mask PNG) of one embedded sample, written once per process."""
    folder = outputs.root() / "samples"
    safe = outputs.safe_name(sample_id)
    img_path, mask_path = folder / f"{safe}.png", folder / f"{safe}_mask.png"
    with _LOCK:
        if not (img_path.is_file() and mask_path.is_file()):
            folder.mkdir(parents=True, exist_ok=True)
            s = _sample(sample_id)
            outputs.write_png(folder, img_path.name, s.image())
            outputs.write_png(folder, mask_path.name, alpha_to_uint8(s.mask()))
    return img_path, mask_path
