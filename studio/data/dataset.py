"""Datasets: the embedded sample, catalogue sets and folders, all as one `Dataset` of `Sample`s.

Opening a dataset lists files and decodes nothing, so a corrupt file never stops a dataset
from opening: the sample raises `ImageError` (a clear, one-line reason) when it is loaded,
and the benchmark records it against that image.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from studio.data import catalogue as cat
from studio.data import embedded as emb
from studio.data.layout import DatasetError, Layout, PairFiles, detect, pair_files
from studio.errors import StudioError
from studio.fileio import atomic_write_bytes
from studio.imageio import ImageError, load_image, load_mask

EMBEDDED_NAME = emb.EMBEDDED_NAME


class SampleError(ImageError, StudioError):
    """A sample that cannot be loaded. It is an `ImageError` (as `load_image` raises) and a
    `StudioError`, so a front or the benchmark catches it with either and prints one line."""


def _upright_size(path: Path) -> tuple[int, int] | None:
    """(width, height) as `load_image` will return it, read from the header only."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except Exception:
        return None  # let load_image report the real problem
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


@dataclass(eq=False)
class Sample:
    """One image and its reference. Loading happens on each call; nothing is held."""

    id: str
    image_path: Path | None = None
    mask_path: Path | None = None
    alpha_path: Path | None = None
    tags: tuple[str, ...] = ()
    soft_reference: bool = False  # the reference file is a soft matte (matting sets)
    _index: int | None = field(default=None, repr=False)  # embedded pair number
    _hash: str | None = field(default=None, repr=False)

    # --- the embedded sample renders on first use, then is cached for the process -----
    def _pair(self) -> emb.EmbeddedPair:
        assert self._index is not None
        return emb.pair(self._index)

    @property
    def embedded(self) -> bool:
        return self._index is not None

    @property
    def has_reference(self) -> bool:
        return self.embedded or self.mask_path is not None

    @property
    def content_hash(self) -> str:
        """sha256 of the image file's bytes (embedded: of its pixels): a cache key for predictions."""
        if self._hash is None:
            if self.embedded:
                self._hash = self._pair().content_hash
            else:
                assert self.image_path is not None
                digest = hashlib.sha256()
                try:
                    with open(self.image_path, "rb") as f:
                        while block := f.read(1 << 20):
                            digest.update(block)
                except OSError as exc:
                    raise SampleError(f"{self.image_path}: cannot be read ({exc.strerror or exc})") from None
                self._hash = digest.hexdigest()
        return self._hash

    def image_size(self) -> tuple[int, int] | None:
        """(width, height) without decoding the pixels; None if the header cannot be read."""
        if self.embedded:
            h, w = self._pair().image.shape[:2]
            return w, h
        assert self.image_path is not None
        return _upright_size(self.image_path)

    def image(self) -> np.ndarray:
        """RGB uint8 (H, W, 3)."""
        if self.embedded:
            return self._pair().image.copy()
        assert self.image_path is not None
        try:
            return load_image(self.image_path)
        except ImageError as exc:
            raise SampleError(f"sample {self.id!r}: {exc}") from None

    def _load_reference(self, path: Path, what: str) -> np.ndarray:
        size = _upright_size(self.image_path) if self.image_path else None
        if size is None:
            size = self.image().shape[1::-1]  # raises ImageError for a broken image
        try:
            ref = load_mask(path)
        except ImageError as exc:
            raise SampleError(f"sample {self.id!r}: {what} {exc}") from None
        if (ref.shape[1], ref.shape[0]) != tuple(size):
            raise SampleError(
                f"sample {self.id!r}: {what} {path} is {ref.shape[1]}x{ref.shape[0]} but its image "
                f"{self.image_path} is {size[0]}x{size[1]}"
            )
        return ref

    def mask(self) -> np.ndarray | None:
        """The reference as float32 (H, W) in [0, 1], or None when there is none.

        Folder references are returned as stored (a non-binary mask stays non-binary);
        the embedded sample's mask is binary: alpha > 0.5.
        """
        if self.embedded:
            return self._pair().mask.copy()
        if self.mask_path is None:
            return None
        return self._load_reference(self.mask_path, "mask")

    def alpha(self) -> np.ndarray | None:
        """The exact soft alpha when known: the embedded sample, an `alpha/` folder, or a
        matting set whose references are mattes. Else None."""
        if self.embedded:
            return self._pair().alpha.copy()
        if self.alpha_path is not None:
            return self._load_reference(self.alpha_path, "alpha")
        if self.soft_reference and self.mask_path is not None:
            return self.mask()
        return None


