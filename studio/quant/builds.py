"""The builds cache: derived variants built from their source by a recipe.

    models/builds/<variant>/<key16>/model.onnx   the artifact (none for `torch` recipes; an
                                                 `nncf-int8` build is OpenVINO IR: model.xml
                                                 and model.bin, hashed as one stream)
    models/builds/<variant>/<key16>/build.json   what was built, from what, how long it took,
                                                 and how well it agrees with its source
    models/builds/calibration/<key16>.json       activation ranges, shared by builds and searches

`key` is the sha256 of the canonical recipe plus its inputs: the source artifact's sha256
and the versions of the tools that write the bytes. It does not read any image, so finding
a build is cheap (`studio models` asks for every variant). The calibration images are
fingerprinted (ids and content hashes) in `build.json`, and `studio build` rebuilds when
they have changed. An int8-static recipe with committed ranges (`calibration.ranges`,
`studio.quant.ranges`) reads no image at all: its key hashes the ranges instead, and
`write_ranges` remakes the file from the images where they are.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from studio import labels, settings
from studio.errors import NotBuilt, StudioError
from studio.fileio import atomic_write_json, temp_dir_beside
from studio.recipe import Recipe, resize_target
from studio.zoo import Variant, load_zoo

ARTIFACT = "model.onnx"
RECORD = "build.json"
IR_KINDS = ("nncf-int8",)  # recipes whose artifact is OpenVINO IR (model.xml + model.bin)


def artifact_name(kind: str) -> str:
    return "model.xml" if kind in IR_KINDS else ARTIFACT


def artifact_files(path: str | Path) -> list[Path]:
    """The files an artifact is: an IR's .xml with its .bin, else the one file."""
    p = Path(path)
    return [p, p.with_suffix(".bin")] if p.suffix == ".xml" else [p]


def artifact_size(path: str | Path) -> int:
    return sum(f.stat().st_size for f in artifact_files(path))


