"""The model zoo: every variant as data, read from `models/zoo.yaml` and `models/zoo.d/`.

A `Variant` is declarative: backend, precision, input size, preprocessing, the weights file
it loads, licence and training-data notes. Its settings are typed and parsed once, here, when
the zoo is read (an unknown key is an error that names the variant and the key):

- `Preprocess`, `Postprocess` (`studio.prepost`, shared with the exported bundle): mean, std,
  scale, resize; output activation, normalisation, resize back;
- `options`, whose class the backend table names: `OnnxOptions` (with `OrtOptions`, ONNX
  Runtime's session settings), `TorchOptions` (InSPyReNet's mode, resize, jit and torch build
  options), `GrabCutOptions`, `NoOptions`;
- `recipe`, a derived variant's `studio.recipe.Recipe`.

`BACKENDS` is the backend table: for each backend, the runtime that runs its variants, its
runner class (imported on first use by `studio.backends`) and its options class. Code that runs
a variant lives in `studio.backends`; code that fetches its file lives in `studio.weights`.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from studio import settings
from studio.errors import StudioError, UnknownVariant
from studio.prepost import ConfigError, Postprocess, Preprocess
from studio.recipe import Recipe, RecipeError

__all__ = ["BACKENDS", "Backend", "GrabCutOptions", "NoOptions", "OnnxOptions", "OpenVinoOptions", "OrtOptions", "Postprocess",
           "Preprocess", "Recipe", "Source", "TorchOptions", "Variant", "WeightsFile", "Zoo", "ZooError",
           "load_zoo", "parse_zoo", "zoo_documents"]


class ZooError(StudioError, ValueError):
    """A zoo entry that cannot be read as written; the message names the variant and the key."""


# --- typed options, one class per backend ------------------------------------------------------


def _known(cls: type, raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {raw!r}")
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(known) or 'none'})")
    return dict(raw)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    return value


def _int(value: Any, where: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{where} must be an integer >= {low}, got {value!r}")
    return value


def _one_of(value: Any, allowed: tuple, where: str) -> Any:
    if value not in allowed:
        raise ConfigError(f"{where} must be one of {', '.join(map(str, allowed))}, got {value!r}")
    return value


class Options:
    """A backend's typed `options:`. `to_dict` gives the settings that are set (defaults of
    the backend's own are spelled out), for keys and JSON."""

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None, where: str = "options") -> Options:
        _known(cls, raw, where)
        return cls()

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)  # type: ignore[arg-type]
                if getattr(self, f.name) is not None}


@dataclass(frozen=True)
class NoOptions(Options):
    """A backend that takes no options (rembg runs its own session)."""


ORT_LEVELS = ("disable", "basic", "extended", "all")


@dataclass(frozen=True)
class OrtOptions(Options):
    """ONNX Runtime session settings (`options: {ort: {...}}`, measured by
    eval/quant/runtime_settings.py). None leaves ONNX Runtime's default."""

    graph_optimization: str | None = None  # disable | basic | extended | all (ORT's default: all)
    optimized_model: bool | None = None  # optimise once, save the graph in the cache, load that afterwards
    execution_mode: str | None = None  # sequential | parallel
    inter_op_threads: int | None = None  # threads running independent nodes at once (parallel mode)
    allow_spinning: bool | None = None  # false: intra-op threads sleep instead of spinning between tasks
    cpu_mem_arena: bool | None = None  # false: no CPU memory arena
    mem_pattern: bool | None = None  # false: no memory pattern planning
    dynamic_block_base: int | None = None  # intra-op work in dynamically sized blocks (session.dynamic_block_base)
    denormal_as_zero: bool | None = None  # flush denormal floats to zero (session.set_denormal_as_zero)
    trt_fp16: bool | None = None  # device tensorrt: build the TensorRT engine in fp16

    BOOLS: ClassVar[tuple[str, ...]] = ("optimized_model", "allow_spinning", "cpu_mem_arena", "mem_pattern",
                                        "denormal_as_zero", "trt_fp16")

    @property
    def level(self) -> str:
        """The graph optimisation level applied at load."""
        return self.graph_optimization or "all"

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None, where: str = "options.ort") -> OrtOptions:
        d = _known(cls, raw, where)
        for key in cls.BOOLS:
            if key in d:
                _bool(d[key], f"{where}.{key}")
        for key in ("inter_op_threads", "dynamic_block_base"):
            if key in d:
                _int(d[key], f"{where}.{key}")
        if "graph_optimization" in d:
            _one_of(d["graph_optimization"], ORT_LEVELS, f"{where}.graph_optimization")
        if "execution_mode" in d:
            _one_of(d["execution_mode"], ("sequential", "parallel"), f"{where}.execution_mode")
        return cls(**d)


