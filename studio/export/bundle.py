"""`studio export VARIANT DIR`: a serving bundle for one ONNX Runtime or OpenVINO variant that runs
without the studio and without torch.

    DIR/model.onnx        the variant's model, pre-optimised by ONNX Runtime at export (onnxruntime)
    DIR/model.xml, .bin   the variant's model as OpenVINO IR, first output only (openvino)
    DIR/model.*.blob      OpenVINO's compiled model for the exporting machine's kind of CPU and
                          OpenVINO version: a start there imports it instead of compiling (openvino)
    DIR/model.json        input size, preprocessing, postprocessing, pixel cap, ORT levels, provenance
    DIR/serve.py          the HTTP server (rembg's API), a copy of studio/export/templates/serve.py
    DIR/prepost.py        pre/post-processing and image decoding, a copy of studio/prepost.py (the
                          studio's own code, so the bundle's masks are the studio's)
    DIR/requirements.txt  the runtime, numpy, Pillow and the HTTP stack (uvicorn, Starlette,
                          python-multipart) with what they need, pinned to the versions tested here
    DIR/Dockerfile        the CPU image
    DIR/Dockerfile.cuda   the GPU image (onnxruntime-gpu), for ONNX Runtime variants that gain from a GPU
    DIR/README.md         how to run and call it; the variant's measured quality, latency, cold start
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import shutil
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from studio import labels, prepost, settings
from studio.errors import StudioError
from studio.fileio import atomic_write_json, atomic_write_text, temp_dir_beside
from studio.zoo import OnnxOptions, OrtOptions, Variant, load_zoo

TEMPLATE = Path(__file__).resolve().parent / "templates" / "serve.py"
PREPOST = Path(prepost.__file__).resolve()
BUNDLE_FORMAT = 1
MODEL_FILE = "model.onnx"
# ONNX Runtime's graph optimisation (eval/export_optlevel.py, IS-Net int8-static, fresh processes,
# 4 interleaved repetitions on this 2-core machine under load): session init with the original
# model at `all` 0.78 s; saved at `basic` then loaded at `all` 0.79 s; saved at `extended` 0.71 s;
# saved at `all` and loaded with no optimisation 0.38 s; inference the same within the noise and
# outputs identical. Loading an `extended`-saved model at less than `all` runs 30-50 % slower (no
# NCHWc layouts). The `all`-saved file is fastest but specific to the CPU it was saved on (its NCHWc
# block size: 16 with AVX-512, 8 with AVX2) and its fusions to the CPU provider, so the bundle ships
# the portable `basic` model (also the CUDA image's) and `serve.py --prepare` writes the `all` one on
# the machine that serves (the CPU Docker image does it at build); a start on another kind of CPU
# falls back to the portable model by itself.
SAVE_LEVEL = "basic"
LOAD_LEVEL = "all"
ORT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
              "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
# Precisions whose kernels a GPU runs: the int8 builds are CPU builds (CUDA has no QLinearConv or
# ConvInteger; a QDQ model there runs dequantised, no faster than fp32).
CUDA_PRECISIONS = ("fp32", "fp16", "bf16")
# What the bundle's server imports besides its runtime: the image path and the HTTP stack
# (uvicorn with h11, Starlette, python-multipart for the form). Chosen by eval/export_attacks.py
# and the cold-start table: waitress imports lighter but reads a chunk-size line that never ends
# with no limit (quadratic: 11 MB in 13 s of one core), where h11 refuses it at --max-header-kb.
SERVER_PACKAGES = ("numpy", "pillow", "uvicorn", "starlette", "python-multipart")
# The bundle's runtimes: which backend's variants each serves, and the packages it needs. A
# runtime here must have a class in serve.py's RUNTIMES too.
BUNDLE_RUNTIMES: dict[str, dict[str, Any]] = {
    "onnxruntime": {"backend": "onnx", "packages": ("onnxruntime",), "gpu_package": "onnxruntime-gpu[cuda,cudnn]"},
    # OpenVINO's CPU plugin only: no GPU image
    "openvino": {"backend": "openvino", "packages": ("openvino",), "gpu_package": None},
}
OV_MODEL_FILE, OV_WEIGHTS_FILE = "model.xml", "model.bin"
# the embedded-sample pairs the export checks the bundle on, against the studio's own mattes
CHECK_PAIRS = (0, 5)


class ExportError(StudioError):
    """A variant that cannot be exported, or a folder that cannot take the bundle."""


@dataclass
class ExportResult:
    variant: str
    dir: Path
    files: dict[str, int]
    model_sha256: str
    cuda: bool
    agreement: dict[str, Any] | None = None
    benchmark: dict[str, Any] | None = None
    cold_start: dict[str, Any] | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["dir"] = str(self.dir)
        return d


# --- what can be exported ------------------------------------------------------------------------

def bundle_runtime(variant: Variant) -> str | None:
    """The bundle runtime that serves this variant (its zoo runtime), or None when none does."""
    spec = BUNDLE_RUNTIMES.get(variant.runtime)
    return variant.runtime if spec and spec["backend"] == variant.backend else None


def onnx_alternatives(variant: Variant, limit: int = 5) -> list[str]:
    """Exportable variants to export instead: those of the same weights file first, then the
    family's."""
    family = [v for v in load_zoo().variants.values()
              if bundle_runtime(v) and v.family == variant.family and v.id != variant.id]
    family.sort(key=lambda v: v.file != variant.file or not variant.file)  # stable: zoo order within
    return [v.id for v in family[:limit]]