def artifact_sha256(path: str | Path) -> str:
    """sha256 of the artifact's bytes: the file's, or an IR's .xml then .bin as one stream (a
    changed .bin is a changed model)."""
    import hashlib

    h = hashlib.sha256()
    for f in artifact_files(path):
        with open(f, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    return h.hexdigest()


class BuildError(StudioError):
    """A derived variant could not be built; the message says why."""


@dataclass
class BuildRecord:
    variant: str
    kind: str
    key: str
    path: str  # the artifact the runner loads (the source checkpoint for `torch` recipes)
    size: int
    sha256: str
    source: dict[str, Any]  # {variant, sha256, path}
    build_seconds: float
    untrained: bool = False
    agreement: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0

    @property
    def label(self) -> str:
        return labels.UNTRAINED if self.untrained else "trained"

    def installed(self):
        """The record as `studio.weights.store.Installed`, which the engine and fronts read."""
        from studio.weights.store import Installed

        return Installed(path=self.path, size=self.size, sha256=self.sha256,
                         source=f"build {self.kind} {self.key[:12]} from {self.source.get('variant')}",
                         untrained=self.untrained, installed_at=self.created_at)


# --- recipes and keys ------------------------------------------------------------------------


def is_derived(variant: Variant) -> bool:
    return variant.is_build


def recipe_of(variant: Variant) -> Recipe:
    if not is_derived(variant) or variant.recipe is None:
        raise BuildError(f"{variant.id} is not a derived variant (it has no derived_from and recipe)")
    return variant.recipe  # parsed and checked when the zoo was read


def source_of(variant: Variant) -> Variant:
    return load_zoo().get(variant.derived_from or "")


def tool_versions(kind: str) -> dict[str, str]:
    """Versions of what writes the artifact's bytes (a new version may write other bytes).
    Read from the installed packages' metadata: importing torch to name a key costs seconds
    (the app lists builds at start-up)."""
    from importlib.metadata import version

    out = {"onnx": version("onnx")}
    if kind in ("int8-dynamic", "int8-static", "fp16"):
        out["onnxruntime"] = version("onnxruntime")
    if kind in ("torch", "onnx-export"):
        out["torch"] = version("torch").split("+")[0]
    if kind in IR_KINDS:
        out["openvino"] = version("openvino")
        out["nncf"] = version("nncf")
    return out


def source_record(source: Variant):
    """The installed source (a weights file, or a build when the source is derived itself)."""
    from studio import weights

    if source.is_build:
        rec = installed(source)
        return rec.installed() if rec else None
    return weights.installed_for(source)


def key_for(variant: Variant, recipe: Recipe | None = None, source_sha256: str | None = None) -> str | None:
    """The build key of a variant's current recipe, or None when its source is not installed."""
    recipe = recipe or recipe_of(variant)
    if source_sha256 is None:
        rec = source_record(source_of(variant))
        if rec is None:
            return None
        source_sha256 = rec.sha256
    inputs: dict[str, Any] = {"source": variant.derived_from, "source_sha256": source_sha256,
                              "tools": tool_versions(recipe.kind)}
    if recipe.kind in ("torch", "onnx-export"):  # what the variant itself adds to the recipe
        inputs["variant"] = {"precision": variant.precision, "options": variant.options.to_dict(),
                             "input_size": list(variant.input_size) if isinstance(variant.input_size, tuple)
                             else variant.input_size}
    if recipe.kind == "resize-input":
        inputs["input_size"] = resize_target(variant.input_size, recipe, variant.id)
    if recipe.ranges_path is not None:  # the ranges' content, never the file's path
        from studio.quant.ranges import file_sha256

        inputs["ranges_sha256"] = file_sha256(recipe.ranges_path)
    if recipe.kind in IR_KINDS:  # what the build reads besides the recipe
        inputs["input_size"] = list(variant.input_size) if isinstance(variant.input_size, tuple) else None
        inputs["preprocess"] = variant.preprocess.to_dict()
        if recipe.params["calibration"]["dataset"] == "embedded":  # its pixels, without drawing them
            from studio.data.embedded import GENERATOR_VERSION

            inputs["embedded_generator"] = GENERATOR_VERSION
    return recipe.digest(inputs)


def build_dir(variant_id: str, key: str) -> Path:
    return settings.builds_dir() / variant_id / key[:16]


def read_record(folder: Path) -> BuildRecord | None:
    meta = folder / RECORD
    if not meta.is_file():
        return None
    try:
        rec = BuildRecord(**json.loads(meta.read_text()))
    except (ValueError, TypeError):
        return None
    if rec.kind != "torch":
        art = folder / artifact_name(rec.kind)
        if not all(f.is_file() for f in artifact_files(art)) or artifact_size(art) != rec.size:
            return None
        rec.path = str(art)  # the cache may have moved (STUDIO_CACHE)
    return rec


def installed(variant: Variant) -> BuildRecord | None:
    """The build of the variant's current recipe, when it exists."""
    if not is_derived(variant):
        return None
    try:
        key = key_for(variant)
    except StudioError:
        return None
    if key is None:
        return None
    rec = read_record(build_dir(variant.id, key))
    if recipe_of(variant).kind == "torch":
        # Load-time options: the source checkpoint is the artifact, so the variant runs as
        # soon as its source is installed; `studio build` only adds the agreement check.
        src = source_record(source_of(variant))
        if src is None:
            return None
        if rec is None or rec.sha256 != src.sha256:
            rec = BuildRecord(variant=variant.id, kind="torch", key=key, path=src.path, size=src.size,
                              sha256=src.sha256, source={"variant": variant.derived_from, "sha256": src.sha256,
                                                         "path": src.path},
                              build_seconds=0.0, untrained=bool(src.untrained),
                              recipe=recipe_of(variant).canonical(), created_at=src.installed_at)
        rec.path = src.path
    return rec


def verify(variant: Variant) -> BuildRecord:
    """Re-hash a build's artifact against its record."""
    from studio.weights.store import check_sha256

    rec = installed(variant)
    if rec is None:
        raise NotBuilt(f"{variant.id}: not built. Build it with: {build_command(variant)}")
    if rec.path.endswith(".xml"):  # OpenVINO IR: the .xml and .bin as one stream
        if artifact_sha256(rec.path) != rec.sha256:
            from studio.errors import WeightsNotInstalled

            raise WeightsNotInstalled(f"{variant.id}: the build is corrupt (its IR's sha256 changed); "
                                      f"rebuild with: studio build {variant.id} --force")
        return rec
    check_sha256(rec.path, rec.sha256, f"{variant.id}: the build", f"rebuild with: studio build {variant.id} --force")
    return rec


def build_command(variant: Variant) -> str:
    return f"studio build {variant.id}"


# --- building ----------------------------------------------------------------------------------


Progress = Callable[[str], None]


def _say(progress: bool | Progress) -> Progress:
    if callable(progress):
        return progress
    return (lambda msg: print(msg, flush=True)) if progress else (lambda msg: None)


def ensure_source(variant: Variant, progress: bool | Progress = True, threads: int = 0):
    """The source's installed record, building or pulling it first when needed."""
    from studio import weights

    src = source_of(variant)
    if is_derived(src):
        return build(src, progress=progress, threads=threads).installed()
    rec = source_record(src)
    if rec is not None:
        return rec
    if src.file and src.backend != "inspyrenet":
        res = weights.pull([src.id], progress=bool(progress))[src.id]
        if isinstance(res, Exception):
            raise BuildError(f"{variant.id}: its source {src.id} is not installed and could not be "
                             f"pulled: {res}")
        return res
    raise BuildError(f"{variant.id}: its source {src.id} is not installed. Fetch it with: "
                     f"{weights.pull_command(src)}")


def build(variant: Variant | str, force: bool = False, progress: bool | Progress = True,
          threads: int = 0, check: bool = True, recipe: Recipe | None = None) -> BuildRecord:
    """Build a derived variant (or return the cached build of its current recipe).

    `recipe` overrides the zoo's (used by `studio build --recipe`). `check` measures the
    build's agreement with its source on the recipe's check images."""
    v = load_zoo().get(variant) if isinstance(variant, str) else variant
    recipe = recipe or recipe_of(v)
    say = _say(progress)
    src_rec = ensure_source(v, progress, threads)
    key = key_for(v, recipe, src_rec.sha256)
    folder = build_dir(v.id, key)
    calib_fp = None
    if recipe.kind == "int8-static":
        from studio.quant.ranges import calibration_fingerprint

        calib_fp = calibration_fingerprint(recipe)
    elif recipe.kind in IR_KINDS:
        from studio.quant.images import ImageSet

        calib_fp = ImageSet.from_dict(recipe.params["calibration"]).fingerprint()

    def current(tell: bool) -> BuildRecord | None:
        """The build already in `folder` for this recipe and these calibration images, if any."""
        existing = read_record(folder)
        if existing is None or force:
            return None
        if calib_fp is not None and (existing.calibration or {}).get("content_sha256") != calib_fp["content_sha256"]:
            if tell:
                say(f"{v.id}: the calibration images changed since the last build; rebuilding")
            return None
        if existing.kind == "torch":
            existing.path = src_rec.path
        if check and _check_is_stale(existing, recipe, v):  # --no-check before, another check set or runtime
            _check(v, recipe, existing, folder, threads, progress, say)
        return existing

    if (done := current(tell=False)) is not None:
        return done
    from studio.weights.store import file_lock

    # One builder per build at a time, across processes (the app's jobs, the CLI, test workers):
    # without it a second builder's replace could remove the folder a first one's caller reads.
    with file_lock(f"build-{key[:24]}"):
        if (done := current(tell=True)) is not None:  # built while this process waited
            return done
        return _make(v, recipe, src_rec, key, folder, calib_fp, progress, threads, check, say)


def _make(v: Variant, recipe: Recipe, src_rec: Any, key: str, folder: Path, calib_fp: dict | None,
          progress: bool | Progress, threads: int, check: bool, say: Callable[[str], None]) -> BuildRecord:
    """Make the artifact in a temporary folder beside `folder`, record it, and rename it into place."""
    from studio.quant import makers

    folder.parent.mkdir(parents=True, exist_ok=True)
    say(f"building {v.id} ({recipe.kind}) from {v.derived_from} [{key[:12]}]")
    tmp = temp_dir_beside(folder, prefix=f".{key[:16]}.")
    try:
        t0 = time.perf_counter()
        name = artifact_name(recipe.kind)
        made = makers.make(v, recipe, Path(src_rec.path), tmp / name, progress=progress, threads=threads)
        seconds = time.perf_counter() - t0
        if recipe.kind == "torch":
            size, sha, path = src_rec.size, src_rec.sha256, src_rec.path
        else:
            art = tmp / name
            _must_load(v, art)
            size, sha, path = artifact_size(art), artifact_sha256(art), str(folder / name)
        rec = BuildRecord(
            variant=v.id, kind=recipe.kind, key=key, path=path, size=size, sha256=sha,
            source={"variant": v.derived_from, "sha256": src_rec.sha256, "path": src_rec.path},
            build_seconds=round(seconds, 3), untrained=bool(src_rec.untrained),
            calibration=made.get("calibration") or calib_fp, recipe=recipe.canonical(),
            inputs={"tools": tool_versions(recipe.kind), "notes": made.get("notes")},
            created_at=time.time(),
        )
        _write_record(tmp, rec)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"built {v.id}: {rec.size / 1e6:.1f} MB in {rec.build_seconds:.1f} s")
    if check:
        _check(v, recipe, rec, folder, threads, progress, say)
    return rec


