"""Folder layouts of image/reference datasets, detected from folder names.

Recognised, in order:
1. an image folder and a reference folder side by side, by name: `im/` + `gt/` (DIS5K,
   sod-dev), `images/` + `ground_truth_mask/` (ECSSD), `imgs/` + `gt/` (HKU-IS),
   `image/` + `mask/` (UHRSD), `original_image/` + `mask/` (P3M), `original/` + `mask/`
   (AM-2k), `JPEGImages/` + `Annotations/` (DAVIS; its `480p/` level is chosen), with an
   optional `alpha/` folder of soft mattes beside them;
2. a pair named `X-Image` + `X-Mask` (DUTS) or `X` + `X_mask` (HRSOD);
3. the image folder of such a pair given directly (`DUTS-TE-Image`, `HRSOD_test`, `im`):
   its partner is looked for beside it;
4. a folder of images alone: samples without references (latency-only use);
5. one level down, when exactly one child folder holds a pair (an archive's top folder).

Files pair by their path relative to the two folders, without the extension (so DAVIS's
`bear/00000.jpg` pairs with `bear/00000.png`). A root holding several pairs (DUTS with
TR and TE, DIS5K with its splits) is refused with the list of folders to open instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from studio.errors import StudioError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Name priority within each kind: the first present wins.
IMAGE_DIRS = ("im", "img", "imgs", "image", "images", "jpegimages", "original_image", "original",
              "blurred_image", "input", "inputs", "rgb")
MASK_DIRS = ("gt", "gts", "mask", "masks", "ground_truth_mask", "ground_truth", "groundtruth",
             "annotations", "labels", "label")
ALPHA_DIRS = ("alpha", "alphas", "matte", "mattes")
IMAGE_SUFFIXES = ("-image", "_image", "-images", "_images", "-img", "_img", "-im", "_im")
MASK_SUFFIXES = ("-mask", "_mask", "-masks", "_masks", "-gt", "_gt")
RESOLUTION_DIRS = ("480p", "1080p", "full-resolution")  # DAVIS: the first present is used
SKIP_DIRS = ("__macosx",)


class DatasetError(StudioError):
    """A dataset that cannot be opened or fetched; the message says what to do."""


@dataclass(frozen=True)
class Layout:
    images: Path
    masks: Path | None
    alphas: Path | None = None
    kind: str = ""

    def describe(self, root: Path) -> str:
        def rel(p: Path) -> str:
            try:
                r = p.relative_to(root).as_posix()
            except ValueError:
                try:
                    r = "../" + p.relative_to(root.parent).as_posix()
                except ValueError:
                    r = p.as_posix()
            return "./" if r == "." else r + "/"

        if self.masks is None:
            return f"{rel(self.images)} (images only, no references)"
        extra = f" + {rel(self.alphas)}" if self.alphas else ""
        return f"{rel(self.images)} + {rel(self.masks)}{extra}"


@dataclass(frozen=True)
class PairFiles:
    id: str
    image: Path
    mask: Path | None
    alpha: Path | None = None


def _subdirs(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise DatasetError(f"{folder}: cannot be listed ({exc.strerror or exc})") from None
    for e in entries:
        if e.name.startswith(".") or e.name.lower() in SKIP_DIRS:
            continue
        if e.is_dir():
            out.setdefault(e.name.lower(), Path(e.path))
    return out


def _has_images(folder: Path) -> bool:
    try:
        return any(
            e.is_file() and not e.name.startswith(".") and os.path.splitext(e.name)[1].lower() in IMAGE_EXTS
            for e in os.scandir(folder)
        )
    except OSError:
        return False


def _descend_resolution(images: Path, masks: Path) -> tuple[Path, Path]:
    """DAVIS keeps frames under `480p/`, `1080p/`...: use the first level both folders share."""
    if _has_images(images):
        return images, masks
    isub, msub = _subdirs(images), _subdirs(masks)
    for res in RESOLUTION_DIRS:
        if res in isub and res in msub:
            return isub[res], msub[res]
    return images, masks


def _pairs_in(folder: Path) -> list[Layout]:
    subs = _subdirs(folder)
    found: list[Layout] = []
    ims = [subs[n] for n in IMAGE_DIRS if n in subs]
    gts = [subs[n] for n in MASK_DIRS if n in subs]
    if ims and gts:
        im, gt = _descend_resolution(ims[0], gts[0])
        alpha = next((subs[n] for n in ALPHA_DIRS if n in subs), None)
        found.append(Layout(im, gt, alpha, kind="folders by name"))
    for name, d in subs.items():
        suf = next((s for s in MASK_SUFFIXES if name.endswith(s)), None)
        if suf is None or name in MASK_DIRS:
            continue
        base = name[: -len(suf)]
        for cand in (base, *(base + s for s in IMAGE_SUFFIXES)):
            if cand in subs and subs[cand] != d:
                kind = "DUTS-style X-Image + X-Mask" if cand != base else "HRSOD-style X + X_mask"
                found.append(Layout(subs[cand], d, None, kind=kind))
                break
    unique: dict[tuple[Path, Path | None], Layout] = {}
    for lay in found:
        unique.setdefault((lay.images, lay.masks), lay)
    return list(unique.values())


def _sibling_pair(folder: Path) -> Layout | None:
    """`folder` is the image half of a pair: find the reference folder beside it."""
    name = folder.name.lower()
    if folder.parent == folder:
        return None
    subs = _subdirs(folder.parent)
    cands: list[str] = []
    if name in IMAGE_DIRS:
        cands += list(MASK_DIRS)
    suf = next((s for s in IMAGE_SUFFIXES if name.endswith(s)), None)
    if suf:
        cands += [name[: -len(suf)] + m for m in MASK_SUFFIXES]
    cands += [name + m for m in MASK_SUFFIXES]
    for c in cands:
        if c in subs and subs[c] != folder:
            alpha = next((subs[n] for n in ALPHA_DIRS if n in subs), None) if name in IMAGE_DIRS else None
            return Layout(folder, subs[c], alpha, kind="image folder with its reference folder beside it")
    return None


def detect(root: Path) -> Layout:
    """The layout of a dataset folder, or DatasetError saying what was expected."""
    if not root.exists():
        raise DatasetError(f"{root}: no such folder")
    if not root.is_dir():
        raise DatasetError(f"{root}: is a file; a dataset is a folder (e.g. im/ + gt/)")
    here = _pairs_in(root)
    if len(here) == 1:
        return here[0]
    if len(here) > 1:
        raise DatasetError(
            f"{root} holds several image/reference pairs; open one of: "
            + ", ".join(str(lay.images) for lay in here)
        )
    sib = _sibling_pair(root)
    if sib is not None:
        return sib
    if _has_images(root):
        return Layout(root, None, None, kind="images only")
    deeper = [lay for d in _subdirs(root).values() for lay in _pairs_in(d)]
    if len(deeper) == 1:
        return deeper[0]
    if len(deeper) > 1:
        parents = sorted({str(lay.images.parent) for lay in deeper})
        raise DatasetError(f"{root} holds several datasets; open one of: {', '.join(parents)}")
    raise DatasetError(
        f"{root}: no dataset layout found. Expected im/ + gt/ (or images/ + masks/), "
        "X-Image/ + X-Mask/ (DUTS), X/ + X_mask/ (HRSOD), or a folder of images"
    )


def _index(folder: Path, notes: list[str], what: str, root: Path) -> dict[str, Path]:
    """Files by relative path without extension; a duplicate stem keeps the first extension."""
    out: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d.lower() not in SKIP_DIRS)
        for fn in sorted(filenames):
            stem, ext = os.path.splitext(fn)
            if fn.startswith(".") or ext.lower() not in IMAGE_EXTS:
                continue
            path = Path(dirpath) / fn
            key = path.relative_to(folder).with_suffix("").as_posix()
            if key in out:
                notes.append(f"{what} {_rel(path, root)} ignored: {_rel(out[key], root)} has the same name")
                continue
            out[key] = path
    return out


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def pair_files(layout: Layout, root: Path, unlabelled: bool = False) -> tuple[list[PairFiles], list[str]]:
    """Pairs sorted by id, and one note per file without a partner (or duplicated). With
    `unlabelled`, images without a mask are kept as samples without a reference (a labels-free
    run scores them against a reference model)."""
    notes: list[str] = []
    images = _index(layout.images, notes, "image", root)
    if layout.masks is None:
        return [PairFiles(k, images[k], None) for k in sorted(images)], notes
    masks = _index(layout.masks, notes, "mask", root)
    alphas = _index(layout.alphas, [], "alpha", root) if layout.alphas else {}
    pairs = [PairFiles(k, images[k], masks.get(k), alphas.get(k)) for k in sorted(images)
             if k in masks or unlabelled]
    mdir, idir = _rel(layout.masks, root), _rel(layout.images, root)
    if not unlabelled:
        notes += [f"image {_rel(images[k], root)} has no mask in {mdir}/" for k in sorted(images) if k not in masks]
    notes += [f"mask {_rel(masks[k], root)} has no image in {idir}/" for k in sorted(masks) if k not in images]
    return pairs, notes
