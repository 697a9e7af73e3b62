"""The dataset catalogue (`datasets/catalog.yaml`) and training-set contamination flags.

A score on a set that a model was trained on is not a held-out score. The zoo lists each
variant's `trained_on` names; the catalogue maps each test set (and any folder opened by
path that is recognised as one) to those names. `trained_on_flag` joins the two.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from studio import settings
from studio.data.layout import IMAGE_DIRS, DatasetError

REQUIRED = ("title", "task", "size", "resolution", "layout", "dir", "images", "masks", "reference",
            "licence", "url", "download")
DOWNLOAD_KEYS = ("urls", "gdrive", "manual")
MARKER = ".catalog"  # a file in a dataset folder holding its catalogue name


def catalog_path() -> Path:
    return settings.catalog_path()


@dataclass(frozen=True)
class Download:
    urls: tuple[str, ...] = ()
    gdrive: str | None = None
    filename: str | None = None
    manual: str | None = None

    @property
    def automatic(self) -> bool:
        return bool(self.urls or self.gdrive)

    def sources(self) -> list[tuple[str, str]]:
        """(url, file name) for each archive to fetch."""
        if self.gdrive:
            # drive.usercontent with confirm=t serves large files without the virus-scan page
            url = f"https://drive.usercontent.google.com/download?id={self.gdrive}&export=download&confirm=t"
            return [(url, self.filename or f"{self.gdrive}.zip")]
        return [(u, u.rstrip("/").rsplit("/", 1)[-1] or "download") for u in self.urls]

    @property
    def page(self) -> str | None:
        return f"https://drive.google.com/file/d/{self.gdrive}/view" if self.gdrive else None


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    title: str
    task: str
    size: int
    resolution: str
    layout: str
    dir: str
    images: str
    masks: str
    reference: str
    licence: str
    url: str
    download: Download
    paper: str = ""
    zoo_names: tuple[str, ...] = ()
    folder_names: tuple[str, ...] = ()
    group: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def training_names(self) -> tuple[str, ...]:
        """How the zoo's `trained_on` spells this split."""
        return self.zoo_names or (self.name,)

    def local_root(self) -> Path:
        return settings.data_dir() / self.dir

    def locate(self) -> tuple[Path, Path] | None:
        """The installed (images, masks) folders, looked for up to three levels under `dir`."""
        root = self.local_root()
        if not root.is_dir():
            return None
        frontier = [root]
        for _ in range(4):
            nxt: list[Path] = []
            for base in frontier:
                im, gt = base / self.images, base / self.masks
                if im.is_dir() and gt.is_dir():
                    return im, gt
                try:
                    nxt += sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
                except OSError:
                    continue
            frontier = nxt
        return None

    @property
    def installed(self) -> bool:
        return self.locate() is not None

    def trained_by(self, zoo: Any | None = None) -> list[str]:
        """Ids of the zoo variants whose weights saw this split in training."""
        from studio.zoo import load_zoo

        zoo = zoo or load_zoo()
        return [v.id for v in zoo.variants.values() if _trained_on(v, self.training_names, zoo)]


def _parse(raw: dict[str, Any], source: Path) -> dict[str, CatalogEntry]:
    entries: dict[str, CatalogEntry] = {}
    for name, item in (raw.get("datasets") or {}).items():
        missing = [k for k in REQUIRED if item.get(k) in (None, "")]
        if missing:
            raise ValueError(f"{source}: dataset {name}: missing {', '.join(missing)}")
        dl = item["download"]
        if not isinstance(dl, dict) or not any(dl.get(k) for k in DOWNLOAD_KEYS):
            raise ValueError(f"{source}: dataset {name}: download needs one of {', '.join(DOWNLOAD_KEYS)}")
        if item["reference"] not in ("mask", "alpha"):
            raise ValueError(f"{source}: dataset {name}: reference must be mask or alpha")
        known = set(REQUIRED) | {"paper", "zoo_names", "folder_names", "group"}
        entries[name] = CatalogEntry(
            name=name,
            title=item["title"], task=item["task"], size=int(item["size"]), resolution=str(item["resolution"]),
            layout=item["layout"], dir=item["dir"], images=item["images"], masks=item["masks"],
            reference=item["reference"], licence=item["licence"], url=item["url"],
            download=Download(
                urls=tuple(dl.get("urls") or ()), gdrive=dl.get("gdrive"), filename=dl.get("filename"),
                manual=dl.get("manual"),
            ),
            paper=item.get("paper", ""),
            zoo_names=tuple(item.get("zoo_names") or ()),
            folder_names=tuple(item.get("folder_names") or ()),
            group=item.get("group"),
            extra={k: v for k, v in item.items() if k not in known},
        )
    return entries


