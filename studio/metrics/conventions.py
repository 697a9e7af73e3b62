"""Metric names, directions and the conventions every output records."""

from __future__ import annotations

import copy

# The one list of metric names used by the CLI, summary.json, the app and the report.
METRIC_NAMES: tuple[str, ...] = (
    "iou", "dice", "ssim", "mae",
    "fmeasure_max", "fmeasure_mean", "fmeasure_adaptive", "wfmeasure",
    "smeasure", "emeasure_max", "emeasure_mean", "emeasure_adaptive",
    "boundary_iou", "sad", "mse", "grad", "conn",
)

# The one list of headline metrics every front shows (the JSON and CSV carry every metric),
# and the short names and meanings the tables use.
HEADLINE_METRICS: tuple[str, ...] = ("iou", "fmeasure_max", "smeasure", "emeasure_mean", "ssim", "mae",
                                     "boundary_iou")
METRIC_LABELS: dict[str, str] = {
    "iou": "IoU", "dice": "Dice", "ssim": "SSIM", "mae": "MAE", "fmeasure_max": "maxF",
    "fmeasure_mean": "meanF", "fmeasure_adaptive": "adpF", "wfmeasure": "wF", "smeasure": "S",
    "emeasure_max": "maxE", "emeasure_mean": "meanE", "emeasure_adaptive": "adpE",
    "boundary_iou": "bIoU", "sad": "SAD", "mse": "MSE", "grad": "Grad", "conn": "Conn",
}
METRIC_LEGEND: dict[str, str] = {
    "iou": "IoU at 0.5", "fmeasure_max": "max F-measure (β² = 0.3)", "smeasure": "S-measure (α = 0.5)",
    "emeasure_mean": "mean E-measure", "ssim": "SSIM (7×7, skimage)", "mae": "mean absolute error",
    "boundary_iou": "boundary IoU (band 2 % of the diagonal)", "wfmeasure": "weighted F-measure",
    "sad": "sum of absolute differences (thousands)", "mse": "mean squared error",
    "grad": "gradient error (thousands)", "conn": "connectivity error (thousands)",
}

HIGHER_IS_BETTER: dict[str, bool] = {
    name: name not in ("mae", "sad", "mse", "grad", "conn") for name in METRIC_NAMES
}

# Curves kept per image so that dataset-level max/mean F and E can be recomputed
# (and bootstrapped) the way PySODMetrics computes them. Index k is threshold 255 - k.
CURVE_NAMES: tuple[str, ...] = ("fmeasure", "emeasure", "precision", "recall")
N_THRESHOLDS = 256

# Metrics whose dataset value is not the mean of per-image values: the max over
# thresholds of the per-threshold curve averaged over images.
CURVE_MAX_METRICS: dict[str, str] = {"fmeasure_max": "fmeasure", "emeasure_max": "emeasure"}

VERSION = "studio.metrics/1"

BETA2 = 0.3            # F-measure beta^2 (Achanta et al.; PySODMetrics default)
WFM_BETA = 1.0         # weighted F-measure beta (Margolin et al.; PySODMetrics default)
SMEASURE_ALPHA = 0.5   # S-measure object/region balance
SSIM_WIN = 7
SSIM_K1, SSIM_K2 = 0.01, 0.03
BOUNDARY_RATIO = 0.02  # boundary band width as a fraction of the image diagonal
GRAD_SIGMA = 1.4       # Rhemann et al. gradient error
CONN_STEP_TENTHS = 1   # connectivity threshold step 0.1
CONN_THETA = 0.15      # connectivity: distances below this count as fully connected