def write_ranges(variant: Variant | str, out: str | Path | None = None, progress: bool | Progress = True,
                 threads: int = 0) -> Path:
    """(Re)make an int8-static recipe's committed ranges file from its calibration images
    (which must be on this machine); `out` defaults to the recipe's `calibration.ranges`."""
    from importlib.metadata import version

    from studio.quant import makers
    from studio.quant.images import ImageSet
    from studio.quant.ranges import write_ranges as write_file
    from studio.weights.store import hash_file

    v = load_zoo().get(variant) if isinstance(variant, str) else variant
    recipe = recipe_of(v)
    if recipe.kind != "int8-static":
        raise BuildError(f"{v.id}: only int8-static recipes carry calibration ranges")
    dest = Path(out) if out else recipe.ranges_path
    if dest is None:
        raise BuildError(f"{v.id}: its recipe names no calibration.ranges file; pass --out")
    src_rec = ensure_source(v, progress, threads)
    prepared = makers.prepared_model(Path(src_rec.path), recipe.params["outputs"], makers.calibration_dir())
    ranges, _ = makers.calibration_ranges(v, recipe, prepared, progress, threads)
    cal = recipe.params["calibration"]
    meta = {
        **ImageSet.from_dict(cal).provenance(),
        "variant": v.id,
        "source": {"variant": v.derived_from, "sha256": src_rec.sha256},
        "measured_on": {"prepared_sha256": hash_file(prepared, ("sha256",))["sha256"],
                        "input_size": list(v.input_size), "preprocess": v.preprocess.to_dict(),
                        "outputs": recipe.params["outputs"], "num_bins": int(cal["num_bins"]),
                        "tools": {"onnx": version("onnx"), "onnxruntime": version("onnxruntime")}},
        "regenerate": f"studio build --write-ranges {v.id}",
    }
    path = write_file(dest, ranges, meta)
    _say(progress)(f"wrote {path} ({len(ranges.ranges)} tensors, {ranges.method})")
    return path


