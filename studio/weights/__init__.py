"""Fetch, verify and locate weights files. `pull` is what `studio weights pull` runs."""

from __future__ import annotations

import shutil
from pathlib import Path

from studio import settings
from studio.errors import WeightsFetchError, WeightsNotInstalled
from studio.weights import store
from studio.weights.store import Installed
from studio.zoo import Source, Variant, WeightsFile, load_zoo

__all__ = ["Installed", "ensure_file", "installed_for", "pull", "pull_command", "require"]


def pull_command(variant: Variant) -> str:
    """The command that would fetch a variant's weights file."""
    wf = load_zoo().file_of(variant)
    extra = ""
    if wf and wf.sources and not any(s.automatic for s in wf.sources[1:]) and any(
        s.kind == "untrained" for s in wf.sources
    ):
        extra = "   (offline: add --untrained for a latency-only checkpoint)"
    return f"studio weights pull {variant.id}{extra}"


def installed_for(variant: Variant) -> Installed | None:
    """The installed weights file of a fetched variant, or None (builds: see studio.artifacts)."""
    if variant.is_build or not variant.file:
        return None
    return store.installed(variant.file)


def require(variant: Variant, verify: bool = True) -> Installed | None:
    """The weights file a fetched variant needs, hash-checked; a clear error when missing."""
    if variant.is_build or not variant.file:
        return None
    rec = store.installed(variant.file)
    if rec is None:
        raise WeightsNotInstalled(
            f"{variant.id}: weights not installed ({variant.file}). Fetch them with: "
            f"{pull_command(variant)}"
        )
    return store.verify(variant.file) if verify else rec


def _matches(source: Source, digests: dict[str, str], size: int) -> str | None:
    """None when a file matches what its source promises, else the reason it does not."""
    if source.sha256 and digests["sha256"] != source.sha256:
        return f"sha256 {digests['sha256'][:16]}… != expected {source.sha256[:16]}…"
    if source.md5 and digests["md5"] != source.md5:
        return f"md5 {digests['md5']} != expected {source.md5}"
    if source.size and size != source.size:
        return f"size {size} != expected {source.size}"
    return None


def _local_candidates(name: str) -> list[Path]:
    """Copies already on this machine: STUDIO_WEIGHTS_PATH, rembg's and transparent-background's homes."""
    dirs = settings.weights_search_path()
    home = Path.home()
    dirs += [home / ".u2net", home / ".rembg" / "models" / Path(name).stem, home / ".transparent-background"]
    return [d / name for d in dirs if (d / name).is_file()]


def _with_checks(source: Source, wf: WeightsFile) -> Source:
    """A source's own checksum, else the file-level one (which describes the canonical artifact)."""
    if source.sha256 or source.md5:
        return source
    return Source(source.kind, source.location, wf.sha256, None, source.size or wf.size, source.extra)


def ensure_file(name: str, untrained: bool = False, progress: bool = True, force: bool = False,
                local: Path | None = None) -> Installed:
    """Install one weights file from the first source that works; report every failure."""
    from studio.weights.fetchers import FETCHERS

    zoo = load_zoo()
    wf = zoo.files.get(name)
    if wf is None:
        raise WeightsFetchError(f"no weights file named {name!r} in the zoo")
    if not force and (rec := store.installed(name)) is not None and (untrained or not rec.untrained):
        return rec

    url_checks = next((s for s in wf.sources if s.kind == "url"), None)
    attempts: list[tuple[str, Source | None, Path | None]] = []
    if local is not None:
        attempts.append((f"local {local}", url_checks, Path(local)))
    attempts += [(f"local {p}", url_checks, p) for p in _local_candidates(name)]
    for s in wf.sources:
        if s.automatic or untrained:
            attempts.append((f"{s.kind} {s.location}" + (f":{s.extra['resource']}" if "resource" in s.extra else ""), s, None))
    if untrained:  # asked for explicitly: the untrained source goes first
        attempts.sort(key=lambda a: 0 if a[1] is not None and a[1].kind == "untrained" else 1)

    failures: list[str] = []
    for label, source, local_path in attempts:
        try:
            with store.staging(name) as tmp:
                if local_path is not None:
                    shutil.copyfile(local_path, tmp)
                elif source.kind == "derive":
                    parent = ensure_file(source.extra["from"], progress=progress)
                    FETCHERS["derive"](source, tmp, progress=progress, parent=Path(parent.path))
                else:
                    FETCHERS[source.kind](source, tmp, progress=progress)
                if source is not None and source.kind != "untrained":
                    digests = store.hash_file(tmp)
                    why = _matches(_with_checks(source, wf), digests, tmp.stat().st_size)
                    if why:
                        raise RuntimeError(f"checksum mismatch: {why}")
                return store.commit(tmp, name, source=label,
                                    untrained=source is not None and source.kind == "untrained")
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # every failure is reported together below
            failures.append(f"  - {label}: {type(exc).__name__}: {exc}")
    if not failures:
        failures.append("  - no source is declared")
    hint = ""
    if any(s.kind == "untrained" for s in wf.sources) and not untrained:
        hint = "\nFor latency and memory only, an untrained checkpoint: add --untrained."
    raise WeightsFetchError(f"could not fetch {name}; tried:\n" + "\n".join(failures) + hint)


def pull(variant_ids: list[str], untrained: bool = False, progress: bool = True, force: bool = False,
         local: Path | None = None) -> dict[str, Installed | Exception]:
    """Fetch the weights of each variant; one failure does not stop the others."""
    zoo = load_zoo()
    results: dict[str, Installed | Exception] = {}
    for vid in variant_ids:
        try:
            v = zoo.get(vid)
            if v.is_build:
                raise WeightsFetchError(f"{vid} is a derived build: run `studio build {vid}`")
            if not v.file:
                raise WeightsFetchError(f"{vid} needs no weights")
            if untrained and v.backend != "inspyrenet":
                raise WeightsFetchError("--untrained is only for InSPyReNet variants")
            results[vid] = ensure_file(v.file, untrained=untrained, progress=progress, force=force, local=local)
        except Exception as exc:
            results[vid] = exc
    return results


def obtainable_offline() -> list[str]:
    """Variants whose weights come from sources reachable here (npm, derived builds)."""
    zoo = load_zoo()
    out = []
    for v in zoo.variants.values():
        wf = zoo.file_of(v)
        if wf and any(s.kind in ("npm", "derive") for s in wf.sources):
            out.append(v.id)
    return out
