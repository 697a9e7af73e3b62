"""studio.metrics: definitions, edge cases, SSIM against scikit-image, bootstrap and the
paired comparison. The agreement with PySODMetrics is in test_metrics_pysod.py."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.metrics import structural_similarity

from studio.errors import StudioError
from studio.imageio import ImageError
from studio.metrics import (
    CONVENTIONS,
    HIGHER_IS_BETTER,
    METRIC_NAMES,
    ImageScore,
    MetricInputError,
    MetricSuite,
    aggregate,
    compare_paired,
    iou,
    mae,
    matting,
    score_image,
    sod,
)
from studio.metrics.scratch import release

EXPECTED_NAMES = [
    "iou", "dice", "ssim", "mae", "fmeasure_max", "fmeasure_mean", "fmeasure_adaptive",
    "wfmeasure", "smeasure", "emeasure_max", "emeasure_mean", "emeasure_adaptive",
    "boundary_iou", "sad", "mse", "grad", "conn",
]


def blob_pair(h: int = 64, w: int = 80, seed: int = 0, noise: float = 0.1,
              soft_gt: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A reference ellipse and a blurred, noisy, slightly shifted prediction (uint8)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    ry, rx = rng.uniform(0.15, 0.35) * h, rng.uniform(0.15, 0.35) * w
    gt = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
    g8 = gt.astype(np.uint8) * 255
    if soft_gt:
        g8 = cv2.GaussianBlur(g8, (0, 0), 2.0)
    shifted = np.roll(gt, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), axis=(0, 1))
    p = cv2.GaussianBlur(shifted.astype(np.float32), (0, 0), 1.5)
    p = np.clip(p + rng.normal(0, noise, p.shape), 0, 1)
    return (p * 255 + 0.5).astype(np.uint8), g8


def test_names_and_directions():
    assert list(METRIC_NAMES) == EXPECTED_NAMES
    assert set(HIGHER_IS_BETTER) == set(METRIC_NAMES)
    assert not any(HIGHER_IS_BETTER[k] for k in ("mae", "sad", "mse", "grad", "conn"))
    json.dumps(CONVENTIONS)  # serialisable, recorded in every output
    assert "per image" in CONVENTIONS["averaging"]


def test_score_image_row():
    p8, g8 = blob_pair()
    s = score_image(p8, g8, name="x")
    assert list(s.values) == list(METRIC_NAMES)
    assert all(math.isfinite(v) for v in s.values.values())
    for k in ("iou", "dice", "ssim", "fmeasure_max", "wfmeasure", "smeasure", "boundary_iou"):
        assert 0.0 <= s.values[k] <= 1.0, k
    assert s.values["fmeasure_max"] >= s.values["fmeasure_mean"]
    assert s.values["emeasure_max"] >= s.values["emeasure_mean"]
    assert set(s.curves) >= {"fmeasure", "emeasure"}
    assert all(len(c) == 256 for c in s.curves.values())
    assert s.size == (80, 64)


def test_perfect_prediction():
    _, g8 = blob_pair()
    v = score_image(g8, g8).values
    for k in ("iou", "dice", "ssim", "fmeasure_max", "wfmeasure", "boundary_iou"):
        assert v[k] == pytest.approx(1.0, abs=1e-9), k
    for k in ("mae", "sad", "mse", "grad", "conn"):
        assert v[k] == pytest.approx(0.0, abs=1e-12), k


def test_input_forms_agree_and_repeat_bit_for_bit():
    p8, g8 = blob_pair(96, 120, seed=3)
    a = score_image(p8, g8)
    b = score_image(p8.astype(np.float32) / 255, g8.astype(np.float32) / 255)
    c = score_image(p8.astype(np.float64) / 255, g8 > 128)
    assert a.values == b.values
    # a bool reference is 0/255: the soft metrics see the same thing as the binary g8
    assert {k: c.values[k] for k in METRIC_NAMES} == a.values
    d = score_image(p8[..., None], g8)
    assert d.values == a.values


def test_threads_and_scratch_reuse_do_not_change_values():
    big_p, big_g = blob_pair(600, 520, seed=5)
    small_p, small_g = blob_pair(40, 30, seed=6)
    release()
    fresh = score_image(big_p, big_g, threads=1).values
    score_image(small_p, small_g)  # reuse the buffers at another size
    assert score_image(big_p, big_g, threads=2).values == fresh
    assert score_image(big_p, big_g, threads=1).values == fresh


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("soft_gt", [False, True])
def test_banded_metrics_equal_the_whole_image(monkeypatch, seed, soft_gt):
    """Large images are scored in bands of rows (bounded memory); tiny bands give the values
    of one band (the whole image), to floating-point summation order."""
    from studio import imageio
    from studio.metrics import ssim

    p8, g8 = blob_pair(97, 61, seed=seed, noise=0.3, soft_gt=soft_gt)
    if seed == 2:  # soft everywhere: every pixel takes the slow paths
        p8 = np.random.default_rng(seed).integers(0, 256, p8.shape, dtype=np.uint8)
    whole = score_image(p8, g8, threads=1).values
    monkeypatch.setattr(imageio, "BAND_PIXELS", 300)  # ~5 rows per band
    monkeypatch.setattr(ssim, "BAND_PIXELS", 200)
    banded = score_image(p8, g8, threads=1).values
    for k in METRIC_NAMES:
        assert banded[k] == pytest.approx(whole[k], rel=1e-12, abs=1e-12), k


# ---------------------------------------------------------------- edge cases


def test_empty_reference():
    p8, _ = blob_pair()
    g8 = np.zeros_like(p8)
    v = score_image(p8, g8).values
    for k in ("iou", "dice", "fmeasure_max", "fmeasure_mean", "fmeasure_adaptive", "wfmeasure",
              "boundary_iou"):
        assert v[k] == 0.0, k
    pred = sod.prepare(p8, g8).pred_norm()
    assert v["smeasure"] == pytest.approx(1 - pred.mean(), abs=1e-12)
    assert all(math.isfinite(x) for x in v.values())
    # an empty prediction of an empty reference: overlap metrics stay 0 (PySODMetrics),
    # the others say it is perfect
    e = score_image(np.zeros_like(p8), g8).values
    assert e["iou"] == 0.0 and e["mae"] == 0.0 and e["smeasure"] == 1.0
    assert e["emeasure_max"] == pytest.approx(1.0, abs=1e-3)
    assert e["sad"] == e["grad"] == e["conn"] == 0.0


def test_full_reference():
    p8, _ = blob_pair()
    g8 = np.full_like(p8, 255)
    v = score_image(p8, g8).values
    assert all(math.isfinite(x) for x in v.values())
    assert v["smeasure"] == pytest.approx(sod.prepare(p8, g8).pred_norm().mean(), abs=1e-12)
    full = score_image(g8, g8).values
    assert full["iou"] == 1.0 and full["mae"] == 0.0


def test_constant_predictions_and_tiny_images():
    rng = np.random.default_rng(0)
    for h, w in [(1, 1), (1, 7), (2, 3), (5, 5), (6, 9), (7, 7), (3, 40)]:
        g8 = (rng.random((h, w)) > 0.5).astype(np.uint8) * 255
        for p8 in (np.zeros((h, w), np.uint8), np.full((h, w), 200, np.uint8),
                   rng.integers(0, 256, (h, w), dtype=np.uint8)):
            v = score_image(p8, g8).values
            assert all(math.isfinite(x) for x in v.values()), (h, w)


def test_size_mismatch_is_a_clear_error():
    with pytest.raises(MetricInputError, match=r"prediction is 20x10 but the reference is 30x10"):
        score_image(np.zeros((10, 20), np.uint8), np.zeros((10, 30), np.uint8))
    assert issubclass(MetricInputError, ImageError)
    assert issubclass(MetricInputError, ValueError)
    assert issubclass(MetricInputError, StudioError)


@pytest.mark.parametrize("pred, msg", [
    (np.full((8, 8), np.nan, np.float32), "NaN"),
    (np.full((8, 8), 1.5, np.float32), r"expected \[0, 1\]"),
    (np.full((8, 8), 300, np.int32), "expected 0-255"),
    (np.zeros((8, 8, 3), np.uint8), "2-D"),
    (np.zeros((0, 8), np.uint8), "empty"),
])
def test_bad_inputs_raise(pred, msg):
    with pytest.raises(MetricInputError, match=msg):
        score_image(pred, np.zeros((8, 8), np.uint8))


def test_non_binary_reference():
    p8, g_soft = blob_pair(seed=2, soft_gt=True)
    assert len(np.unique(g_soft)) > 2
    soft = score_image(p8, g_soft).values
    hard = score_image(p8, (g_soft > 128).astype(np.uint8) * 255).values
    assert all(math.isfinite(x) for x in soft.values())
    # salient-object metrics binarise at > 128 ...
    for k in ("iou", "dice", "ssim", "mae", "fmeasure_max", "wfmeasure", "smeasure", "emeasure_max",
              "boundary_iou"):
        assert soft[k] == hard[k], k
    # ... the soft-matte metrics use the alpha as it is
    assert soft["sad"] != hard["sad"] and soft["mse"] != hard["mse"]


# ---------------------------------------------------------------- definitions


@pytest.mark.parametrize("seed", range(6))
def test_ssim_equals_skimage(seed):
    rng = np.random.default_rng(seed)
    h, w = (int(x) for x in rng.integers(7, 90, 2))
    p8, g8 = blob_pair(h, w, seed=seed, noise=0.2 * (seed % 3))
    if seed == 4:
        p8 = rng.integers(0, 256, (h, w), dtype=np.uint8)
    prep = sod.prepare(p8, g8)
    ref = structural_similarity(prep.pred_norm(), prep.gt.astype(np.float64), data_range=1.0)
    assert score_image(p8, g8).values["ssim"] == pytest.approx(ref, abs=1e-6)
    assert abs(score_image(p8, g8).values["ssim"] - ref) < 1e-12


def test_ssim_equals_skimage_1024():
    p8, g8 = blob_pair(1024, 1024, seed=9)
    prep = sod.prepare(p8, g8)
    ref = structural_similarity(prep.pred_norm(), prep.gt.astype(np.float64), data_range=1.0)
    assert abs(score_image(p8, g8).values["ssim"] - ref) < 1e-6


def _conn_reference(p8: np.ndarray, g8: np.ndarray) -> float:
    """Rhemann et al.'s connectivity error written out from its definition."""
    pred, target = p8 / 255.0, g8 / 255.0
    lmap = -np.ones(pred.shape)
    for k in range(1, 11):
        m = (p8.astype(int) * 10 >= 255 * k) & (g8.astype(int) * 10 >= 255 * k)
        lab, n = ndi.label(m, structure=[[0, 1, 0], [1, 1, 1], [0, 1, 0]])
        omega = lab == 1 + np.argmax(np.bincount(lab.ravel())[1:]) if n else np.zeros_like(m)
        lmap[(lmap == -1) & ~omega] = (k - 1) / 10
    lmap[lmap == -1] = 1
    d_p, d_t = pred - lmap, target - lmap
    return float(np.abs((1 - d_p * (d_p >= 0.15)) - (1 - d_t * (d_t >= 0.15))).sum() / 1000)


