"""`studio data pull NAME`: download a catalogue set's archives and unpack them.

Downloads stream to a `.part` file with a progress bar and are renamed into place only when
complete; archives (zip, tar.*) are unpacked into a hidden folder that is renamed to the
set's folder at the end, so an interrupted pull never leaves a half-set that looks
installed. Any network failure becomes one `DatasetError` line naming the URL and the
reason, with the manual route to the same files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from studio import settings
from studio.data import catalogue as cat
from studio.data.layout import DatasetError

USER_AGENT = "matting-studio/0.1 (dataset pull)"
RECORD = ".studio-pull.json"


@dataclass(frozen=True)
class PullResult:
    names: tuple[str, ...]
    root: Path
    fetched: bool  # False when it was already installed


def downloads_dir() -> Path:
    return settings.data_dir() / ".downloads"


def download(url: str, dest: Path, progress: bool = True, timeout: float = 30.0) -> Path:
    """Fetch `url` to `dest` atomically (via `dest.part`), or raise DatasetError in one line."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            ctype = resp.headers.get("Content-Type", "")
            if "text/html" in ctype:
                # file hosts answer a quota, sign-in or consent page with 200 and HTML
                raise DatasetError(f"{url} answered with a web page, not the archive (quota, sign-in or "
                                   "consent page)")
            total = int(resp.headers.get("Content-Length") or 0) or None
            with open(part, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, desc=dest.name,
                                               disable=not progress, leave=False) as bar:
                while block := resp.read(1 << 20):
                    out.write(block)
                    bar.update(len(block))
        if total is not None and part.stat().st_size != total:
            raise DatasetError(f"{url}: the download stopped at {part.stat().st_size} of {total} bytes")
        os.replace(part, dest)
        return dest
    except DatasetError:
        raise
    except urllib.error.HTTPError as exc:
        raise DatasetError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason.strerror if isinstance(exc.reason, OSError) and exc.reason.strerror else exc.reason
        raise DatasetError(f"cannot download {url}: {reason} (offline, or the host is unreachable)") from None
    except TimeoutError:
        raise DatasetError(f"cannot download {url}: timed out after {timeout:.0f} s") from None
    except OSError as exc:
        raise DatasetError(f"cannot download {url}: {exc.strerror or exc}") from None
    finally:
        part.unlink(missing_ok=True)


def _inside(base: Path, member: str) -> bool:
    target = (base / member).resolve()
    return target == base or base in target.parents


def extract(archive: Path, dest: Path) -> None:
    """Unpack a zip or tar archive into `dest`, refusing members that would land outside it."""
    dest.mkdir(parents=True, exist_ok=True)
    base = dest.resolve()
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                bad = [m for m in zf.namelist() if not _inside(base, m)]
                if bad:
                    raise DatasetError(f"{archive.name}: refusing members outside the folder: {bad[:3]}")
                zf.extractall(dest)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                tf.extractall(dest, filter="data")  # the "data" filter blocks links and paths out
        else:
            raise DatasetError(f"{archive.name} is not a zip or tar archive; unpack it by hand into {dest}")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise DatasetError(f"{archive.name} is damaged ({exc}); delete it and pull again") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _entries(name: str) -> list[cat.CatalogEntry]:
    entry = cat.find_entry(name)
    if entry is not None:
        return [entry]
    for group, names in cat.groups().items():
        if group.lower() == name.lower():
            return [cat.catalog()[n] for n in names]
    raise DatasetError(f"no catalogue dataset {name!r}; `studio data list` shows them: "
                       + ", ".join([*cat.catalog(), *cat.groups()]))


def manual_steps(entry: cat.CatalogEntry) -> str:
    return (f"{entry.name} has no direct download ({entry.download.manual}). Get it from {entry.url}, "
            f"then unpack it into {entry.local_root()} so that {entry.images}/ and {entry.masks}/ are in it")


def pull(name: str, force: bool = False, progress: bool = True, keep_archives: bool = False,
         timeout: float = 30.0) -> PullResult:
    """Download and unpack a catalogue set (or a group such as DIS5K) into the data directory."""
    entries = _entries(name)
    first = entries[0]
    root = first.local_root()
    names = tuple(e.name for e in entries)
    if not force and all(e.installed for e in entries):
        return PullResult(names, root, fetched=False)
    dl = first.download
    if not dl.automatic:
        raise DatasetError(manual_steps(first))
    staging = root.with_name(f".{root.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    archives: list[dict[str, object]] = []
    record = {"datasets": list(names), "archives": archives, "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        for url, filename in dl.sources():
            archive = downloads_dir() / filename
            if force or not archive.exists():
                if progress:
                    print(f"downloading {url}", flush=True)
                try:
                    download(url, archive, progress=progress, timeout=timeout)
                except DatasetError as exc:
                    page = f" ({dl.page})" if dl.page else ""
                    raise DatasetError(f"{exc}. To install by hand: download it from {first.url}{page} and "
                                       f"unpack it into {root}") from None
            if progress:
                print(f"unpacking {archive.name} …", flush=True)
            extract(archive, staging)
            archives.append({"url": url, "file": filename, "bytes": archive.stat().st_size,
                             "sha256": _sha256(archive)})
            if not keep_archives:
                archive.unlink(missing_ok=True)
        (staging / RECORD).write_text(json.dumps(record, indent=2) + "\n")
        if root.exists():
            shutil.rmtree(root)
        os.replace(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    missing = [e.name for e in entries if not e.installed]
    if missing:
        top = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))[:8]
        raise DatasetError(f"unpacked into {root}, but {', '.join(missing)} is not where the catalogue expects "
                           f"({first.images}/ + {first.masks}/); the folder holds: {', '.join(top) or 'nothing'}")
    return PullResult(names, root, fetched=True)
