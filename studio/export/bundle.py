"""`studio export VARIANT DIR`: a serving bundle for one ONNX variant that runs without the
studio and without torch.

    DIR/model.onnx        the variant's model, pre-optimised by ONNX Runtime at export
    DIR/model.json        input size, preprocessing, postprocessing, pixel cap, ORT levels, provenance
    DIR/serve.py          the HTTP server (rembg's API), a copy of studio/export/templates/serve.py
    DIR/requirements.txt  onnxruntime, numpy and Pillow, pinned to the versions tested here
    DIR/Dockerfile        the CPU image
    DIR/Dockerfile.cuda   the GPU image (onnxruntime-gpu), for variants that gain from a GPU
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
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from studio import labels, settings
from studio.errors import StudioError
from studio.fileio import atomic_write_json, atomic_write_text, temp_dir_beside
from studio.zoo import Variant, load_zoo

TEMPLATE = Path(__file__).resolve().parent / "templates" / "serve.py"
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
PINNED = ("onnxruntime", "numpy", "pillow")
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

def onnx_alternatives(variant: Variant, limit: int = 5) -> list[str]:
    """ONNX variants to export instead of a non-ONNX one: those of the same weights file first,
    then the family's."""
    family = [v for v in load_zoo().variants.values()
              if v.backend == "onnx" and v.family == variant.family and v.id != variant.id]
    family.sort(key=lambda v: v.file != variant.file or not variant.file)  # stable: zoo order within
    return [v.id for v in family[:limit]]


def check_exportable(variant: Variant) -> None:
    """Raise ExportError saying why when the bundle cannot serve this variant."""
    if variant.backend != "onnx":
        why = {
            "rembg": "it runs inside rembg's own session",
            "inspyrenet": "it is a torch model",
            "opencv": "GrabCut has no model file to serve",
        }.get(variant.backend, f"its backend is {variant.backend}")
        alt = onnx_alternatives(variant)
        hint = (f" Export an ONNX variant of {variant.family} instead: {', '.join(alt)}." if alt
                else " No ONNX variant of this family is in the zoo.")
        raise ExportError(f"{variant.id} cannot be exported: {why}, and the bundle serves ONNX models "
                          f"with ONNX Runtime only (no studio, no torch).{hint}")
    if not isinstance(variant.input_size, tuple):
        raise ExportError(f"{variant.id} cannot be exported: the bundle needs a fixed input size, "
                          f"and its zoo entry says {variant.input_size!r}")
    if variant.requires and variant.requires != "cuda":
        raise ExportError(f"{variant.id} needs {variant.requires}, which the bundle does not provide")


def cuda_allowed(variant: Variant) -> bool:
    return variant.precision in CUDA_PRECISIONS


LEVEL_ORDER = ("disable", "basic", "extended", "all")
# ONNX Runtime session settings a variant may carry (`options.ort`, studio/backends/onnx.py) that
# the server applies as the studio does; the optimisation level is handled by the levels above
SESSION_KEYS = ("execution_mode", "inter_op_threads", "allow_spinning", "cpu_mem_arena", "mem_pattern")


def ort_plan(variant: Variant) -> dict[str, Any]:
    """The levels the model is saved and loaded at, and the session settings, for this variant:
    never more optimisation than the studio applies to it (fusions can move the last bits)."""
    o = dict((variant.options or {}).get("ort") or {})
    studio_level = o.get("graph_optimization", "all")
    if studio_level not in LEVEL_ORDER:
        raise ExportError(f"{variant.id}: options.ort.graph_optimization {studio_level!r} is not one of "
                          f"{', '.join(LEVEL_ORDER)}")
    save = min(SAVE_LEVEL, studio_level, key=LEVEL_ORDER.index)
    load = min(LOAD_LEVEL, studio_level, key=LEVEL_ORDER.index)
    return {"saved_optimization": save, "load_optimization": load,
            "session": {k: o[k] for k in SESSION_KEYS if k in o}}


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


