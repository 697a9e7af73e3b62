"""How closely a build reproduces its source: both run on the same images, compared mask to
mask (IoU at 0.5) and value to value (MAE).

Runners are created from the artifact paths the caller gives (the builds cache knows them),
so this module sits below the engine and never looks weights up itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from studio.zoo import Variant


def compare_mattes(ref: list[np.ndarray], got: list[np.ndarray]) -> dict[str, Any]:
    from studio.metrics import iou, mae

    ious = [iou(b, a) for a, b in zip(ref, got, strict=True)]
    maes = [mae(b, a) for a, b in zip(ref, got, strict=True)]
    # pooled: every image's intersection over every image's union. Unlike the mean, it is not
    # swung by the images where the source's own mask is tiny and sits on the threshold.
    inter = sum(int(np.count_nonzero((a > 0.5) & (b > 0.5))) for a, b in zip(ref, got, strict=True))
    union = sum(int(np.count_nonzero((a > 0.5) | (b > 0.5))) for a, b in zip(ref, got, strict=True))
    return {"n": len(ious), "iou_mean": float(np.mean(ious)), "iou_min": float(np.min(ious)),
            "iou_median": float(np.median(ious)), "iou_pooled": inter / union if union else 1.0,
            "mae_mean": float(np.mean(maes)), "iou": [round(x, 6) for x in ious],
            "mae": [round(x, 7) for x in maes]}


def predict_images(variant: Variant, artifact: Path | None, images: list[np.ndarray], threads: int = 0,
                   desc: str = "", progress: Any = True) -> list[np.ndarray]:
    """Mattes of a variant on the images, through a fresh (unpooled) runner of `artifact`."""
    from tqdm.auto import tqdm

    from studio.backends import create_runner, run_checked

    runner = create_runner(variant, artifact, "cpu", threads)
    try:
        return [run_checked(runner, im).alpha
                for im in tqdm(images, desc=desc or variant.id, unit="img", disable=not progress, leave=False)]
    finally:
        runner.close()


# The source's mattes on a check set, kept for this process: the builds of one source share its
# check set (`studio build a b c`, `make weights`), so the fp32 source runs once, not per build.
_SOURCE_MATTES: dict[tuple, list[np.ndarray]] = {}
_SOURCE_MATTES_MAX = 4


def source_mattes(source: Variant, source_artifact: Path, images_sha256: str, pixels: list[np.ndarray],
                  threads: int = 0, progress: Any = True) -> list[np.ndarray]:
    """The source's mattes on these images, computed once per process for one source file
    (its path, size and mtime: a re-fetched file is run again) and the same images
    (`images_sha256`: the image set's `fingerprint`, their ids and content hashes)."""
    st = source_artifact.stat() if source_artifact.exists() else None
    key = (source.id, str(source_artifact), st and (st.st_size, st.st_mtime_ns), threads, images_sha256)
    if key not in _SOURCE_MATTES:
        mattes = predict_images(source, source_artifact, pixels, threads, f"check {source.id}", progress)
        if len(_SOURCE_MATTES) >= _SOURCE_MATTES_MAX:
            _SOURCE_MATTES.pop(next(iter(_SOURCE_MATTES)))
        _SOURCE_MATTES[key] = mattes
    return [m.copy() for m in _SOURCE_MATTES[key]]


def agreement_with_source(source: Variant, source_artifact: Path, variant: Variant, artifact: Path,
                          image_set: dict[str, Any], threads: int = 0, progress: Any = True) -> dict[str, Any]:
    """Agreement of `variant` with `source` on an image set (see `studio.quant.images`), with the
    runtime `variant` ran on."""
    from studio.quant.images import ImageSet

    images = ImageSet.from_dict(image_set)
    samples = images.samples()
    pixels = [s.image() for s in samples]
    images_sha256 = images.fingerprint(samples)["content_sha256"]
    ref = source_mattes(source, source_artifact, images_sha256, pixels, threads, progress)
    got = predict_images(variant, artifact, pixels, threads, f"check {variant.id}", progress)
    return {"set": check_set_record(images), "runtime": variant.runtime, "ids": [s.id for s in samples],
            **compare_mattes(ref, got)}


def check_set_record(images: Any) -> dict[str, Any]:
    """How a build record names the images its agreement was measured on."""
    out = {"dataset": images.dataset, "part": images.part, "count": images.count, "seed": images.seed}
    if images.part == "held-out":
        out["skip"] = images.skip
    return out