def check_exportable(variant: Variant) -> None:
    """Raise ExportError saying why when the bundle cannot serve this variant."""
    if bundle_runtime(variant) is None:
        why = {
            "rembg": "it runs inside rembg's own session",
            "inspyrenet": "it is a torch model",
            "opencv": "GrabCut has no model file to serve",
        }.get(variant.backend, f"its backend is {variant.backend}")
        alt = onnx_alternatives(variant)
        hint = (f" Export an ONNX variant of {variant.family} instead: {', '.join(alt)}." if alt
                else " No ONNX variant of this family is in the zoo.")
        served = ", ".join(f"{s['backend']} variants on {name}" for name, s in BUNDLE_RUNTIMES.items())
        raise ExportError(f"{variant.id} cannot be exported: {why}, and the bundle serves ONNX and OpenVINO "
                          f"models ({served}; no studio, no torch).{hint}")
    if not isinstance(variant.input_size, tuple):
        raise ExportError(f"{variant.id} cannot be exported: the bundle needs a fixed input size, "
                          f"and its zoo entry says {variant.input_size!r}")
    if variant.requires and variant.requires != "cuda":
        raise ExportError(f"{variant.id} needs {variant.requires}, which the bundle does not provide")


def cuda_allowed(variant: Variant) -> bool:
    """Whether the bundle gets a GPU image: a float build on a runtime that has a GPU package."""
    spec = BUNDLE_RUNTIMES.get(variant.runtime) or {}
    return variant.precision in CUDA_PRECISIONS and bool(spec.get("gpu_package"))


LEVEL_ORDER = ("disable", "basic", "extended", "all")
# ONNX Runtime session settings a variant may carry (`options.ort`, studio/backends/onnx.py) that
# the server applies as the studio does; the optimisation level is handled by the levels above
SESSION_KEYS = ("execution_mode", "inter_op_threads", "allow_spinning", "cpu_mem_arena", "mem_pattern",
                "dynamic_block_base", "denormal_as_zero")


def ort_plan(variant: Variant) -> dict[str, Any]:
    """The levels the model is saved and loaded at, and the session settings, for this variant:
    never more optimisation than the studio applies to it (fusions can move the last bits)."""
    o = variant.options.ort if isinstance(variant.options, OnnxOptions) else OrtOptions()
    save = min(SAVE_LEVEL, o.level, key=LEVEL_ORDER.index)
    load = min(LOAD_LEVEL, o.level, key=LEVEL_ORDER.index)
    given = o.to_dict()
    return {"saved_optimization": save, "load_optimization": load,
            "session": {k: given[k] for k in SESSION_KEYS if k in given}}


# --- the pieces ----------------------------------------------------------------------------------

def sha256_of(path: Path) -> str:
    from studio.weights.store import hash_file

    return hash_file(path, ("sha256",))["sha256"]


