"""Whether a fetched file is the one its source publishes."""

from __future__ import annotations

from pathlib import Path

from studio.weights import store
from studio.zoo import Source, WeightsFile


class ChecksumMismatch(RuntimeError):
    """A fetched file is not the one its source publishes (refused, nothing installed)."""


def with_checks(source: Source, wf: WeightsFile) -> Source:
    """A source's own checksum, else the file-level one (which describes the canonical artifact)."""
    if source.sha256 or source.md5:
        return source
    return Source(source.kind, source.location, wf.sha256, None, source.size or wf.size, source.extra)


def matches_source(source: Source, wf: WeightsFile, path: Path,
                   digests: dict[str, str] | None = None) -> str | None:
    """None when the file at `path` is what `source` publishes (its sha256 / md5 / size, else
    the file-level ones), else the reason it is not."""
    source = with_checks(source, wf)
    digests = digests or store.hash_file(path)
    size = path.stat().st_size
    if source.sha256 and digests["sha256"] != source.sha256:
        return f"sha256 {digests['sha256'][:16]}… != expected {source.sha256[:16]}…"
    if source.md5 and digests["md5"] != source.md5:
        return f"md5 {digests['md5']} != expected {source.md5}"
    if source.size and size != source.size:
        return f"size {size:,} != expected {source.size:,}"
    return None