def _must_load(v: Variant, artifact: Path) -> None:
    """An artifact its runtime refuses is never recorded as built."""
    if artifact.suffix == ".xml":
        import openvino as ov

        try:
            ov.Core().read_model(str(artifact))
        except Exception as exc:
            raise StudioError(f"{v.id}: the build does not load in OpenVINO: {exc}") from exc
        return
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # load, not optimise
    try:
        ort.InferenceSession(str(artifact), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise StudioError(f"{v.id}: the build does not load in ONNX Runtime: {exc}") from exc


def _check(v: Variant, recipe: Recipe, rec: BuildRecord, folder: Path, threads: int,
           progress: bool | Progress, say: Progress) -> None:
    from studio.quant.agreement import agreement_with_source
    from studio.quant.images import CalibrationDataMissing

    src = source_of(v)
    src_rec = source_record(src)
    try:
        rec.agreement = agreement_with_source(src, Path(src_rec.path), v, Path(rec.path), recipe.check_set(),
                                              threads=threads, progress=bool(progress))
    except CalibrationDataMissing as exc:
        # The build itself needed no image (committed ranges); only its check does.
        say(f"agreement check skipped: {exc}")
        return
    _write_record(folder, rec)
    a = rec.agreement
    say(f"agreement with {v.derived_from} on {labels.check_images(a)}: "
        f"IoU {a['iou_mean']:.4f} (min {a['iou_min']:.4f}), MAE {a['mae_mean']:.5f}")


def checked_runtime(rec: BuildRecord) -> str | None:
    """The runtime a record's agreement was measured on. Records from before it was written down
    were checked on the file's own runtime: an IR on OpenVINO, an ONNX file on ONNX Runtime (the
    QDQ file of `isnet-general-use-cpu` included, which now runs on OpenVINO)."""
    if rec.agreement is None:
        return None
    return rec.agreement.get("runtime") or {".xml": "openvino", ".onnx": "onnxruntime"}.get(Path(rec.path).suffix)


def _check_is_stale(rec: BuildRecord, recipe: Recipe, v: Variant) -> bool:
    """No agreement yet, one measured on other images than the recipe's check set, or on another
    runtime than the variant's."""
    from studio.quant.agreement import check_set_record
    from studio.quant.images import ImageSet

    if rec.agreement is None or checked_runtime(rec) not in (None, v.runtime):
        return True
    return rec.agreement.get("set") != check_set_record(ImageSet.from_dict(recipe.check_set()))


def _write_record(folder: Path, rec: BuildRecord) -> None:
    atomic_write_json(folder / RECORD, asdict(rec), sort_keys=True)


def adhoc_variant(source_id: str, recipe: Recipe, as_id: str) -> Variant:
    """A derived variant for a recipe file that is not in the zoo, shaped like its source."""
    src = load_zoo().get(source_id)
    precision = {"fp16": "fp16", "int8-dynamic": "int8-dynamic", "int8-static": "int8-static",
                 "fp32-upcast": "fp32", "nncf-int8": "int8-static"}.get(recipe.kind, src.precision)
    size = src.input_size
    if recipe.kind == "resize-input" and recipe.params.get("input_size"):
        size = tuple(recipe.params["input_size"])
    if recipe.kind in IR_KINDS:  # OpenVINO IR runs on the openvino backend, with its default options
        return dataclasses.replace(src, id=as_id, precision=precision, derived_from=src.id, input_size=size,
                                   recipe=recipe, file=f"{as_id}.xml", backend="openvino", options=None,
                                   notes=f"ad-hoc build of {source_id}")
    return dataclasses.replace(src, id=as_id, precision=precision, derived_from=src.id, input_size=size,
                               recipe=recipe, file=f"{as_id}.onnx",
                               notes=f"ad-hoc build of {source_id}")


def derived_variants() -> list[Variant]:
    return [v for v in load_zoo().variants.values() if is_derived(v)]


def clean(variant: Variant, keep_current: bool = True) -> list[Path]:
    """Remove a variant's builds of older recipes (and the current one unless kept)."""
    root = settings.builds_dir() / variant.id
    if not root.is_dir():
        return []
    current = key_for(variant) if keep_current else None
    removed = []
    for d in sorted(root.iterdir()):
        if d.is_dir() and not d.name.startswith(".") and (current is None or d.name != current[:16]):
            shutil.rmtree(d)
            removed.append(d)
    return removed
