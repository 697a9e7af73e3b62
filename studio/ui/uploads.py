"""Uploaded files: where they are, what they are called, and refusing bad ones clearly.

Handlers receive uploads raw (the events use `preprocess=False`), so a corrupt or huge image
reaches `studio.imageio` — the one loader, with its pixel cap — instead of being decoded
by Gradio first.
"""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from studio import settings
from studio.errors import ImageError


class UploadError(ValueError):
    """An upload the app refuses; the message is shown to the user as is."""


def upload_path(value: Any) -> tuple[Path, str] | None:
    """(server path, the name the user knows it by) of an upload, or None when empty.

    Accepts what Gradio passes with and without preprocessing: a path, a FileData dict or
    object, or a gradio_client `handle_file` dict.
    """
    if value is None or value == "" or value == {}:
        return None
    if isinstance(value, str | os.PathLike):
        p = Path(value)
        return p, p.name
    if isinstance(value, dict):
        path = value.get("path") or value.get("name")
        if not path:
            url = value.get("url") or ""
            raise UploadError(f"the upload has no file on the server ({url[:60] or 'no path'})")
        return Path(path), value.get("orig_name") or Path(path).name
    path = getattr(value, "path", None)
    if path:
        return Path(path), getattr(value, "orig_name", None) or Path(path).name
    raise UploadError(f"unexpected upload value of type {type(value).__name__}")


def _check_size(path: Path, name: str, cap_mb: float | None = None) -> None:
    cap = settings.max_upload_mb() if cap_mb is None else cap_mb
    if not path.is_file():
        raise UploadError(f"{name}: the uploaded file is missing on the server; upload it again")
    size_mb = path.stat().st_size / 1e6
    if size_mb > cap:
        raise UploadError(f"{name}: {size_mb:.1f} MB is over the upload cap of {cap:g} MB "
                          "(set STUDIO_MAX_UPLOAD_MB to raise it)")


def _rename(err: Exception, path: Path, name: str) -> str:
    """The loader names the server's temp path; the user knows the file by its own name."""
    return str(err).replace(str(path), name)


def read_image(value: Any) -> tuple[np.ndarray, str]:
    """RGB uint8 and its display name; UploadError with a plain reason otherwise."""
    from studio.imageio import load_image

    loc = upload_path(value)
    if loc is None:
        raise UploadError("no image: upload one, or pick one from the embedded sample")
    path, name = loc
    _check_size(path, f"image {name}")
    try:
        return load_image(path), name
    except ImageError as exc:
        raise UploadError("image " + _rename(exc, path, name)) from None


def read_mask(value: Any, size: tuple[int, int], levels: bool = False) -> tuple[np.ndarray, str] | None:
    """The reference mask as float32 [0, 1] at `size` (width, height), or None when absent.

    levels: its 8-bit levels instead (uint8 0-255; the float is exactly levels / 255)."""
    from studio.imageio import load_mask, load_mask_levels

    loc = upload_path(value)
    if loc is None:
        return None
    path, name = loc
    _check_size(path, f"reference mask {name}")
    try:
        return (load_mask_levels if levels else load_mask)(path, size=size), name
    except ImageError as exc:
        msg = "reference mask " + _rename(exc, path, name)
        if "mask is" in msg:
            msg += " (a reference mask must have the image's exact size)"
        raise UploadError(msg) from None


def extract_dataset_zip(value: Any, dest: Path, *, masks_required: bool = True) -> Path:
    """Extract an uploaded dataset zip safely; return the folder it was extracted to (`dest`).
    (`masks_required=False`: images alone are enough, as for the Arena; the check below is skipped.)

    The layout inside is left to the one detector that reads every dataset folder
    (`studio.data.layout.detect`, through `open_dataset`): im/ + gt/, DUTS's X-Image/ +
    X-Mask/, HRSOD's X/ + X_mask/, ... at the top or one folder down. It is tried here, so a
    zip without a usable dataset is refused at upload, in messages that name the zip's own
    paths and never the server's.

    Refuses members that would land outside `dest` (absolute paths, `..`, links), and caps
    the member count and the uncompressed total so a zip bomb cannot fill the disk. A
    damaged zip (bad CRC, a member larger or smaller than it declares, a truncated file) is
    an UploadError, not a traceback.
    """
    loc = upload_path(value)
    if loc is None:
        raise UploadError("no zip uploaded")
    path, name = loc
    _check_size(path, name, cap_mb=max(settings.max_upload_mb(), 200.0))
    if not zipfile.is_zipfile(path):
        raise UploadError(f"{name}: not a zip file")
    dest = Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        _extract(path, name, dest)
    except UploadError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError) as exc:
        raise UploadError(f"{name}: the zip is damaged and cannot be read "
                          f"({_hide(str(exc), path, dest, name)}); zip the folder again") from None
    except OSError as exc:
        raise UploadError(f"{name}: could not be extracted on the server "
                          f"({exc.strerror or type(exc).__name__})") from None
    if masks_required:
        open_extracted(dest, name)
    return dest


