"""The "Export this model" handler of the recommendation card: a zip of the serving bundle.

The bundle is written under the app's temporary output folder (never the repository) and
zipped there; an unchanged variant (same artifact, same server template) reuses its zip.
Errors a user can act on (a non-ONNX variant, weights not installed) are StudioErrors, which
`blocks.user_errors` shows as a toast.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio.ui import outputs
from studio.zoo import load_zoo

_LOCK = threading.Lock()
_ZIPS: dict[str, Path] = {}  # cache key -> zip, for this app process


def _key(variant_id: str) -> str:
    from studio import artifacts
    from studio.export.bundle import BUNDLE_FORMAT, LOAD_LEVEL, SAVE_LEVEL, TEMPLATE

    v = load_zoo().get(variant_id)
    rec = artifacts.installed(v)
    h = hashlib.sha256()
    for part in (v.id, rec.sha256 if rec else "", str(BUNDLE_FORMAT), SAVE_LEVEL, LOAD_LEVEL):
        h.update(part.encode() + b"\0")
    h.update(TEMPLATE.read_bytes())
    return h.hexdigest()


def zip_folder(folder: Path, dest: Path, top: str) -> Path:
    """Zip a bundle folder under a top-level `top/` folder; the model is stored, not deflated
    (ONNX weights barely compress, and deflating 100+ MB would cost seconds)."""
    with zipfile.ZipFile(dest, "w") as zf:
        for p in sorted(folder.iterdir()):
            if p.is_file():
                kind = zipfile.ZIP_STORED if p.suffix == ".onnx" else zipfile.ZIP_DEFLATED
                zf.write(p, f"{top}/{p.name}", compress_type=kind)
    return dest


def export_zip(variant_id: str, progress: Callable[..., Any] | None = None) -> str:
    """The path of a zip holding `studio export VARIANT`'s bundle, checked against the studio."""
    from studio.export import check_exportable, export_bundle

    if not variant_id:
        from studio.export import ExportError

        raise ExportError("no model to export: run a benchmark to get a recommendation first")
    check_exportable(load_zoo().get(variant_id))  # a clear refusal before any work
    key = _key(variant_id)
    with _LOCK:
        cached = _ZIPS.get(key)
        if cached is not None and cached.is_file():
            return str(cached)
        if progress is not None:
            progress(None, desc=f"{variant_id}: writing the bundle")
        folder = outputs.new_dir("export")
        bundle = export_bundle(variant_id, folder / variant_id, check=True)
        if progress is not None:
            progress(None, desc=f"{variant_id}: zipping")
        path = zip_folder(bundle.dir, folder / f"{outputs.safe_name(variant_id)}-bundle.zip", variant_id)
        shutil.rmtree(bundle.dir, ignore_errors=True)  # the zip is what is served
        _ZIPS[key] = path
        return str(path)
