"""Per-request output folders for the PNGs the app serves and offers for download."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from studio.imageio import encode_png

_ROOT: Path | None = None
_LOCK = threading.Lock()
KEEP_S = 2 * 3600  # a result stays downloadable for two hours


def root() -> Path:
    """One folder per app process under the system temp dir (which Gradio may serve from),
    removed when the process exits (the files are the app's downloads, not the user's)."""
    global _ROOT
    with _LOCK:
        if _ROOT is None or not _ROOT.is_dir():
            _ROOT = Path(tempfile.mkdtemp(prefix="matting-studio-"))
            atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)
        return _ROOT


def new_dir(kind: str) -> Path:
    """A fresh folder for one request; folders older than KEEP_S are removed first."""
    base = root()
    now = time.time()
    for old in base.iterdir():
        try:
            if now - old.stat().st_mtime > KEEP_S:
                shutil.rmtree(old, ignore_errors=True)
        except FileNotFoundError:
            pass
    d = base / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    d.mkdir(parents=True)
    return d


def write_png(folder: Path, name: str, array: np.ndarray) -> Path:
    """Lossless PNG, always: the app never serves lossy previews of masks."""
    path = folder / name
    path.write_bytes(encode_png(array))
    return path


def safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:80] or "file"
