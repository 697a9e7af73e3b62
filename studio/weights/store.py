"""The weights cache on disk: a file, plus a JSON sidecar saying where it came from.

A file counts as installed only when its sidecar exists and agrees with its size. Files
are written under a temporary name and renamed into place, the sidecar last, so a killed
pull never leaves something that passes as installed. Downloads in progress live apart, in
`downloads/` beside `weights/` (see `fetchers.download`), with the locks that keep two
threads or processes from fetching one file at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from studio import labels, settings
from studio.fileio import atomic_write_json, publish, temp_beside

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent fetches of one file are not guarded
    fcntl = None  # type: ignore[assignment]

CHUNK = 1 << 20


@dataclass
class Installed:
    """What the sidecar records about an installed weights file."""

    path: str
    size: int
    sha256: str
    source: str  # e.g. "url https://...", "npm @imgly/...:/models/medium", "untrained fast"
    untrained: bool = False
    md5: str | None = None
    installed_at: float = 0.0

    @property
    def label(self) -> str:
        return labels.UNTRAINED if self.untrained else "trained"


def file_path(name: str) -> Path:
    return settings.weights_dir() / name


def sidecar_path(name: str) -> Path:
    return settings.weights_dir() / f"{name}.json"


def installed(name: str) -> Installed | None:
    """The record of an installed file, or None when it is absent or incomplete."""
    path, meta = file_path(name), sidecar_path(name)
    if not path.is_file() or not meta.is_file():
        return None
    try:
        rec = Installed(**json.loads(meta.read_text()))
    except (ValueError, TypeError):
        return None
    if rec.size != path.stat().st_size:
        return None
    rec.path = str(path)
    return rec


def hash_file(path: str | os.PathLike, algorithms: Iterable[str] = ("sha256", "md5")) -> dict[str, str]:
    hashers = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            for h in hashers.values():
                h.update(block)
    return {a: h.hexdigest() for a, h in hashers.items()}


def verify(name: str) -> Installed:
    """Re-hash an installed file against its sidecar; raise if it changed on disk."""
    from studio.errors import WeightsNotInstalled

    rec = installed(name)
    if rec is None:
        raise WeightsNotInstalled(f"{name} is not installed")
    check_sha256(rec.path, rec.sha256, name, "pull it again")
    return rec


def check_sha256(path: str | os.PathLike, recorded: str, what: str, fix: str) -> None:
    """Re-hash a file (a weights file or a build) against the sha256 recorded when it was made;
    WeightsNotInstalled naming `what` and saying how to `fix` it when it changed on disk."""
    from studio.errors import WeightsNotInstalled

    actual = hash_file(path, ("sha256",))["sha256"]
    if actual != recorded:
        raise WeightsNotInstalled(f"{what} is corrupt: sha256 {actual[:12]}… but it was recorded as "
                                  f"{recorded[:12]}…; {fix}")


@contextmanager
def staging(name: str) -> Iterator[Path]:
    """A temporary path beside the final one; removed unless `commit` moved it away."""
    tmp_path = temp_beside(file_path(name))
    try:
        yield tmp_path
    finally:
        tmp_path.unlink(missing_ok=True)


def clean_staging(name: str) -> list[Path]:
    """Remove staging files a killed fetch of `name` left behind. Only under `file_lock(name)`,
    which no live fetch of `name` holds then."""
    found = sorted(settings.weights_dir().glob(f".{name}.*.part"))
    for p in found:
        p.unlink(missing_ok=True)
    return found


@contextmanager
def file_lock(key: str) -> Iterator[None]:
    """An exclusive lock on `key` across threads and processes (flock on downloads/KEY.lock).
    Blocks until the holder is done; the caller then re-checks what the holder may have made."""
    folder = settings.downloads_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{key}.lock", "a+b") as fh:
        if fcntl is not None:
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fh, fcntl.LOCK_UN)


def commit(tmp: Path, name: str, source: str, untrained: bool = False,
           digests: dict[str, str] | None = None) -> Installed:
    """Hash a finished temporary file (unless its sha256 and md5 are given), move it into
    place, then write its sidecar."""
    digests = digests if digests and {"sha256", "md5"} <= set(digests) else hash_file(tmp)
    final = file_path(name)
    sidecar_path(name).unlink(missing_ok=True)  # the old record no longer describes the file
    publish(tmp, final)
    rec = Installed(
        path=str(final), size=final.stat().st_size, sha256=digests["sha256"], md5=digests["md5"],
        source=source, untrained=untrained, installed_at=time.time(),
    )
    atomic_write_json(sidecar_path(name), asdict(rec))
    return rec


def remove(name: str) -> None:
    sidecar_path(name).unlink(missing_ok=True)
    file_path(name).unlink(missing_ok=True)
