"""The build table: IS-Net at every resolution x precision x runtime, side by side, held-out images only.

    python eval/quant/build_table.py                         # sod-dev + embedded, 2 threads, 15 rounds
    python eval/quant/build_table.py --sizes 1024            # 1024 only (fp32, int8, both runtimes)
    python eval/quant/build_table.py --limit 8 --rounds 3    # a smoke run

Rows: fp32 and int8-static at 1024 (the zoo's) and at 896, 768, 640 and 512 (the
`resize-input` variants and their int8-static builds), the OpenVINO variants (fp32 on
OpenVINO, the NNCF int8 IR), the shipped CPU pick and the ONNX Runtime QDQ build, the same
files on the other runtime (--twins: ID:BACKEND, a model file on two runtimes is two rows),
fp32 on +-1-grey-level noise (the agreement floor), and any recipe files given with --tried
(built as ad-hoc variants of fp32 at 1024) or zoo variants given with --extra.

For each: the runtime, size, p50 model time and whole-predict time (rounds interleaved across
every build in one process, on --timing-images held-out images, same threads), speed-up over
ONNX Runtime fp32 at 1024 from those (and the paired median of per-round ratios with its
bootstrap 95 % interval),
IoU and MAE against ground truth with bootstrap 95 % intervals, the paired-bootstrap IoU
difference from fp32 at 1024, and agreement with fp32 at 1024 (mask IoU at 0.5: pooled over
the images, with its bootstrap interval, and the per-image mean, median and worst). Quality
is on the sod-dev images held out from ALL calibration images of every static build in the
table, and on the embedded sample (builds that calibrate on it are left out of that part). Predictions are cached under
--out by artifact hash, session settings and image hash, so a rerun only times.
Writes build_table.md and build_table.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from eval.quant.outputs import command_line, run_meta, write_tables  # noqa: E402
from studio import artifacts, settings  # noqa: E402
from studio.backends.onnx import ort_options  # noqa: E402
from studio.quant import builds  # noqa: E402
from studio.quant.agreement import compare_mattes, predict_images  # noqa: E402
from studio.quant.images import ImageSet  # noqa: E402
from studio.recipe import load_recipe_file  # noqa: E402
from studio.timing import interleave, speed_ratio  # noqa: E402
from studio.zoo import load_zoo  # noqa: E402

REFERENCE = "isnet-general-use"
SIZES = (1024, 896, 768, 640, 512)
PICK = "isnet-general-use-cpu"  # the shipped CPU pick (models/zoo.d/openvino.yaml since issue 20)
# the other 1024 int8 candidates for the pick, on whichever runtime the zoo gives them
CANDIDATES = ("isnet-general-use-ov", "isnet-general-use-ov-int8", "isnet-general-use-cpu-ort")
RUNTIMES = {"onnx": "ONNX Runtime", "openvino": "OpenVINO"}
NOISE_ID = "isnet-general-use@noise1"
N_BOOT = 1000


def resolution_rows(sizes: tuple[int, ...] = SIZES, int8: bool = True) -> list[tuple[str, str]]:
    out = [(REFERENCE, "fp32 1024")]  # the anchor, always
    for s in sizes:
        fp32 = REFERENCE if s == 1024 else f"{REFERENCE}-{s}"
        q = f"{REFERENCE}-int8-static" if s == 1024 else f"{REFERENCE}-{s}-int8-static"
        out += [(fp32, f"fp32 {s}")] if s != 1024 else []
        out += [(q, f"int8-static {s}")] if int8 else []
    return out


def variants_to_run(tried: list[Path], extra: list[str], sizes: tuple[int, ...] = SIZES,
                    twins: list[str] | None = None, int8: bool = True) -> list[tuple[object, str]]:
    from studio.quant.builds import adhoc_variant

    zoo = load_zoo()
    out = [(zoo.get(vid), label) for vid, label in resolution_rows(sizes, int8)]
    for vid in CANDIDATES:
        if vid in zoo.variants:
            out.append((zoo.get(vid), {"isnet-general-use-ov": "fp32 1024",
                                       "isnet-general-use-ov-int8": "NNCF int8 1024"}.get(vid, "int8-static QDQ 1024")))
    if PICK in zoo.variants:
        out.append((zoo.get(PICK), "the shipped CPU pick"))
    for spec in twins if twins is not None else default_twins(zoo):
        vid, _, backend = spec.partition(":")
        twin = runtime_twin(zoo.get(vid), backend)
        out.append((twin, f"the file of `{vid}`"))
    for vid in extra:
        out.append((zoo.get(vid), vid))
    for path in tried:
        recipe = load_recipe_file(path)
        v = adhoc_variant(REFERENCE, recipe, f"{REFERENCE}-tried-{path.stem.replace('.', '-')}")
        out.append((v, (recipe.notes or {}).get("label") or f"recipe {path.name}"))
    return out


TWIN_OF: dict[str, object] = {}  # twin id -> the variant whose file it runs


def default_twins(zoo) -> list[str]:
    """The ONNX Runtime int8 QDQ file at 1024 also on OpenVINO, unless a zoo variant already runs
    that build there (the pick does: isnet-general-use-cpu is isnet-general-use-cpu-ort's file)."""
    for vid in ("isnet-general-use-cpu-ort", PICK):
        if vid in zoo.variants and zoo.get(vid).backend == "onnx":
            v = zoo.get(vid)
            on_ov = [w for w in zoo.variants.values() if w.backend == "openvino" and w.derived_from == v.derived_from
                     and w.recipe is not None and w.recipe == v.recipe]
            return [] if on_ov else [f"{vid}:openvino"]
    return []


def runtime_twin(v, backend: str):
    """`v`'s own file on another runtime: a variant of that backend (its default options, f32),
    whose artifact is `v`'s (so it is timed and scored on the very same bytes)."""
    import dataclasses

    if backend not in RUNTIMES or backend == v.backend:
        raise SystemExit(f"--twins {v.id}:{backend}: the backend must be another of {', '.join(RUNTIMES)}")
    twin = dataclasses.replace(v, id=f"{v.id}@{backend}", backend=backend, options=None, recipe=None,
                               derived_from=None)
    TWIN_OF[twin.id] = v
    return twin


def artifact(v) -> tuple[Path, str]:
    rec = artifacts.require(TWIN_OF.get(v.id, v), verify=False)
    return Path(rec.path), rec.sha256


class PredictionStore:
    """Mattes on disk (8-bit PNG) by artifact sha, session settings and image content hash."""

    def __init__(self, root: Path):
        self.root = root

    def _path(self, v, sha: str, image_hash: str) -> Path:
        tag = hashlib.sha256(json.dumps([sha, v.input_size, v.preprocess.to_dict(), v.postprocess.to_dict(),
                                         v.options.to_dict()],
                                        sort_keys=True, default=str).encode()).hexdigest()[:16]
        return self.root / tag / f"{image_hash[:24]}.png"

    def alphas(self, v, samples: list, images: dict[str, np.ndarray], threads: int) -> dict[str, np.ndarray]:
        from studio.imageio import encode_png, load_mask_levels

        path, sha = artifact(v)
        out, todo = {}, []
        for s in samples:
            p = self._path(v, sha, s.content_hash)
            if p.is_file():
                out[s.id] = load_mask_levels(p).astype(np.float32) / 255.0
            else:
                todo.append(s)
        if todo:
            got = predict_images(v, path, [images[s.id] for s in todo], threads, f"{v.id} ({len(todo)})")
            for s, a in zip(todo, got, strict=True):
                p = self._path(v, sha, s.content_hash)
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(encode_png(np.round(a * 255).astype(np.uint8)))
                out[s.id] = np.round(a * 255).astype(np.float32) / 255.0  # as stored: reruns give the same
        return out


def time_interleaved(variants: list, images: list[np.ndarray], threads: int, rounds: int, gap: float = 0.05
                     ) -> dict[str, dict]:
    """p50 of the model run and of the whole predict, rounds interleaved across builds (a shuffled
    order each round, `studio.timing.interleave`), a short pause before each run. Every round
    runs every build on one image; `rounds` rounds per image."""
    from studio.backends import create_runner

    runners = {}
    for v in variants:
        path, sha = artifact(v)  # a twin loads its partner's file
        runners[v.id] = create_runner(v, path, "cpu", threads, weights_sha256=sha)
        runners[v.id].predict(images[0])  # warm-up (and OpenVINO's compile)
    res = interleave({vid: (lambda img, r=r: r.predict(img).timings) for vid, r in runners.items()}, images, rounds,
                     gap=gap)
    for r in runners.values():
        r.close()
    out = {}
    for vid in runners:
        inference = res.samples(vid, "inference")
        pre_post = [p + q for p, q in zip(res.samples(vid, "preprocess"), res.samples(vid, "postprocess"), strict=True)]
        ratios = res.ratios(vid, REFERENCE, "inference")
        paired = speed_ratio(ratios)
        out[vid] = {"inference": statistics.median(inference), "total": statistics.median(res.samples(vid)),
                    "pre_post": statistics.median(pre_post), "rounds": len(ratios),
                    "speedup_paired": paired["median"], "speedup_paired_ci": paired["ci95"],
                    "faster_share": sum(x > 1 for x in ratios) / len(ratios),
                    "load": [min(res.loads), max(res.loads)] if res.loads else None}
    return out


def pooled_ci(ref: list[np.ndarray], got: list[np.ndarray], n_boot: int = N_BOOT, seed: int = 0) -> list[float]:
    """Bootstrap 95 % interval of the pooled mask IoU (images resampled)."""
    inter = np.array([np.count_nonzero((a > 0.5) & (b > 0.5)) for a, b in zip(ref, got, strict=True)], float)
    union = np.array([np.count_nonzero((a > 0.5) | (b > 0.5)) for a, b in zip(ref, got, strict=True)], float)
    rng = np.random.default_rng(seed)
    w = rng.multinomial(len(ref), np.full(len(ref), 1.0 / len(ref)), size=n_boot).astype(float)
    vals = (w @ inter) / np.maximum(w @ union, 1.0)
    return [float(x) for x in np.percentile(vals, [2.5, 97.5])]


def quality(ids: list[str], alphas: dict[str, np.ndarray], ref: dict[str, np.ndarray], gts: dict[str, np.ndarray],
            ref_scores: list | None) -> tuple[dict, list]:
    from studio.metrics import aggregate, compare_paired, score_image

    scores = [score_image(alphas[i], gts[i], name=i, threads=1) for i in ids]
    agg = aggregate(scores, n_boot=N_BOOT)
    agree = compare_mattes([ref[i] for i in ids], [alphas[i] for i in ids])
    out = {
        "n": len(ids),
        "iou_gt": agg["iou"]["mean"], "iou_gt_ci": agg["iou"]["ci95"],
        "mae_gt": agg["mae"]["mean"], "mae_gt_ci": agg["mae"]["ci95"],
        "agree_iou_pooled": agree["iou_pooled"],
        "agree_iou_pooled_ci": pooled_ci([ref[i] for i in ids], [alphas[i] for i in ids]),
        "agree_iou": agree["iou_mean"], "agree_iou_median": agree["iou_median"], "agree_iou_min": agree["iou_min"],
        "agree_mae": agree["mae_mean"],
    }
    if ref_scores is not None:
        d = compare_paired(scores, ref_scores, "iou", n_boot=2 * N_BOOT)
        out["d_iou_gt"], out["d_iou_gt_ci"] = d["diff"], d["ci95"]
    return out, scores


def held_out_sod(static_recipes: list) -> tuple[list, list[str], ImageSet]:
    """sod-dev less the calibration images of every static build in the table."""
    cal_sets = [ImageSet.from_dict(r.params["calibration"]) for r in static_recipes
                if r.params["calibration"]["dataset"] == "sod-dev"]  # the NNCF build's embedded sample holds none
    calib: set[str] = set()
    for c in cal_sets:
        calib |= {s.id for s in c.samples()}
    every = list(cal_sets[0]._open(None))
    return [s for s in every if s.id not in calib], sorted(calib), cal_sets[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5, help="timing rounds per timing image (interleaved)")
    ap.add_argument("--timing-images", type=int, default=3, help="held-out images the rounds cycle through")
    ap.add_argument("--sizes", nargs="*", type=int, default=list(SIZES), help="input sizes of the fp32/int8-static rows")
    ap.add_argument("--int8-static", action=argparse.BooleanOptionalAction, default=True,
                    help="the plain int8-static build at each size (default on)")
    ap.add_argument("--twins", nargs="*", default=None,
                    help="ID:BACKEND rows: a zoo variant's file on the other runtime (default: the ORT QDQ build "
                         "on openvino); none with an empty list")
    ap.add_argument("--tried", nargs="*", type=Path, default=[],
                    help="int8-static recipe files to build from fp32 at 1024 and add as rows")
    ap.add_argument("--extra", nargs="*", default=[], help="more zoo variants as rows (e.g. isnet-general-use-fp16)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images of each set (smoke runs)")
    ap.add_argument("--noise-floor", action=argparse.BooleanOptionalAction, default=True,
                    help="also run fp32 on the images with +-1 grey-level noise (default on)")
    ap.add_argument("--embedded", action=argparse.BooleanOptionalAction, default=True,
                    help="also score on the embedded sample (default on)")
    ap.add_argument("--out", type=Path, default=settings.results_dir() / "quant")
    args = ap.parse_args(argv)
    cmd = command_line("build_table.py", argv)

    chosen = variants_to_run(args.tried, args.extra, tuple(args.sizes), args.twins, args.int8_static)
    statics, embedded_calibrated = [], set()
    for v, _ in chosen:
        if builds.is_derived(v):
            builds.build(v, progress=True, threads=args.threads, check=False)
            r = builds.recipe_of(v)
            if r.kind in ("int8-static", "nncf-int8"):
                statics.append(r)
                if r.params["calibration"]["dataset"] == "embedded":
                    embedded_calibrated.add(v.id)
    held, calib_ids, cal = held_out_sod(statics)
    from studio.data import open_dataset

    emb = list(open_dataset(None)) if args.embedded else []
    if args.limit:
        held, emb = held[: args.limit], emb[: args.limit]
    sets = {"held_out": held, "embedded": emb}
    samples = held + emb
    images = {s.id: s.image() for s in samples}
    gts = {s.id: s.mask() for s in samples}
    print(f"{cal.dataset}: {len(held)} held-out images (calibration images of every static build excluded: "
          f"{len(calib_ids)}); embedded sample: {len(emb)} images", flush=True)

    store = PredictionStore(args.out / "predictions")
    alphas = {v.id: store.alphas(v, samples, images, args.threads) for v, _ in chosen}
    if args.noise_floor:
        rng = np.random.default_rng(0)
        noisy = {i: np.clip(im.astype(np.int16) + rng.integers(-1, 2, im.shape), 0, 255).astype(np.uint8)
                 for i, im in images.items()}
        fp32 = load_zoo().get(REFERENCE)
        got = predict_images(fp32, artifact(fp32)[0], [noisy[s.id] for s in samples], args.threads, "fp32 +-1 noise")
        alphas[NOISE_ID] = {s.id: a for s, a in zip(samples, got, strict=True)}
    ref = alphas[REFERENCE]

    timing_samples = held[: max(1, args.timing_images)]
    timing = time_interleaved([v for v, _ in chosen], [images[s.id] for s in timing_samples], args.threads,
                              args.rounds)

    ref_scores: dict[str, list] = {}
    for part, ss in sets.items():
        if ss:
            _, ref_scores[part] = quality([s.id for s in ss], ref, ref, gts, None)
    rows = []
    entries = ([(None, NOISE_ID, "fp32 on input +-1 grey-level noise (the agreement floor)")] if args.noise_floor else [])
    entries += [(v, v.id, label) for v, label in chosen]
    for v, vid, label in entries:
        rec = artifacts.installed(v) if v is not None else None
        t = timing.get(vid)
        if v is not None and vid in TWIN_OF:
            rec = artifacts.installed(TWIN_OF[vid])
        backend = v.backend if v is not None else "onnx"
        row = {"id": vid, "label": label, "precision": v.precision if v else "fp32",
               "runtime": RUNTIMES.get(backend, backend),
               "input_size": list(v.input_size) if v else [1024, 1024],
               "size_mb": round(rec.size / 1e6, 1) if rec else None,
               "ort": ort_options(v).to_dict() if v is not None and backend == "onnx" else {},
               "openvino": v.options.to_dict() if v is not None and backend == "openvino" else {},
               "p50_inference_s": t["inference"] if t else None, "p50_total_s": t["total"] if t else None,
               "p50_pre_post_s": t["pre_post"] if t else None,
               "speedup_inference": timing[REFERENCE]["inference"] / t["inference"] if t else None,
               "speedup_total": timing[REFERENCE]["total"] / t["total"] if t else None,
               "speedup_paired": t["speedup_paired"] if t else None,
               "speedup_paired_ci": t["speedup_paired_ci"] if t else None,
               "faster_share": t["faster_share"] if t else None}
        src = v.derived_from if v is not None and v.precision != "fp32" else None
        if v is not None and vid in TWIN_OF:
            src = TWIN_OF[vid].derived_from
        for part, ss in sets.items():
            if part == "embedded" and vid in embedded_calibrated:
                continue  # it calibrated on these images: no held-out measure
            if ss:
                ids = [s.id for s in ss]
                row[part], _ = quality(ids, alphas[vid], ref, gts, ref_scores[part] if vid != REFERENCE else None)
                if src in alphas:  # quantization alone: agreement with its own fp32 at the same size
                    own = compare_mattes([alphas[src][i] for i in ids], [alphas[vid][i] for i in ids])
                    row[part]["agree_source"] = src
                    row[part]["agree_source_pooled"] = own["iou_pooled"]
        rows.append(row)
        print(f"scored {vid}", flush=True)

    loads = [x for t in timing.values() for x in (t["load"] or [])]
    meta = run_meta(cmd, dataset=cal.dataset, n_held_out=len(held), n_embedded=len(emb),
                    calibration_ids=calib_ids, threads=args.threads, rounds=args.rounds,
                    timing_images=[s.id for s in timing_samples], n_boot=N_BOOT,
                    load_during_timing=[min(loads), max(loads)] if loads else None,
                    embedded_calibrated=sorted(embedded_calibrated))
    write_tables(args.out, "build_table", meta, rows, markdown(rows, meta))
    return 0


def _ci(x: list[float], fmt: str = "{:.4f}") -> str:
    return f"[{fmt.format(x[0])}, {fmt.format(x[1])}]"


def markdown(rows: list[dict], meta: dict) -> str:
    timed_on = meta.get("timing_images") or [meta.get("timing_image")]
    load = meta.get("load_during_timing")
    lines = [
        f"Build table: {meta['dataset']}, {meta['n_held_out']} images held out from the calibration images of every "
        f"static build ({len(meta['calibration_ids'])} excluded), and the embedded sample ({meta['n_embedded']} images). "
        f"{meta['threads']} threads, {meta['rounds']} interleaved timing rounds on each of images {', '.join(timed_on)}"
        + (f" (1-minute load average {load[0]:.2f}–{load[1]:.2f})" if load else "") + "; "
        "speed-up is against ONNX Runtime fp32 at 1024 in the same run (model time; the paired median of per-round "
        "ratios with its bootstrap 95 % interval in brackets). A model file on two runtimes is two rows.",
        f"Command: `{meta['command']}`",
        "IoU/MAE GT: against the ground-truth masks (PySODMetrics conventions), mean over images with a bootstrap "
        f"95 % interval ({meta['n_boot']} resamples); ΔIoU: paired bootstrap against fp32 at 1024. Agreement: with "
        "fp32 at 1024, mask IoU at 0.5 pooled over the images (all intersections over all unions) with its bootstrap "
        "interval; per-image mean (median, worst) beside it.",
        "",
        "| build | runtime | size MB | p50 model s | p50 predict s | speed-up model (paired [95 % CI]) / predict | "
        "IoU GT [95 % CI] | ΔIoU vs fp32 1024 [95 % CI] | MAE GT [95 % CI] | agree pooled [95 % CI] | "
        "agree mean (median, min) | agree with own fp32 (pooled) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        h = r.get("held_out")
        if not h:
            continue
        ci = r.get("speedup_paired_ci")
        paired = f"{r['speedup_paired']:.2f}x" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "") \
            if r["p50_inference_s"] is not None else ""
        timing = ("— | — | —" if r["p50_inference_s"] is None else
                  f"{r['p50_inference_s']:.3f} | {r['p50_total_s']:.3f} | {r['speedup_inference']:.2f}x "
                  f"({paired}) / {r['speedup_total']:.2f}x")
        d = (f"{h['d_iou_gt']:+.4f} {_ci(h['d_iou_gt_ci'], '{:+.4f}')}" if "d_iou_gt" in h else "—")
        lines.append(
            f"| {r['label']} (`{r['id']}`) | {r.get('runtime', 'ONNX Runtime')} | {r['size_mb'] or '—'} | {timing} | {h['iou_gt']:.4f} {_ci(h['iou_gt_ci'])} | "
            f"{d} | {h['mae_gt']:.4f} {_ci(h['mae_gt_ci'])} | {h['agree_iou_pooled']:.4f} {_ci(h['agree_iou_pooled_ci'])} | "
            f"{h['agree_iou']:.4f} ({h['agree_iou_median']:.4f}, {h['agree_iou_min']:.3f}) | "
            + (f"{h['agree_source_pooled']:.4f} |" if "agree_source_pooled" in h else "— |"))
    if any(r.get("embedded") for r in rows):
        skipped = meta.get("embedded_calibrated") or []
        lines += ["", f"Embedded sample ({meta['n_embedded']} images, generated in code"
                  + (f"; left out: {', '.join(f'`{x}`' for x in skipped)}, which calibrate on it" if skipped
                     else "; no build calibrates on it") + "):", "",
                  "| build | IoU GT [95 % CI] | ΔIoU vs fp32 1024 [95 % CI] | MAE GT [95 % CI] | agree pooled [95 % CI] | "
                  "agree mean (median, min) | agree with own fp32 (pooled) |", "|---|---|---|---|---|---|---|"]
        for r in rows:
            e = r.get("embedded")
            if not e:
                continue
            d = (f"{e['d_iou_gt']:+.4f} {_ci(e['d_iou_gt_ci'], '{:+.4f}')}" if "d_iou_gt" in e else "—")
            lines.append(f"| {r['label']} (`{r['id']}`) | {e['iou_gt']:.4f} {_ci(e['iou_gt_ci'])} | {d} | "
                         f"{e['mae_gt']:.4f} {_ci(e['mae_gt_ci'])} | {e['agree_iou_pooled']:.4f} "
                         f"{_ci(e['agree_iou_pooled_ci'])} | {e['agree_iou']:.4f} ({e['agree_iou_median']:.4f}, "
                         f"{e['agree_iou_min']:.3f}) | "
                         + (f"{e['agree_source_pooled']:.4f} |" if "agree_source_pooled" in e else "— |"))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