@functools.cache
def _load(path: str, mtime: float) -> dict[str, CatalogEntry]:
    return _parse(yaml.safe_load(Path(path).read_text()) or {}, Path(path))


def catalog() -> dict[str, CatalogEntry]:
    """Every catalogue entry by name, in file order (re-read when the file changes)."""
    path = catalog_path()
    try:
        mtime = path.stat().st_mtime
    except OSError:
        raise DatasetError(f"the dataset catalogue {path} is missing") from None
    return dict(_load(str(path), mtime))


def groups() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in catalog().values():
        if e.group:
            out.setdefault(e.group, []).append(e.name)
    return out


def find_entry(name: str) -> CatalogEntry | None:
    """A catalogue entry by name, ignoring case."""
    cat = catalog()
    if name in cat:
        return cat[name]
    low = name.lower()
    return next((e for n, e in cat.items() if n.lower() == low), None)


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def recognise(root: Path) -> str | None:
    """The catalogue entry a folder is, by its `.catalog` marker or its folder name; else None."""
    try:
        cat = catalog()
    except DatasetError:  # no catalogue file (an installed copy without datasets/): nothing to match
        return None
    for folder in (root, root.parent):
        marker = folder / MARKER
        if marker.is_file():
            text = marker.read_text(errors="replace").split()
            entry = find_entry(text[0]) if text else None
            if entry:
                return entry.name
    names = [root.name]
    if root.name.lower() in IMAGE_DIRS:  # a generic image folder: its parent names the set
        names.append(root.parent.name)
    for n in names:
        key = _norm(n)
        for entry in cat.values():
            if key in {_norm(entry.name), *(_norm(f) for f in entry.folder_names)}:
                return entry.name
    return None


def effective_trained_on(variant: Any, zoo: Any | None = None) -> tuple[str, ...]:
    """A variant's training sets; a derived build without its own list inherits its source's."""
    seen: set[str] = set()
    v = variant
    while not v.trained_on and getattr(v, "derived_from", None) and v.id not in seen:
        seen.add(v.id)
        if zoo is None:
            from studio.zoo import load_zoo

            zoo = load_zoo()
        parent = zoo.variants.get(v.derived_from)
        if parent is None:
            break
        v = parent
    return tuple(v.trained_on)


def _trained_on(variant: Any, names: tuple[str, ...], zoo: Any | None = None) -> bool:
    have = {t.lower() for t in effective_trained_on(variant, zoo)}
    return any(n.lower() in have for n in names)


def training_names(catalog_name: str | None) -> tuple[str, ...]:
    """The zoo spellings of a dataset's catalogue name (DIS-TE1 style names map to DIS5K-TE1)."""
    if not catalog_name:
        return ()
    entry = find_entry(catalog_name)
    if entry is not None:
        return entry.training_names
    m = re.fullmatch(r"(?i)dis-(vd|te\d|tr)", catalog_name)
    return (f"DIS5K-{m.group(1).upper()}",) if m else (catalog_name,)


def trained_on_flag(variant: Any, dataset: Any) -> bool:
    """True when the variant's weights were trained on this dataset (its score is not held-out).

    `dataset` is a `Dataset` (its `catalog_name` is used) or a catalogue name.
    """
    name = dataset if isinstance(dataset, str) else getattr(dataset, "catalog_name", None)
    names = training_names(name)
    return bool(names) and _trained_on(variant, names)


def local_choices() -> list[str]:
    """Datasets a user can pick on this machine: downloaded catalogue sets, and, off a Space,
    the shared sod-dev folder when it is there."""
    names = [name for name, entry in catalog().items() if entry.installed]
    shared = settings.shared_dir() / "datasets" / "sod-dev"
    if not settings.on_spaces() and shared.is_dir():
        names.append(str(shared))
    return list(dict.fromkeys(names))
