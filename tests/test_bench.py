"""The benchmark suite: outputs, faults, resume after SIGKILL, and the recommendation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from studio import inventory, labels, settings
from studio.bench import SuiteConfig, Summary, VariantRow, load_summary, recommend, run_suite
from studio.bench.recommend import cost_per_1000, pareto_front
from studio.bench.results import Latency
from tests.conftest import make_folder

RUN = [sys.executable, str(settings.REPO_ROOT / "eval" / "run.py")]


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_RESULTS", str(tmp_path / "results"))
    return tmp_path / "results"


def test_run_writes_report_and_summary(tmp_path, results):
    ds = make_folder(tmp_path / "ds")
    cfg = SuiteConfig(models=["grabcut"], dataset=str(ds), cold_start=False, out=tmp_path / "out",
                      price_per_hour=1.0)
    summary = run_suite(cfg, show_bars=False, n_boot=200)
    out = tmp_path / "out"
    for f in ("per_image.csv", "summary.json", "report.html", "scores.json"):
        assert (out / f).is_file(), f
    saved = json.loads((out / "summary.json").read_text())
    env = saved["environment"]
    assert {"cpu", "threads", "device", "packages", "metric_conventions"} <= set(env)
    (row,) = saved["variants"]
    assert row["id"] == "grabcut" and row["n_images"] == 4 and row["errors"] == []
    for m in ("iou", "ssim", "mae", "fmeasure_max", "smeasure", "emeasure_mean"):
        assert set(row["metrics"][m]) >= {"mean", "ci95"}
        lo, hi = row["metrics"][m]["ci95"]
        assert lo <= row["metrics"][m]["mean"] <= hi
    # latency from the run's interleaved timing phase: its rounds' milliseconds, p50 and p95
    ms = [r["ms"]["grabcut"] for r in saved["run"]["timing"]["samples"]]
    assert len(ms) == 12 and row["latency"]["n_samples"] == 12  # 3 rounds x 4 timing images
    assert row["latency"]["p50_ms"] == pytest.approx(float(np.median(ms)))
    assert row["latency"]["p95_ms"] == pytest.approx(float(np.percentile(ms, 95)))
    assert row["throughput_ips"] == pytest.approx(1000.0 / float(np.mean(ms)))
    assert "model_size_mb" in row and "flags" in row
    # a memory figure without cold start (GrabCut may add nothing over the process's freed pages: >= 0)
    assert row["memory_mb"] is not None and row["memory_mb"] >= 0 and "in-process" in row["memory_source"]
    assert row["timing"]["sitting"] == saved["run"]["sitting"]
    assert saved["recommendation"]["recommended"] == saved["recommendation"]["best"] == "grabcut"
    assert saved["recommendation"]["timing"]["interleaved"] and saved["recommendation"]["undecided"] == []
    assert saved["reference"] == {"kind": "ground_truth"}
    assert saved["recommendation"]["cost_per_1000"] == pytest.approx(cost_per_1000(summary.variants[0], 1.0))
    page = (out / "report.html").read_text()
    assert "Pareto" in page and "Recommendation" in page and "data:image/png;base64" in page
    assert "<script src=\"http" not in page  # self-contained: plotly is inlined
    assert summary.run["all_ran"]


def test_a_failing_variant_is_recorded_and_the_others_go_on(tmp_path, results, monkeypatch):
    monkeypatch.setenv("STUDIO_CACHE", str(tmp_path / "nocache"))
    ds = make_folder(tmp_path / "ds", n=2)
    out = tmp_path / "out"
    proc = subprocess.run([*RUN, "--models", "u2net", "grabcut", "--dataset", str(ds), "--no-cold-start",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    s = load_summary(out)
    by_id = {r.id: r for r in s.variants}
    assert by_id["u2net"].failed and "studio weights pull u2net" in by_id["u2net"].errors[0]["error"]
    assert by_id["grabcut"].n_images == 2 and not by_id["grabcut"].errors
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "grabcut: the best iou" in proc.stdout


def test_bad_images_are_per_image_errors(tmp_path, results):
    ds = make_folder(tmp_path / "ds", n=3)
    (ds / "im" / "s1.jpg").write_bytes(b"garbage")
    Image.new("L", (10, 10)).save(ds / "gt" / "s2.png")  # mask of the wrong size
    cfg = SuiteConfig(models=["grabcut"], dataset=str(ds), cold_start=False, out=tmp_path / "out")
    s = run_suite(cfg, show_bars=False, n_boot=100)
    (row,) = s.variants
    assert row.n_scored == 1 and len(row.errors) == 2
    msgs = " ".join(e["error"] for e in row.errors)
    assert "s1" in msgs or "not an image" in msgs
    assert not s.run["all_ran"]


def _scores(values: list[float]) -> dict[str, dict]:
    """Per-image scores as scores.json holds them, with `iou` set per image."""
    from studio.metrics import score_image

    base = score_image(np.ones((4, 4), np.float32), np.ones((4, 4), np.float32)).to_json()
    out = {}
    for i, v in enumerate(values):
        s = json.loads(json.dumps(base))
        s["name"] = f"im{i}"
        s["values"]["iou"] = v
        out[f"im{i}"] = s
    return out


def _fake_summary(rows: list[tuple[str, list[float], float, float, bool]]) -> Summary:
    """(id, per-image IoU, p95 ms, memory MB, untrained) -> a Summary the rule can decide on."""
    variants, scores = [], {}
    for vid, ious, p95, mem, untrained in rows:
        q = float(np.mean(ious))
        variants.append(VariantRow(id=vid, n_images=len(ious), n_scored=len(ious), untrained=untrained,
                                   memory_mb=mem, throughput_ips=1000.0 / p95,
                                   latency=Latency(p50_ms=p95 * 0.9, p95_ms=p95, mean_ms=p95),
                                   metrics={"iou": {"mean": q, "ci95": [q - 0.01, q + 0.01]}}))
        scores[vid] = _scores(ious)
    return Summary(config={"quality_metric": "iou"}, variants=variants, per_image_scores=scores)


def test_recommendation_picks_the_cheapest_equivalent_within_budgets():
    rng = np.random.default_rng(0)
    base = list(0.90 + 0.05 * rng.random(20))
    summary = _fake_summary([
        ("fp32", base, 1000.0, 900.0, False),
        ("int8", [b - 0.001 for b in base], 300.0, 400.0, False),  # a tie to the third decimal
        ("tiny", [b - 0.1 for b in base], 50.0, 100.0, False),  # clearly worse
        ("fake", [0.99] * 20, 10.0, 50.0, True),  # untrained: never recommended
    ])
    rec = recommend(summary)
    assert rec["best_scoring"] == "fp32" and rec["best"] == "int8"
    assert [e["id"] for e in rec["equivalent"]] == ["int8", "fp32"]  # cheapest first
    assert "3.3× faster" in rec["sentence"] and "within the 0.005 tolerance" in rec["sentence"]
    assert "not picked because int8 is equivalent" in rec["why_not_best"]
    assert {"id": "fake", "why": "latency only (untrained weights)"} in rec["excluded"]
    assert rec["budgets_text"] == "no budget given" and "budgets" not in rec["sentence"]
    # a tighter tolerance than the gap: fp32 stands alone, and the sentence names the cheaper
    # variant that came closest, with its interval, so the engineer sees what the tolerance cost
    tight = recommend(summary, tolerance=0.0001)
    assert tight["best"] == "fp32" and tight["nearest_cheaper"]["id"] == "int8"
    assert "no cheaper variant is proven within the 0.0001 tolerance (nearest: int8, 3.3× faster" in tight["sentence"]
    assert "iou -0.0010, 95 % CI -0.0010 … -0.0010" in tight["sentence"]
    # budgets drop variants before the rule runs
    assert recommend(summary, budget_p95_ms=200)["best"] == "tiny"
    r = recommend(summary, budget_memory_mb=350)
    assert r["best"] == "tiny" and any(e["id"] == "int8" and "memory" in e["why"] for e in r["excluded"])
    assert recommend(summary, budget_p95_ms=5)["best"] is None
    assert pareto_front(summary.variants) == ["tiny", "int8", "fp32"]
    assert cost_per_1000(summary.variants[1], 3.6) == pytest.approx(0.3)
    priced = recommend(summary, price_per_hour=3.6)
    assert priced["best"] == "int8" and priced["cost_per_1000"] == pytest.approx(0.3)
    assert "cheaper per image" in priced["sentence"]


def test_summary_json_round_trips_and_reads_old_files():
    summary = _fake_summary([("a", [0.9, 0.8], 100.0, 10.0, False), ("b", [0.5, 0.4], 50.0, 5.0, True)])
    again = Summary.from_json(json.loads(json.dumps(summary.to_json())))
    assert [r.id for r in again.variants] == ["a", "b"] and again.variants[1].untrained
    assert again.variants[0].latency.p95_ms == 100.0 and again.variants[0].quality("iou") == pytest.approx(0.85)
    old = {"variants": [{"id": "x", "flags": [labels.UNTRAINED], "latency": {"p95_ms": 5.0}, "peak_rss_mb": 300,
                         "n_images": 2, "metrics": {"iou": {"mean": 0.5}}, "some_future_key": 1}]}
    row = Summary.from_json(old).variants[0]
    assert row.untrained and row.memory_mb == 300 and row.n_scored == 2
    assert row.to_json()["some_future_key"] == 1  # unknown keys survive a round trip


@pytest.mark.slow
def test_resume_after_sigkill_redoes_nothing(tmp_path, results):
    """Kill the run mid-way with SIGKILL; the rerun computes only the images not yet cached."""
    ds = make_folder(tmp_path / "ds", n=16)
    out = tmp_path / "out"
    cmd = [*RUN, "--models", "grabcut", "--dataset", str(ds), "--no-cold-start", "--out", str(out),
           "--repeats", "6"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    cache = results / "cache"
    deadline = time.time() + 240
    while time.time() < deadline:
        done = list(cache.glob("*/*.json")) if cache.exists() else []
        if len(done) >= 5:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p.name: p.stat().st_mtime_ns for p in cache.glob("*/*.json")}
    assert 5 <= len(done_before) < 16, "the kill should land mid-way"
    # The kill may land mid-write and leave a temporary (.NAME.XXXX.part), but every entry
    # under its own name is whole (written aside, then renamed), its PNG beside it:
    (entries,) = {p.parent for p in cache.glob("*/*.png")}  # the one variant's predictions
    for rec in entries.glob("*.json"):
        assert set(json.loads(rec.read_text())) >= {"timings", "runs"}, rec
        assert rec.with_suffix(".png").is_file(), rec
    # and a temporary is never read as an entry: plant a half-written one for a missing image
    planted = entries / ".0123456789abcdef0123456789abcdef.json.x.part"
    planted.write_text('{"timings": {"inference"')
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    s = load_summary(out)
    (row,) = s.variants
    assert row.n_images == 16 and not row.errors
    assert row.timing["cached_images"] == len(done_before)
    assert row.timing["computed_images"] == 16 - len(done_before)
    # a resumed run is the same sitting: the killed run's timings of its images count, nothing is
    # re-timed; the latency is the sitting's interleaved timing phase (3 rounds x 4 images)
    assert s.run["resumed"] == 1 and row.timing["retimed_images"] == 0 and row.timing["timed_images"] == 16
    assert row.timing["interleaved"] and row.latency.n_samples == 3 * 4
    for name, mtime in done_before.items():  # finished work was not redone
        assert next(cache.glob(f"*/{name}")).stat().st_mtime_ns == mtime
    # and nothing was lost: same numbers as a clean, uninterrupted run
    clean = run_suite(SuiteConfig(models=["grabcut"], dataset=str(ds), cold_start=False, out=tmp_path / "clean",
                                  resume=False), show_bars=False)
    assert clean.variants[0].quality("iou") == pytest.approx(row.quality("iou"), abs=1e-9)


@pytest.mark.slow
def test_isnet_quality_matches_rembg_remove(tmp_path, results, isnet_weights):
    """Mean IoU of the suite's IS-Net fp32 within 0.002 of rembg's remove(only_mask=True) with
    the same weights, on a few embedded-sample images."""
    from rembg import new_session, remove

    from studio.backends.rembg import rembg_home
    from studio.data import open_dataset
    from studio.metrics import score_image

    ds = open_dataset(None, limit=4, seed=1)
    s = run_suite(SuiteConfig(models=["isnet-general-use"], dataset=None, limit=4, seed=1, cold_start=False,
                              warmup=0, timing_images=0, out=tmp_path / "o"),  # quality only: no timing phase
                  show_bars=False, n_boot=100)
    ours = s.variants[0].quality("iou")
    with rembg_home(str(settings.weights_dir())):
        session = new_session("isnet-general-use")
    ious = []
    for sample in ds:
        mask = remove(Image.fromarray(sample.image()), session=session, only_mask=True)
        alpha = np.asarray(mask, dtype=np.float32) / 255.0
        ious.append(score_image(alpha, sample.mask()).values["iou"])
    assert s.variants[0].n_scored == len(ious) == 4
    assert abs(ours - float(np.mean(ious))) <= 0.002


def test_untrained_variants_run_on_a_few_images_for_latency(tmp_path, results, monkeypatch):
    real = inventory.describe

    def as_untrained(variant):  # grabcut stands in for an untrained checkpoint (fast)
        info = real(variant)
        info.untrained = True
        info.flags = [*info.flags, labels.UNTRAINED]
        return info

    monkeypatch.setattr(inventory, "describe", as_untrained)
    ds = make_folder(tmp_path / "ds", n=4)
    cfg = SuiteConfig(models=["grabcut"], dataset=str(ds), cold_start=False, out=tmp_path / "out",
                      untrained_limit=2)
    summary = run_suite(cfg, show_bars=False, n_boot=50)
    (row,) = summary.variants
    assert row.n_images == 2 and row.latency_only_images == 2
    assert row.untrained and labels.UNTRAINED in row.flags
    # timed like any variant in the interleaved phase (on its 2 images), never recommended
    assert row.latency.n_samples == 3 * 2 and row.timing["interleaved"]
    assert not row.ranks_on_quality and summary.recommendation["recommended"] is None
