"""The images an arena is judged on, named by one string (a "set spec") that a script can send:

| spec | images |
|---|---|
| `embedded` (or empty) | the embedded sample |
| a catalogue name (`DUTS-TE`) | that downloaded dataset |
| a folder | its images, with or without masks (`studio.data.layout` reads image-only folders) |
| `upload:KEY` | an uploaded zip, extracted under `uploads_dir()/KEY` by the app |
| `run:PATH` | the images of a past benchmark run (`PATH` = its summary.json or folder) |

`check_spec` is the one resolver of a spec, whoever sends it (the tab's picker, `arena_prepare`,
`arena_next`, a script): `open_set` goes through it. On a hosted app (`settings.on_spaces()`) it
refuses the server's folders: a folder path, a name outside the catalogue, or a `run:` outside
the results folder.

Votes name an image by the sha256 of its content, so the same photo voted through two specs
counts as one image. Also the backgrounds a cut-out is shown on.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from studio import settings
from studio.data import EMBEDDED_NAME, Dataset, DatasetError, Sample, open_dataset, subset
from studio.data.sources import HOSTED_REFUSAL, folder_or_name
from studio.errors import StudioError

RUN_PREFIX = "run:"
UPLOAD_PREFIX = "upload:"
BACKGROUNDS = ("checkerboard", "white", "black", "photo")
MEMO_SETS = 8  # opened sets kept per process (their content hashes are the costly part)
UPLOAD_KEY = re.compile(r"[0-9a-f]{16}")  # what `upload_key` makes: the zip's sha256, cut short


class ImageSetError(DatasetError):
    """An image set that cannot be opened; the message says what to do."""


@dataclass
class ImageSet:
    spec: str
    name: str
    samples: list[Sample]
    notes: list[str] = field(default_factory=list)
    by_hash: dict[str, Sample] = field(default_factory=dict)

    @property
    def hashes(self) -> list[str]:
        return list(self.by_hash)

    def sample(self, image_hash: str) -> Sample:
        try:
            return self.by_hash[image_hash]
        except KeyError:
            raise ImageSetError(f"image {image_hash[:12]}… is not in the set {self.name}") from None


def uploads_dir() -> Path:
    return settings.results_dir() / "arena" / "uploads"


def check_spec(spec: str | None) -> str:
    """The canonical form of a set spec, or ImageSetError: too long, a malformed upload key, or
    (on a hosted app) anything that reads the server's folders. A local folder comes back as
    its absolute path, so two spellings of one folder are one spec."""
    text = (spec or "").strip()
    if len(text) > settings.ARENA_MAX_SPEC:
        raise ImageSetError(f"image set: {len(text):,} characters, at most {settings.ARENA_MAX_SPEC} allowed")
    if not text or text.lower() == EMBEDDED_NAME:
        return EMBEDDED_NAME
    if text.startswith(UPLOAD_PREFIX):
        key = text[len(UPLOAD_PREFIX):]
        if not UPLOAD_KEY.fullmatch(key):
            raise ImageSetError(f"no uploaded image set {key[:40]!r}: upload the zip again")
        return text
    if text.startswith(RUN_PREFIX):
        path = Path(text[len(RUN_PREFIX):]).expanduser().resolve()
        if settings.on_spaces() and not path.is_relative_to(settings.results_dir().resolve()):
            raise ImageSetError(f"a past run must be one of this app's runs; {HOSTED_REFUSAL}")
        return RUN_PREFIX + str(path)
    try:
        return folder_or_name(text)
    except DatasetError as exc:
        raise ImageSetError(str(exc)) from None


def run_dataset(summary_path: str | Path) -> tuple[str | None, int | None, int]:
    """(dataset spec, limit, seed) a past benchmark run used, read from its summary.json."""
    p = Path(summary_path).expanduser()
    if p.is_dir():
        p = p / "summary.json"
    try:
        summary = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise ImageSetError(f"{p}: not a readable benchmark summary ({exc})") from None
    cfg = summary.get("config") or {}
    ds = summary.get("dataset") or {}
    spec = cfg.get("dataset")
    if spec is None and ds.get("name") not in (None, EMBEDDED_NAME):
        spec = ds.get("root") or ds.get("catalog_name")  # an older summary without its config
    limit = cfg.get("limit")
    return spec, int(limit) if limit else None, int(cfg.get("seed") or 0)


def _unwrap(root: Path) -> Path:
    """A zip whose one top folder holds the images: use that folder."""
    while True:
        entries = [p for p in root.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
        if len(entries) != 1 or not entries[0].is_dir():
            return root
        root = entries[0]


def _open(spec: str, limit: int | None) -> Dataset:
    if spec.startswith(RUN_PREFIX):
        ds_spec, run_limit, seed = run_dataset(spec[len(RUN_PREFIX):])
        ds = open_dataset(ds_spec, limit=run_limit, seed=seed)
        ds.name = f"{ds.name} (as in run {Path(spec[len(RUN_PREFIX):]).expanduser().parent.name})"
        return subset(ds, limit) if limit else ds
    if spec.startswith(UPLOAD_PREFIX):
        key = spec[len(UPLOAD_PREFIX):]
        root = uploads_dir() / key
        if not root.is_dir():
            raise ImageSetError(f"no uploaded image set {key!r}: upload the zip again")
        ds = open_dataset(_unwrap(root), limit=limit)
        ds.name = "uploaded zip"
        return ds
    return open_dataset(spec or None, limit=limit)


def _stamp(spec: str) -> int:
    """A folder's modification time, so an edited folder is listed again."""
    path = Path(spec[len(UPLOAD_PREFIX):] if spec.startswith(UPLOAD_PREFIX) else spec).expanduser()
    if spec.startswith(UPLOAD_PREFIX):
        path = uploads_dir() / path
    try:
        return path.stat().st_mtime_ns if path.is_dir() else 0
    except OSError:
        return 0


