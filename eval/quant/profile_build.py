"""Where a build's time goes: ONNX Runtime's own per-node profile, grouped by what the time
buys, beside the studio's pre- and post-processing.

    python eval/quant/profile_build.py isnet-general-use isnet-general-use-int8-static --runs 5

Groups: int8 convolutions (QLinearConv and the like), float convolutions (the nodes kept in
float, or every Conv of an fp32 model), DequantizeLinear/QuantizeLinear (the int8 <-> float
boundaries: around the float nodes, and around the bilinear Resizes ORT keeps in float),
Resize, Concat, pooling, layout reorders (ORT's NCHWc blocks), and the rest. Each group's
milliseconds per image are the median over the runs; the shares are of the model's node time.
Writes profile.md and profile.json to --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from eval.quant.outputs import command_line, run_meta, write_tables  # noqa: E402
from studio import artifacts, settings  # noqa: E402
from studio.backends import onnx as ob  # noqa: E402
from studio.zoo import load_zoo  # noqa: E402

GROUPS = [
    ("int8 conv", ("QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulInteger")),
    ("float conv", ("Conv", "FusedConv", "NchwcConv")),
    ("DQ/Q (int8 <-> float)", ("DequantizeLinear", "QuantizeLinear", "DynamicQuantizeLinear")),
    ("Resize", ("Resize", "Upsample", "NchwcUpsample")),
    ("Concat", ("Concat", "QLinearConcat")),
    ("pooling", ("MaxPool", "QLinearMaxPool", "NchwcMaxPool", "AveragePool", "QLinearAveragePool")),
    ("layout reorder", ("ReorderInput", "ReorderOutput")),
    ("elementwise (Add, Relu, Sigmoid, Cast)", ("Add", "QLinearAdd", "Relu", "Sigmoid", "QLinearSigmoid", "Cast",
                                               "Mul", "Clip")),
]


def group_of(op: str) -> str:
    return next((g for g, ops in GROUPS if op in ops), f"other ({op})")


def profile(vid: str, threads: int, runs: int) -> dict:
    import onnxruntime as ort

    from studio.backends.base import Stopwatch
    from studio.data import open_dataset

    v = load_zoo().get(vid)
    path = artifacts.require(v, verify=False).path
    sample = next(iter(open_dataset(None, limit=1)))
    image = sample.image()
    with tempfile.TemporaryDirectory() as tmp:
        opts = ob.session_options(threads, ob.ort_options(v))
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "p")
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        pre, post, model = [], [], []
        for i in range(runs + 1):
            sw = Stopwatch()
            with sw("pre"):
                x = ob.preprocess(image, tuple(v.input_size), v.preprocess)
            with sw("model"):
                y = sess.run(None, {name: x})[0]
            with sw("post"):
                ob.postprocess(y[0, 0], (image.shape[1], image.shape[0]), v.postprocess)
            if i:  # the first run is the warm-up
                pre.append(sw.timings["pre"])
                model.append(sw.timings["model"])
                post.append(sw.timings["post"])
        trace = json.loads(Path(sess.end_profiling()).read_text())
    per_run: list[dict[str, float]] = [defaultdict(float) for _ in range(runs + 1)]
    # Each node runs once per run, in order: its k-th event belongs to run k.
    counts: dict[str, int] = defaultdict(int)
    for ev in trace:
        if ev.get("cat") != "Node" or not ev.get("name", "").endswith("_kernel_time"):
            continue
        node = ev["name"][: -len("_kernel_time")]
        k = counts[node]
        counts[node] += 1
        if k < len(per_run):
            per_run[k][group_of(ev.get("args", {}).get("op_name", "?"))] += ev["dur"] / 1e6
    warm = per_run[1:]
    groups = sorted({g for r in warm for g in r})
    med = {g: statistics.median([r.get(g, 0.0) for r in warm]) for g in groups}
    total = sum(med.values()) or 1.0
    return {"id": vid, "input_size": list(v.input_size), "runs": runs, "threads": threads,
            "model_s": statistics.median(model), "pre_s": statistics.median(pre), "post_s": statistics.median(post),
            "node_s": total, "groups": {g: {"s": s, "share": s / total} for g, s in sorted(med.items(), key=lambda x: -x[1])}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variants", nargs="+")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=settings.results_dir() / "quant")
    args = ap.parse_args(argv)
    cmd = command_line("profile_build.py", argv)
    rows = [profile(v, args.threads, args.runs) for v in args.variants]
    meta = run_meta(cmd)
    write_tables(args.out, "profile", meta, rows, markdown(rows, meta))
    return 0


def markdown(rows: list[dict], meta: dict) -> str:
    groups = []
    for r in rows:
        groups += [g for g in r["groups"] if g not in groups]
    head = "| group | " + " | ".join(f"`{r['id']}` ms (share)" for r in rows) + " |"
    lines = [f"Profile (ONNX Runtime node times, median of {rows[0]['runs']} runs, {rows[0]['threads']} threads).",
             f"Command: `{meta['command']}`", "", head, "|---|" + "---|" * len(rows)]
    for g in groups:
        cells = [f"{1000 * r['groups'][g]['s']:.0f} ({100 * r['groups'][g]['share']:.0f}%)" if g in r["groups"] else "—"
                 for r in rows]
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    lines.append("| **all nodes** | " + " | ".join(f"{1000 * r['node_s']:.0f}" for r in rows) + " |")
    lines.append("| model run (wall) | " + " | ".join(f"{1000 * r['model_s']:.0f}" for r in rows) + " |")
    lines.append("| preprocess | " + " | ".join(f"{1000 * r['pre_s']:.0f}" for r in rows) + " |")
    lines.append("| postprocess | " + " | ".join(f"{1000 * r['post_s']:.0f}" for r in rows) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
