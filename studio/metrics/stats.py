"""Dataset aggregates with bootstrap intervals, and the paired comparison of two models."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from studio.metrics.conventions import CURVE_MAX_METRICS, HIGHER_IS_BETTER, METRIC_NAMES
from studio.metrics.score import ImageScore, score_image


def _matrices(scores: Sequence[ImageScore]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    values = np.array([[s.values[k] for k in METRIC_NAMES] for s in scores], dtype=np.float64)
    curves = {c: np.stack([np.asarray(s.curves[c], dtype=np.float64) for s in scores])
              for c in set(CURVE_MAX_METRICS.values())}
    return values, curves


def _weights(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) resampling counts: each row one bootstrap replicate of the images."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)


def _statistics(weights: np.ndarray, values: np.ndarray, curves: dict[str, np.ndarray]) -> np.ndarray:
    """Every metric's dataset statistic for each row of image weights: (rows, n_metrics).

    Means are weighted means of per-image values; *_max metrics are the max over thresholds
    of the weighted-mean curve (PySODMetrics: mean curve over images, then max).
    """
    total = weights.sum(axis=1, keepdims=True)
    out = weights @ values / total
    for name, curve in CURVE_MAX_METRICS.items():
        out[:, METRIC_NAMES.index(name)] = (weights @ curves[curve] / total).max(axis=1)
    return out


def _check(scores: Sequence[ImageScore], what: str) -> None:
    if len(scores) == 0:
        raise ValueError(f"{what}: no images to aggregate")


def aggregate(scores: Sequence[ImageScore], n_boot: int = 1000, seed: int = 0) -> dict[str, dict]:
    """Dataset value of every metric with a bootstrap 95 % interval.

    Returns {metric: {"mean": float, "ci95": [lo, hi]}} for every METRIC_NAMES key, plus
    "n_images". Deterministic for a seed. Record `conventions(n_boot=..., seed=...)` (or
    CONVENTIONS) beside it: every front does.
    """
    _check(scores, "aggregate")
    values, curves = _matrices(scores)
    n = len(scores)
    point = _statistics(np.ones((1, n)), values, curves)[0]
    boot = _statistics(_weights(n, n_boot, seed), values, curves) if n_boot > 0 else point[None]
    lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
    out: dict[str, dict] = {}
    for i, name in enumerate(METRIC_NAMES):
        out[name] = {"mean": float(point[i]), "ci95": [float(lo[i]), float(hi[i])]}
    out["n_images"] = n
    return out


def compare_paired(a: Sequence[ImageScore], b: Sequence[ImageScore], metric: str = "iou",
                   n_boot: int = 2000, seed: int = 0) -> dict:
    """Paired bootstrap of model A minus model B on the same images, in the same order.

    Each replicate resamples images once and recomputes both models' statistic on that
    sample. `significant` is True when the 95 % percentile interval of the difference
    excludes 0. `p_value` is two-sided: the share of replicates whose centred difference
    is at least as far from 0 as the observed one (with the +1 correction). `better` names
    the better model by the metric's direction, or None when not significant.
    """
    if metric not in METRIC_NAMES:
        raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRIC_NAMES)}")
    _check(a, "compare_paired")
    if len(a) != len(b):
        raise ValueError(f"compare_paired: {len(a)} images for A but {len(b)} for B")
    names_a = [s.name for s in a]
    names_b = [s.name for s in b]
    if all(names_a) and all(names_b) and names_a != names_b:
        raise ValueError("compare_paired: A and B are not the same images in the same order")
    n = len(a)
    va, ca = _matrices(a)
    vb, cb = _matrices(b)
    i = METRIC_NAMES.index(metric)
    w = np.vstack([np.ones((1, n)), _weights(n, n_boot, seed)])
    stats = _statistics(w, va, ca)[:, i] - _statistics(w, vb, cb)[:, i]
    diff, boot = float(stats[0]), stats[1:]
    if boot.size:
        lo, hi = (float(x) for x in np.percentile(boot, [2.5, 97.5]))
        extreme = int(np.count_nonzero(np.abs(boot - diff) >= abs(diff)))
        p = (1 + extreme) / (1 + boot.size)
    else:
        lo = hi = diff
        p = 1.0
    significant = bool(lo > 0 or hi < 0)
    better = None
    if significant:
        a_higher = diff > 0
        better = "a" if a_higher == HIGHER_IS_BETTER[metric] else "b"
    mean_a = float(_statistics(w[:1], va, ca)[0, i])
    mean_b = float(_statistics(w[:1], vb, cb)[0, i])
    return {"metric": metric, "mean_a": mean_a, "mean_b": mean_b, "diff": diff,
            "ci95": [lo, hi], "p_value": float(p), "significant": significant, "better": better,
            "n_images": n, "higher_is_better": HIGHER_IS_BETTER[metric],
            "n_boot": n_boot, "seed": seed}


class MetricSuite:
    """PySODMetrics-style accumulator: `step(pred, gt)` per image, then `results()`."""

    def __init__(self) -> None:
        self.scores: list[ImageScore] = []

    def step(self, pred: np.ndarray, gt: np.ndarray, name: str = "") -> ImageScore:
        score = score_image(pred, gt, name=name)
        self.scores.append(score)
        return score

    def results(self, n_boot: int = 1000, seed: int = 0) -> dict[str, dict]:
        return aggregate(self.scores, n_boot=n_boot, seed=seed)

    def __len__(self) -> int:
        return len(self.scores)