_memo: OrderedDict[tuple[str, int | None, int], ImageSet] = OrderedDict()
_memo_lock = threading.Lock()


def open_set(spec: str | None, limit: int | None = None) -> ImageSet:
    """The images of a set spec (see the module doc; checked by `check_spec`), the first
    `limit` by the usual seeded subset. Opened sets are kept (content hashes read once per process)."""
    spec = check_spec(spec)
    limit = int(limit) if limit else None
    key = (spec, limit, _stamp(spec))
    with _memo_lock:
        if key in _memo:
            _memo.move_to_end(key)
            return _memo[key]
    try:
        ds = _open(spec, limit)
    except ImageSetError:
        raise
    except DatasetError as exc:
        raise ImageSetError(str(exc)) from None
    by_hash: dict[str, Sample] = {}
    notes = list(ds.notes)
    for s in ds.samples:
        try:
            h = s.content_hash
        except StudioError as exc:
            notes.append(str(exc))
            continue
        by_hash.setdefault(h, s)  # the same picture twice is one image to the arena
    if not by_hash:
        raise ImageSetError(f"{ds.name}: no readable images")
    if len(by_hash) < len(ds.samples):
        notes.append(f"{len(ds.samples) - len(by_hash)} duplicate or unreadable images left out")
    iset = ImageSet(spec, ds.name, list(by_hash.values()), notes, by_hash)
    with _memo_lock:
        _memo[key] = iset
        while len(_memo) > MEMO_SETS:
            _memo.popitem(last=False)
    return iset


def past_runs(results_dir: Path | None = None) -> list[tuple[str, str]]:
    """(label, set spec) of each benchmark run under the results folder, newest first."""
    root = results_dir or settings.results_dir()
    if not root.is_dir():
        return []
    found = [p for p in root.glob("**/summary.json") if "cache" not in p.parts and "arena" not in p.parts]
    found.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    out = []
    for p in found:
        try:
            ds = (json.loads(p.read_text()).get("dataset") or {})
        except (OSError, ValueError):
            continue
        label = f"{p.parent.name} · {ds.get('name', '?')} · {ds.get('n_images', '?')} images"
        out.append((label, RUN_PREFIX + str(p)))
    return out


# --- backgrounds --------------------------------------------------------------------------------

def background(kind: str, height: int, width: int) -> np.ndarray:
    """RGB uint8 (height, width, 3) behind a cut-out: checkerboard, white, black, or a photo
    (a bundled, public-domain texture: busy enough to show halos and holes)."""
    from studio import visuals

    if kind == "white":
        return np.full((height, width, 3), 255, np.uint8)
    if kind == "black":
        return np.zeros((height, width, 3), np.uint8)
    if kind == "photo":
        from studio.data.embedded import Background, render_background

        bg = render_background(Background("gravel", tint=(120, 135, 175), blur=0.3), width, height,
                               np.random.default_rng(0))
        return (bg * 255 + 0.5).astype(np.uint8)
    if kind == "checkerboard":
        return visuals.checkerboard(height, width)
    raise ImageSetError(f"background {kind!r} is not one of {', '.join(BACKGROUNDS)}")


def describe(iset: ImageSet) -> dict[str, Any]:
    return {"spec": iset.spec, "name": iset.name, "n_images": len(iset.samples), "notes": iset.notes}
