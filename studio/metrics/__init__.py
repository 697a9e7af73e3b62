"""Quality metrics that agree with the field: PySODMetrics' salient-object metrics, SSIM as
scikit-image defines it, boundary IoU and the soft-matte errors, with bootstrap intervals.

    from studio.metrics import score_image, MetricSuite, aggregate, compare_paired
    suite = MetricSuite()
    for pred, gt in pairs:
        suite.step(pred, gt)              # ImageScore: one row of METRIC_NAMES values
    suite.results()                       # {"iou": {"mean", "ci95"}, ..., "n_images"}

Conventions (the full record is CONVENTIONS; every front stores it beside its numbers)
-------------------------------------------------------------------------------------
- Prediction and reference are rounded to 8 bits first, as an 8-bit PNG holds them, so an
  in-memory matte and its saved file score the same.
- Salient-object metrics (iou, dice, ssim, mae, F, wF, S, E, boundary_iou) follow
  PySODMetrics: reference binarised at level > 128; prediction / 255, then min-max
  normalised unless constant; per-image values averaged over images. Dataset max/mean F and
  E are the max/mean over 256 thresholds of the curve averaged over images. iou, dice and
  boundary_iou binarise the prediction at > 0.5, as PySODMetrics' binary metrics.
  The values agree with PySODMetrics to floating-point rounding (tests: 1e-6 and better).
- ssim equals skimage.metrics.structural_similarity(pred, gt, data_range=1) on those inputs.
- sad, mse, grad, conn use the raw prediction and the soft reference alpha (level / 255),
  over the whole image (no trimap). sad, grad and conn are in thousands (Composition-1k).
- Bootstrap: resample images with replacement, recompute each statistic the same way,
  95 % percentile interval; deterministic for a seed.

Edge cases (every choice is deliberate; none gives NaN)
-------------------------------------------------------
- Empty reference (no pixel > 128): iou, dice, boundary_iou, the F-measures and wfmeasure
  are 0 whatever the prediction, as PySODMetrics scores them (its safe division and its
  wF rule); smeasure is 1 - mean(prediction); the E-measure uses its empty-reference branch,
  so a clean empty prediction scores 1 there. Use mae/smeasure/emeasure for such images.
- Full reference: the same formulas; smeasure = mean(prediction).
- E-measure is normalised by (pixels - 1), as PySODMetrics does, so a perfect score on an
  empty (or full) reference is N / (N - 1), a hair above 1.
- Neither prediction nor reference positive: iou = dice = boundary_iou = 0 (as above).
  The plain helper `iou(a, b)` for comparing two mattes returns 1.0 there instead.
- Constant prediction: not min-max normalised (PySODMetrics), so a blank matte stays blank.
- Non-binary reference (a soft alpha matte): binarised at > 128 for the salient-object
  metrics, used as the soft alpha by sad/mse/grad/conn. A 0/1-valued 8-bit mask reads as
  empty: pass 0/255 masks or floats in [0, 1].
- Prediction and reference of different sizes: MetricInputError (a subclass of
  studio.imageio.ImageError, hence ValueError, and of StudioError) naming both sizes;
  metrics never resize. NaN, infinities, floats outside [0, 1], integers outside 0-255 or
  arrays that are not (H, W) / (H, W, 1): MetricInputError too.
- An S-measure quadrant of zero area (reference centroid on the last row/column)
  contributes 0; PySODMetrics returns NaN there.
- Images under 7 px on a side: SSIM shrinks its window to the largest odd size that fits
  (skimage refuses); under 3 px, a 1-pixel window: the luminance term alone.
"""

from studio.metrics.conventions import (
    CONVENTIONS,
    CURVE_NAMES,
    HIGHER_IS_BETTER,
    METRIC_NAMES,
    N_THRESHOLDS,
    conventions,
)
from studio.metrics.inputs import MetricInputError
from studio.metrics.score import (
    ImageScore,
    agreement_levels,
    agreement_reference,
    iou,
    mae,
    score_agreement,
    score_image,
)
from studio.metrics.stats import MetricSuite, aggregate, compare_paired

__all__ = [
    "CONVENTIONS",
    "CURVE_NAMES",
    "HIGHER_IS_BETTER",
    "METRIC_NAMES",
    "N_THRESHOLDS",
    "ImageScore",
    "MetricInputError",
    "MetricSuite",
    "agreement_levels",
    "agreement_reference",
    "aggregate",
    "compare_paired",
    "conventions",
    "iou",
    "mae",
    "score_agreement",
    "score_image",
]