@dataclass(frozen=True)
class OnnxOptions(Options):
    """The onnx backend's options: ONNX Runtime's session settings."""

    ort: OrtOptions = field(default_factory=OrtOptions)

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None, where: str = "options") -> OnnxOptions:
        d = _known(cls, raw, where)
        return cls(ort=OrtOptions.from_dict(d.get("ort"), f"{where}.ort"))

    def to_dict(self) -> dict[str, Any]:
        ort = self.ort.to_dict()
        return {"ort": ort} if ort else {}


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


@dataclass(frozen=True)
class TorchOptions(Options):
    """InSPyReNet's load-time options: transparent-background's `Remover(mode, resize, jit)`, and
    the torch builds applied on top (studio.backends.torch_options)."""

    mode: str = "base"  # base | fast | base-nightly
    resize: str = "static"  # static | dynamic
    jit: bool = False  # TorchScript (Remover's own)
    quantize_linear: str | None = None  # int8: dynamic int8 of every nn.Linear (CPU)
    compile: bool | str | None = None  # true, or a torch.compile mode

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None, where: str = "options") -> TorchOptions:
        d = _known(cls, raw, where)
        if "mode" in d:
            _one_of(d["mode"], ("base", "fast", "base-nightly"), f"{where}.mode")
        if "resize" in d:
            _one_of(d["resize"], ("static", "dynamic"), f"{where}.resize")
        if "jit" in d:
            _bool(d["jit"], f"{where}.jit")
        if d.get("quantize_linear") is not None:
            _one_of(d["quantize_linear"], ("int8",), f"{where}.quantize_linear")
        if d.get("compile") is not None and not isinstance(d["compile"], bool):
            _one_of(d["compile"], COMPILE_MODES, f"{where}.compile")
        return cls(**d)


@dataclass(frozen=True)
class GrabCutOptions(Options):
    """OpenCV GrabCut: the rectangle's inset (a fraction of each side), rounds, working size."""

    margin: float = 0.05
    iterations: int = 5
    max_side: int = 512

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None, where: str = "options") -> GrabCutOptions:
        d = _known(cls, raw, where)
        if "margin" in d:
            m = d["margin"]
            if isinstance(m, bool) or not isinstance(m, int | float) or not 0 <= m < 0.5:
                raise ConfigError(f"{where}.margin must be a fraction in [0, 0.5), got {m!r}")
            d["margin"] = float(m)
        if "iterations" in d:
            _int(d["iterations"], f"{where}.iterations", 1)
        if "max_side" in d:
            _int(d["max_side"], f"{where}.max_side", 8)
        return cls(**d)


OV_PRECISIONS = ("f32", "bf16", "f16")
OV_HINTS = ("latency", "throughput")


@dataclass(frozen=True)
class OpenVinoOptions(Options):
    """OpenVINO's CPU plugin settings (`studio.backends.openvino`, measured by eval/quant/openvino/)."""

    # Inference precision of the layers left in float. Spelled out: on CPUs with AVX512-BF16 or
    # AMX the plugin's own default is bf16, so an unsaid default would change numbers by machine.
    precision: str = "f32"
    hint: str = "latency"  # latency (one request on every thread asked for) | throughput
    streams: int | None = None  # NUM_STREAMS (None: the hint's choice)
    cache: bool = True  # the compiled-model cache under the models folder (cold start)

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None, where: str = "options") -> OpenVinoOptions:
        d = _known(cls, raw, where)
        if "precision" in d:
            _one_of(d["precision"], OV_PRECISIONS, f"{where}.precision")
        if "hint" in d:
            _one_of(d["hint"], OV_HINTS, f"{where}.hint")
        if d.get("streams") is not None:
            _int(d["streams"], f"{where}.streams", 1)
        if "cache" in d:
            _bool(d["cache"], f"{where}.cache")
        return cls(**d)


# --- the backend table -------------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    """One backend: the runtime that runs its variants, its runner, and its options."""

    runtime: str  # onnxruntime | openvino | torch | opencv
    runner: str  # "module:Class", imported on first use by studio.backends.runner_class
    options: type[Options]


