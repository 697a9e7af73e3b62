"""OpenVINO's cold start, in fresh processes, phase by phase: what a serving bundle would pay.

    python eval/quant/openvino/coldstart.py --runs 5

For each model (the fp32 ONNX file, the same converted to IR with its first output only as
`studio export` writes it, and the NNCF int8 IR by default) and each cache state, a fresh Python
process times: `import openvino`, `Core()`, `read_model`, `compile_model` (with its settings:
2 threads, the latency hint, f32), and the first inference on a 1024x1024 input.
Cache states: `none` (no CACHE_DIR), `cold` (an empty CACHE_DIR: compile and write the blob),
`warm` (the blob is there: compile imports it; `read_model` is skipped, the model is compiled
by path so OpenVINO can key the cache on the file), `warm+read` (read first, as a runner that
prunes outputs must), `blob` (what an exported bundle ships: `export_model()` written once,
then `import_model` of the memory-mapped file; no read, no compile, no cache key).
Runs interleave the cases; medians are reported. Writes OUT/coldstart.md and .json.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lab  # noqa: E402

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import openvino as ov
t1 = time.perf_counter()
path, cache, mode, precision = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
core = ov.Core()
t2 = time.perf_counter()
cfg = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 2, "INFERENCE_PRECISION_HINT": precision}
if cache != "-":
    cfg["CACHE_DIR"] = cache
if mode == "import":
    data = np.memmap(cache, dtype=np.uint8, mode="c")
    cfg.pop("CACHE_DIR")
    t3 = time.perf_counter()
    compiled = core.import_model(ov.Tensor(data, shared_memory=True), "CPU", cfg)
elif mode == "path":
    model, t3 = path, time.perf_counter()
else:
    model = core.read_model(path)
    for r in model.get_results()[1:]:
        model.remove_result(r)
    t3 = time.perf_counter()
if mode != "import":
    compiled = core.compile_model(model, "CPU", cfg)
t4 = time.perf_counter()
req = compiled.create_infer_request()
shape = tuple(compiled.inputs[0].get_shape())
req.infer({0: np.zeros(shape, np.float32)})
t5 = time.perf_counter()
import resource
print(json.dumps({"import_s": t1 - t0, "core_s": t2 - t1, "read_s": t3 - t2, "compile_s": t4 - t3,
                  "first_infer_s": t5 - t4, "total_s": t5 - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_child(path: Path, cache: str, mode: str, precision: str) -> dict:
    res = subprocess.run([sys.executable, "-c", CHILD, str(path), cache, mode, precision], capture_output=True,
                         text=True, timeout=600)
    if res.returncode:
        raise RuntimeError(res.stderr[-2000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


EXPORT = r"""
import sys
import openvino as ov
path, out = sys.argv[1], sys.argv[2]
core = ov.Core()
model = path
if not path.endswith(".xml"):
    model = core.read_model(path)
    for r in model.get_results()[1:]:
        model.remove_result(r)
cfg = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 2, "INFERENCE_PRECISION_HINT": sys.argv[3]}
data = core.compile_model(model, "CPU", cfg).export_model()
open(out, "wb").write(data.getvalue() if hasattr(data, "getvalue") else data)
"""


def to_ir(onnx_file: Path, out: Path) -> Path:
    """The ONNX file as IR with its first output only, as `studio export` writes it."""
    import openvino as ov

    model = ov.Core().read_model(str(onnx_file))
    for r in model.get_results()[1:]:
        model.remove_result(r)
    ov.save_model(model, str(out), compress_to_fp16=False)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="*", default=None, help="model files (default: fp32 ONNX and the int8 IR); an ONNX file is "
                                                                    "also run as the IR `studio export` writes of it")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--precision", default="f32")
    ap.add_argument("--cold", action="store_true", help="also the `cold` and `warm+read` cache states")
    ap.add_argument("--out", type=Path, default=lab.OUT)
    args = ap.parse_args(argv)
    from studio.fileio import atomic_write_json, atomic_write_text

    with tempfile.TemporaryDirectory() as tmp:
        given = [Path(m) for m in args.models] if args.models else [lab.artifact("isnet-general-use"),
                                                                    lab.artifact("isnet-general-use-ov-int8")]
        models = []
        for m in given:  # each ONNX file also as the IR an export writes of it
            models += [m] if m.suffix == ".xml" else [m, to_ir(m, Path(tmp) / f"{m.stem}-first-output.xml")]
        cases = []
        for m in models:
            mode = "path" if m.suffix == ".xml" else "read"
            cases += [(m, "none", mode), *([(m, "cold", mode)] if args.cold else []), (m, "warm", mode),
                      (m, "blob", "import")]
            if mode == "path" and args.cold:
                cases.append((m, "warm+read", "read"))
        times: dict[str, list[dict]] = {}
        for r in range(args.runs):
            for m, state, mode in random.Random(r).sample(cases, len(cases)):
                cache = Path(tmp) / m.stem
                if state == "cold" and cache.exists():
                    shutil.rmtree(cache)
                if state in ("warm", "warm+read") and not cache.exists():
                    run_child(m, str(cache), mode, args.precision)  # fill it first
                if state == "blob":
                    cache = Path(tmp) / f"{m.stem}.blob"
                    if not cache.exists():
                        subprocess.run([sys.executable, "-c", EXPORT, str(m), str(cache), args.precision],
                                       check=True, timeout=600)
                got = run_child(m, "-" if state == "none" else str(cache), mode, args.precision)
                times.setdefault(f"{m.name} | {state}", []).append(got)
                print(f"run {r}: {m.name} {state}: {got['total_s']:.2f} s", flush=True)
    rows = []
    for key, runs in times.items():
        name, state = key.split(" | ")
        rows.append({"model": name, "cache": state,
                     **{k: statistics.median(x[k] for x in runs) for k in runs[0]}, "runs": len(runs)})
    lines = [f"OpenVINO cold start in a fresh process (median of {args.runs} runs, interleaved), 2 threads, "
             f"{args.precision}; load average {lab.load_average()}.", "",
             "| model | cache | import s | Core() s | read s | compile s | first inference s | total s | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['cache']} | {r['import_s']:.3f} | {r['core_s']:.3f} | {r['read_s']:.3f} | "
                     f"{r['compile_s']:.3f} | {r['first_infer_s']:.3f} | {r['total_s']:.3f} | {r['peak_rss_mb']:.0f} |")
    text = "\n".join(lines) + "\n"
    atomic_write_json(args.out / "coldstart.json", {"rows": rows, "runs": times}, indent=1)
    atomic_write_text(args.out / "coldstart.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
