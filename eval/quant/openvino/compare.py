"""Runtimes and builds side by side: quality on held-out images, speed from one interleaved run.

    python eval/quant/openvino/compare.py ort:isnet-general-use ov:isnet-general-use \\
        ov:isnet-general-use@bf16 ort:isnet-general-use-cpu ov:isnet-general-use-cpu \\
        ir:eval/results/quant/openvino/builds/KEY --rounds 15

A candidate is `RUNTIME:WHAT[@PRECISION]`:
- `ort:VARIANT`: ONNX Runtime on a zoo variant's file, with the variant's `options.ort`;
- `ov:VARIANT`: OpenVINO on the same file (read as is, first output only);
- `ir:DIR`: OpenVINO on an NNCF build's IR (`DIR/model.xml`, input size from `DIR/build.json`);
- `@bf16` / `@f32` (default f32): OpenVINO's inference precision (this CPU's default is bf16).

Quality: IoU against ground truth with its bootstrap CI, ΔIoU against the anchor (paired
bootstrap), agreement with the anchor's masks (pooled, with CI; mean, median, worst) on the
chosen sets (`held_out`: the 94 sod-dev images no ORT int8 recipe calibrated on; `selection`:
the other 16, which the search selects on; `embedded`: the 24 generated pairs). Speed: every
candidate loaded at once, then `--rounds` rounds, each running every candidate once in a
shuffled order on one held-out image; the speed-up is the median of the per-round ratios
anchor/candidate with a bootstrap CI. The load average is recorded each round.
Writes OUT/NAME.md and OUT/NAME.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lab  # noqa: E402

ANCHOR = "ort:isnet-general-use"


def parse(spec: str) -> dict[str, Any]:
    runtime, _, rest = spec.partition(":")
    what, _, precision = rest.partition("@")
    if runtime not in ("ort", "ov", "ir"):
        raise SystemExit(f"{spec}: the runtime must be ort, ov or ir")
    return {"spec": spec, "runtime": runtime, "what": what, "precision": precision or "f32"}


def size_of(c: dict[str, Any]) -> int:
    if c["runtime"] == "ir":
        return int(json.loads((Path(c["what"]) / "build.json").read_text())["input_size"][0])
    return int(lab.variant(c["what"]).input_size[0])


def path_of(c: dict[str, Any]) -> Path:
    return Path(c["what"]) / "model.xml" if c["runtime"] == "ir" else lab.artifact(c["what"])


def factory(c: dict[str, Any], threads: int):
    size = size_of(c)
    if c["runtime"] == "ort":
        opts = lab.ort_options(c["what"])
        return lambda: lab.OrtNet(c["spec"], path_of(c), threads, opts, size)
    return lambda: lab.OvNet(c["spec"], path_of(c), threads, c["precision"], size)


def tag_of(c: dict[str, Any]) -> str:
    opts = lab.ort_options(c["what"]) if c["runtime"] == "ort" else None
    p = path_of(c)
    return lab.file_tag(c["runtime"], p, p.with_suffix(".bin") if c["runtime"] == "ir" else None, c["precision"], opts)


def sets_of(names: list[str], limit: int | None) -> dict[str, list]:
    got = {}
    for n in names:
        s = {"held_out": lab.sod_held_out, "selection": lab.sod_calibration, "embedded": lab.embedded}[n]()
        got[n] = s[:limit] if limit else s
    return got


def measure(specs: list[str], set_names: list[str], rounds: int, threads: int = 2, anchor: str = ANCHOR,
            limit: int | None = None, seed: int = 0, timing_set: str = "held_out") -> dict[str, Any]:
    """Quality of every candidate on the sets, then one interleaved timing run."""
    cands = [parse(s) for s in dict.fromkeys([anchor, *specs])]
    sets = sets_of(set_names, limit)
    store = lab.Mattes()
    rows: dict[str, dict[str, Any]] = {c["spec"]: {"spec": c["spec"], "runtime": c["runtime"],
                                                   "precision": c["precision"], "size": size_of(c)} for c in cands}
    for name, samples in sets.items():
        ids = [s.id for s in samples]
        gts = {s.id: s.mask() for s in samples}
        mattes = {c["spec"]: store.get(tag_of(c), samples, factory(c, threads)) for c in cands}
        ref = mattes[anchor]
        _, ref_scores = lab.score(ids, ref, ref, gts)
        for c in cands:
            sc, _ = lab.score(ids, mattes[c["spec"]], ref, gts, None if c["spec"] == anchor else ref_scores)
            rows[c["spec"]][name] = asdict(sc)
        print(f"scored {len(cands)} candidates on {name} ({len(ids)} images)", flush=True)
    timing_image = sets_of([timing_set], None)[timing_set][0] if rounds else None
    if rounds:
        nets = {c["spec"]: factory(c, threads)() for c in cands}
        timing = lab.interleave(nets, timing_image.image(), rounds, anchor, seed=seed)
        del nets
        for spec, t in timing.items():
            if spec in rows:
                rows[spec]["timing"] = t
        meta_t = timing["_meta"]
    else:
        meta_t = {}
    for c in cands:
        p = path_of(c)
        rows[c["spec"]]["size_mb"] = round((p.stat().st_size + (p.with_suffix(".bin").stat().st_size
                                                                 if c["runtime"] == "ir" else 0)) / 1e6, 1)
    return {"meta": {"anchor": anchor, "sets": {k: len(v) for k, v in sets.items()}, "threads": threads,
                     "timing_image": timing_image.id if timing_image else None, **meta_t},
            "rows": list(rows.values())}


def _ci(x: list[float] | None, fmt: str = "{:.4f}") -> str:
    return f"[{fmt.format(x[0])}, {fmt.format(x[1])}]" if x else ""


def markdown(result: dict[str, Any], labels: dict[str, str] | None = None) -> str:
    meta, rows = result["meta"], result["rows"]
    labels = labels or {}
    out = [f"Anchor `{meta['anchor']}`; {meta['threads']} threads; timing: {meta.get('rounds', 0)} interleaved rounds "
           f"(shuffled order) on image {meta['timing_image']}; load average (1 min) during timing: "
           f"{min(meta.get('load_average_1min') or [0]):.2f}–{max(meta.get('load_average_1min') or [0]):.2f}.", ""]
    for name, n in meta["sets"].items():
        out += [f"**{name}** ({n} images)", "",
                "| candidate | size MB | p50 model s | p50 predict s | speed-up (paired) [95 % CI] | IoU GT [95 % CI] | "
                "ΔIoU vs anchor [95 % CI] | agree pooled [95 % CI] | agree mean (median, min) |",
                "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            q, t = r[name], r.get("timing")
            timing = (f"{t['p50_inference_s']:.3f} | {t['p50_total_s']:.3f} | {t['speedup_paired']:.2f}x "
                      f"{_ci(t['speedup_paired_ci'], '{:.2f}')}" if t else "— | — | —")
            d = f"{q['d_iou']:+.4f} {_ci(q['d_iou_ci'], '{:+.4f}')}" if q["d_iou"] is not None else "—"
            label = labels.get(r["spec"], "")
            out.append(f"| `{r['spec']}`{' ' + label if label else ''} | {r['size_mb']} | {timing} | "
                       f"{q['iou_gt']:.4f} {_ci(q['iou_gt_ci'])} | {d} | {q['agree_pooled']:.4f} "
                       f"{_ci(q['agree_pooled_ci'])} | {q['agree_mean']:.4f} ({q['agree_median']:.4f}, "
                       f"{q['agree_min']:.3f}) |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("specs", nargs="+")
    ap.add_argument("--sets", default="held_out,embedded")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--anchor", default=ANCHOR)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--name", default="compare")
    ap.add_argument("--out", type=Path, default=lab.OUT)
    args = ap.parse_args(argv)
    from studio.fileio import atomic_write_json, atomic_write_text

    res = measure(args.specs, [s for s in args.sets.split(",") if s], args.rounds, args.threads, args.anchor, args.limit)
    res["meta"]["command"] = "python eval/quant/openvino/compare.py " + " ".join(argv if argv is not None else sys.argv[1:])
    md = markdown(res)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / f"{args.name}.json", res, indent=1)
    atomic_write_text(args.out / f"{args.name}.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
