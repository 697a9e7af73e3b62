"""A diagnostic: an NNCF build with its activation ranges replaced by ONNX Runtime's committed ones.

    python eval/quant/openvino/swap_ranges.py BUILD_DIR OUT_DIR [--ranges FILE] [--unify]

NNCF's default range estimator (each image's min and max, averaged) keeps activation outliers
that the ORT recipes clip (the 99.99th percentile over all pixels). Every activation
FakeQuantize of the build is matched to the ORT ranges file by the ONNX tensor it quantizes
(OpenVINO keeps the ONNX tensor names) and given that range, keeping NNCF's choice of signed or
unsigned. `--unify` then gives all the inputs of each Concat the widest of their ranges, as
NNCF's CPU configuration requires (one scale, so the concatenation needs no requantization).
Writes OUT_DIR/model.xml, model.bin and a build.json that compare.py reads.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

DEFAULT_RANGES = "eval/quant/recipes/isnet-general-use-int8-static.ranges.json"


def set_range(fq, lo: float, hi: float) -> None:
    """Give an activation FakeQuantize the range [lo, hi] in NNCF's form: unsigned [0, hi], or
    signed symmetric, whose high end is one level short of -low."""
    from openvino import opset13 as ops

    old_lo = float(fq.input_value(1).get_node().get_data().ravel()[0])
    old_hi = float(fq.input_value(2).get_node().get_data().ravel()[0])
    if old_lo == 0.0:
        new = (0.0, max(hi, 1e-6))
    else:
        a = max(abs(lo), abs(hi), 1e-6)
        new = (-a, a * old_hi / -old_lo)
    for port, value in zip((1, 2, 3, 4), (*new, *new), strict=True):
        const = ops.constant(np.full(fq.input_value(port).get_shape(), value, np.float32))
        fq.input(port).replace_source_output(const.output(0))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--ranges", default=DEFAULT_RANGES)
    ap.add_argument("--unify", action="store_true")
    args = ap.parse_args(argv)
    import openvino as ov

    from studio.quant.ranges import read_ranges

    ranges, _ = read_ranges(args.ranges)
    model = ov.Core().read_model(str(args.build / "model.xml"))
    fqs = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() == "FakeQuantize" and op.input_value(0).get_node().get_type_name() != "Constant":
            hit = [n for n in op.input_value(0).get_names() if n in ranges.ranges]
            if hit:
                fqs[op.get_friendly_name()] = (op, ranges.ranges[hit[0]])
    if args.unify:
        for op in model.get_ordered_ops():
            if op.get_type_name() != "Concat":
                continue
            feeding = [v.get_node() for v in op.input_values() if v.get_node().get_type_name() == "FakeQuantize"]
            names = [f.get_friendly_name() for f in feeding if f.get_friendly_name() in fqs]
            if len(names) > 1:
                lo = min(fqs[n][1][0] for n in names)
                hi = max(fqs[n][1][1] for n in names)
                for n in names:
                    fqs[n] = (fqs[n][0], (lo, hi))
    for op, (lo, hi) in fqs.values():
        set_range(op, float(lo), float(hi))
    model.validate_nodes_and_infer_types()
    args.out.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(args.out / "model.xml"), compress_to_fp16=False)
    meta = json.loads((args.build / "build.json").read_text())
    meta.update({"swapped_ranges": args.ranges, "unify": args.unify, "fq_swapped": len(fqs)})
    (args.out / "build.json").write_text(json.dumps(meta, indent=1))
    print(f"{len(fqs)} activation ranges swapped -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
