"""What the benchmark decides on: latencies from one sitting, labels-free runs against a
reference variant, and calibration images flagged with the held-out quality beside them."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from studio import labels
from studio.bench import SuiteConfig, load_summary, run_suite
from studio.errors import StudioError
from studio.quant import builds
from studio.zoo import load_zoo
from tests.conftest import synthetic_photo
from tests.test_quant import lab  # noqa: F401  (the tiny-model zoo fixture)

GRABCUT = {"id": "grabcut", "family": "classical", "backend": "opencv", "license": "Apache-2.0 (OpenCV)"}


@pytest.fixture
def lab_zoo(lab):  # noqa: F811
    """The tiny-model zoo with GrabCut beside it (a second variant that needs no weights)."""
    path = lab / "zoo.yaml"
    doc = json.loads(path.read_text())
    doc["variants"].append(GRABCUT)
    path.write_text(json.dumps(doc))
    load_zoo.cache_clear()
    return lab


def image_folder(root, n: int, masks: int = 0):
    """n images in im/, and masks for the first `masks` of them in gt/."""
    (root / "im").mkdir(parents=True)
    (root / "gt").mkdir()
    for i in range(n):
        img, mask = synthetic_photo(96, 128, seed=i)
        Image.fromarray(img).save(root / "im" / f"p{i}.png")
        if i < masks:
            Image.fromarray((mask * 255).astype(np.uint8)).save(root / "gt" / f"p{i}.png")
    return root


def test_every_latency_comes_from_this_sittings_interleaved_timing(tmp_path):
    ds = image_folder(tmp_path / "ds", 6, masks=6)
    cfg = SuiteConfig(models=["grabcut"], dataset=str(ds), cold_start=False, out=tmp_path / "out",
                      timing_images=4, timing_rounds=2)
    first = run_suite(cfg, show_bars=False, n_boot=50)
    again = run_suite(cfg, show_bars=False, n_boot=50)  # the first run completed: a new sitting
    a, b = first.variants[0], again.variants[0]
    assert first.run["sitting"] != again.run["sitting"]
    assert a.timing["computed_images"] == 6 and b.timing["cached_images"] == 6 and b.timing["computed_images"] == 0
    # mattes come from the cache, latencies only from each sitting's own timing phase: 2 rounds x 4 images
    for s, row in ((first, a), (again, b)):
        rec = s.run["timing"]
        assert rec["interleaved"] and rec["anchor"] == "grabcut" and len(rec["images"]) == 4
        assert len(rec["samples"]) == 8 and len(rec["load"]) == 8
        ms = [r["ms"]["grabcut"] for r in rec["samples"]]
        assert row.latency.n_samples == 8 and row.timing["interleaved"]
        assert row.latency.p50_ms == pytest.approx(float(np.median(ms)))
        assert row.latency.p95_ms == pytest.approx(float(np.percentile(ms, 95)))
        assert s.recommendation["timing"]["n_rounds"] == 8
    assert b.quality("iou") == pytest.approx(a.quality("iou"), abs=1e-12)
    none = run_suite(SuiteConfig(models=["grabcut"], dataset=str(ds), cold_start=False, out=tmp_path / "o2",
                                 timing_images=0), show_bars=False, n_boot=50)
    assert none.variants[0].latency is None  # no timing from another sitting is passed off as this one's
    assert "timing" not in none.run


def test_labels_free_run_scores_agreement_with_a_reference_variant(lab_zoo, tmp_path):
    from studio import engine
    from studio.bench.labelsfree import perturb
    from studio.bench.recommend import cheaper, cheapest
    from studio.metrics import agreement_levels, agreement_reference, score_agreement

    ds = image_folder(tmp_path / "ds", 5, masks=2)  # a mixed folder: 2 of 5 have masks
    out = tmp_path / "out"
    cfg = SuiteConfig(models=["tiny-fp16", "grabcut"], reference="tiny", dataset=str(ds), cold_start=False,
                      out=out)
    builds.build(load_zoo().get("tiny-fp16"), progress=False, check=False)
    s = run_suite(cfg, show_bars=False, n_boot=50)
    assert s.reference == {"kind": "variant", "id": "tiny"} and s.reference_id == "tiny"
    assert [r.id for r in s.variants][0] == "tiny"  # the reference runs first
    ref, fp16, grab = s.row("tiny"), s.row("tiny-fp16"), s.row("grabcut")
    # the reference's row is the floor: tiny on the same image under ±1 grey level, against its clean matte
    assert ref.is_reference and ref.agreement_floor and ref.n_scored == 5
    img = np.asarray(Image.open(ds / "im" / "p3.png").convert("RGB"))
    clean = engine.predict("tiny", img).alpha
    noisy = engine.predict("tiny", perturb(img, "p3")).alpha
    want = score_agreement(agreement_levels(noisy), agreement_reference(clean)).values["iou"]
    assert s.per_image_scores["tiny"]["p3"]["values"]["iou"] == pytest.approx(want, abs=1e-6)
    assert fp16.n_scored == 5 and fp16.quality("iou") > grab.quality("iou")
    # the two images with masks are also scored against them, apart
    assert fp16.metrics_gt["iou"]["mean"] is not None and len(s.per_image_gt_scores["tiny-fp16"]) == 2
    saved = json.loads((out / "summary.json").read_text())
    assert saved["reference"] == {"kind": "variant", "id": "tiny"}
    rec = saved["recommendation"]
    assert rec["reference"] == {"kind": "variant", "id": "tiny"} and rec["floor"]["value"] == ref.quality("iou")
    assert rec["best"] == rec["recommended"]  # the old name stays, for old readers
    # the decision follows the labels-free rule: the cheapest candidate that agrees with tiny as
    # well as its floor and is cheaper than tiny, else tiny kept, said so
    agree = [e["id"] for e in rec["equivalent"]]
    assert "grabcut" not in agree
    loaded = load_summary(out)
    ok = [i for i in agree if cheaper(loaded, i, "tiny")]
    if ok:
        assert rec["recommended"] == cheapest(loaded, ok) and "agreement with tiny (iou)" in rec["sentence"]
    else:
        assert rec["recommended"] == "tiny"
        assert rec["sentence"].startswith("Keep the reference tiny: nothing cheaper agrees with it")
    page = (out / "report.html").read_text()
    assert "agreement with tiny" in page and "Against ground truth" in page and "Disagreements:" in page
    with open(out / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"iou", "gt_iou"} <= set(rows[0]) and sum(1 for r in rows if r["gt_iou"]) == 2 * 3
    assert load_summary(out).per_image_gt_scores  # scores.json keeps both


@pytest.mark.parametrize("where", ["im", "."])  # a folder of images; im/ beside an empty gt/
def test_without_masks_or_a_reference_the_run_says_what_to_do(tmp_path, where):
    ds = image_folder(tmp_path / "ds", 2, masks=0)
    with pytest.raises(StudioError, match="--reference"):
        run_suite(SuiteConfig(models=["grabcut"], dataset=str(ds / where), cold_start=False, out=tmp_path / "o"),
                  show_bars=False)


def test_a_build_scored_on_its_calibration_images_is_flagged_with_held_out_quality(lab, tmp_path):  # noqa: F811
    v = load_zoo().get("tiny-int8-static-headfloat")  # calibrated on 4 embedded images (seed 0)
    builds.build(v, progress=False, check=False)
    s = run_suite(SuiteConfig(models=[v.id, "tiny"], dataset=None, limit=8, seed=0, cold_start=False,
                              out=tmp_path / "out"), show_bars=False, n_boot=50)
    row = s.row(v.id)
    assert row.calibrated_on == 4 and labels.calibrated_on(4) in row.flags
    assert row.metrics_held_out["iou"]["mean"] is not None
    assert s.row("tiny").calibrated_on == 0 and not s.row("tiny").metrics_held_out
    with open(tmp_path / "out" / "per_image.csv") as f:
        marked = [r["image"] for r in csv.DictReader(f) if r["variant"] == v.id and r.get("calibration_image")]
    assert len(marked) == 4


def test_arena_preference_is_a_quality_axis_of_the_run(lab_zoo, tmp_path):
    """Blind A/B votes reach the run's rows, the table (with vote counts) and the recommendation."""
    from studio.arena.db import ArenaDB, Vote
    from studio.bench.recommend import recommend
    from studio.bench.table import summary_table

    db = tmp_path / "arena.sqlite"
    votes = ArenaDB(db)
    rng = np.random.default_rng(0)
    for k in range(60):  # people prefer tiny over grabcut about 5 times in 6
        a, b = ("tiny", "grabcut") if k % 2 else ("grabcut", "tiny")
        tiny_wins = rng.random() < 5 / 6
        choice = ("a" if a == "tiny" else "b") if tiny_wins else ("b" if a == "tiny" else "a")
        votes.record_vote(Vote(f"v{k}", "ab" * 32, a, b, choice, float(k), "me"))
    assert votes.count() == 60
    ds = image_folder(tmp_path / "ds", 3, masks=3)
    s = run_suite(SuiteConfig(models=["tiny", "grabcut"], dataset=str(ds), cold_start=False, out=tmp_path / "o"),
                  show_bars=False, n_boot=50)
    assert s.row("tiny").preference is None  # the run read the default database, which has no votes
    from studio.bench.suite import attach_preference

    attach_preference(s, db_path=db)
    tiny, grab = s.row("tiny"), s.row("grabcut")
    assert tiny.preference["votes"] == grab.preference["votes"] == 60 and tiny.preference["shown"]
    assert tiny.quality("preference") > grab.quality("preference")
    cols, rows = summary_table(s)
    col = [c.key for c in cols].index("preference")
    assert rows[[r.id for r in s.variants].index("tiny")][col].text.endswith("(60)")
    rec = recommend(s, metric="preference")
    assert rec["best"] == "tiny" and "preference (arena rating, 60 votes)" in rec["sentence"]