# One row per backend. Every runner takes the same arguments (studio.backends.base.Runner).
BACKENDS: dict[str, Backend] = {
    "onnx": Backend("onnxruntime", "studio.backends.onnx:OnnxRunner", OnnxOptions),
    "rembg": Backend("onnxruntime", "studio.backends.rembg:RembgRunner", NoOptions),
    "inspyrenet": Backend("torch", "studio.backends.inspyrenet:InSPyReNetRunner", TorchOptions),
    "opencv": Backend("opencv", "studio.backends.opencv:GrabCutRunner", GrabCutOptions),
    "openvino": Backend("openvino", "studio.backends.openvino:OpenVinoRunner", OpenVinoOptions),
}


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
    preprocess: Preprocess = field(default_factory=Preprocess)
    postprocess: Postprocess = field(default_factory=Postprocess)
    file: str | None = None
    license: str = "unknown"
    trained_on: tuple[str, ...] = ()
    notes: str = ""
    options: Options = None  # type: ignore[assignment]  # None: the backend's defaults, filled in below
    rembg_session: str | None = None
    derived_from: str | None = None
    recipe: Recipe | None = None
    requires: str | None = None  # e.g. "cuda"
    default: bool = True  # part of "every installed variant" runs (parity references are not)

    def __post_init__(self) -> None:
        # Settings given as mappings (a zoo document, a test, `dataclasses.replace`) are parsed
        # here, once; an unknown or invalid key names the variant.
        if self.backend not in BACKENDS:
            raise ZooError(f"variant {self.id}: backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        options_cls = BACKENDS[self.backend].options
        try:
            if not isinstance(self.preprocess, Preprocess):
                object.__setattr__(self, "preprocess", Preprocess.from_dict(self.preprocess))
            if not isinstance(self.postprocess, Postprocess):
                object.__setattr__(self, "postprocess", Postprocess.from_dict(self.postprocess))
            if self.options is None or isinstance(self.options, dict):
                object.__setattr__(self, "options", options_cls.from_dict(self.options))
            elif not isinstance(self.options, options_cls):
                raise ConfigError(f"options: a {self.backend} variant takes {options_cls.__name__}, "
                                  f"got {type(self.options).__name__}")
            if isinstance(self.recipe, dict):
                object.__setattr__(self, "recipe", Recipe.from_dict(self.recipe))
        except (ConfigError, RecipeError) as exc:
            raise ZooError(f"variant {self.id}: {exc}") from None

    @property
    def runtime(self) -> str:
        """What runs the model: onnxruntime, openvino, torch or opencv (the backend table's)."""
        return BACKENDS[self.backend].runtime

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
    raise ZooError(f"a weights source needs one of url/npm/derive/untrained: {raw}")


def _variant(raw: dict[str, Any]) -> Variant:
    raw = dict(raw)
    vid = raw.get("id")
    known = [f.name for f in dataclasses.fields(Variant)]
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ZooError(f"variant {vid}: unknown key {unknown[0]!r} (known: {', '.join(known)})")
    missing = [k for k in ("id", "family", "backend") if k not in raw]
    if missing:
        raise ZooError(f"variant {vid}: needs {', '.join(missing)}")
    size = raw.get("input_size", "dynamic")
    raw["input_size"] = tuple(size) if isinstance(size, list) else size
    raw["trained_on"] = tuple(raw.get("trained_on") or ())
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
                raise ZooError(f"duplicate variant id {v.id!r} in the zoo")
            variants[v.id] = v
    for v in variants.values():
        if v.file and v.file not in files and not v.derived_from:
            raise ZooError(f"variant {v.id}: file {v.file!r} is not declared under files")
    return Zoo(variants=variants, files=files)


def zoo_documents(path: Path | None = None) -> list[dict[str, Any]]:
    """The main manifest plus every `*.yaml` beside it in `models/zoo.d/` (derived builds)."""
    path = path or settings.zoo_path()
    docs = [read_yaml(path)]
    extra_dir = path.parent / "zoo.d"
    if extra_dir.is_dir():
        docs += [read_yaml(p) for p in sorted(extra_dir.glob("*.yaml"))]
    return docs


def read_yaml(path: Path) -> Any:
    """A YAML file, safely, with libyaml's loader where PyYAML has it (8x faster: every
    `studio` command reads the zoo)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(path.read_text(), Loader=loader)  # noqa: S506 (a safe loader)


@functools.cache
def load_zoo(path: Path | None = None) -> Zoo:
    return parse_zoo(zoo_documents(path))