def runtime_pins() -> dict[str, str]:
    """The versions of the bundle's three dependencies installed (and tested) here."""
    pins = {}
    for name in PINNED:
        try:
            pins[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            raise ExportError(f"{name} is not installed here, so the bundle cannot be tested or pinned") from None
    return pins


def load_template(path: Path, name: str = "matting_bundle_serve"):
    """Import a bundle's serve.py as a module (for the export's check and the tests)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
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


def agreement_check(bundle: Path, variant: Variant, pairs: tuple[int, ...] = CHECK_PAIRS) -> dict[str, Any]:
    """Run the bundle's own code (its serve.py and model.onnx, in this process) and the studio's
    engine on the same embedded-sample images; compare the 8-bit mattes."""
    import numpy as np
    import onnxruntime as ort

    from studio import engine
    from studio.data.embedded import pair
    from studio.imageio import alpha_to_uint8

    serve = load_template(bundle / "serve.py")
    cfg = json.loads((bundle / "model.json").read_text())
    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, ORT_LEVELS[cfg["ort"]["load_optimization"]])
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(bundle / cfg["model_file"]), sess_options=opts,
                                   providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    rows = []
    for i in pairs:
        p = pair(i)
        x = serve.preprocess(p.image, cfg["input_size"], cfg["preprocess"])
        pred = session.run(None, {name: x})[0]
        ours = serve.postprocess(pred[0, 0], (p.image.shape[1], p.image.shape[0]), cfg["postprocess"])
        studio = alpha_to_uint8(engine.predict(variant, p.image).alpha)
        a, b = ours > 127, studio > 127
        union = int((a | b).sum())
        rows.append({"image": p.id, "iou": float((a & b).sum() / union) if union else 1.0,
                     "max_abs_diff": int(np.abs(ours.astype(int) - studio.astype(int)).max())})
    return {"images": [r["image"] for r in rows], "iou_min": min(r["iou"] for r in rows),
            "max_abs_diff_8bit": max(r["max_abs_diff"] for r in rows), "per_image": rows,
            "reference": f"studio predict -m {variant.id} (the engine, in-process)"}


# --- the text files --------------------------------------------------------------------------------

def requirements_text(pins: dict[str, str], gpu: bool = False) -> str:
    ort_line = (f"onnxruntime-gpu[cuda,cudnn]=={pins['onnxruntime']}" if gpu
                else f"onnxruntime=={pins['onnxruntime']}")
    head = ("# The GPU server's dependencies. The [cuda,cudnn] extras install the CUDA and cuDNN\n"
            "# libraries this onnxruntime-gpu was built against, as pip wheels; serve.py --device cuda\n"
            "# preloads them (onnxruntime.preload_dlls), so no CUDA base image is needed.\n" if gpu else
            f"# The server's only dependencies, pinned to the versions the export was tested with\n"
            f"# (Python {platform.python_version()}).\n")
    return head + f"{ort_line}\nnumpy=={pins['numpy']}\npillow=={pins['pillow']}\n"


def dockerfile_text(variant: Variant, gpu: bool) -> str:
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    reqs = "requirements-cuda.txt" if gpu else "requirements.txt"
    device = ["--device", "cuda"] if gpu else []
    cmd = json.dumps(["python", "serve.py", "--host", "0.0.0.0", "--port", "7000", *device])
    what = ("GPU image: onnxruntime-gpu with its CUDA and cuDNN wheels on python:{py}-slim.\n"
            "# Run with the NVIDIA container toolkit: docker run --gpus all -p 7000:7000 IMAGE\n"
            "# (the host needs an NVIDIA driver new enough for the CUDA that onnxruntime-gpu was built with)"
            if gpu else "CPU image.\n# docker build -t {tag} . && docker run -p 7000:7000 {tag}")
    tag = f"matting-{variant.id}"
    # the model fully optimised for the build machine's CPU; a host with another kind of CPU
    # falls back to the portable model.onnx by itself
    prepare = "" if gpu else "RUN python serve.py --prepare\n"
    return f"""# {variant.id}: background removal over HTTP (rembg's API), {what.format(py=py, tag=tag)}
FROM python:{py}-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY {reqs} ./
RUN pip install -r {reqs}
COPY {MODEL_FILE} model.json serve.py ./
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
    lines = [f"# {v.id}: a background-removal service", ""]
    if untrained:
        lines += [f"**{labels.UNTRAINED}**: these weights are not trained; the masks are noise. "
                  "Use this bundle to measure latency and memory only.", ""]
    lines += [
        f"Exported by Matting Studio on {cfg['exported']} from the zoo entry `{v.id}` "
        f"({v.family}, {v.precision}, {v.input_size_label}; licence: {v.license}).",
        f"{v.notes}".strip(), "",
        "It runs without the studio and without torch: ONNX Runtime, numpy and Pillow only.", "",
        "## Run", "",
        "```sh",
        "python -m venv .venv && .venv/bin/pip install -r requirements.txt",
        ".venv/bin/python serve.py --prepare      # once per kind of CPU: the model optimised for it",
        ".venv/bin/python serve.py --port 7000",
        "```", "",
        "`--prepare` saves the model fully optimised for this CPU (ONNX Runtime's NCHWc layouts, which "
        "depend on AVX2 vs AVX-512) beside `model.onnx`; a start on the same kind of CPU loads it without "
        "an optimisation pass, elsewhere the server falls back to the portable `model.onnx` by itself. "
        "The CPU Docker image prepares at build.", "",
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
        "50 MB gets 413 (`--max-upload-mb`). The server stays up.",
        "- One ONNX Runtime session serves every request. `--workers` inferences run at once (1) and "
        "`--queue` more wait (8); beyond that the answer is 503 with `Retry-After`.",
        "- Each answer carries a `Server-Timing` header (read, decode, preprocess, wait, inference, "
        "postprocess, encode). The images are read as the studio reads them: EXIF-upright, CMYK, "
        "16-bit, grayscale and palette converted to RGB, transparency flattened over white.", "",
        "## Measured", "",
    ]
    if fig:
        q = fig["quality"]
        ref = fig["reference"]
        against = ("ground truth" if ref.get("kind") == "ground_truth"
                   else f"{labels.agreement_with(ref.get('id'))} (agreement, not accuracy)")
        def spell(metrics: dict) -> str:
            return ", ".join(f"{k} {_fmt(m.get('mean'))} [{_fmt(m['ci95'][0])}, {_fmt(m['ci95'][1])}]"
                             for k, m in metrics.items() if isinstance(m, dict) and m.get("ci95"))

        quality = spell(q) or "not scored"
        if fig["untrained"]:
            quality = f"none ({labels.UNTRAINED})"
        lat = fig["latency_ms"]
        lines += [
            f"From the benchmark run `{fig['run']}` ({fig['created']}), {fig['n_images']} images of "
            f"{fig['dataset']}, on {fig['machine'].get('cpu')} ({fig['machine'].get('cpu_count')} CPUs, "
            f"threads: {fig['machine'].get('threads')}, device {fig['machine'].get('device')}), in the studio:", "",
            f"- quality against {against}: {quality} (mean, bootstrap 95 % interval)"
            + (f"; {labels.calibrated_on(fig['calibrated_on'])}" if fig["calibrated_on"] else ""),
            *([f"- on the images it was not calibrated on: {spell(fig['quality_held_out'])}"]
              if fig["quality_held_out"] else []),
            f"- warm latency per image: p50 {_fmt(lat.get('p50_ms'), 0)} ms, p95 {_fmt(lat.get('p95_ms'), 0)} ms",
            f"- cold start in the studio: {_fmt(fig['cold_start_s'], 2)} s; peak RSS "
            f"{_fmt(fig['peak_rss_mb'], 0)} MB",
        ]
        bc = fig.get("bundle_cold_start") or {}
        if bc.get("first_answer_s") is not None:
            lines.append(f"- cold start of the exported server in that run: {_fmt(bc['first_answer_s'], 2)} s "
                         "to its first answer")
        if fig["flags"]:
            lines.append(f"- flags: {', '.join(fig['flags'])}")
        lines.append("")
    else:
        lines += [
            "Quality, latency and the studio's cold start: not measured yet (no benchmark run under "
            "the results folder has this variant). Measure them with:", "",
            "```sh",
            f"python eval/run.py --models {v.id}            # quality, latency, cold start -> summary.json",
            "```", "",
            "then export again to have them here.", "",
        ]
    cold = result.cold_start
    if cold:
        lines += [
            f"Cold start of this bundle's server, measured once at export on this machine "
            f"({os.cpu_count()} CPUs, load average {cold.get('load_average')}; `{cold.get('command')}`, "
            f"portable model, a {'x'.join(map(str, cold.get('image_size') or []))} image): process start to "
            f"listening {_fmt(cold.get('listening_s'), 2)} s, to the first answer "
            f"{_fmt(cold.get('first_answer_s'), 2)} s; a warm answer {_fmt(cold.get('warm_request_s'), 2)} s; "
            f"RSS {_fmt(cold.get('rss_warm_mb'), 0)} MB.", "",
        ]
    else:
        lines += ["The server's own cold start (process start to first answer): measure it with "
                  "`python -m studio.export.coldstart DIR IMAGE` in the studio, or export with `--measure`.", ""]
    a = result.agreement
    if a:
        lines += [f"Checked at export: this bundle's masks against `studio predict -m {v.id}` on the embedded "
                  f"sample images {', '.join(a['images'])}: IoU {a['iou_min']:.4f} (lowest), largest 8-bit "
                  f"difference {a['max_abs_diff_8bit']}.", ""]
    lines += [
        "## Files", "",
        f"- `{MODEL_FILE}`: the model, pre-optimised by ONNX Runtime {cfg['ort']['version']} at level "
        f"`{cfg['ort']['saved_optimization']}` (portable across CPUs and providers); the server loads it at "
        f"`{cfg['ort']['load_optimization']}`. sha256 `{cfg['model_sha256']}`; from `{cfg['source']['file']}` "
        f"(sha256 `{cfg['source']['sha256']}`).",
        "- `model.json`: input size, preprocessing and postprocessing from the zoo entry, the pixel cap.",
        "- `serve.py`: the server (standard library HTTP; `python serve.py --help`).",
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
                  measure_image: str | Path | None = None, progress: bool = False) -> ExportResult:
    """Write the bundle of `variant` to `dest` (written beside it, then moved into place)."""
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
    pins = runtime_pins()
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)

    dest.parent.mkdir(parents=True, exist_ok=True)
    work = temp_dir_beside(dest, prefix=f".{dest.name}.")
    try:
        plan = ort_plan(v)
        if plan["saved_optimization"] == "disable":
            shutil.copyfile(rec.path, work / MODEL_FILE)
        else:
            say(f"optimising {v.file or Path(rec.path).name} with ONNX Runtime "
                f"(level {plan['saved_optimization']}) ...")
            optimise_model(Path(rec.path), work / MODEL_FILE, plan["saved_optimization"])
        shutil.copyfile(TEMPLATE, work / "serve.py")
        cfg = {
            "format": BUNDLE_FORMAT, "variant": v.id, "family": v.family, "precision": v.precision,
            "rembg_session": v.rembg_session, "model_file": MODEL_FILE,
            "input_size": list(v.input_size), "preprocess": dict(v.preprocess),
            "postprocess": dict(v.postprocess), "max_pixels": settings.max_pixels(),
            "ort": {"version": pins["onnxruntime"], **plan},
            "model_sha256": sha256_of(work / MODEL_FILE),
            "source": {"file": v.file or Path(rec.path).name, "sha256": rec.sha256, "derived_from": v.derived_from},
            "untrained": info.untrained, "license": v.license,
            "exported": time.strftime("%Y-%m-%d %H:%M:%S"), "python": platform.python_version(),
        }
        atomic_write_json(work / "model.json", cfg)
        gpu = cuda_allowed(v)
        atomic_write_text(work / "requirements.txt", requirements_text(pins))
        if v.requires != "cuda":
            atomic_write_text(work / "Dockerfile", dockerfile_text(v, gpu=False))
        if gpu:
            atomic_write_text(work / "requirements-cuda.txt", requirements_text(pins, gpu=True))
            atomic_write_text(work / "Dockerfile.cuda", dockerfile_text(v, gpu=True))
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
