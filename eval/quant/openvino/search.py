"""The NNCF recipe search: build candidates, score them on the selection images, time them together.

    python eval/quant/openvino/search.py knobs --rounds 11          # one knob at a time around the base
    python eval/quant/openvino/search.py --list                     # the stages and their candidates

A stage is a list of candidates, each an `nncf-int8` recipe written as changes to BASE (the
logit path kept in float, everything else NNCF's defaults, calibrated on the embedded sample).
Each candidate is built in its own process (nncf_build.py; cached under OUT/builds/ by the hash
of its recipe, the source file and the tool versions), then all of them, ONNX Runtime fp32 (the
anchor), ONNX Runtime's int8 pick and OpenVINO on both files are scored on `--sets` and timed in
one interleaved run (compare.py). The search selects on the 16 sod-dev images that no build in the
table is scored on (`selection`); the held-out 94 are for the final table only.
Writes OUT/search-STAGE.md and .json (with each build's seconds and peak RSS).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare  # noqa: E402
import lab  # noqa: E402
from nncf_build import build_in_subprocess  # noqa: E402

# The logit path, as in every ORT recipe: the last convolution, the upsampling of its logits to
# the input size and the sigmoid. Quantized, the 8-bit logit grid moves the mask's edge.
LOGIT = ["^/side1/", "^/Resize_5$", "^/Sigmoid$"]
BASE: dict[str, Any] = {"kind": "nncf-int8", "outputs": ["output"], "ignored_scope": {"patterns": LOGIT}}
# The ORT recipe's other float units: the first convolution and stage 6 (its U-block at 1/32).
CONV_IN, STAGE6 = "^/conv_in/", "^/stage6/"


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of a recipe with changes; `ignored_patterns=[...]` adds patterns to the scope."""
    out = copy.deepcopy(base)
    for k, v in changes.items():
        if k == "ignored_patterns":
            out["ignored_scope"]["patterns"] = [*out["ignored_scope"]["patterns"], *v]
        elif k == "ignored_types":
            out["ignored_scope"]["types"] = [*out["ignored_scope"].get("types", []), *v]
        elif k == "calibration":
            out["calibration"] = dict(v)
        else:
            out[k] = v
    return out


ORT_LIKE = with_(BASE, ignored_patterns=[CONV_IN, STAGE6])
SOD16 = {"dataset": "sod-dev", "part": "calibration", "count": 16, "seed": 0}

Q_SET = with_(ORT_LIKE, activations_range="mean_quantile")

STAGES: dict[str, dict[str, dict[str, Any]]] = {
    # one knob at a time around the ORT recipe's float set, most telling first (a build takes
    # minutes; the ignored scope's units are priced by sensitivity.py without rebuilding)
    "knobs": {
        "base: logit path float": BASE,
        "nothing ignored": with_(BASE, ignored_scope={"patterns": []}),
        "ORT float set (logit, conv_in, stage 6)": ORT_LIKE,
        "ORT set, preset mixed": with_(ORT_LIKE, preset="mixed"),
        "ORT set, Interpolate float": with_(ORT_LIKE, ignored_types=["Interpolate"]),
        "ORT set, min/max ranges": with_(ORT_LIKE, activations_range="minmax"),
        # NNCF's default (the mean of each image's max) keeps the outliers: some activations
        # peak at 10-20x their 99.99th percentile, which leaves a few levels for the rest
        "ORT set, 99.99th-percentile ranges": Q_SET,
        "ORT set, histogram ranges": with_(ORT_LIKE, activations_range="histogram"),
    },
    # around the percentile ranges (the knob that mattered), most telling first
    "quantile": {
        "Q: logit path only float": with_(BASE, activations_range="mean_quantile"),
        "Q, calibrated on sod-dev 16": with_(Q_SET, calibration=SOD16),
        "Q, preset mixed": with_(Q_SET, preset="mixed"),
        "Q, Interpolate float": with_(Q_SET, ignored_types=["Interpolate"]),
        "Q, no bias correction": with_(Q_SET, bias_correction=False),
        "Q, Concat branches not merged": with_(Q_SET, propagation="merge_if_all_branches_same"),
        "Q, 8 images": with_(Q_SET, subset_size=8),
        "Q, SmoothQuant conv 0.5": with_(Q_SET, model_type="transformer", smooth_quant=0.5),
    },
}