CONVENTIONS: dict = {
    "version": VERSION,
    "reference": "PySODMetrics (lartpang/PySODMetrics) for every salient-object metric",
    "input_quantisation": "prediction and reference are rounded to 8 bits (round(x*255)), as "
                          "an 8-bit PNG holds them; in-memory and saved mattes score the same",
    "gt_binarisation": "reference_u8 > 128 (PySODMetrics prepare_data) for iou, dice, ssim, mae, "
                       "F, wF, S, E and boundary_iou",
    "pred_normalisation": "prediction_u8 / 255, then min-max normalised when not constant "
                          "(PySODMetrics prepare_data, MATLAB mapminmax) for the same metrics",
    "soft_metrics_inputs": "sad, mse, grad, conn use the prediction_u8 / 255 and the reference "
                           "alpha_u8 / 255 as they are (no binarisation, no normalisation), over "
                           "the whole image (no trimap)",
    "binary_threshold": "iou, dice, boundary_iou: normalised prediction > 0.5 (PySODMetrics 'bi')",
    "averaging": "per image (PySODMetrics sample-based): each metric is computed on each image, "
                 "then averaged over images with equal weight",
    "curves": "F and E at 256 thresholds 255..0 over the 8-bit normalised prediction "
              "(prediction >= threshold); *_max = max over thresholds of the curve averaged over "
              "images, *_mean = mean over thresholds of that curve (PySODMetrics); per-image rows "
              "hold each image's own max and mean",
    "adaptive_threshold": "min(2 * mean(normalised prediction), 1) (PySODMetrics)",
    "beta2": BETA2,
    "wfmeasure_beta": WFM_BETA,
    "smeasure_alpha": SMEASURE_ALPHA,
    "ssim": {"definition": "skimage.metrics.structural_similarity", "win_size": SSIM_WIN,
             "gaussian_weights": False, "use_sample_covariance": True, "data_range": 1.0,
             "K1": SSIM_K1, "K2": SSIM_K2,
             "inputs": "normalised prediction vs binarised reference (as mae)"},
    "boundary_iou": {"definition": "Cheng et al. 2021: IoU of the inner bands of width d of "
                                   "prediction and reference; image border counts as boundary",
                     "band_ratio_of_diagonal": BOUNDARY_RATIO,
                     "d": "max(1, round(0.02 * sqrt(H^2 + W^2))) pixels, chessboard erosion"},
    "units": {"iou": "fraction", "dice": "fraction", "ssim": "index", "mae": "alpha units per pixel",
              "sad": "thousands of alpha units (sum |a - g| / 1000; Composition-1k convention)",
              "mse": "alpha units squared per pixel (not scaled; papers often quote x1e3)",
              "grad": "thousands (sum (|grad a| - |grad g|)^2 / 1000, Gaussian derivative "
                      f"sigma {GRAD_SIGMA}; Rhemann et al. / Composition-1k convention)",
              "conn": "thousands (sum |phi(a) - phi(g)| / 1000, step 0.1, theta 0.15, "
                      "4-connectivity; Rhemann et al. / Composition-1k convention)"},
    "edge_cases": {
        "empty_reference": "iou, dice, boundary_iou, F-measures and wfmeasure are 0 whatever the "
                           "prediction (PySODMetrics); smeasure = 1 - mean(prediction); E-measure "
                           "uses its empty-reference branch; judge such images by mae/smeasure",
        "full_reference": "defined by the same formulas (smeasure = mean(prediction))",
        "emeasure_scale": "E-measure sums are divided by (pixels - 1) as in PySODMetrics, so a "
                          "perfect empty or full image scores N / (N - 1), slightly above 1",
        "empty_union": "iou/dice/boundary_iou = 0 when neither prediction nor reference has a "
                       "positive pixel (PySODMetrics' safe division)",
        "constant_prediction": "not min-max normalised (PySODMetrics)",
        "non_binary_reference": "binarised at > 128 for the salient-object metrics; used as a soft "
                                "alpha by sad/mse/grad/conn",
        "size_mismatch": "MetricInputError (an ImageError / ValueError): never resized silently",
        "nan_or_out_of_range": "MetricInputError: float inputs must be finite and in [0, 1]",
        "degenerate_smeasure_quadrant": "a zero-area S-measure quadrant contributes 0 (PySODMetrics "
                                        "returns NaN there)",
    },
    "bootstrap": {"resample": "images, with replacement (one multinomial draw per replicate, "
                              "shared by all metrics)",
                  "statistic": "recomputed per replicate exactly as the point estimate "
                               "(curve max for *_max)",
                  "interval": "percentile, 95 %", "n_boot": 1000, "seed": 0,
                  "paired": "same resampled images for both models; significant when the 95 % "
                            "interval of the difference excludes 0"},
}


def conventions(**bootstrap: object) -> dict:
    """A copy of CONVENTIONS with the bootstrap settings actually used."""
    c = copy.deepcopy(CONVENTIONS)
    c["bootstrap"].update(bootstrap)
    return c
