"""The model zoo: every variant as data, read from `models/zoo.yaml`.

A `Variant` is declarative: backend, precision, input size, preprocessing, the weights file
it loads, licence and training-data notes. Code that runs a variant lives in
`studio.backends`; code that fetches its file lives in `studio.weights`.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from studio import settings
from studio.errors import UnknownVariant

BACKENDS = ("onnx", "rembg", "inspyrenet", "opencv")


@dataclass(frozen=True)
class Source:
    """One place a weights file can come from, with the checksum that place must match."""

    kind: str  # url | npm | derive | untrained
    location: str  # URL, npm spec, derive recipe, or InSPyReNet mode
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def automatic(self) -> bool:
        """Tried by a plain `weights pull`; `untrained` must be asked for."""
        return self.kind != "untrained"


@dataclass(frozen=True)
class WeightsFile:
    name: str
    sources: tuple[Source, ...]
    size: int | None = None
    sha256: str | None = None
    size_mb_approx: float | None = None

    @property
    def expected_mb(self) -> float | None:
        if self.size:
            return self.size / 1e6
        return self.size_mb_approx


@dataclass(frozen=True)
class Variant:
    id: str
    family: str
    backend: str
    precision: str = "fp32"
    input_size: tuple[int, int] | str = "dynamic"
    preprocess: dict[str, Any] = field(default_factory=dict)
    postprocess: dict[str, Any] = field(default_factory=dict)
    file: str | None = None
    license: str = "unknown"
    trained_on: tuple[str, ...] = ()
    notes: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    rembg_session: str | None = None
    derived_from: str | None = None
    recipe: dict[str, Any] | None = None
    requires: str | None = None  # e.g. "cuda"
    default: bool = True  # part of "every installed variant" runs (parity references are not)

    @property
    def is_build(self) -> bool:
        """A derived variant: made from `derived_from` by `recipe` (`studio build`), not fetched."""
        return bool(self.derived_from) and self.recipe is not None

    @property
    def needs_artifact(self) -> bool:
        """Whether it loads a file (weights or a build); GrabCut needs none."""
        return bool(self.file) or self.is_build

    @property
    def input_size_label(self) -> str:
        if isinstance(self.input_size, str):
            return self.input_size
        return f"{self.input_size[0]}x{self.input_size[1]}"

    @property
    def non_commercial(self) -> bool:
        lic = self.license.lower()
        return "non-commercial" in lic or "-nc" in lic or " nc " in lic

    def trained_on_dataset(self, dataset: str) -> bool:
        """Whether this variant's weights saw `dataset` (catalogue name) in training."""
        want = dataset.lower()
        return any(want == t.lower() for t in self.trained_on)


@dataclass(frozen=True)
class Zoo:
    variants: dict[str, Variant]
    files: dict[str, WeightsFile]

    def get(self, variant_id: str) -> Variant:
        try:
            return self.variants[variant_id]
        except KeyError:
            close = difflib.get_close_matches(variant_id, list(self.variants), n=5, cutoff=0.6)
            hint = f" Did you mean: {', '.join(close)}?" if close else " See `studio models`."
            raise UnknownVariant(f"unknown model variant {variant_id!r}.{hint}") from None

    def file_of(self, variant: Variant) -> WeightsFile | None:
        return self.files.get(variant.file) if variant.file else None

    def select(self, patterns: list[str] | str | None) -> list[Variant]:
        """Variants matching ids, globs or family names, in zoo order, without repeats."""
        if patterns is None:
            return list(self.variants.values())
        if isinstance(patterns, str):
            patterns = [p for p in patterns.replace(",", " ").split() if p]
        chosen: dict[str, Variant] = {}
        for pat in patterns:
            if pat in self.variants:  # an exact id is that variant, even when a family shares its name
                hits = [self.variants[pat]]
            else:
                hits = [v for v in self.variants.values()
                        if fnmatch.fnmatchcase(v.id, pat) or v.family == pat or v.backend == pat]
            if not hits:
                self.get(pat)  # raises with a suggestion
            for v in hits:
                chosen.setdefault(v.id, v)
        order = list(self.variants)
        return sorted(chosen.values(), key=lambda v: order.index(v.id))


def _source(raw: dict[str, Any]) -> Source:
    for kind in ("url", "npm", "derive", "untrained"):
        if kind in raw:
            extra = {k: v for k, v in raw.items() if k not in (kind, "sha256", "md5", "size")}
            return Source(kind, str(raw[kind]), raw.get("sha256"), raw.get("md5"), raw.get("size"), extra)
    raise ValueError(f"a weights source needs one of url/npm/derive/untrained: {raw}")


def _variant(raw: dict[str, Any]) -> Variant:
    raw = dict(raw)
    size = raw.get("input_size", "dynamic")
    raw["input_size"] = tuple(size) if isinstance(size, list) else size
    raw["trained_on"] = tuple(raw.get("trained_on") or ())
    if raw.get("backend") not in BACKENDS:
        raise ValueError(f"variant {raw.get('id')}: backend must be one of {BACKENDS}")
    known = set(Variant.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"variant {raw.get('id')}: unknown keys {sorted(unknown)}")
    return Variant(**raw)


def parse_zoo(docs: list[dict[str, Any]]) -> Zoo:
    """Merge zoo documents (the main manifest, then derived builds) into one Zoo."""
    files: dict[str, WeightsFile] = {}
    variants: dict[str, Variant] = {}
    for doc in docs:
        for name, raw in (doc.get("files") or {}).items():
            files[name] = WeightsFile(
                name=name,
                sources=tuple(_source(s) for s in raw.get("sources", [])),
                size=raw.get("size"),
                sha256=raw.get("sha256"),
                size_mb_approx=raw.get("size_mb_approx"),
            )
        for raw in doc.get("variants") or []:
            v = _variant(raw)
            if v.id in variants:
                raise ValueError(f"duplicate variant id {v.id!r} in the zoo")
            variants[v.id] = v
    for v in variants.values():
        if v.file and v.file not in files and not v.derived_from:
            raise ValueError(f"variant {v.id}: file {v.file!r} is not declared under files")
    return Zoo(variants=variants, files=files)


def zoo_documents(path: Path | None = None) -> list[dict[str, Any]]:
    """The main manifest plus every `*.yaml` beside it in `models/zoo.d/` (derived builds)."""
    path = path or settings.zoo_path()
    docs = [yaml.safe_load(path.read_text())]
    extra_dir = path.parent / "zoo.d"
    if extra_dir.is_dir():
        docs += [yaml.safe_load(p.read_text()) for p in sorted(extra_dir.glob("*.yaml"))]
    return docs


@functools.cache
def load_zoo(path: Path | None = None) -> Zoo:
    return parse_zoo(zoo_documents(path))