def optimise_model(src: Path, dst: Path, level: str = SAVE_LEVEL) -> None:
    """Let ONNX Runtime apply its graph optimisations at `level` once, and save the result."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, ORT_LEVELS[level])
    opts.optimized_model_filepath = str(dst)
    opts.log_severity_level = 3
    try:
        ort.InferenceSession(str(src), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ExportError(f"ONNX Runtime could not optimise {src.name}: {type(exc).__name__}: {exc}") from exc
    if not dst.is_file():
        raise ExportError(f"ONNX Runtime did not write the optimised model to {dst}")


def write_openvino_model(src: Path, work: Path) -> None:
    """The variant's model as IR in `work` (model.xml + model.bin), keeping its first output only,
    as the studio's openvino runner does: the server compiles the IR by path, which reads faster
    than an ONNX file (no conversion at start). An IR with one output is copied byte for byte."""
    import openvino as ov

    try:
        model = ov.Core().read_model(str(src))
        if src.suffix == ".xml" and len(model.outputs) == 1:
            shutil.copyfile(src, work / OV_MODEL_FILE)
            shutil.copyfile(src.with_suffix(".bin"), work / OV_WEIGHTS_FILE)
            return
        for result in model.get_results()[1:]:
            model.remove_result(result)
        model.validate_nodes_and_infer_types()
        # the weights as they are: fp16 compression would change an fp32 variant's numbers
        ov.save_model(model, str(work / OV_MODEL_FILE), compress_to_fp16=False)
    except Exception as exc:
        raise ExportError(f"OpenVINO could not convert {src.name}: {type(exc).__name__}: {exc}") from exc


def openvino_plan(variant: Variant) -> dict[str, Any]:
    """The compile settings the server applies, from the variant's options (as the studio's runner)."""
    from studio.zoo import OpenVinoOptions

    o = variant.options if isinstance(variant.options, OpenVinoOptions) else OpenVinoOptions()
    return {"precision": o.precision, "hint": o.hint, "streams": o.streams}


def ships_compiled(variant: Variant) -> bool:
    """Whether an OpenVINO bundle ships its compiled model by default: for the int8 builds, where
    compiling runs the plugin's low-precision passes. Measured (eval/quant/openvino/coldstart.py,
    fresh processes, 2 threads, this 2-core machine under load): the NNCF int8 IR compiles in
    1.67 s and its 75 MB blob imports in 0.42 s; the exported server's first answer comes 0.75 s
    sooner with it (2.29 s vs 3.04 s, median of 5, eval/results/coldstart/table-20261207-125817.md);
    the fp32 IR compiles in 0.85 s and its blob (as large as the model)
    imports in 0.8-1.5 s, so a float bundle ships the IR only. `serve.py --prepare` writes the
    blob on the serving machine either way."""
    return variant.precision not in CUDA_PRECISIONS


def prepare_compiled(bundle: Path) -> str:
    """Compile the bundle's IR here with the bundle's own serve.py (`serve.py --prepare` in this
    process) and save the compiled blob beside it; returns its file name."""
    serve = load_template(bundle / "serve.py", f"matting_bundle_serve_{uuid.uuid4().hex[:8]}")
    args = serve.parse_args(["--config", str(bundle / "model.json"), "--device", "cpu", "--quiet"])
    cfg = serve.read_config(args.config)
    return Path(serve.RUNTIMES[cfg["runtime"]](cfg, args).prepare()).name


def runtime_pins(runtime: str = "onnxruntime") -> dict[str, str]:
    """The versions installed (and tested) here of everything the bundle's server needs: its
    runtime, the image path and the HTTP stack, with what those require in turn (their
    metadata's requirements for this Python, extras left out). Canonical name -> version."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    todo = [*BUNDLE_RUNTIMES[runtime]["packages"], *SERVER_PACKAGES]
    while todo:
        name = canonicalize_name(todo.pop(0))
        if name in pins:
            continue
        try:
            pins[name] = metadata.version(name)
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            raise ExportError(f"{name} is not installed here, so the bundle cannot be tested or pinned") from None
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return pins


def load_template(path: Path, name: str = "matting_bundle_serve"):
    """Import a bundle's serve.py as a module (for the export's check and the tests)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[name] = module  # registered first, as an import does: dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _pick(metrics: dict | None) -> dict:
    return {k: metrics[k] for k in ("iou", "boundary_iou", "mae", "s_measure") if k in (metrics or {})}


def benchmark_figures(variant_id: str, results_dir: Path | None = None) -> dict[str, Any] | None:
    """The variant's row in the newest benchmark summary.json under the results folder that
    measured it (quality, latency, cold start), with the run that measured it; None if none did."""
    root = Path(results_dir) if results_dir else settings.results_dir()
    if not root.is_dir():
        return None
    runs = sorted((p for p in root.glob("**/summary.json") if "cache" not in p.parts),
                  key=lambda p: p.stat().st_mtime, reverse=True)
    for path in runs:
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for row in summary.get("variants") or []:
            if row.get("id") != variant_id or row.get("failed") or not row.get("latency"):
                continue
            env = summary.get("environment") or {}
            ds = summary.get("dataset") or {}
            ref = summary.get("reference") or (summary.get("config") or {}).get("reference")
            if isinstance(ref, str):
                ref = {"kind": "variant", "id": ref}
            return {
                "run": str(path), "created": summary.get("created"),
                "dataset": ds.get("name"), "n_images": row.get("n_images"), "n_scored": row.get("n_scored"),
                "reference": ref or {"kind": "ground_truth"},
                "quality": _pick(row.get("metrics")), "quality_held_out": _pick(row.get("metrics_held_out")),
                "calibrated_on": row.get("calibrated_on") or 0, "untrained": bool(row.get("untrained")),
                "latency_ms": {k: row["latency"].get(k) for k in ("p50_ms", "p95_ms", "mean_ms")},
                "cold_start_s": (row.get("cold_start") or {}).get("total_s"),
                "bundle_cold_start": row.get("bundle_cold_start"),
                "peak_rss_mb": row.get("peak_rss_mb"), "flags": row.get("flags") or [],
                "machine": {k: env.get(k) for k in ("cpu", "cpu_count", "threads", "device")},
            }
    return None


def load_bundle_runtime(bundle: Path, *argv: str) -> tuple[Any, dict[str, Any], Any]:
    """The bundle's own serve.py and its runtime, loaded in this process as `serve.py *argv` would
    load them: (serve module, its config, the loaded runtime)."""
    serve = load_template(bundle / "serve.py", f"matting_bundle_serve_{uuid.uuid4().hex[:8]}")
    args = serve.parse_args(["--config", str(bundle / "model.json"), "--device", "cpu", "--quiet", *argv])
    cfg = serve.read_config(args.config)
    runtime = serve.RUNTIMES[cfg["runtime"]](cfg, args)
    runtime.load(lambda name: None)
    return serve, cfg, runtime


def agreement_check(bundle: Path, variant: Variant, pairs: tuple[int, ...] = CHECK_PAIRS) -> dict[str, Any]:
    """Run the bundle's own code (its serve.py, prepost.py and model, in this process) and the
    studio's engine on the same embedded-sample images; compare the 8-bit mattes. An OpenVINO
    bundle that ships a compiled blob is checked with it and with the IR compiled (the fallback)."""
    import numpy as np

    from studio import engine
    from studio.data.embedded import pair
    from studio.imageio import alpha_to_uint8

    cfg = json.loads((bundle / "model.json").read_text())
    loads: list[tuple[str, ...]] = [()]
    if (cfg.get("openvino") or {}).get("compiled"):
        loads.append(("--portable",))
    rows, studio = [], {}
    for argv in loads:
        serve, scfg, rt = load_bundle_runtime(bundle, *argv)
        pp = serve.prepost
        for i in pairs:
            p = pair(i)
            x = pp.preprocess(p.image, scfg["input_size"], scfg["preprocess"])
            ours = pp.postprocess(rt.run(x)[0, 0], (p.image.shape[1], p.image.shape[0]), scfg["postprocess"])
            if i not in studio:
                studio[i] = alpha_to_uint8(engine.predict(variant, p.image).alpha)
            a, b = ours > 127, studio[i] > 127
            union = int((a | b).sum())
            rows.append({"image": p.id, "model_file": rt.model_file,
                         "iou": float((a & b).sum() / union) if union else 1.0,
                         "max_abs_diff": int(np.abs(ours.astype(int) - studio[i].astype(int)).max())})
    return {"images": list(dict.fromkeys(r["image"] for r in rows)),
            "model_files": list(dict.fromkeys(r["model_file"] for r in rows)),
            "iou_min": min(r["iou"] for r in rows),
            "max_abs_diff_8bit": max(r["max_abs_diff"] for r in rows), "per_image": rows,
            "reference": f"studio predict -m {variant.id} (the engine, in-process)"}


# --- the text files --------------------------------------------------------------------------------

def requirements_text(pins: dict[str, str], runtime: str = "onnxruntime", gpu: bool = False) -> str:
    """requirements.txt: every package pinned, the ones the server names first."""
    from packaging.utils import canonicalize_name

    spec = BUNDLE_RUNTIMES[runtime]
    direct = [canonicalize_name(n) for n in (*spec["packages"], *SERVER_PACKAGES)]
    head = ("# The GPU server's dependencies. The [cuda,cudnn] extras install the CUDA and cuDNN\n"
            "# libraries this onnxruntime-gpu was built against, as pip wheels; serve.py --device cuda\n"
            "# preloads them (onnxruntime.preload_dlls), so no CUDA base image is needed.\n" if gpu else
            f"# The server's dependencies, pinned to the versions this bundle was tested with\n"
            f"# (Python {platform.python_version()}).\n")

    def line(name: str) -> str:
        if gpu and name == canonicalize_name(spec["packages"][0]):
            return f"{spec['gpu_package']}=={pins[name]}"
        return f"{name}=={pins[name]}"

    rest = sorted(set(pins) - set(direct))
    return (head + "".join(line(n) + "\n" for n in direct)
            + ("# ... and what those need\n" + "".join(line(n) + "\n" for n in rest) if rest else ""))


def model_files(cfg: dict[str, Any]) -> list[str]:
    """The bundle's model files named in its model.json (the model, its weights, a compiled blob)."""
    compiled = (cfg.get("openvino") or {}).get("compiled") or {}
    return [f for f in (cfg.get("model_file", MODEL_FILE), cfg.get("weights_file"), compiled.get("file")) if f]


def dockerfile_text(variant: Variant, gpu: bool, cfg: dict[str, Any] | None = None) -> str:
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    files = " ".join(model_files(cfg or {}))
    reqs = "requirements-cuda.txt" if gpu else "requirements.txt"
    device = ["--device", "cuda"] if gpu else []
    cmd = json.dumps(["python", "serve.py", "--host", "0.0.0.0", "--port", "7000", *device])
    what = ("GPU image: onnxruntime-gpu with its CUDA and cuDNN wheels on python:{py}-slim.\n"
            "# Run with the NVIDIA container toolkit: docker run --gpus all -p 7000:7000 IMAGE\n"
            "# (the host needs an NVIDIA driver new enough for the CUDA that onnxruntime-gpu was built with)"
            if gpu else "CPU image.\n# docker build -t {tag} . && docker run -p 7000:7000 {tag}")
    tag = f"matting-{variant.id}"
    # the model fully optimised (ONNX Runtime) or compiled (OpenVINO) for the build machine's CPU; a
    # host with another kind of CPU falls back to the portable model by itself
    prepare = "" if gpu else "RUN python serve.py --prepare\n"
    return f"""# {variant.id}: background removal over HTTP (rembg's API), {what.format(py=py, tag=tag)}
FROM python:{py}-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY {reqs} ./
RUN pip install -r {reqs}
COPY {files} model.json serve.py prepost.py ./
{prepare}USER nobody
EXPOSE 7000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s \\
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7000/healthz', timeout=2)"
CMD {cmd}
"""


def _fmt(x: Any, digits: int = 4) -> str:
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return "—" if x is None else str(x)


def readme_text(variant: Variant, cfg: dict[str, Any], result: ExportResult, untrained: bool) -> str:
    v = variant
    fig = result.benchmark
    ov = cfg.get("runtime") == "openvino"
    compiled = ((cfg.get("openvino") or {}).get("compiled") or {}).get("file")
    src = f"from `{cfg['source']['file']}` (sha256 `{cfg['source']['sha256']}`)"
    if ov:
        o = cfg["openvino"]
        runtime_name, prepared = "OpenVINO", "compiled"
        prepare_text = (
            "`--prepare` compiles the model for this CPU with OpenVINO and saves the compiled model beside "
            "`model.xml`; a start on the same kind of CPU (and the same OpenVINO) imports it instead of "
            "compiling, elsewhere the server compiles `model.xml` by itself. "
            + ("The bundle ships one, made at export, for the exporting machine's kind of CPU. " if compiled else "")
            + "The CPU Docker image prepares at build.")
        model_lines = [
            f"- `{cfg['model_file']}`, `{cfg['weights_file']}`: the model as OpenVINO IR, its first output only, "
            f"compiled by the server for the CPU with OpenVINO {o['version']} (inference precision {o['precision']}, "
            f"{o['hint']} hint). sha256 `{cfg['model_sha256']}` and `{cfg['weights_sha256']}`; {src}.",
            *([f"- `{compiled}`: the model compiled by OpenVINO {o['version']} for the kind of CPU named in "
               "the file name (a start on another imports nothing and compiles)."] if compiled else []),
        ]
    else:
        runtime_name, prepared = "ONNX Runtime", "optimised"
        prepare_text = (
            "`--prepare` saves the model fully optimised for this CPU (ONNX Runtime's NCHWc layouts, which "
            "depend on AVX2 vs AVX-512) beside `model.onnx`; a start on the same kind of CPU loads it without "
            "an optimisation pass, elsewhere the server falls back to the portable `model.onnx` by itself. "
            "The CPU Docker image prepares at build.")
        model_lines = [
            f"- `{MODEL_FILE}`: the model, pre-optimised by ONNX Runtime {cfg['ort']['version']} at level "
            f"`{cfg['ort']['saved_optimization']}` (portable across CPUs and providers); the server loads it at "
            f"`{cfg['ort']['load_optimization']}`. sha256 `{cfg['model_sha256']}`; {src}."]
    lines = [f"# {v.id}: a background-removal service", ""]
    if untrained:
        lines += [f"**{labels.UNTRAINED}**: these weights are not trained; the masks are noise. "
                  "Use this bundle to measure latency and memory only.", ""]
    lines += [
        f"Exported by Matting Studio on {cfg['exported']} from the zoo entry `{v.id}` "
        f"({v.family}, {v.precision}, {v.input_size_label}; licence: {v.license}).",
        f"{v.notes}".strip(), "",
        f"It runs without the studio and without torch: {runtime_name}, numpy and Pillow for the model, "
        "uvicorn and Starlette for HTTP (`requirements.txt`).", "",
        "## Run", "",
        "```sh",
        "python -m venv .venv && .venv/bin/pip install -r requirements.txt",
        f".venv/bin/python serve.py --prepare      # once per kind of CPU: the model {prepared} for it",
        ".venv/bin/python serve.py --port 7000",
        "```", "",
        prepare_text, "",
        "or with Docker (CPU):", "",
        "```sh",
        f"docker build -t matting-{v.id} . && docker run -p 7000:7000 matting-{v.id}",
        "```", "",
    ]
    if result.cuda:
        lines += ["On a GPU: `docker build -f Dockerfile.cuda -t matting-gpu . && docker run --gpus all "
                  "-p 7000:7000 matting-gpu` (onnxruntime-gpu with its CUDA/cuDNN pip wheels on "
                  f"python:{sys.version_info.major}.{sys.version_info.minor}-slim; not tested on a GPU "
                  "by the export).", ""]
    elif ov:
        lines += ["No GPU image: this bundle runs OpenVINO's CPU plugin. For a GPU, export an ONNX Runtime "
                  "fp32 or fp16 variant.", ""]
    else:
        lines += [f"No GPU image: {v.precision} is a CPU build (ONNX Runtime's CUDA provider has no "
                  "int8 convolution kernels, so it would run dequantised, no faster than fp32). "
                  "For a GPU, export the fp32 or fp16 variant.", ""]
    lines += [
        "## Call it (rembg's server API; rembg clients work unchanged)", "",
        "```sh",
        "curl -s -F file=@photo.jpg http://127.0.0.1:7000/api/remove -o cutout.png          # RGBA cut-out",
        "curl -s -F file=@photo.jpg -F om=true http://127.0.0.1:7000/api/remove -o mask.png  # mask only",
        "curl -s http://127.0.0.1:7000/healthz",
        "```", "",
        "- `POST /api/remove`, multipart field `file`; `om=true` returns the 8-bit grayscale mask, "
        "otherwise the RGBA cut-out; `bgc=R,G,B,A` puts the cut-out on a colour. `model` and `extras` are "
        "accepted and ignored (this server has one model, named in the `X-Model` header). "
        "`a`, `ppm`, `dc`, `vm` (rembg's alpha matting, mask post-processing, decontamination and "
        "ViTMatte) answer 400 when asked true: this bundle serves the model only.",
        "- `GET /api/remove?url=` answers 501: the bundle does not fetch URLs.",
        "- `GET /healthz`: 200 once the model is loaded (503 while it loads), with the start-up phases.",
        "- A corrupt, truncated or empty upload gets 400 with the reason; an image over "
        f"{cfg['max_pixels'] / 1e6:.0f} MP gets 400 before it is decoded (`--max-pixels`); an upload over "
        "50 MB gets 413 as soon as it is over, chunked or not (`--max-upload-mb`). The server stays up.",
        "- One model serves every request. `--workers` inferences run at once (1) and `--queue` more "
        "wait (8); beyond that the answer is 503 with `Retry-After`. The images in flight are decoded, "
        "run and encoded only while they hold at most `--max-inflight-mp` megapixels together (60: one "
        "50 MP image at a time, or many small ones), so memory stays bounded; waiting uploads are kept "
        "on disk.",
        "- Slow or oversized requests: headers must arrive within `--header-timeout` seconds (10) and "
        "fit in `--max-header-kb` (32 KB) and `--max-headers` lines (100); an upload that stalls for "
        "`--body-timeout` seconds (30) gets 408; beyond `--max-connections` (64) open connections a new "
        "one gets 503. Put a reverse proxy in front for TLS.",
        "- Each answer carries a `Server-Timing` header (read, admit, decode, preprocess, wait, inference, "
        "postprocess, encode). The images are read as the studio reads them: EXIF-upright, CMYK, "
        "16-bit, grayscale and palette converted to RGB, transparency flattened over white.", "",
    ]
    measured: list[str] = []
    if fig:
        q = fig["quality"]
        ref = fig["reference"]
        against = ("ground truth" if ref.get("kind") == "ground_truth"
                   else f"{labels.agreement_with(ref.get('id'))} (agreement, not accuracy)")

        def spell(metrics: dict) -> str:
            return ", ".join(f"{k} {_fmt(m.get('mean'))} [{_fmt(m['ci95'][0])}, {_fmt(m['ci95'][1])}]"
                             for k, m in metrics.items() if isinstance(m, dict) and m.get("ci95"))

        quality = spell(q)
        if fig["untrained"]:
            quality = f"none ({labels.UNTRAINED})"
        lat = fig["latency_ms"]
        machine = fig["machine"]
        measured += [
            f"Benchmarked by Matting Studio ({fig['created']}) on {fig['n_images']} images of {fig['dataset']}, "
            f"on {machine.get('cpu')} ({machine.get('cpu_count')} CPUs, {machine.get('threads')} threads, "
            f"device {machine.get('device')}):", "",
            *([f"- quality against {against}: {quality} (mean, bootstrap 95 % interval)"
               + (f"; {labels.calibrated_on(fig['calibrated_on'])}" if fig["calibrated_on"] else "")]
              if quality else []),
            *([f"- on the images it was not calibrated on: {spell(fig['quality_held_out'])}"]
              if fig["quality_held_out"] else []),
            *([f"- warm latency per image: p50 {_fmt(lat.get('p50_ms'), 0)} ms, p95 {_fmt(lat.get('p95_ms'), 0)} ms"]
              if lat.get("p50_ms") is not None else []),
            *([f"- cold start, process start to the first mask: {_fmt(fig['cold_start_s'], 2)} s"]
              if fig.get("cold_start_s") is not None else []),
            *([f"- peak memory (RSS): {_fmt(fig['peak_rss_mb'], 0)} MB"] if fig.get("peak_rss_mb") is not None else []),
        ]
        bc = fig.get("bundle_cold_start") or {}
        if bc.get("first_answer_s") is not None:
            measured.append(f"- this server's cold start, process start to its first answer: "
                            f"{_fmt(bc['first_answer_s'], 2)} s")
        if fig["flags"]:
            measured.append(f"- flags: {', '.join(fig['flags'])}")
        measured.append("")
    cold = result.cold_start
    if cold and cold.get("first_answer_s") is not None:
        measured += [
            f"This server's cold start, measured at export ({os.cpu_count()} CPUs, "
            f"{'the shipped compiled model' if compiled else 'portable model'}, a "
            f"{'x'.join(map(str, cold.get('image_size') or []))} image): process start to listening "
            f"{_fmt(cold.get('listening_s'), 2)} s, to the first answer {_fmt(cold.get('first_answer_s'), 2)} s; "
            f"a warm answer {_fmt(cold.get('warm_request_s'), 2)} s; RSS {_fmt(cold.get('rss_warm_mb'), 0)} MB.", "",
        ]
    a = result.agreement
    if a:
        measured += [f"Checked at export against the studio's own engine on the sample images "
                     f"{', '.join(a['images'])}: mask IoU {a['iou_min']:.4f} (lowest), largest 8-bit "
                     f"difference {a['max_abs_diff_8bit']}.", ""]
    if measured:
        lines += ["## Measured", "", *measured]
    lines += [
        "## Files", "",
        *model_lines,
        "- `model.json`: the runtime, input size, preprocessing and postprocessing, the pixel cap.",
        "- `serve.py`: the server (`python serve.py --help` lists every limit).",
        "- `prepost.py`: the pre- and post-processing and the image decoding (numpy and Pillow).",
        "- `requirements.txt`, `Dockerfile`" + (", `requirements-cuda.txt`, `Dockerfile.cuda`" if result.cuda else ""),
        "",
    ]
    return "\n".join(lines)


# --- the export ------------------------------------------------------------------------------------

def _prepare_dest(dest: Path, force: bool) -> None:
    if dest.exists() and not dest.is_dir():
        raise ExportError(f"{dest} exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()):
        is_bundle = (dest / "model.json").is_file() and (dest / "serve.py").is_file()
        if not force:
            raise ExportError(f"{dest} is not empty; choose a new folder"
                              + (" or pass --force to replace the bundle there" if is_bundle else ""))
        if not is_bundle:
            raise ExportError(f"{dest} is not empty and holds no bundle: refusing to replace it")


def export_bundle(variant: Variant | str, dest: str | Path, *, force: bool = False, check: bool = True,
                  measure_image: str | Path | None = None, progress: bool = False,
                  ship_compiled: bool | None = None) -> ExportResult:
    """Write the bundle of `variant` to `dest` (written beside it, then moved into place).
    `ship_compiled` (OpenVINO): compile the model here and ship the blob, so that a start on this
    kind of CPU imports it instead of compiling; None: where it pays (`ships_compiled`)."""
    from studio import artifacts, inventory

    t0 = time.perf_counter()
    v = load_zoo().get(variant) if isinstance(variant, str) else variant
    check_exportable(v)
    dest = Path(dest).expanduser().resolve()
    _prepare_dest(dest, force)
    rec = artifacts.require(v, verify=True)
    if rec is None:
        raise ExportError(f"{v.id} has no model file to export")
    info = inventory.describe(v)
    runtime = bundle_runtime(v) or "onnxruntime"
    pins = runtime_pins(runtime)
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)

    dest.parent.mkdir(parents=True, exist_ok=True)
    work = temp_dir_beside(dest, prefix=f".{dest.name}.")
    try:
        if runtime == "openvino":
            say(f"writing {v.file or Path(rec.path).name} as OpenVINO IR (first output only) ...")
            write_openvino_model(Path(rec.path), work)
            model_file = OV_MODEL_FILE
            specific: dict[str, Any] = {
                "openvino": {"version": pins["openvino"], **openvino_plan(v), "compiled": None},
                "weights_file": OV_WEIGHTS_FILE, "weights_sha256": sha256_of(work / OV_WEIGHTS_FILE)}
        else:
            plan = ort_plan(v)
            if plan["saved_optimization"] == "disable":
                shutil.copyfile(rec.path, work / MODEL_FILE)
            else:
                say(f"optimising {v.file or Path(rec.path).name} with ONNX Runtime "
                    f"(level {plan['saved_optimization']}) ...")
                optimise_model(Path(rec.path), work / MODEL_FILE, plan["saved_optimization"])
            model_file = MODEL_FILE
            specific = {"ort": {"version": pins["onnxruntime"], **plan}}
        shutil.copyfile(TEMPLATE, work / "serve.py")
        shutil.copyfile(PREPOST, work / "prepost.py")
        cfg = {
            "format": BUNDLE_FORMAT, "variant": v.id, "family": v.family, "precision": v.precision,
            "runtime": runtime,
            "rembg_session": v.rembg_session, "model_file": model_file,
            "input_size": list(v.input_size), "preprocess": v.preprocess.to_dict(),
            "postprocess": v.postprocess.to_dict(), "max_pixels": settings.max_pixels(),
            **specific,
            "model_sha256": sha256_of(work / model_file),
            "source": {"file": v.file or Path(rec.path).name, "sha256": rec.sha256, "derived_from": v.derived_from},
            "untrained": info.untrained, "license": v.license,
            "exported": time.strftime("%Y-%m-%d %H:%M:%S"), "python": platform.python_version(),
        }
        atomic_write_json(work / "model.json", cfg)
        if runtime == "openvino" and (ships_compiled(v) if ship_compiled is None else ship_compiled):
            say("compiling the model for this CPU with OpenVINO (the blob a start here imports) ...")
            blob = prepare_compiled(work)
            cfg["openvino"]["compiled"] = {"file": blob, "size": (work / blob).stat().st_size}
            atomic_write_json(work / "model.json", cfg)
        gpu = cuda_allowed(v)
        atomic_write_text(work / "requirements.txt", requirements_text(pins, runtime))
        if v.requires != "cuda":
            atomic_write_text(work / "Dockerfile", dockerfile_text(v, gpu=False, cfg=cfg))
        if gpu:
            atomic_write_text(work / "requirements-cuda.txt", requirements_text(pins, runtime, gpu=True))
            atomic_write_text(work / "Dockerfile.cuda", dockerfile_text(v, gpu=True, cfg=cfg))
        result = ExportResult(variant=v.id, dir=dest, files={}, model_sha256=cfg["model_sha256"], cuda=gpu,
                              benchmark=benchmark_figures(v.id))
        if info.untrained:
            result.notes.append(labels.UNTRAINED)
        if check:
            say("checking the bundle against the studio's engine on embedded-sample images ...")
            result.agreement = agreement_check(work, v)
        if measure_image is not None:
            from studio.export.coldstart import measure_bundle

            say("measuring the server's cold start ...")
            result.cold_start = measure_bundle(work, measure_image)
        atomic_write_text(work / "README.md", readme_text(v, cfg, result, info.untrained))
        if dest.exists():
            shutil.rmtree(dest)
        work.rename(dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    result.files = {p.name: p.stat().st_size for p in sorted(dest.iterdir()) if p.is_file()}
    result.seconds = time.perf_counter() - t0
    return result
