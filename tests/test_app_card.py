"""Deciding from the card and looking at the images: the recommendation card (fastest
near-equivalent, undecided with the images that would settle it, the cost of a budget, the busy
machine), the Pareto plot (labels apart, units, the page's theme), the Compare table (one format
per column, best value highlighted), the per-image drill-down and the disagreement set.

Plain handler calls; the runs are GrabCut on a few synthetic photos (no weights, fast).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.bench.results import Latency, Summary, VariantRow
from studio.ui import benchmark as bench_h
from studio.ui import compare as compare_h
from studio.ui import drilldown, figures
from tests.conftest import synthetic_photo


def _summary(n: int = 8, spread: float = 0.02, busy: bool = True) -> Summary:
    """best (slow), near (3× faster, Δ within the tolerance but a wide CI), far (10× faster, much
    worse): scores built per image so the paired differences are known."""
    rng = np.random.default_rng(1)
    s = Summary(created="now", config={"quality_metric": "iou"}, environment={"device": "cpu", "cpu": "x"},
                dataset={"name": "t", "n_images": n, "n_with_masks": n})
    base = 0.95 + rng.normal(0, 0.005, n)
    series = {"best": base, "near": base - 0.002 + rng.normal(0, spread, n), "far": base - 0.2}
    p95 = {"best": 3000.0, "near": 1000.0, "far": 300.0}
    rounds = []
    for r in range(12):  # interleaved timing: per-round seconds of each variant
        rounds.append({"image": f"i{r % n}", "times": {v: p95[v] / 1e3 * (1 + 0.01 * ((r * 7 + k) % 5))
                                                        for k, v in enumerate(p95)}})
    s.run["timing"] = {"interleaved": True, "rounds": 3, "samples": rounds, "anchor": "best",
                       "load_max": 9.5 if busy else 1.0, "cores": 2, "images": [f"i{k}" for k in range(n)]}
    from studio.metrics import aggregate, score_image

    gt = np.zeros((50, 100), np.float32)
    gt[:, :50] = 1.0  # 2,500 foreground pixels: dropping m of them gives IoU 1 - m / 2500

    def pred(iou: float) -> np.ndarray:
        p = gt.copy()
        m = int(round((1 - min(max(iou, 0.0), 1.0)) * 2500))
        p.reshape(-1)[np.flatnonzero(gt.reshape(-1))[:m]] = 0.0
        return p

    for vid, vals in series.items():
        scores = {f"i{k}": score_image(pred(float(v)), gt) for k, v in enumerate(vals)}
        s.per_image_scores[vid] = {k: sc.to_json() for k, sc in scores.items()}
        agg = {k: v for k, v in aggregate(list(scores.values()), n_boot=200).items() if isinstance(v, dict)}
        s.variants.append(VariantRow(id=vid, n_images=n, n_scored=n, metrics=agg, model_size_mb=40.0,
                                     latency=Latency(p50_ms=p95[vid] * 0.9, p95_ms=p95[vid]),
                                     throughput_ips=1000 / p95[vid], memory_mb={"best": 900.0, "near": 450.0,
                                                                                "far": 120.0}[vid],
                                     timing={"interleaved": True}))
    return s


def test_the_card_shows_the_fastest_near_equivalent_undecided_budget_and_busy():
    from studio.bench import recommend

    s = _summary()
    rec = recommend(s)
    assert rec["recommended"] == "best" and rec["undecided"], rec  # near: Δ within 0.005, CI too wide
    md = bench_h.recommendation_markdown(rec, s)
    assert "**Fastest near-equivalent**: `near`" in md
    near = next(e for e in bench_h.candidates(rec, s) if e["id"] == "near")
    assert near["verdict"] == "undecided" and near["images_needed"] > 8
    assert f"undecided: {near['images_needed']:,} images would settle it" in md
    assert "450 MB" in md and "faster" in md and "95 % CI" in md
    assert "the recommendation itself" not in md
    assert "⚠ Timed on a busy machine (load 9.5 on 2 cores)" in md
    assert "Cost of the budget" not in md  # no budget given
    # a budget that excludes the best model: what it costs against it
    rec2 = recommend(s, budget_p95_ms=1500)
    md2 = bench_h.recommendation_markdown(rec2, s)
    assert rec2["recommended"] == "near"
    assert "**Cost of the budget** (p95 ≤ 1500 ms): `near` instead of the best model `best`: Δiou" in md2
    rec3 = recommend(s, budget_p95_ms=5000)
    assert "none — the best model `best` fits it" in bench_h.recommendation_markdown(rec3, s)
    quiet = _summary(busy=False)
    assert "busy machine" not in bench_h.recommendation_markdown(recommend(quiet), quiet)


def test_pareto_labels_do_not_overlap_and_axes_have_units():
    from studio.bench import recommend

    s = _summary()
    for i in range(5):  # crowd the plot: five more variants around the same point
        row = VariantRow(**{**s.row("near").__dict__, "id": f"near-copy-{i}"})
        row.latency = Latency(p50_ms=900 + 10 * i, p95_ms=1000 + 10 * i)
        s.variants.append(row)
        s.per_image_scores[row.id] = s.per_image_scores["near"]
    fig = bench_h.pareto(s, recommend(s))
    assert "ms" in fig.layout.xaxis.title.text and "0–1" in fig.layout.yaxis.title.text
    texts = [t for t in fig.data if t.mode == "markers+text"]
    boxes = []
    for t in texts:
        x, y = float(t.x[0]), float(t.y[0])
        xr, yr = fig.layout.xaxis.range, fig.layout.yaxis.range
        px = (np.log10(x) - xr[0]) / (xr[1] - xr[0]) * figures.PLOT_W
        py = (1 - (y - yr[0]) / (yr[1] - yr[0])) * figures.PLOT_H
        boxes.append(figures.label_box(px, py, t.marker.size / 2, t.text[0], t.textposition))
    assert texts and len(texts) < 8  # some labels left to the legend: there is no room
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b, pad=0), (a, b)


def test_the_plot_follows_the_theme():
    from studio.bench import recommend

    s = _summary()
    light, dark = bench_h.pareto(s, recommend(s)), bench_h.pareto(s, recommend(s), dark=True)
    assert light.layout.template.layout.paper_bgcolor != dark.layout.template.layout.paper_bgcolor
    assert dark.layout.font.color == figures.THEMES[True]["font"]
    assert light.layout.font.color == figures.THEMES[False]["font"]
    outlines = {t.marker.line.color for t in dark.data if t.mode and "markers" in t.mode}
    assert "#222" not in outlines  # a dark outline on a dark page would vanish


def _result(vid: str, total: float, iou: float, mae: float, untrained: bool = False) -> compare_h.VariantResult:
    return compare_h.VariantResult(vid, ok=True, untrained=untrained,
                                   timings_ms={"preprocess": 5.0, "inference": total - 6.0, "postprocess": 1.0,
                                               "total": total},
                                   metrics={"iou": iou, "fmeasure_max": iou, "smeasure": iou, "emeasure_mean": iou,
                                            "ssim": iou, "mae": mae, "boundary_iou": iou})


def test_the_compare_table_has_one_format_per_column_and_the_best_highlighted():
    results = [_result("a", 2345.6, 0.91, 0.02), _result("b", 120.4, 0.95, 0.05),
               _result("noise", 10.0, 0.99, 0.001, untrained=True)]
    v = compare_h.table_value(results, with_reference=True)
    heads = v["headers"]
    disp, style = v["metadata"]["display_value"], v["metadata"]["styling"]
    total, iou, mae = heads.index("total ms"), heads.index("IoU"), heads.index("MAE")
    assert [r[total] for r in disp] == ["2,346", "120", "10"]  # one format: no decimals past 100 ms
    assert [r[heads.index("pre ms")] for r in disp] == ["5.0", "5.0", "5.0"]
    assert [r[iou] for r in disp] == ["0.9100", "0.9500", "0.9900"]
    assert isinstance(v["data"][0][total], float)  # numbers stay numbers: sorting sorts by value
    best = compare_h.BEST_STYLE
    assert style[1][total] == best and style[0][total] != best  # fastest trained, not the untrained
    assert style[1][iou] == best and style[0][mae] == best  # higher IoU, lower MAE
    assert style[2][iou] == compare_h.MUTED_STYLE  # untrained: greyed, never "best"


def test_the_slider_puts_any_model_against_any_other():
    state = {"original": "o.png", "cutouts": {"a": "a.png", "b": "b.png"}, "labels": {}}
    assert compare_h.slider_for("b", state) == ("o.png", "b.png")
    assert compare_h.slider_for("b", state, left="a") == ("a.png", "b.png")
    assert compare_h.left_choices(state)[0] == ("the original image", compare_h.ORIGINAL)
    assert compare_h.slider_label("a", "b").startswith("a ↔ b")


# --- the drill-down and the disagreement set, on real GrabCut runs ----------------------------------

@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_RESULTS", str(tmp_path / "results"))
    return tmp_path / "results"


def _folder(root: Path, n: int, masks: bool) -> Path:
    (root / "im").mkdir(parents=True)
    if masks:
        (root / "gt").mkdir()
    for i in range(n):
        img, mask = synthetic_photo(seed=i)
        Image.fromarray(img).save(root / "im" / f"p{i}.png")
        if masks:
            Image.fromarray((mask * 255).astype(np.uint8)).save(root / "gt" / f"p{i}.png")
    return root


def test_the_drilldown_shows_each_variants_worst_images_and_flags_unsure_ones(results, tmp_path, monkeypatch):
    folder = _folder(tmp_path / "ds", 3, masks=True)
    *_, run, _public = bench_h.benchmark(source=bench_h.SOURCE_CATALOGUE, dataset=str(folder),
                                         variants=["grabcut"], limit=0, warmup=0)
    d = bench_h.drilldown_view(run)
    assert d["choices"] == ["grabcut"] and d["variant"] == "grabcut"
    summary = bench_h._load(run)
    scores = {k: v["values"]["iou"] for k, v in summary.per_image_scores["grabcut"].items()}
    worst_first = sorted(scores, key=scores.get)
    assert [c.split(" · ")[0] for _, c in d["worst"]] == worst_first
    assert all(Path(p).is_file() and Path(p).parent.name == drilldown.FOLDER for p, _ in d["worst"])
    assert "of its loss" in d["worst"][0][1]
    # a faint matte everywhere: every image is flagged, with why
    assert drilldown.unsure(drilldown.confidence(np.full((80, 80), 0.3))).startswith("faint")
    assert drilldown.unsure(drilldown.confidence(np.full((80, 80), 0.6))).startswith("grey")
    tiny = np.zeros((400, 400))
    tiny[10:14, 10:14] = 1.0  # a tiny object, crisp: 0.01 % of the image, and sure of itself
    assert drilldown.unsure(drilldown.confidence(tiny)) is None
    assert drilldown.unsure(drilldown.confidence(np.zeros((80, 80)))).startswith("faint")  # nothing found
    monkeypatch.setattr(drilldown, "_cached", lambda row, sample: np.full(sample.image().shape[:2], 0.4, np.float32))
    index = drilldown.build(summary, tmp_path / "again")
    assert {u["image"] for u in index["unconfident"]} == set(scores)
    assert "faint" in index["unconfident"][0]["why"]["grabcut"]


def test_the_disagreement_set_opens_in_the_arena(results, tmp_path):
    folder = _folder(tmp_path / "photos", 2, masks=False)
    *_, run, _public = bench_h.benchmark(source=bench_h.SOURCE_IMAGES, folder=str(folder / "im"), variants=["grabcut"],
                                         reference="grabcut", limit=0, warmup=0)
    assert not bench_h.judge_state(run)  # nothing disagrees with itself
    path = results / run
    summary = json.loads(path.read_text())
    image = sorted(bench_h._load(run).per_image_scores["grabcut"])[0]
    summary["run"]["disagreements"] = {"n_images": 1, "of": 2, "candidates": ["grabcut"], "metric": "iou",
                                       "images": [{"image": image, "gap": 0.2, "by": {"grabcut": 0.2}}]}
    path.write_text(json.dumps(summary))
    assert bench_h.judge_state(run)
    got = bench_h.disagreement_set(run)
    assert got["spec"].startswith("upload:") and got["n_images"] == 1 and got["variants"][0] == "grabcut"
    from studio.arena import images as arena_images

    iset = arena_images.open_set(got["spec"])
    assert [s.id for s in iset.samples] == [image]
    pytest.importorskip("gradio")
    from studio.ui import blocks

    tabs, source, dataset, limit, variants_dd, note = blocks.judge_disagreements(run)
    assert tabs.selected == "arena" and dataset.value == got["spec"] and "Disagreement set" in note


def test_a_link_opens_the_arena_on_its_set(monkeypatch):
    """`eval/run.py … --arena` prints `?arena_set=SPEC&variants=A,B`: the page opens the Arena on it."""
    from types import SimpleNamespace

    pytest.importorskip("gradio")
    from studio.ui.arena_blocks import from_link

    got = from_link(SimpleNamespace(query_params={"arena_set": "embedded", "variants": "grabcut,isnet-general-use"}))
    tabs, source, dataset, limit, variants_dd, note = got
    assert tabs.selected == "arena" and dataset.value == "embedded"
    assert variants_dd.value == ["grabcut", "isnet-general-use"] and "Start judging" in note
    plain = from_link(SimpleNamespace(query_params={}))
    assert all(isinstance(x, dict) and x.get("__type__") == "update" and len(x) == 1 for x in plain)  # untouched
    monkeypatch.setenv("SPACE_ID", "x/y")  # a hosted app never opens a server folder from a link
    refused = from_link(SimpleNamespace(query_params={"arena_set": "/etc", "variants": "grabcut"}))
    assert "cannot be opened" in refused[-1]
