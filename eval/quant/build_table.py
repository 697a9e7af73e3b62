"""The build table: every IS-Net build side by side on a real set, calibration part excluded.

    python eval/quant/build_table.py                      # sod-dev, 2 threads, 9 timing rounds
    python eval/quant/build_table.py --rounds 15 --threads 2 --out eval/results/quant

For each build: size, p50 latency (model run, and the whole predict with pre/post), speed-up
over fp32 measured in the same run with the same threads (rounds interleaved, so a noisy
neighbour slows every build alike), IoU and MAE against ground truth (the metric suite's
PySODMetrics conventions), and agreement with fp32 (mask IoU at 0.5 and MAE between the
two mattes, mean over images, with the median and the worst image). Quality is reported on
the held-out part (sod-dev less the calibration images of the shipped static recipe) and on
the whole set. Static recipes tried along the way live in eval/quant/recipes/tried/ and are
built as ad-hoc variants. Writes build_table.md and build_table.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from studio import artifacts, engine, settings  # noqa: E402
from studio.quant import builds  # noqa: E402
from studio.quant.agreement import predict_images  # noqa: E402
from studio.quant.images import ImageSet  # noqa: E402
from studio.quant.recipe import load_recipe_file  # noqa: E402
from studio.zoo import load_zoo  # noqa: E402

REFERENCE = "isnet-general-use"
ZOO_BUILDS = [
    ("isnet-general-use", "fp32 (upcast of the npm fp16)"),
    ("isnet-general-use-fp16", "fp16, npm (IMG.LY)"),
    ("isnet-general-use-fp16-ort", "fp16, ORT converter (our recipe)"),
    ("isnet-general-use-int8-dynamic", "int8 dynamic, npm (IMG.LY)"),
    ("isnet-general-use-int8-dynamic-ort", "int8 dynamic, ORT (our recipe)"),
    ("isnet-general-use-int8-static", "int8 static, shipped recipe"),
]
TRIED = ROOT / "eval" / "quant" / "recipes" / "tried"
NOISE_ID = "isnet-general-use@noise1"


def artifact_path(v) -> Path | None:
    rec = artifacts.require(v, verify=False)
    return Path(rec.path) if rec else None


def variants_to_run(tried: list[Path]) -> list[tuple[object, str]]:
    from studio.quant.builds import adhoc_variant

    zoo = load_zoo()
    out = [(zoo.get(vid), label) for vid, label in ZOO_BUILDS]
    for path in tried:
        recipe = load_recipe_file(path)
        v = adhoc_variant(REFERENCE, recipe, f"{REFERENCE}-tried-{path.stem}")
        label = (recipe.notes or {}).get("label") or f"tried: {path.stem}"
        out.append((v, label))
    return out


def time_interleaved(variants: list, image: np.ndarray, threads: int, rounds: int) -> dict[str, dict]:
    """p50 of the model run and of the whole predict, rounds interleaved across builds."""
    runners = {}
    for v in variants:
        runners[v.id], _ = engine.load_runner(v, "cpu", threads, verify=False)
        runners[v.id].predict(image)  # warm-up
    times: dict[str, dict[str, list[float]]] = {v.id: {"inference": [], "total": []} for v in variants}
    for _ in range(rounds):
        for v in variants:
            t0 = time.perf_counter()
            m = runners[v.id].predict(image)
            times[v.id]["total"].append(time.perf_counter() - t0)
            times[v.id]["inference"].append(m.timings["inference"])
    for r in runners.values():
        r.close()
    return {vid: {k: statistics.median(x) for k, x in t.items()} | {"rounds": rounds} for vid, t in times.items()}


def quality(alphas: list[np.ndarray], refs: list[np.ndarray], gts: list[np.ndarray]) -> dict[str, float]:
    from studio.metrics import score_image
    from studio.quant.agreement import compare_mattes

    scores = [score_image(a, g, threads=1).values for a, g in zip(alphas, gts, strict=True)]
    agree = compare_mattes(refs, alphas)
    return {
        "n": len(alphas),
        "iou_gt": float(np.mean([s["iou"] for s in scores])),
        "mae_gt": float(np.mean([s["mae"] for s in scores])),
        "agree_iou": agree["iou_mean"],
        "agree_iou_median": agree["iou_median"],
        "agree_iou_min": agree["iou_min"],
        "agree_iou_pooled": agree["iou_pooled"],
        "agree_mae": agree["mae_mean"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=9, help="timing rounds (interleaved)")
    ap.add_argument("--tried", nargs="*", type=Path, default=None,
                    help="static recipes tried (default: every file in eval/quant/recipes/tried/)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images of each part (smoke runs)")
    ap.add_argument("--noise-floor", action=argparse.BooleanOptionalAction, default=True,
                    help="also run fp32 on the images with +-1 grey-level noise: the agreement any "
                         "imperceptible change gets (default on)")
    ap.add_argument("--out", type=Path, default=settings.results_dir() / "quant")
    args = ap.parse_args(argv)
    cmd = "python eval/quant/build_table.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))

    tried = args.tried if args.tried is not None else sorted(TRIED.glob("*.yaml"))
    chosen = variants_to_run(tried)
    for v, _ in chosen:
        if builds.is_derived(v):
            builds.build(v, progress=True, threads=args.threads, check=False,
                         recipe=load_recipe_file(v.recipe["file"]) if "file" in (v.recipe or {}) else None)

    static = builds.recipe_of(load_zoo().get("isnet-general-use-int8-static"))
    cal = ImageSet.from_dict(static.params["calibration"])
    held = cal.held_out()
    calib = cal.samples()
    every = sorted(held + calib, key=lambda s: s.id)
    if args.limit:
        held, every = held[: args.limit], every[: args.limit]
    held_ids = {s.id for s in held}
    images = {s.id: s.image() for s in every}
    gts = {s.id: s.mask() for s in every}
    print(f"{cal.dataset}: {len(every)} images, {len(held)} held out from calibration "
          f"({len(calib)} calibration images, seed {cal.seed})", flush=True)

    alphas = {}
    for v, _ in chosen:
        out = predict_images(v, artifact_path(v), [images[i] for i in images], args.threads)
        alphas[v.id] = dict(zip(images, out, strict=True))
    ref = alphas[REFERENCE]
    if args.noise_floor:
        rng = np.random.default_rng(0)
        noisy = {i: np.clip(im.astype(np.int16) + rng.integers(-1, 2, im.shape), 0, 255).astype(np.uint8)
                 for i, im in images.items()}
        fp32 = load_zoo().get(REFERENCE)
        alphas[NOISE_ID] = dict(zip(noisy, predict_images(fp32, artifact_path(fp32), list(noisy.values()), args.threads), strict=True))

    timing_image = images[held[0].id]
    timing = time_interleaved([v for v, _ in chosen], timing_image, args.threads, args.rounds)

    rows = []
    if args.noise_floor:
        rows.append({"id": NOISE_ID, "label": "fp32 on input +-1 grey-level noise (the floor)", "precision": "fp32",
                     "size_mb": None, "build_seconds": None, "p50_inference_s": None, "p50_total_s": None,
                     "speedup_inference": None, "speedup_total": None, "untrained": False,
                     **{part: quality([alphas[NOISE_ID][i] for i in ids], [ref[i] for i in ids], [gts[i] for i in ids])
                        for part, ids in (("held_out", [i for i in images if i in held_ids]), ("all", list(images)))}})
    for v, label in chosen:
        rec = artifacts.installed(v)
        brec = builds.installed(v) if v.is_build else None
        row = {"id": v.id, "label": label, "precision": v.precision,
               "size_mb": round(rec.size / 1e6, 1) if rec else None,
               "build_seconds": brec.build_seconds if brec else None,
               "p50_inference_s": timing[v.id]["inference"], "p50_total_s": timing[v.id]["total"],
               "speedup_inference": timing[REFERENCE]["inference"] / timing[v.id]["inference"],
               "speedup_total": timing[REFERENCE]["total"] / timing[v.id]["total"],
               "untrained": bool(rec and rec.untrained)}
        for part, ids in (("held_out", [i for i in images if i in held_ids]), ("all", list(images))):
            row[part] = quality([alphas[v.id][i] for i in ids], [ref[i] for i in ids], [gts[i] for i in ids])
        rows.append(row)

    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"command": cmd, "dataset": cal.dataset, "n_all": len(images),
            "n_held_out": sum(1 for i in images if i in held_ids),
            "calibration": {"count": len(calib), "seed": cal.seed, "ids": [s.id for s in calib]},
            "threads": args.threads, "rounds": args.rounds, "timing_image": held[0].id,
            "machine": f"{platform.processor() or platform.machine()}, {platform.node()}",
            "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    (args.out / "build_table.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    md = markdown(rows, meta)
    (args.out / "build_table.md").write_text(md)
    print(md)
    return 0


def markdown(rows: list[dict], meta: dict) -> str:
    head = ("| build | size MB | p50 model s | p50 predict s | speed-up (model / predict) | IoU GT held-out | "
            "MAE GT held-out | agree IoU held-out (median, min) | agree IoU pooled held-out | agree MAE held-out | "
            "IoU GT all | agree IoU all | agree IoU pooled all |")
    lines = [
        f"Build table: {meta['dataset']}, {meta['n_held_out']} held-out images (of {meta['n_all']} run; "
        f"the {meta['calibration']['count']} calibration images excluded), {meta['threads']} threads, "
        f"{meta['rounds']} interleaved timing rounds on image {meta['timing_image']}.",
        f"Command: `{meta['command']}`",
        "Agreement is with fp32: mask IoU at 0.5, mean over images (median, worst); pooled = "
        "dataset-level IoU (all images' intersections over all their unions). "
        "IoU/MAE GT follow the metric suite (PySODMetrics conventions).",
        "",
        head,
        "|" + "|".join(["---"] * (head.count("|") - 1)) + "|",
    ]
    for r in rows:
        h, a = r["held_out"], r["all"]
        timing = ("— | — | —" if r["p50_inference_s"] is None else
                  f"{r['p50_inference_s']:.3f} | {r['p50_total_s']:.3f} | "
                  f"{r['speedup_inference']:.2f}x / {r['speedup_total']:.2f}x")
        lines.append(
            f"| {r['label']} (`{r['id']}`) | {r['size_mb'] or '—'} | {timing} | {h['iou_gt']:.4f} | {h['mae_gt']:.4f} | "
            f"{h['agree_iou']:.4f} ({h['agree_iou_median']:.4f}, {h['agree_iou_min']:.3f}) | {h['agree_iou_pooled']:.4f} | "
            f"{h['agree_mae']:.5f} | {a['iou_gt']:.4f} | {a['agree_iou']:.4f} | {a['agree_iou_pooled']:.4f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

