"""Where an OpenVINO model's time goes: the CPU plugin's own per-layer counters (PERF_COUNT),
grouped as eval/quant/profile.md groups ONNX Runtime's, beside the studio's pre- and post-processing.

    python eval/quant/openvino/profile_ov.py ov:isnet-general-use ir:eval/results/quant/openvino/builds/KEY --runs 7

Candidates are compare.py's specs. Groups: int8 convolutions (the plugin's kernel name says
i8/u8), float convolutions, FakeQuantize left standing (quantizing a tensor the plugin could not
fuse into its producer), Interpolate, Concat, pooling, Reorder (layout changes), elementwise,
and the rest. Each group's milliseconds per image are the median over the runs; shares are of
the summed layer time. Writes OUT/profile.md and .json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare  # noqa: E402
import lab  # noqa: E402


def group_of(layer_type: str, exec_type: str) -> str:
    t, e = layer_type.lower(), exec_type.lower()
    if t in ("convolution", "groupconvolution"):
        return "int8 conv" if any(k in e for k in ("i8", "u8", "int8")) else "float conv"
    if t == "fakequantize":
        return "FakeQuantize (standalone)"
    if t == "interpolate":
        return "Interpolate"
    if t == "concatenation" or t == "concat":
        return "Concat"
    if t in ("pooling", "maxpool", "avgpool"):
        return "pooling"
    if t == "reorder":
        return "layout reorder"
    if t in ("eltwise", "add", "multiply", "relu", "sigmoid", "subgraph", "convert", "subtract"):
        return "elementwise"
    return f"other ({layer_type})"


def conv_macs(model) -> dict[str, int]:
    """Multiply-accumulates of every convolution, by its name (groups of one: IS-Net has no others)."""
    out = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() == "Convolution":
            w = list(op.input_value(1).get_partial_shape().to_shape())
            o = list(op.output(0).get_partial_shape().to_shape())
            out[op.get_friendly_name()] = int(w[0] * w[1] * w[2] * w[3] * o[2] * o[3])
    return out


def profile(spec: str, threads: int, runs: int) -> dict:
    c = compare.parse(spec)
    import openvino as ov

    size = compare.size_of(c)
    macs = conv_macs(ov.Core().read_model(str(compare.path_of(c))))
    net = lab.OvNet(spec, compare.path_of(c), threads, c["precision"], size, extra={"PERF_COUNT": True})
    image = lab.embedded()[0].image()
    per_run, pre, model, post, kernels = [], [], [], [], defaultdict(set)
    group_macs: dict[str, int] = defaultdict(int)
    for i in range(runs + 1):
        _, t = lab.predict(net, image)
        if not i:
            continue  # warm-up
        pre.append(t["preprocess"])
        model.append(t["inference"])
        post.append(t["postprocess"])
        groups: dict[str, float] = defaultdict(float)
        for p in net.request.profiling_info:
            if p.status != ov.ProfilingInfo.Status.EXECUTED:
                continue
            g = group_of(p.node_type, p.exec_type)
            groups[g] += p.real_time.total_seconds()
            kernels[g].add(p.exec_type)
            if len(per_run) == 0:
                group_macs[g] += macs.get(p.node_name, 0)
        per_run.append(groups)
    names = sorted({g for r in per_run for g in r})
    med = {g: statistics.median(r.get(g, 0.0) for r in per_run) for g in names}
    total = sum(med.values()) or 1.0
    return {"id": spec, "size": size, "runs": runs, "threads": threads, "precision": c["precision"],
            "model_s": statistics.median(model), "pre_s": statistics.median(pre), "post_s": statistics.median(post),
            "node_s": total, "conv_gmacs": sum(macs.values()) / 1e9,
            "groups": {g: {"s": s, "share": s / total, "kernels": sorted(kernels[g])[:6],
                           "gmac": group_macs[g] / 1e9, "gmac_per_s": group_macs[g] / 1e9 / s if s else None}
                       for g, s in sorted(med.items(), key=lambda x: -x[1])}}


def markdown(rows: list[dict], command: str) -> str:
    groups: list[str] = []
    for r in rows:
        groups += [g for g in r["groups"] if g not in groups]
    lines = [f"Profile (OpenVINO CPU plugin per-layer counters, median of {rows[0]['runs']} runs, "
             f"{rows[0]['threads']} threads; load average {lab.load_average()}).", f"Command: `{command}`", "",
             "| group | " + " | ".join(f"`{r['id']}` ms (share)" for r in rows) + " |", "|---|" + "---|" * len(rows)]
    for g in groups:
        cells = [f"{1000 * r['groups'][g]['s']:.0f} ({100 * r['groups'][g]['share']:.0f}%)" if g in r["groups"] else "—"
                 for r in rows]
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    lines.append("| **all layers** | " + " | ".join(f"{1000 * r['node_s']:.0f}" for r in rows) + " |")
    for g in ("int8 conv", "float conv"):
        cells = [f"{r['groups'][g]['gmac']:.1f} GMAC at {r['groups'][g]['gmac_per_s']:.0f} GMAC/s"
                 if g in r["groups"] and r["groups"][g]["gmac_per_s"] else "—" for r in rows]
        lines.append(f"| {g}: work and rate | " + " | ".join(cells) + " |")
    lines.append("| model run (wall) | " + " | ".join(f"{1000 * r['model_s']:.0f}" for r in rows) + " |")
    lines.append("| preprocess | " + " | ".join(f"{1000 * r['pre_s']:.0f}" for r in rows) + " |")
    lines.append("| postprocess | " + " | ".join(f"{1000 * r['post_s']:.0f}" for r in rows) + " |")
    lines += ["", "Kernels seen per group (the plugin's exec_type):", ""]
    for r in rows:
        lines.append(f"- `{r['id']}`: " + "; ".join(f"{g}: {', '.join(v['kernels'])}" for g, v in r["groups"].items()))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("specs", nargs="+")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--name", default="profile")
    ap.add_argument("--out", type=Path, default=lab.OUT)
    args = ap.parse_args(argv)
    from studio.fileio import atomic_write_json, atomic_write_text

    command = "python eval/quant/openvino/profile_ov.py " + " ".join(argv if argv is not None else sys.argv[1:])
    rows = [profile(s, args.threads, args.runs) for s in args.specs]
    text = markdown(rows, command)
    atomic_write_json(args.out / f"{args.name}.json", {"command": command, "rows": rows}, indent=1)
    atomic_write_text(args.out / f"{args.name}.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