@dataclass
class Dataset:
    name: str
    root: Path | None
    samples: list[Sample]
    unpaired: list[str] = field(default_factory=list)
    catalog_name: str | None = None
    layout: str = ""
    notes: list[str] = field(default_factory=list)
    total: int | None = None  # pairs before a `limit` subset

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __getitem__(self, key: int | str) -> Sample:
        if isinstance(key, int):
            return self.samples[key]
        for s in self.samples:
            if s.id == key:
                return s
        raise KeyError(f"{self.name} has no sample {key!r}")

    @property
    def has_references(self) -> bool:
        return any(s.has_reference for s in self.samples)

    def summary(self) -> str:
        n = len(self.samples)
        of = f" of {self.total}" if self.total is not None and self.total != n else ""
        where = f" at {self.root}" if self.root else ""
        flag = f" [catalogue: {self.catalog_name}]" if self.catalog_name else ""
        un = f", {len(self.unpaired)} unpaired" if self.unpaired else ""
        return f"{self.name}: {n}{of} samples{un}{where} ({self.layout}){flag}"


# --- opening --------------------------------------------------------------------------------

def embedded_sample() -> Dataset:
    """The built-in sample: 24 generated pairs with exact alpha. Pixels render on first use."""
    samples = [Sample(id=s.id, tags=s.tags, _index=i) for i, s in enumerate(emb.specs())]
    return Dataset(
        name=EMBEDDED_NAME, root=None, samples=samples, catalog_name=None,
        layout=f"generated in code (generator v{emb.GENERATOR_VERSION}), exact alpha and mask",
        total=len(samples),
    )


def _from_layout(name: str, root: Path, layout: Layout, catalog_name: str | None,
                 soft: bool, kind: str | None = None, unlabelled: bool = False) -> Dataset:
    pairs, notes = pair_files(layout, root, unlabelled=unlabelled)
    samples = [_sample(p, soft) for p in pairs]
    ds = Dataset(name=name, root=root, samples=samples, unpaired=notes, catalog_name=catalog_name,
                 layout=kind or layout.describe(root), total=len(samples))
    if layout.masks is None:
        ds.notes.append("no reference folder: samples have no mask (usable for latency only)")
    if not samples and layout.masks is not None and any(n.startswith("image ") for n in notes):
        n = sum(1 for x in notes if x.startswith("image "))
        raise DatasetError(f"{root}: none of its {n} images has a mask in {layout.masks.name}/; to score them "
                           "against a model instead, run with --reference VARIANT (labels-free)")
    if not samples:
        raise DatasetError(f"{root}: no image files found ({ds.layout})")
    return ds


def _sample(p: PairFiles, soft: bool) -> Sample:
    return Sample(id=p.id, image_path=p.image, mask_path=p.mask, alpha_path=p.alpha, soft_reference=soft)


def open_folder(path: Path, unlabelled: bool = False) -> Dataset:
    """A dataset folder, its layout detected. `unlabelled` keeps images that have no mask."""
    root = Path(path).expanduser().resolve()
    layout = detect(root)
    name = cat.recognise(root)
    entry = cat.find_entry(name) if name else None
    return _from_layout(root.name, root, layout, name, soft=bool(entry and entry.reference == "alpha"),
                        unlabelled=unlabelled)


def open_catalog(entry: cat.CatalogEntry) -> Dataset:
    found = entry.locate()
    if found is None:
        how = (f"run `studio data pull {entry.name}`" if entry.download.automatic
               else f"see `studio data pull {entry.name}` for how to get it")
        raise DatasetError(
            f"dataset {entry.name} is not downloaded (looked for {entry.images}/ and {entry.masks}/ "
            f"under {entry.local_root()}): {how}"
        )
    images, masks = found
    root = entry.local_root()
    layout = Layout(images, masks, kind="catalogue")
    return _from_layout(entry.name, root, layout, entry.name, soft=entry.reference == "alpha",
                        kind=entry.layout)