def build_key(recipe: dict[str, Any], source: str) -> str:
    from studio.recipe import Recipe

    canon = Recipe.from_dict(recipe).canonical()
    blob = json.dumps({"recipe": canon, "source": lab.sha256_file(lab.artifact(source)),
                       "tools": {p: version(p) for p in ("openvino", "nncf")}}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def ensure_build(recipe: dict[str, Any], source: str = lab.REFERENCE) -> tuple[Path, dict[str, Any]]:
    out = lab.OUT / "builds" / build_key(recipe, source)
    if not (out / "build.json").is_file():
        print(f"building {out.name} ...", flush=True)
        build_in_subprocess(recipe, source, out)
    return out, json.loads((out / "build.json").read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stage", nargs="?")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--only", nargs="*", help="candidate labels of the stage to run (default: all)")
    ap.add_argument("--sets", default="selection,embedded")
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16", action="store_true", help="also time every build with bf16 float parts")
    ap.add_argument("--build-only", action="store_true")
    ap.add_argument("--out", type=Path, default=lab.OUT)
    args = ap.parse_args(argv)
    if args.list or not args.stage:
        for name, cands in STAGES.items():
            print(name)
            for label, r in cands.items():
                print(f"  {label}: {json.dumps({k: v for k, v in r.items() if k != 'kind'})}")
        return 0
    cands = {k: v for k, v in STAGES[args.stage].items() if not args.only or k in args.only}
    built: dict[str, tuple[Path, dict]] = {}
    failed: dict[str, str] = {}
    for label, r in cands.items():
        try:
            built[label] = ensure_build(r)
        except RuntimeError as exc:  # one recipe NNCF refuses should not stop the stage
            failed[label] = str(exc).strip().splitlines()[-1]
            print(f"{label}: {failed[label]}", flush=True)
    if args.build_only:
        return 0
    specs = ["ov:isnet-general-use", "ort:isnet-general-use-cpu", "ov:isnet-general-use-cpu"]
    labels = {}
    for label, (path, _) in built.items():
        specs.append(f"ir:{path}")
        labels[f"ir:{path}"] = label
        if args.bf16:
            specs.append(f"ir:{path}@bf16")
            labels[f"ir:{path}@bf16"] = label + " (bf16 float parts)"
    res = compare.measure(specs, [s for s in args.sets.split(",") if s], args.rounds, args.threads)
    res["meta"]["command"] = "python eval/quant/openvino/search.py " + " ".join(argv if argv is not None else sys.argv[1:])
    res["builds"] = {label: meta for label, (_, meta) in built.items()}
    from studio.fileio import atomic_write_json, atomic_write_text

    md = [f"# NNCF search, stage `{args.stage}`", "", f"Command: `{res['meta']['command']}`", "",
          compare.markdown(res, labels), "", "Builds (each in its own process):", "",
          "| candidate | key | build s | peak RSS MB | IR .bin MB | nodes kept float |", "|---|---|---|---|---|---|"]
    for label, (path, meta) in built.items():
        md.append(f"| {label} | `{path.name}` | {meta['seconds']} | {meta['peak_rss_mb']} | {meta['bin_mb']} | "
                  f"{meta.get('ignored_nodes', '—')} |")
    md += [f"| {label} | failed: {why} | | | | |" for label, why in failed.items()]
    text = "\n".join(md) + "\n"
    atomic_write_json(args.out / f"search-{args.stage}.json", res, indent=1)
    atomic_write_text(args.out / f"search-{args.stage}.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