@pytest.mark.slow
def test_cold_start_is_split_in_a_subprocess_and_covers_the_exported_server(tmp_path, isnet_weights):
    ds = image_folder(tmp_path / "ds", 2, masks=2)
    s = run_suite(SuiteConfig(models=["isnet-general-use-int8-dynamic"], dataset=str(ds), cold_start=True,
                              threads=2, timing_images=0, out=tmp_path / "out"), show_bars=False, n_boot=50)
    row = s.variants[0]
    cs = row.cold_start  # the studio's own cold start, in a fresh subprocess, phase by phase
    phases = ("interpreter", "import", "weights", "init", "first_inference")
    for k in phases:
        assert cs[k] > 0, k
    assert cs["total_s"] == pytest.approx(sum(cs[k] for k in phases), rel=1e-6)
    assert row.peak_rss_mb > 100 and row.memory_mb == row.peak_rss_mb
    b = row.bundle_cold_start
    assert row.cold_start["total_s"] > 0 and 0 < b["listening_s"] < b["first_answer_s"]
    assert b["warm_request_s"] > 0 and b["peak_rss_mb"] > 50
    assert row.timing["cold_start_s"] >= row.cold_start["total_s"]  # kept out of the overhead ratio
    page = (tmp_path / "out" / "report.html").read_text()
    assert "exported server" in page


def test_held_out_leaves_out_every_calibration_image(lab, tmp_path):  # noqa: F811
    v = load_zoo().get("tiny-int8-static-headfloat")  # calibrated on 4 embedded images (seed 0)
    builds.build(v, progress=False, check=False)
    s = run_suite(SuiteConfig(models=[v.id, "tiny"], dataset=None, held_out=True, limit=6, cold_start=False,
                              out=tmp_path / "out"), show_bars=False, n_boot=50)
    assert s.dataset["held_out"]["excluded"] == 4 and s.dataset["n_images"] == 6
    assert s.row(v.id).calibrated_on == 0 and labels.calibrated_on(4) not in s.row(v.id).flags