def subset(ds: Dataset, limit: int, seed: int = 0) -> Dataset:
    """A deterministic subset of `limit` samples: ranked by sha256(seed, id), so the same seed
    picks the same ids whatever the file system's order; kept in id order."""
    if limit < 1:
        raise DatasetError(f"limit must be at least 1, got {limit}")
    if limit >= len(ds.samples):
        return ds
    ranked = sorted(ds.samples, key=lambda s: hashlib.sha256(f"{seed}\0{s.id}".encode()).hexdigest())
    keep = {id(s) for s in ranked[:limit]}
    chosen = [s for s in ds.samples if id(s) in keep]
    return Dataset(name=ds.name, root=ds.root, samples=chosen, unpaired=list(ds.unpaired),
                   catalog_name=ds.catalog_name, layout=ds.layout,
                   notes=[*ds.notes, f"subset of {limit} of {len(ds.samples)} (seed {seed})"],
                   total=ds.total if ds.total is not None else len(ds.samples))


def open_dataset(spec: str | os.PathLike | None = None, limit: int | None = None, seed: int = 0,
                 unlabelled: bool = False) -> Dataset:
    """Open a dataset by spec: None or "embedded" (the default sample), an existing folder
    (its layout detected), or a catalogue name (its folder under the data directory).

    An existing path wins over a catalogue name of the same spelling. `unlabelled` keeps the
    images of a folder that have no mask (for runs scored against a reference model).
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in (EMBEDDED_NAME, "")):
        ds = embedded_sample()
    else:
        path = Path(spec).expanduser()
        entry = None if path.exists() or not isinstance(spec, str) else cat.find_entry(spec)
        if path.exists():
            ds = open_folder(path, unlabelled=unlabelled)
        elif entry is not None:
            ds = open_catalog(entry)
        else:
            grp = {g.lower(): names for g, names in cat.groups().items()}.get(str(spec).lower())
            if grp:
                raise DatasetError(f"{spec} has several splits; open one of: {', '.join(grp)}")
            names = ", ".join(cat.catalog())
            raise DatasetError(
                f"no dataset {str(spec)!r}: not a folder, not {EMBEDDED_NAME!r}, and not in the catalogue "
                f"({names})"
            )
    if limit is not None:
        ds = subset(ds, int(limit), seed)
    return ds


# --- writing the embedded sample ------------------------------------------------------------

SAMPLE_README = """Matting Studio embedded sample (generator v{version})

{n} image/reference pairs generated in code by studio.data.embedded: foregrounds drawn in
code composited over crops of photographs bundled with scikit-image (public domain or CC0,
credited per image in manifest.json). Ground truth is exact: each image is
alpha * F + (1 - alpha) * B for the 8-bit alpha in alpha/.

  im/<id>.png     the image (RGB, lossless)
  gt/<id>.png     the binary reference mask: 255 where alpha > 0.5
  alpha/<id>.png  the exact soft alpha (8-bit)

Open it again with `open_dataset("{folder}")` (im/ + gt/ + alpha/ layout).
"""


def _png_fast(arr: np.ndarray) -> bytes:
    """Lossless PNG at a low zlib level: several times faster to write, a little larger."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def write_sample(out: str | os.PathLike) -> list[Path]:
    """Write the embedded sample as files (im/, gt/, alpha/, manifest.json, README.txt)."""
    out = Path(out)
    written: list[Path] = []
    manifest = {"generator_version": emb.GENERATOR_VERSION, "sample_sha256": emb.sample_hash(), "pairs": []}
    for i in range(len(emb.specs())):
        p = emb.pair(i)
        for sub, arr in (("im", p.image), ("gt", (p.mask * 255).astype(np.uint8)),
                         ("alpha", np.floor(p.alpha * 255 + 0.5).astype(np.uint8))):
            dest = out / sub / f"{p.id}.png"
            atomic_write_bytes(dest, _png_fast(arr))
            written.append(dest)
        manifest["pairs"].append({
            "id": p.id, "width": int(p.image.shape[1]), "height": int(p.image.shape[0]),
            "tags": list(p.tags), "description": p.description, "background": p.background,
            "foreground_fraction": round(float(p.mask.mean()), 6), "pixels_sha256": p.content_hash,
        })
    atomic_write_bytes(out / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())
    atomic_write_bytes(out / "README.txt", SAMPLE_README.format(
        version=emb.GENERATOR_VERSION, n=len(manifest["pairs"]), folder=out).encode())
    return [*written, out / "manifest.json", out / "README.txt"]
