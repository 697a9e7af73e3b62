"""Metrics-speed benchmark: the full studio.metrics suite on a 1024x1024 pair, against
(a) IS-Net fp32 inference and (b) PySODMetrics + scikit-image SSIM, in the same run.

    python eval/bench_metrics.py [--repeats 15] [--image PATH --mask PATH] [--json OUT]

The pair: a real photo and its mask (sod-dev when ../shared is present, else a synthetic
photo), resized to 1024x1024; the prediction is IS-Net fp32's own matte of that photo, so
the suite sees a realistic soft matte. The timed jobs are interleaved (`studio.timing`:
every job once per round, in a shuffled order), so that load from other processes falls on all of them alike; medians and
ratios are reported (this machine is shared and noisy: quote ratios, not absolute times).

Targets (issue 3): suite <= 10 % of IS-Net fp32 inference; suite >= 3x faster than
PySODMetrics + skimage on the metrics both compute.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studio import engine, settings  # noqa: E402
from studio.imageio import load_image, load_mask  # noqa: E402
from studio.metrics import METRIC_NAMES, score_image  # noqa: E402
from studio.timing import interleave  # noqa: E402

SIZE = 1024
# The metrics both compute.
SHARED = ["iou", "dice", "mae", "ssim", "fmeasure_max", "fmeasure_mean", "fmeasure_adaptive",
          "wfmeasure", "smeasure", "emeasure_max", "emeasure_mean", "emeasure_adaptive"]


def default_pair() -> tuple[np.ndarray, np.ndarray, str]:
    root = settings.shared_dir() / "datasets" / "sod-dev"
    ims = sorted((root / "im").glob("*")) if (root / "im").is_dir() else []
    if ims:
        im = ims[0]
        gt = next((root / "gt").glob(im.stem + ".*"))
        return load_image(im), load_mask(gt), f"sod-dev/{im.name}"
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import synthetic_photo

    img, mask = synthetic_photo(480, 640)
    return img, mask, "synthetic photo (tests/conftest.py)"


def pysod_and_skimage(p8: np.ndarray, g8: np.ndarray) -> dict[str, float]:
    """PySODMetrics' own classes plus skimage SSIM: the reference implementations."""
    import py_sod_metrics as psm
    from skimage.metrics import structural_similarity

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its Fmeasure class warns it is deprecated
        fm, em, sm, wfm, mae = (psm.Fmeasure(), psm.Emeasure(), psm.Smeasure(),
                                psm.WeightedFmeasure(), psm.MAE())
        bi = psm.FmeasureV2(metric_handlers={
            "iou": psm.IOUHandler(with_dynamic=False, with_adaptive=False, with_binary=True),
            "dice": psm.DICEHandler(with_dynamic=False, with_adaptive=False, with_binary=True)})
        for m in (fm, em, sm, wfm, mae, bi):
            m.step(p8, g8)
    pred = p8 / 255
    if pred.max() != pred.min():
        pred = (pred - pred.min()) / (pred.max() - pred.min())
    ssim = structural_similarity(pred, (g8 > 128).astype(np.float64), data_range=1.0)
    f, e, b = fm.get_results()["fm"], em.get_results()["em"], bi.get_results()
    return {"iou": b["iou"]["binary"], "dice": b["dice"]["binary"], "mae": mae.get_results()["mae"],
            "ssim": ssim, "fmeasure_max": f["curve"].max(), "fmeasure_mean": f["curve"].mean(),
            "fmeasure_adaptive": f["adp"], "wfmeasure": wfm.get_results()["wfm"],
            "smeasure": sm.get_results()["sm"], "emeasure_max": e["curve"].max(),
            "emeasure_mean": e["curve"].mean(), "emeasure_adaptive": e["adp"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--image", type=Path)
    ap.add_argument("--mask", type=Path)
    ap.add_argument("--variant", default="isnet-general-use")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--seed", type=int, default=0, help="seed of the rounds' shuffled order")
    args = ap.parse_args(argv)

    if args.image:
        img, mask, source = load_image(args.image), load_mask(args.mask), str(args.image)
    else:
        img, mask, source = default_pair()
    img = cv2.resize(img, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    mask = (cv2.resize(mask, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR) > 0.5).astype(np.float32)

    runner = engine.get_runner(args.variant)
    matte = engine.run_runner(runner, img)  # warm-up, and the prediction scored below
    pred = matte.alpha
    p8 = (np.clip(pred, 0, 1) * 255 + 0.5).astype(np.uint8)
    g8 = (mask * 255).astype(np.uint8)
    score_image(pred, mask)
    pysod_and_skimage(p8, g8)

    jobs = {
        "suite, all 17 metrics (default: 2 threads at this size)": lambda: score_image(pred, mask),
        "suite, all 17 metrics, threads=1": lambda: score_image(pred, mask, threads=1),
        "PySODMetrics + skimage SSIM (12 shared metrics)": lambda: pysod_and_skimage(p8, g8),
        f"{args.variant} inference": lambda: engine.run_runner(runner, img),
    }
    load_before = os.getloadavg()[0]
    # a shuffled order per round: every job follows inference (whose runtime threads keep
    # spinning for a moment after a run) about equally often
    res = interleave({k: (lambda _, f=f: f()) for k, f in jobs.items()}, [None], args.repeats, seed=args.seed)
    times = {k: res.samples(k) for k in jobs}
    med = {k: statistics.median(v) for k, v in times.items()}
    suite, serial, ref, infer = (med[k] for k in jobs)

    ours = score_image(pred, mask).values
    theirs = pysod_and_skimage(p8, g8)
    worst = max(abs(ours[k] - float(theirs[k])) for k in SHARED)

    load_after = os.getloadavg()[0]
    print(f"pair: {source}, resized to {SIZE}x{SIZE}; prediction: {args.variant}; "
          f"{args.repeats} interleaved repeats; medians; {os.cpu_count()} CPUs, load average "
          f"{load_before:.1f} -> {load_after:.1f}")
    for k, v in med.items():
        print(f"  {k:56s} {v * 1e3:9.1f} ms   (min {min(times[k]) * 1e3:.1f})")
    print(f"suite / inference          = {suite / infer:6.1%}   (target <= 10 %)")
    print(f"PySODMetrics+skimage / suite = {ref / suite:5.2f}x  (target >= 3x)")
    print(f"with threads=1: {serial / infer:.1%} of inference, {ref / serial:.2f}x faster than "
          "PySODMetrics+skimage")
    print(f"largest difference from PySODMetrics/skimage on the shared metrics: {worst:.2e}")
    if args.json:
        args.json.write_text(json.dumps({
            "pair": source, "size": SIZE, "repeats": args.repeats, "cpus": os.cpu_count(),
            "load_average": [load_before, load_after],
            "median_s": med, "min_s": {k: min(v) for k, v in times.items()},
            "suite_over_inference": suite / infer, "reference_over_suite": ref / suite,
            "serial_over_inference": serial / infer, "reference_over_serial": ref / serial,
            "max_abs_diff_shared": worst, "metrics": list(METRIC_NAMES)}, indent=2))
    ok = suite <= 0.10 * infer and ref >= 3 * suite
    print("targets met" if ok else "targets NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