def _grad_reference(p8: np.ndarray, g8: np.ndarray, sigma: float = 1.4) -> float:
    """Rhemann et al.'s gradient error: unit-L2 derivative-of-Gaussian filters."""
    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * 1e-2)))
    u = np.arange(-half, half + 1)
    g = np.exp(-u**2 / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
    hx = np.outer(g, -u * g / sigma**2)
    hx /= np.sqrt((hx**2).sum())

    def mag(a):
        return np.hypot(ndi.convolve(a, hx, mode="nearest"), ndi.convolve(a, hx.T, mode="nearest"))

    return float(((mag(p8 / 255.0) - mag(g8 / 255.0)) ** 2).sum() / 1000)


def _boundary_iou_reference(pb: np.ndarray, gb: np.ndarray) -> float:
    """Cheng et al.: d iterations of 3x3 erosion with a zero border."""
    h, w = gb.shape
    d = max(1, int(round(0.02 * math.sqrt(h * h + w * w))))

    def band(m):
        inner = ndi.binary_erosion(np.pad(m, 1), np.ones((3, 3)), iterations=d)[1:-1, 1:-1]
        return m & ~inner

    a, b = band(pb), band(gb)
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 0.0


@pytest.mark.parametrize("seed", range(8))
def test_soft_metrics_follow_their_definitions(seed):
    rng = np.random.default_rng(seed)
    h, w = (int(x) for x in rng.integers(5, 70, 2))
    p8, g8 = blob_pair(h, w, seed=seed, noise=0.15, soft_gt=seed % 2 == 1)
    if seed == 7:
        p8 = rng.integers(0, 256, (h, w), dtype=np.uint8)  # many small components
    v = score_image(p8, g8).values
    diff = p8.astype(np.float64) / 255 - g8.astype(np.float64) / 255
    assert v["sad"] == pytest.approx(np.abs(diff).sum() / 1000, rel=1e-12)
    assert v["mse"] == pytest.approx((diff**2).mean(), rel=1e-12)
    assert v["conn"] == pytest.approx(_conn_reference(p8, g8), abs=1e-12)
    assert v["grad"] == pytest.approx(_grad_reference(p8, g8), rel=1e-5, abs=1e-9)
    pb = sod.prepare(p8, g8).pred_norm() > 0.5
    assert v["boundary_iou"] == _boundary_iou_reference(pb, g8 > 128)


def test_boundary_band_width():
    assert matting.boundary_width(1024, 1024) == 29
    assert matting.boundary_width(3, 3) == 1


def test_agreement_helpers():
    a = np.zeros((10, 10), np.float32)
    b = a.copy()
    assert iou(a, b) == 1.0 and mae(a, b) == 0.0  # two empty mattes agree
    a[:5] = 0.9
    b[:5] = 0.6
    b[5:6] = 0.7
    assert iou(a, b) == pytest.approx(50 / 60)
    assert iou(a, b, threshold=0.65) == pytest.approx(0.0)
    assert mae(a, b) == pytest.approx((50 * 0.3 + 10 * 0.7) / 100, rel=1e-6)
    assert iou((a * 255).astype(np.uint8), a) == 1.0
    with pytest.raises(MetricInputError):
        iou(a, np.zeros((3, 3)))


# ---------------------------------------------------------------- aggregates


def _scores(n: int = 12, seed: int = 0, noise: float = 0.1) -> list[ImageScore]:
    return [score_image(*blob_pair(48, 56, seed=seed * 1000 + i, noise=noise), name=f"im{i}")
            for i in range(n)]


def test_aggregate_shape_and_curve_statistics():
    scores = _scores()
    agg = aggregate(scores, n_boot=200)
    assert agg["n_images"] == len(scores)
    json.dumps(agg)
    assert set(agg) == {*METRIC_NAMES, "n_images"}  # the contract's shape, nothing else
    for k in METRIC_NAMES:
        lo, hi = agg[k]["ci95"]
        assert lo <= agg[k]["mean"] <= hi, k
    mean_f = np.mean([s.curves["fmeasure"] for s in scores], axis=0)
    assert agg["fmeasure_max"]["mean"] == pytest.approx(mean_f.max(), abs=1e-15)
    assert agg["fmeasure_mean"]["mean"] == pytest.approx(mean_f.mean(), abs=1e-15)
    mean_e = np.mean([s.curves["emeasure"] for s in scores], axis=0)
    assert agg["emeasure_max"]["mean"] == pytest.approx(mean_e.max(), abs=1e-15)
    assert agg["iou"]["mean"] == pytest.approx(np.mean([s.values["iou"] for s in scores]))


def test_bootstrap_is_deterministic_for_a_seed():
    scores = _scores()
    a = aggregate(scores, n_boot=300, seed=7)
    assert aggregate(scores, n_boot=300, seed=7) == a
    assert aggregate(scores, n_boot=300, seed=8)["iou"]["ci95"] != a["iou"]["ci95"]
    suite = MetricSuite()
    for s in scores:
        suite.scores.append(s)
    assert suite.results(n_boot=300, seed=7) == a


def test_suite_step_and_json_roundtrip():
    suite = MetricSuite()
    for i in range(3):
        suite.step(*blob_pair(seed=i), name=f"im{i}")
    assert len(suite) == 3
    s = suite.scores[0]
    back = ImageScore.from_json(json.loads(json.dumps(s.to_json())))
    assert back.values == s.values and back.name == s.name
    assert all(np.array_equal(back.curves[k], s.curves[k]) for k in s.curves)
    assert aggregate([back] + suite.scores[1:], n_boot=50) == suite.results(n_boot=50)
    with pytest.raises(ValueError):
        aggregate([])


def test_paired_comparison():
    good = _scores(n=20, seed=1, noise=0.05)
    same = compare_paired(good, good, metric="iou")
    assert not same["significant"] and same["p_value"] == 1.0 and same["diff"] == 0.0
    assert same["better"] is None
    bad = [score_image(*_degrade(i), name=f"im{i}") for i in range(20)]
    res = compare_paired(good, bad, metric="iou", n_boot=500)
    assert res["significant"] and res["better"] == "a" and res["diff"] > 0
    assert res["ci95"][0] > 0 and res["p_value"] < 0.01
    lower = compare_paired(good, bad, metric="mae", n_boot=500)
    assert lower["significant"] and lower["better"] == "a" and lower["diff"] < 0
    for m in ("fmeasure_max", "emeasure_max"):  # curve statistics are bootstrapped too
        assert compare_paired(good, good, metric=m)["significant"] is False
    with pytest.raises(ValueError):
        compare_paired(good, bad[:-1])
    with pytest.raises(ValueError):
        compare_paired(good, list(reversed(bad)))  # named images out of order


def _degrade(i: int) -> tuple[np.ndarray, np.ndarray]:
    """The same pairs as _scores(seed=1) but with the prediction eroded and noisier."""
    p8, g8 = blob_pair(48, 56, seed=1000 + i, noise=0.05)
    p8 = cv2.erode(p8, np.ones((5, 5), np.uint8))
    return p8, g8


def test_agreement_of_identical_faint_mattes_is_perfect():
    """A reference model whose matte peaks below 0.5 (a faint object) must not binarise to an
    empty mask while the same matte, as a candidate, is normalised to cover the object."""
    from studio.metrics import agreement_levels, agreement_reference, score_agreement

    faint = np.zeros((64, 80), np.uint8)
    faint[20:40, 30:50] = 90  # peaks at 0.35
    faint[25:35, 35:45] = 110
    naive = score_image(faint, faint)  # a matte used as a mask as it is
    assert naive.values["iou"] < 0.5  # the trap: the candidate is normalised, the "mask" is not
    agree = score_agreement(faint, faint).values
    assert agree["iou"] == 1.0 and agree["fmeasure_max"] == 1.0 and agree["smeasure"] > 0.97
    # (the soft candidate against the binarised reference: MAE is that softness, not a disagreement)
    assert agree["mae"] < 0.02 and agree["mae"] < naive.values["mae"] / 3
    # the reference prepared once per image scores every candidate alike
    ref = agreement_reference(faint)
    assert np.array_equal(agreement_reference(ref), ref) and not (ref == 128).any()
    assert score_agreement(faint, ref).values == agree
    # normalisation is PySODMetrics' min-max, in 8 bits, and idempotent
    lv = agreement_levels(faint)
    assert lv.min() == 0 and lv.max() == 255 and np.array_equal(agreement_levels(lv), lv)
    # a slightly different candidate still agrees closely; a different object does not
    other = faint.copy()
    other[20:40, 48:50] = 0
    assert 0.85 < score_agreement(other, faint).values["iou"] < 1.0
    moved = np.roll(faint, 30, axis=1)
    assert score_agreement(moved, faint).values["iou"] < 0.2
    # a constant matte stays as it is (nothing to normalise)
    assert np.array_equal(agreement_levels(np.zeros((4, 4), np.uint8)), np.zeros((4, 4), np.uint8))
