"""Which parts of an NNCF build cost the agreement, and what keeping each in float costs in time.

    python eval/quant/openvino/sensitivity.py eval/results/quant/openvino/builds/KEY --rounds 7

Rebuilding with NNCF for every candidate unit takes minutes; this reads one build's IR instead
and, per unit, bypasses the unit's activation FakeQuantize nodes (the FakeQuantize output
replaced by its input: the unit's convolutions then run on float activations, as an ignored
scope would make them). A unit is a U-block of IS-Net (`stage1` ... `stage6`, `stage5d` ...
`stage1d`), `conv_in`, a decoder-level Resize/Concat group (`top`), or one of the finer units
given with --split (a block's own convolutions, one by one). For each: agreement with ONNX
Runtime fp32 (pooled mask IoU, and the per-image mean) on the selection images, and the model
time from one interleaved run of every variant. The greedy then keeps in float the unit with
the most agreement gained per second added, until the agreement reaches --target; its list of
units is what the next NNCF recipe ignores (search.py's stage `greedy`).
Writes OUT/sensitivity-KEY.md and .json.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lab  # noqa: E402

ANCHOR_TAG = "ort-fp32"


def unit_of(fq_name: str, split: set[str]) -> str:
    """The unit an activation FakeQuantize belongs to, by its producer's name."""
    m = re.match(r"^/([A-Za-z_]+\d*d?)/(.*)$", fq_name)
    if not m:
        return "top"
    block, rest = m.group(1), m.group(2)
    if block in split:
        sub = rest.split("/")[0]
        return f"{block}/{sub}"
    if block.startswith(("stage", "conv_in", "side")):
        return block
    return "top"


def fake_quantizes(model: Any) -> list[Any]:
    """Activation FakeQuantize nodes (not the weights'; NNCF stores weights as int8 constants)."""
    out = []
    for op in model.get_ordered_ops():
        if op.get_type_name() == "FakeQuantize" and op.input_value(0).get_node().get_type_name() != "Constant":
            out.append(op)
    return out


def bypassed(xml: Path, units: set[str], split: set[str]) -> Any:
    """The IR with the activation FakeQuantize nodes of `units` bypassed."""
    import openvino as ov

    model = ov.Core().read_model(str(xml))
    for fq in fake_quantizes(model):
        if unit_of(fq.get_friendly_name(), split) in units:
            fq.output(0).replace(fq.input_value(0))
    model.validate_nodes_and_infer_types()
    return model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build", type=Path)
    ap.add_argument("--split", nargs="*", default=[], help="blocks to split into their convolutions")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--target", type=float, default=0.985, help="pooled agreement the greedy stops at")
    ap.add_argument("--sets", default="selection")
    ap.add_argument("--out", type=Path, default=lab.OUT)
    args = ap.parse_args(argv)
    import compare

    from studio.fileio import atomic_write_json, atomic_write_text

    split = set(args.split)
    xml = args.build / "model.xml"
    size = int(json.loads((args.build / "build.json").read_text())["input_size"][0])
    import openvino as ov

    units = sorted({unit_of(fq.get_friendly_name(), split) for fq in fake_quantizes(ov.Core().read_model(str(xml)))})
    print(f"{len(units)} units: {', '.join(units)}", flush=True)
    samples = compare.sets_of([s for s in args.sets.split(",") if s], None)
    anchor = compare.parse(compare.ANCHOR)
    store = lab.Mattes()
    ref = {}
    for ss in samples.values():
        ref.update(store.get(compare.tag_of(anchor), ss, compare.factory(anchor, args.threads)))
    every = [s for ss in samples.values() for s in ss]
    ids = [s.id for s in every]
    variants = {"all int8": set(), **{f"float {u}": {u} for u in units}}

    def net(label: str, floats: set[str]) -> lab.Net:
        model = bypassed(xml, floats, split)
        return lab.OvNet(label, model, args.threads, "f32", size)

    rows: dict[str, dict[str, Any]] = {}
    for label, floats in variants.items():
        tag = lab.file_tag("sens", xml, args.build / "model.bin", sorted(floats), sorted(split))
        got = store.get(tag, every, lambda label=label, floats=floats: net(label, floats))
        rows[label] = {"units": sorted(floats), "pooled": lab.pooled([ref[i] for i in ids], [got[i] for i in ids]),
                       "mean": float(sum(lab.iou_pair(ref[i], got[i]) for i in ids) / len(ids))}
        print(f"{label}: pooled {rows[label]['pooled']:.4f}", flush=True)
    nets = {label: net(label, floats) for label, floats in variants.items()}
    timing = lab.interleave(nets, every[0].image(), args.rounds, "all int8")
    del nets
    base = rows["all int8"]
    for label, r in rows.items():
        r["p50_inference_s"] = timing[label]["p50_inference_s"]
        r["cost_s"] = r["p50_inference_s"] - timing["all int8"]["p50_inference_s"]
        r["gain"] = r["pooled"] - base["pooled"]
    # greedy: the most gain per second first (a unit that costs nothing measurable counts 5 ms)
    order = sorted((r for k, r in rows.items() if k != "all int8" and r["gain"] > 0),
                   key=lambda r: -r["gain"] / max(r["cost_s"], 0.005))
    chosen, est = [], base["pooled"]
    for r in order:
        if est >= args.target:
            break
        chosen += r["units"]
        est += r["gain"]
    res = {"build": str(args.build), "split": sorted(split), "target": args.target, "units": units, "rows": rows,
           "greedy": {"units": chosen, "estimated_pooled": est}, "timing_meta": timing["_meta"],
           "sets": {k: len(v) for k, v in samples.items()}}
    lines = [f"# Sensitivity of `{args.build.name}` ({len(ids)} images: {res['sets']})", "",
             f"Load average during timing: {timing['_meta']['load_average_1min']}", "",
             "| variant | pooled agreement | Δ pooled | mean agreement | p50 model s | cost s |", "|---|---|---|---|---|---|"]
    for label, r in sorted(rows.items(), key=lambda kv: -kv[1]["gain"]):
        lines.append(f"| {label} | {r['pooled']:.4f} | {r['gain']:+.4f} | {r['mean']:.4f} | {r['p50_inference_s']:.3f} | "
                     f"{r['cost_s']:+.3f} |")
    lines += ["", f"Greedy (most gain per second, to {args.target}): {chosen} (estimated pooled {est:.4f})"]
    text = "\n".join(lines) + "\n"
    atomic_write_json(args.out / f"sensitivity-{args.build.name}.json", res, indent=1)
    atomic_write_text(args.out / f"sensitivity-{args.build.name}.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
