"""Is an NNCF build deterministic? The same recipe built in two fresh processes, compared byte for byte.

    python eval/quant/openvino/determinism.py                       # the shipped recipe
    python eval/quant/openvino/determinism.py RECIPE.yaml --runs 3

Each build runs in its own Python process (nncf_build.py) into its own folder. Equal sha256 of
model.xml and model.bin in every run is the answer; when they differ, the report says where:
the XML lines that differ (rt_info, names, attributes) and, for the .bin, which constants (by
the XML's offsets) hold different bytes and by how much their values differ.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nncf_build import build_in_subprocess, parse_recipe  # noqa: E402

DEFAULT = "eval/quant/recipes/isnet-general-use-ov-int8.yaml"
DTYPES = {"f32": np.float32, "f16": np.float16, "i8": np.int8, "u8": np.uint8, "i32": np.int32, "i64": np.int64}


def constants(xml: Path) -> list[dict]:
    """Every Const layer's name, element type, offset and size in the .bin."""
    out = []
    for layer in ET.parse(xml).getroot().iter("layer"):
        if layer.get("type") == "Const":
            data = layer.find("data")
            out.append({"name": layer.get("name"), "type": data.get("element_type"),
                        "offset": int(data.get("offset")), "size": int(data.get("size"))})
    return out


def where_bins_differ(a: Path, b: Path, xml: Path, top: int = 10) -> list[dict]:
    ba, bb = a.read_bytes(), b.read_bytes()
    if len(ba) != len(bb):
        return [{"name": "(file sizes differ)", "a": len(ba), "b": len(bb)}]
    diffs = []
    for c in constants(xml):
        sa, sb = ba[c["offset"]:c["offset"] + c["size"]], bb[c["offset"]:c["offset"] + c["size"]]
        if sa != sb:
            dt = DTYPES.get(c["type"], np.uint8)
            va, vb = np.frombuffer(sa, dt).astype(np.float64), np.frombuffer(sb, dt).astype(np.float64)
            d = np.abs(va - vb)
            diffs.append({"name": c["name"], "type": c["type"], "elements_differing": int(np.count_nonzero(d)),
                          "of": int(d.size), "max_abs_diff": float(d.max()),
                          "max_rel_diff": float((d / np.maximum(np.abs(va), 1e-30)).max())})
    return sorted(diffs, key=lambda x: -x["max_rel_diff"])[:top]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe", nargs="?", default=DEFAULT)
    ap.add_argument("--source", default="isnet-general-use")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--keep", type=Path, default=None, help="build into this folder (default: a temporary one)")
    args = ap.parse_args(argv)
    raw = parse_recipe(args.recipe)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        metas = [build_in_subprocess(raw, args.source, root / f"run{i}") for i in range(args.runs)]
        same_xml = len({m["xml_sha256"] for m in metas}) == 1
        same_bin = len({m["bin_sha256"] for m in metas}) == 1
        report = {"recipe": args.recipe, "runs": [{k: m[k] for k in ("xml_sha256", "bin_sha256", "seconds", "peak_rss_mb")}
                                                  for m in metas],
                  "identical": same_xml and same_bin}
        if not same_xml:
            a, b = (root / f"run{i}" / "model.xml" for i in (0, 1))
            report["xml_diff"] = list(difflib.unified_diff(a.read_text().splitlines(), b.read_text().splitlines(),
                                                          lineterm="", n=0))[:40]
        if not same_bin:
            report["bin_diff"] = where_bins_differ(root / "run0" / "model.bin", root / "run1" / "model.bin",
                                                   root / "run0" / "model.xml")
    print(json.dumps(report, indent=1))
    return 0 if report["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
