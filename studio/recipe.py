"""Recipes: how a derived variant is made from its source, as data.

A recipe is a small mapping with a `kind` and that kind's parameters. It lives inline in a
zoo document (`models/zoo.d/*.yaml`, under a variant's `recipe:`) or in a recipe file that
the zoo points at with `recipe: {file: eval/quant/recipes/NAME.yaml}` (paths are relative to
the repository root). The sensitivity search writes such files.

Every parameter has a default, and `canonical()` fills them in, so a recipe that spells out
a default and one that leaves it out are the same recipe with the same hash. Keys under
`notes` (the search's table of what was kept in float and why, free text) are provenance:
they do not change what is built and are not hashed.

Kinds:
- `fp32-upcast`: an fp16 ONNX model with every fp16 tensor and Cast made fp32;
- `fp16`: an fp32 ONNX model converted to fp16 inside, fp32 at its inputs and outputs;
- `int8-dynamic`: ONNX Runtime's dynamic quantization (weights int8, activations per run);
- `int8-static`: ONNX Runtime QDQ (or QOperator) static quantization with a calibration set;
- `torch`: load-time options of an InSPyReNet checkpoint (dtype, dynamic int8 Linear,
  torch.compile); no new file, the source checkpoint is the artifact;
- `onnx-export`: an InSPyReNet checkpoint exported to ONNX at a fixed input size, which
  the ONNX recipes above can take as their source;
- `resize-input`: a fixed-size ONNX model at another input size (`studio.quant.resize`
  rewrites the traced Resize targets and proves that they follow);
- `nncf-int8`: an ONNX model read by OpenVINO and quantized by NNCF's post-training
  `quantize()` (preset, ignored scope, bias correction, ...), saved as OpenVINO IR
  (`studio.quant.ovquant`); it calibrates on images the repository makes by default.

An int8-static recipe may carry its calibration ranges (`calibration.ranges`, a file beside
the recipe, `studio.quant.ranges`): the build then reads no image. The hash covers the
ranges themselves, not the file's path.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from studio import settings
from studio.errors import StudioError

KINDS = ("fp32-upcast", "fp16", "int8-dynamic", "int8-static", "torch", "onnx-export", "resize-input", "nncf-int8")

# Which images a build's agreement check runs on when the recipe has no calibration set.
DEFAULT_CHECK = {"dataset": "embedded", "part": "all", "count": 8, "seed": 0}

DEFAULTS: dict[str, dict[str, Any]] = {
    "fp32-upcast": {"check": DEFAULT_CHECK},
    "fp16": {
        "check": DEFAULT_CHECK,
        # ORT's converter keeps these in fp32 by default; Resize and the like lose too much.
        "keep_io_types": True,
        "op_block_list": None,
        "outputs": None,
    },
    "int8-dynamic": {
        "check": DEFAULT_CHECK,
        "op_types": None,  # None: every op type ORT quantizes dynamically (Conv, MatMul, ...)
        "per_channel": False,
        "reduce_range": False,
        "weights": "uint8",
        "nodes_in_float": [],
        "outputs": None,
    },
    "int8-static": {
        "calibration": {
            "dataset": "embedded",  # embedded | sod-dev | a dataset folder (im/ + gt/)
            "part": "calibration",  # the first `count` images of a seeded order; `all`: every image
            "count": 16,
            "seed": 0,
            "method": "percentile",  # minmax | percentile | entropy
            "percentile": 99.999,
            "num_bins": 2048,
            # a ranges file (relative to the repository root): the build reads it instead of
            # the images. Not hashed as a path: the key hashes the ranges in it.
            "ranges": None,
        },
        "quantize": {
            "format": "qdq",  # qdq | qoperator
            "activations": "uint8",  # uint8 | int8
            "weights": "int8",  # int8 | uint8
            "per_channel": True,
            "reduce_range": False,
            "op_types": None,  # None: every op type ORT can quantize statically
            "nodes_in_float": [],  # node names kept in float
            "extra_options": {},  # passed to ORT's quantize_static (ActivationSymmetric, ...)
        },
        "outputs": None,  # graph outputs to keep (None: all); pruning skips unused side maps
        "check": None,  # None: the calibration images
    },
    "torch": {"check": {"dataset": "embedded", "part": "all", "count": 2, "seed": 0}},
    "onnx-export": {
        "check": {"dataset": "embedded", "part": "all", "count": 2, "seed": 0},
        "opset": 17,
        "input_size": None,  # None: the source variant's fixed input size
        "exporter": "torchscript",  # torchscript | dynamo (torch.export + onnxscript)
    },
    "resize-input": {
        "check": DEFAULT_CHECK,
        "input_size": None,  # [width, height]; None: the variant's input_size
    },
    "nncf-int8": {
        # the embedded sample by default: generated in code, so every clone builds the same bytes
        "calibration": {"dataset": "embedded", "part": "all", "count": 24, "seed": 0},
        "preset": "performance",  # performance (symmetric) | mixed (asymmetric activations)
        "target_device": "cpu",  # cpu | any
        "model_type": None,  # None | transformer (only then does SmoothQuant run)
        "subset_size": None,  # None: every calibration image
        "fast_bias_correction": True,
        "bias_correction": True,  # False: no bias correction at all
        "overflow_fix": None,  # None: NNCF's default | disable | first_layer_only | enable
        "smooth_quant": -1.0,  # SmoothQuant alpha for convolutions (-1: off; needs model_type transformer)
        "activations_range": None,  # None: NNCF's default | minmax | mean_minmax | histogram | ...
        "weights_per_channel": None,  # None: NNCF's default (per channel)
        "propagation": "merge_all_in_one",  # NNCF's quantizer propagation rule
        "ignored_scope": {"names": [], "patterns": [], "types": []},  # kept in float
        "outputs": None,  # graph outputs to keep (None: all)
        "check": None,  # None: sod-dev's seeded 16 when there, else the embedded sample
    },
}

ENUMS = {
    ("calibration", "method"): ("minmax", "percentile", "entropy"),
    ("calibration", "part"): ("calibration", "all"),
    ("quantize", "format"): ("qdq", "qoperator"),
    ("quantize", "activations"): ("uint8", "int8"),
    ("quantize", "weights"): ("uint8", "int8"),
}
TOP_ENUMS = {"exporter": ("torchscript", "dynamo"), "preset": ("performance", "mixed"),
             "target_device": ("cpu", "any"), "model_type": (None, "transformer"),
             "overflow_fix": (None, "disable", "first_layer_only", "enable"),
             "activations_range": (None, "minmax", "mean_minmax", "median_minmax", "mean_no_outliers_minmax",
                                   "mean_quantile", "histogram"),
             "propagation": ("merge_all_in_one", "merge_if_all_branches_same",
                             "merge_with_potential_requantization", "do_not_merge_branches")}


class RecipeError(StudioError, ValueError):
    """A recipe that cannot be built as written; the message says which key and why."""


def _merge(defaults: dict, given: dict, where: str) -> dict:
    out = copy.deepcopy(defaults)
    for key, value in given.items():
        if key not in defaults:
            raise RecipeError(f"recipe{where}: unknown key {key!r} (known: {', '.join(sorted(defaults))})")
        if isinstance(defaults[key], dict) and defaults[key] and key != "extra_options":
            if not isinstance(value, dict):
                raise RecipeError(f"recipe{where}.{key}: expected a mapping, got {value!r}")
            out[key] = _merge(defaults[key], value, f"{where}.{key}")
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass(frozen=True)
class Recipe:
    kind: str
    params: dict[str, Any]
    notes: dict[str, Any] = field(default_factory=dict, compare=False)
    file: Path | None = field(default=None, compare=False)  # the recipe file it was read from, if any

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Recipe:
        raw = dict(raw)
        if "file" in raw:
            if len(raw) > 1:
                raise RecipeError("a recipe with `file:` takes no other keys")
            return load_recipe_file(resolve_path(raw["file"]))
        kind = raw.pop("kind", None)
        if kind not in KINDS:
            raise RecipeError(f"recipe kind must be one of {', '.join(KINDS)}, got {kind!r}")
        notes = raw.pop("notes", None) or {}
        params = _merge(DEFAULTS[kind], raw, f"[{kind}]")
        for (section, key), allowed in ENUMS.items():
            if key in (params.get(section) or {}) and params[section][key] not in allowed:
                raise RecipeError(f"recipe {section}.{key} must be one of {allowed}, got "
                                  f"{params[section].get(key)!r}")
        for key, allowed in TOP_ENUMS.items():
            if key in params and params[key] not in allowed:
                raise RecipeError(f"recipe {key} must be one of {allowed}, got {params[key]!r}")
        if kind == "int8-static":
            cal = params["calibration"]
            if int(cal["count"]) < 1:
                raise RecipeError("recipe calibration.count must be at least 1")
            if not 0 < float(cal["percentile"]) <= 100:
                raise RecipeError("recipe calibration.percentile must be in (0, 100]")
            nodes = params["quantize"]["nodes_in_float"]
            params["quantize"]["nodes_in_float"] = sorted(dict.fromkeys(nodes))  # order is not meaning
        if kind == "int8-dynamic":
            params["nodes_in_float"] = sorted(dict.fromkeys(params["nodes_in_float"]))
        if kind == "nncf-int8":
            scope = params["ignored_scope"]
            for key in ("names", "patterns", "types"):  # order is not meaning
                scope[key] = sorted(dict.fromkeys(scope.get(key) or []))
            if int(params["calibration"]["count"]) < 1:
                raise RecipeError("recipe calibration.count must be at least 1")
        if kind == "resize-input" and params["input_size"] is not None:
            size = params["input_size"]
            if not (isinstance(size, list | tuple) and len(size) == 2 and all(isinstance(x, int) and x > 0 for x in size)):
                raise RecipeError(f"recipe input_size must be [width, height] in pixels, got {size!r}")
            params["input_size"] = [int(size[0]), int(size[1])]
        return cls(kind=kind, params=params, notes=dict(notes))

    def canonical(self) -> dict[str, Any]:
        """Everything that decides the artifact, defaults filled in."""
        return {"kind": self.kind, **self.params}

    def canonical_json(self) -> str:
        return json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    def hashed(self) -> dict[str, Any]:
        """The canonical recipe less what is hashed by content elsewhere: the ranges file's
        path (the key takes the hash of its ranges; moving the file changes nothing)."""
        out = self.canonical()
        if self.kind == "int8-static":
            out = copy.deepcopy(out)
            out["calibration"].pop("ranges", None)
        return out

    @property
    def ranges_path(self) -> Path | None:
        """The committed calibration ranges of an int8-static recipe, if it names a file."""
        if self.kind != "int8-static" or not self.params["calibration"].get("ranges"):
            return None
        return resolve_path(self.params["calibration"]["ranges"])

    def digest(self, inputs: dict[str, Any] | None = None) -> str:
        """sha256 of the recipe plus its inputs (source hash, tool versions, calibration set)."""
        blob = json.dumps({"recipe": self.hashed(), "inputs": inputs or {}}, sort_keys=True,
                          separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def check_set(self) -> dict[str, Any]:
        """The images the build's agreement check runs on: for int8-static, as many images
        as it calibrated on, taken from the ones it did not calibrate on."""
        if self.kind == "int8-static" and not self.params.get("check"):
            cal = self.params["calibration"]
            if cal.get("part") == "all":  # calibrated on the whole dataset: nothing is held out
                return {k: cal[k] for k in ("dataset", "part", "count", "seed")}
            return {"dataset": cal["dataset"], "part": "held-out", "count": int(cal["count"]),
                    "seed": cal["seed"], "skip": int(cal["count"])}
        if self.kind == "nncf-int8" and not self.params.get("check"):
            cal = self.params["calibration"]
            if cal["dataset"] == "embedded":  # every embedded image calibrated: check on photographs
                return {"dataset": "sod-dev", "part": "all", "count": 16, "seed": 0}
            return {"dataset": cal["dataset"], "part": "held-out", "count": int(cal["count"]),
                    "seed": cal["seed"], "skip": int(cal["count"])}
        return dict(self.params.get("check") or DEFAULT_CHECK)

    def to_yaml(self, header: str = "") -> str:
        """The recipe as a file: canonical keys in a fixed order, then the notes."""
        body = yaml.safe_dump(self.canonical(), sort_keys=True, default_flow_style=False, width=100)
        text = (header.rstrip() + "\n" if header else "") + body
        if self.notes:
            text += yaml.safe_dump({"notes": self.notes}, sort_keys=True, default_flow_style=False,
                                   width=100, allow_unicode=True)
        return text

    def with_params(self, **changes: Any) -> Recipe:
        """A copy with top-level or `section.key` parameters changed (validated again)."""
        raw = {"kind": self.kind, **copy.deepcopy(self.params)}
        for key, value in changes.items():
            section, _, sub = key.partition(".")
            if sub:
                raw.setdefault(section, {})[sub] = value
            else:
                raw[key] = value
        return Recipe.from_dict(raw)


def resize_target(variant_size: Any, recipe: Recipe, where: str = "") -> list[int]:
    """The [width, height] a `resize-input` recipe makes: its own, else the variant's."""
    size = recipe.params.get("input_size") or variant_size
    if not isinstance(size, list | tuple) or len(size) != 2:
        raise RecipeError(f"{where}: a resize-input build needs a fixed input_size, got {size!r}")
    return [int(size[0]), int(size[1])]


def resolve_path(path: str | Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else settings.REPO_ROOT / p


def load_recipe_file(path: str | Path) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file {path} does not exist")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise RecipeError(f"recipe file {path}: expected a mapping")
    if "file" in raw:
        raise RecipeError(f"recipe file {path} points at another file; inline it")
    try:
        return dataclasses.replace(Recipe.from_dict(raw), file=path)
    except RecipeError as exc:
        raise RecipeError(f"recipe file {path}: {exc}") from None


def write_recipe_file(recipe: Recipe, path: str | Path, header: str = "") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(recipe.to_yaml(header))
    return path
