"""One CUDA machine, one short run: GPU latency, memory and cold start of the studio's models.

    bash eval/gpu_check.sh [--out DIR] [--budget-s 420] [--warm 20]

Jobs, most important first, each in a fresh process (so its cold start is real: exec ->
imports -> weights (sha256 checked) -> session or model init -> first answer), then warm runs
in that same process:
- IS-Net (trained, rembg's weights) at 1024: fp32 and fp16 on ONNX Runtime's CUDA provider;
  TensorRT (fp16, then fp16 again from its engine cache, then fp32) where it imports;
- InSPyReNet fast (384) and base (1024) in fp16 and bf16 on torch CUDA, on untrained
  checkpoints made for the run in a temporary cache: latency and memory only.
A job that would not finish inside the remaining budget is skipped and says so, so the
whole check stays under 8 minutes. Writes DIR/summary.json and DIR/table.md, and prints the
table. On a machine without CUDA it says so in one line and exits 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

UNTRAINED = "untrained — latency only"
# (variant, device, extra options.ort, label); order = priority under the time budget
JOBS: list[tuple[str, str, dict, str]] = [
    ("isnet-general-use", "cuda", {}, "IS-Net fp32, CUDA EP"),
    ("isnet-general-use-fp16", "cuda", {}, "IS-Net fp16, CUDA EP"),
    ("inspyrenet-fast-fp16", "cuda", {}, "InSPyReNet fast fp16, torch"),
    ("inspyrenet-fast-bf16", "cuda", {}, "InSPyReNet fast bf16, torch"),
    ("inspyrenet-base-fp16", "cuda", {}, "InSPyReNet base fp16, torch"),
    ("inspyrenet-base-bf16", "cuda", {}, "InSPyReNet base bf16, torch"),
    ("isnet-general-use", "tensorrt", {"trt_fp16": True}, "IS-Net TensorRT fp16 (engine build)"),
    ("isnet-general-use", "tensorrt", {"trt_fp16": True}, "IS-Net TensorRT fp16 (engine cached)"),
    ("isnet-general-use", "tensorrt", {}, "IS-Net TensorRT fp32 (engine build)"),
]
JOB_TIMEOUT_S = {"cuda": 120.0, "tensorrt": 240.0}
WEIGHTS_OF = {"isnet-general-use": "isnet-general-use", "isnet-general-use-fp16": "isnet-general-use-fp16",
              "inspyrenet-fast-fp16": "inspyrenet-fast", "inspyrenet-fast-bf16": "inspyrenet-fast",
              "inspyrenet-base-fp16": "inspyrenet-base", "inspyrenet-base-bf16": "inspyrenet-base"}


def no_cuda_reason() -> str | None:
    """Why this machine cannot run the check, or None when torch or ONNX Runtime sees CUDA."""
    if shutil.which("nvidia-smi") is None:
        return "no nvidia-smi on PATH"
    try:
        ok = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
        if ok.returncode != 0 or "GPU" not in ok.stdout:
            return "nvidia-smi lists no GPU"
    except (OSError, subprocess.SubprocessError) as exc:
        return f"nvidia-smi failed ({exc})"
    torch_cuda = ort_cuda = False
    try:
        import torch

        torch_cuda = torch.cuda.is_available()
    except Exception:
        pass
    try:
        import onnxruntime as ort

        ort_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    except Exception:
        pass
    if not (torch_cuda or ort_cuda):
        return "neither torch nor onnxruntime sees CUDA"
    return None


# --- the child: one job in a fresh process -----------------------------------------------------


def child(variant_id: str, device: str, opts: dict, image_path: str, warm: int) -> dict:
    t0 = time.perf_counter()
    from studio import engine
    from studio.backends import runner_class
    from studio.bench.coldstart import proc_status_mb, process_gpu_mb
    from studio.imageio import load_image
    from studio.zoo import load_zoo

    v = load_zoo().get(variant_id)
    if opts:
        from studio.backends.onnx import ort_options

        v = dataclasses.replace(v, options={"ort": {**ort_options(v).to_dict(), **opts}})
    runner_class(v.backend)
    image = load_image(image_path)
    t1 = time.perf_counter()
    runner, load = engine.load_runner(v, device=device, threads=0, verify=True)
    t2 = time.perf_counter()
    engine.run_runner(runner, image)
    t3 = time.perf_counter()
    model, total = [], []
    for _ in range(warm):
        s = time.perf_counter()
        m = runner.predict(image)
        total.append(time.perf_counter() - s)
        model.append(m.timings.get("inference", float("nan")))
    return {"import": t1 - t0, "weights": load.weights_s, "init": load.init_s, "first_inference": t3 - t2,
            "warm": {"runs": warm, "p50_model_s": statistics.median(model), "p50_total_s": statistics.median(total),
                     "p90_total_s": sorted(total)[int(0.9 * (len(total) - 1))]},
            "gpu_mb": process_gpu_mb("cuda"), "peak_rss_mb": proc_status_mb("VmHWM")}


# --- the parent ------------------------------------------------------------------------------------


def run_job(job: tuple[str, str, dict, str], image: Path, warm: int, timeout: float, env: dict) -> dict:
    vid, device, opts, label = job
    from studio.zoo import load_zoo

    v = load_zoo().get(vid)
    row = {"variant": vid, "device": device, "label": label, "precision": "fp16" if opts.get("trt_fp16") else v.precision,
           "backend": v.backend, "options": opts, "untrained": v.family == "inspyrenet"}
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, __file__, "--child", vid, device, json.dumps(opts), str(image), str(warm)],
                              capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {**row, "status": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - start
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    res = json.loads(lines[-1]) if lines else {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
    if proc.returncode != 0 or "error" in res:
        return {**row, "status": f"failed: {res.get('error')}"}
    inside = sum(res[k] for k in ("import", "weights", "init", "first_inference"))
    res["cold"] = {k: round(res.pop(k), 3) for k in ("import", "weights", "init", "first_inference")}
    res["cold"]["interpreter"] = round(max(0.0, wall - inside), 3)
    res["cold"]["total_s"] = round(wall - res["warm"]["p50_total_s"] * warm, 3)  # exec -> first answer
    return {**row, "status": "ok", **res}


def prepare(cache: Path, env: dict, say) -> dict[str, str]:
    """Weights into the run's own cache: IS-Net from the user's cache (or its sources),
    InSPyReNet as untrained checkpoints. Returns what could not be had, by variant."""
    missing = {}
    steps = [(["isnet-general-use", "isnet-general-use-fp16"], []),
             (["inspyrenet-fast", "inspyrenet-base"], ["--untrained"])]
    for ids, extra in steps:
        proc = subprocess.run([sys.executable, "-m", "studio", "weights", "pull", *ids, *extra],
                              capture_output=True, text=True, env=env, timeout=300)
        if proc.returncode != 0:
            for vid in ids:
                missing[vid] = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["pull failed"]
        say(f"weights {' '.join(ids)}: {'ok' if proc.returncode == 0 else 'FAILED'}")
    return missing


def machine() -> dict:
    info: dict = {"host": platform.node(), "python": platform.python_version()}
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.strip()
        info["gpus"] = out.splitlines()
    except Exception:
        pass
    for mod in ("torch", "onnxruntime", "tensorrt"):
        try:
            m = __import__(mod)
            info[mod] = m.__version__
        except Exception:
            info[mod] = None
    try:
        import onnxruntime as ort

        info["ort_providers"] = ort.get_available_providers()
    except Exception:
        pass
    return info


def table(rows: list[dict]) -> str:
    out = ["| job | precision | cold start s (import / load / first) | warm p50 ms (model / total) | GPU MB | note |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        note = UNTRAINED if r.get("untrained") else ""
        if r["status"] != "ok":
            out.append(f"| {r['label']} | {r['precision']} | — | — | — | {r['status']}{'; ' + note if note else ''} |")
            continue
        c, w = r["cold"], r["warm"]
        gpu = f"{r['gpu_mb']:.0f}" if r.get("gpu_mb") is not None else "—"
        out.append(f"| {r['label']} | {r['precision']} | {c['total_s']:.1f} ({c['import']:.1f} / "
                   f"{c['weights'] + c['init']:.1f} / {c['first_inference']:.1f}) | "
                   f"{1000 * w['p50_model_s']:.1f} / {1000 * w['p50_total_s']:.1f} | {gpu} | {note} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="where summary.json and table.md go "
                    "(default eval/results/gpu_check)")
    ap.add_argument("--budget-s", type=float, default=420.0, help="stop starting jobs past this (default 420)")
    ap.add_argument("--warm", type=int, default=20, help="warm runs per job")
    ap.add_argument("--child", nargs=5, metavar=("VARIANT", "DEVICE", "OPTS", "IMAGE", "WARM"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        vid, device, opts, image, warm = args.child
        try:
            out = child(vid, device, json.loads(opts), image, int(warm))
        except Exception as exc:  # reported to the parent as data
            out = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(out), flush=True)
        return 0

    reason = no_cuda_reason()
    if reason is not None:
        print(f"gpu_check: no CUDA device on this machine ({reason}); nothing measured.")
        return 0

    t_start = time.perf_counter()
    from studio import settings
    from studio.data import open_dataset
    from studio.imageio import encode_png

    out_dir = args.out or settings.results_dir() / "gpu_check"
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    env = dict(os.environ)
    user_weights = settings.weights_dir()
    # A cache of the run's own (the untrained checkpoints never land in models/); the user's
    # weights are found through STUDIO_WEIGHTS_PATH and copied in, never moved.
    env["STUDIO_CACHE"] = str(tmp / "cache")
    env["STUDIO_WEIGHTS_PATH"] = os.pathsep.join(x for x in [str(user_weights), env.get("STUDIO_WEIGHTS_PATH", "")] if x)
    env.setdefault("PYTHONWARNINGS", "ignore")

    def say(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:5.0f} s] {msg}", flush=True)

    try:
        sample = next(iter(open_dataset(None, limit=1)))
        image = tmp / f"{sample.id}.png"
        image.write_bytes(encode_png(sample.image()))
        missing = prepare(tmp / "cache", env, say)
        rows = []
        for job in JOBS:
            vid, device = job[0], job[1]
            src = WEIGHTS_OF[vid]
            left = args.budget_s - (time.perf_counter() - t_start)
            row = {"variant": vid, "device": device, "label": job[3], "precision": "", "options": job[2],
                   "untrained": "inspyrenet" in vid}
            if src in missing:
                rows.append({**row, "status": f"skipped: weights not available ({missing[src][0]})"})
            elif device == "tensorrt" and not _has_trt():
                rows.append({**row, "status": "skipped: TensorRT does not import here"})
            elif left < 30:
                rows.append({**row, "status": "skipped: time budget spent"})
            else:
                say(f"{job[3]} …")
                rows.append(run_job(job, image, args.warm, min(JOB_TIMEOUT_S[device], left), env))
                say(f"{job[3]}: {rows[-1]['status']}")
        summary = {"machine": machine(), "budget_s": args.budget_s, "elapsed_s": round(time.perf_counter() - t_start, 1),
                   "image": {"id": sample.id, "size": list(sample.image().shape[:2])}, "warm_runs": args.warm,
                   "jobs": rows}
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        md = table(rows)
        (out_dir / "table.md").write_text(md)
        print(md)
        print(f"wrote {out_dir / 'summary.json'} and {out_dir / 'table.md'} in {summary['elapsed_s']} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _has_trt() -> bool:
    try:
        import onnxruntime as ort

        return "TensorrtExecutionProvider" in ort.get_available_providers()
    except Exception:
        return False


if __name__ == "__main__":
    sys.exit(main())