def _extract(path: Path, name: str, dest: Path) -> None:
    cap = settings.max_zip_mb() * 1e6
    max_members = 20_000
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if len(infos) > max_members:
            raise UploadError(f"{name}: {len(infos)} entries, over the cap of {max_members}")
        total = sum(i.file_size for i in infos)
        if total > cap:
            raise UploadError(f"{name}: {total / 1e6:.0f} MB uncompressed, over the cap of "
                              f"{cap / 1e6:.0f} MB (set STUDIO_MAX_ZIP_MB to raise it)")
        for info in infos:
            member = PurePosixPath(info.filename.replace("\\", "/"))
            mode = info.external_attr >> 16
            if member.is_absolute() or ".." in member.parts or (member.parts and ":" in member.parts[0]):
                raise UploadError(f"{name}: refused entry {info.filename!r} (points outside the archive)")
            if stat.S_ISLNK(mode):
                raise UploadError(f"{name}: refused entry {info.filename!r} (a symbolic link)")
            target = (dest / member).resolve()
            if not target.is_relative_to(dest):
                raise UploadError(f"{name}: refused entry {info.filename!r} (points outside the archive)")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            if member.name.startswith(".") or "__MACOSX" in member.parts:
                continue  # Finder's resource forks and dotfiles are not data
            if info.flag_bits & 0x1:
                raise UploadError(f"{name}: entry {info.filename!r} is encrypted; upload a zip "
                                  "without a password")
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            with zf.open(info) as src, open(target, "wb") as out:
                # the declared sizes can lie: count what is actually inflated
                while chunk := src.read(1 << 20):
                    written += len(chunk)
                    if written > info.file_size or written > cap:
                        raise UploadError(f"{name}: entry {info.filename!r} inflates past its declared size")
                    out.write(chunk)
            if written != info.file_size:
                raise UploadError(f"{name}: entry {info.filename!r} is shorter than its declared "
                                  f"size ({written} of {info.file_size} bytes): the zip is damaged")


def _hide(text: str, upload: Path, root: Path, name: str) -> str:
    """`text` with the server's paths put in the user's terms: the upload and the extraction
    folder become the zip's name; paths inside it become relative ("DUTS-TE/DUTS-TE-Image")."""
    for server in dict.fromkeys((str(root), str(Path(root).resolve()))):
        text = text.replace(server + "/", "").replace(server, name)
    return text.replace(str(upload), name)


def open_extracted(root: Path, name: str = "the zip") -> None:
    """Open an extracted zip as the benchmark will (layout detected, files paired), or raise
    UploadError with the reason in the zip's own terms."""
    # lazy: the data package is not needed at start-up
    from studio.data import DatasetError, open_dataset
    from studio.data.layout import detect, pair_files

    try:
        layout = detect(root)
        pairs, notes = pair_files(layout, root)
        if layout.masks is not None and not pairs and notes:
            # images and masks both there, but no name in common: say which, in the zip's terms
            shown = "; ".join(notes[:4]) + (f"; and {len(notes) - 4} more" if len(notes) > 4 else "")
            raise UploadError(
                f"{name}: no image has a reference mask of the same name "
                f"({_hide(layout.describe(root), root, root, name)}; files pair by their path "
                f"without the extension, e.g. im/cat.jpg with gt/cat.png): {shown}")
        ds = open_dataset(root)
    except DatasetError as exc:
        raise UploadError(_hide(str(exc), root, root, name)) from None
    if not ds.has_references:
        raise UploadError(
            f"{name}: images ({_hide(ds.layout, root, root, name)}) but no reference masks: put "
            "the images in im/ and masks with the same names in gt/ (or another layout "
            "`python eval/run.py --dataset` reads, such as DUTS's X-Image/ + X-Mask/)")


def clean_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
