"""Interleaved timing and the decision it feeds: the shuffled schedule, paired speed ratios and
their CI, memory groups sharing one anchor, the undecided branch with `images_needed`, and
labels-free runs judged against the agreement floor."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from studio import timing
from studio.bench import labelsfree
from studio.bench.executor import Executor, LocalExecutor, TimingRequest, time_candidates
from studio.bench.recommend import images_needed, recommend
from studio.bench.results import Latency, Summary, VariantRow, reference_variant
from studio.bench.suite import apply_timing, find_disagreements
from tests.conftest import synthetic_photo

# --- the schedule ------------------------------------------------------------------------------

def _recorder(calls: list):
    return {c: (lambda item, c=c: calls.append((c, item))) for c in ("a", "b", "c", "d")}


def test_every_round_runs_each_candidate_once_in_a_seeded_shuffled_order(monkeypatch):
    loads = iter(np.linspace(0.5, 3.0, 100))
    monkeypatch.setattr(timing.os, "getloadavg", lambda: (next(loads), 0.0, 0.0))
    calls: list = []
    res = timing.interleave(_recorder(calls), ["x", "y", "z"], rounds=4, seed=7, labels=["x", "y", "z"])
    assert len(res.rounds) == 12 and len(calls) == 48
    for k, r in enumerate(res.rounds):
        assert sorted(r.order) == ["a", "b", "c", "d"]  # each candidate exactly once per round
        assert calls[4 * k: 4 * k + 4] == [(c, r.item) for c in r.order]  # on that round's item, in that order
    assert [r.item for r in res.rounds] == ["x", "y", "z"] * 4
    assert len({tuple(r.order) for r in res.rounds}) > 3  # shuffled, not one fixed or rotating order
    assert [r.load for r in res.rounds] == pytest.approx(list(np.linspace(0.5, 3.0, 100)[:12]), abs=0.01)
    assert res.load_max == pytest.approx(np.linspace(0.5, 3.0, 100)[11], abs=0.01)
    again = timing.interleave(_recorder([]), ["x", "y", "z"], rounds=4, seed=7)
    other = timing.interleave(_recorder([]), ["x", "y", "z"], rounds=4, seed=8)
    assert [r.order for r in again.rounds] == [r.order for r in res.rounds]  # the seed fixes the schedule
    assert [r.order for r in other.rounds] != [r.order for r in res.rounds]


def _fake_clock(costs: dict[str, float], jitter: float = 0.0, seed: int = 0):
    """A clock that each candidate call advances by its cost (times a per-call load factor)."""
    now = [0.0]
    rng = np.random.default_rng(seed)

    def clock() -> float:
        return now[0]

    def make(c: str):
        def run(_item):
            now[0] += costs[c] * (1.0 + jitter * rng.standard_normal())
            return {"inference": costs[c] * 0.9, "preprocess": costs[c] * 0.1}
        return run

    return clock, {c: make(c) for c in costs}


def test_paired_ratios_and_their_verdict():
    clock, calls = _fake_clock({"fp32": 1.0, "int8": 0.4})
    res = timing.interleave(calls, [0, 1], rounds=3, clock=clock)
    assert res.samples("int8") == pytest.approx([0.4] * 6)
    assert res.samples("int8", "inference") == pytest.approx([0.36] * 6)
    assert res.samples("int8", "total") == pytest.approx([0.4] * 6)  # the returned parts, summed
    assert res.ratios("int8", "fp32") == pytest.approx([2.5] * 6)
    sp = timing.speed_ratio(res.ratios("int8", "fp32"))
    assert sp["median"] == pytest.approx(2.5) and sp["ci95"] == pytest.approx([2.5, 2.5]) and sp["n"] == 6
    assert timing.verdict(sp) == 1 and timing.verdict(timing.speed_ratio(res.ratios("fp32", "int8"))) == -1
    # noisy and alike: the CI holds 1, so neither is faster
    clock, calls = _fake_clock({"a": 1.0, "b": 1.0}, jitter=0.1, seed=3)
    same = timing.interleave(calls, [0], rounds=30, clock=clock)
    sp = timing.speed_ratio(same.ratios("a", "b"))
    assert sp["ci95"][0] < 1.0 < sp["ci95"][1] and timing.verdict(sp) == 0
    assert timing.verdict(None) is None


def test_a_failing_candidate_is_dropped_not_fatal():
    def boom(_):
        raise RuntimeError("out of memory")

    res = timing.interleave({"ok": lambda _: None, "bad": boom}, [0], rounds=3, keep_going=True)
    assert res.errors == {"bad": "RuntimeError: out of memory"}
    assert len(res.samples("ok")) == 3 and res.samples("bad") == []
    with pytest.raises(RuntimeError):
        timing.interleave({"bad": boom}, [0], rounds=1)


def test_groups_share_one_anchor_when_memory_is_short():
    mem = {"fp32": 800.0, "fp16": 600.0, "int8": 300.0, "cpu": 300.0}
    assert timing.plan_groups("fp32", list(mem), mem, 5000) == [["fp32", "fp16", "int8", "cpu"]]
    assert timing.plan_groups("fp32", list(mem), mem, None) == [["fp32", "fp16", "int8", "cpu"]]
    groups = timing.plan_groups("fp32", list(mem), mem, 1500)
    assert all(g[0] == "fp32" for g in groups) and len(groups) > 1
    assert sorted(x for g in groups for x in g[1:]) == ["cpu", "fp16", "int8"]  # each once
    assert all(sum(mem[x] for x in g) <= 1500 for g in groups)
    # one too big to fit beside the anchor still gets its group (timed, never dropped)
    assert timing.plan_groups("fp32", ["fp32", "huge"], {"fp32": 800.0, "huge": 2000.0}, 1000) == [["fp32", "huge"]]


def test_variants_in_different_groups_compare_through_the_anchor():
    rounds = []
    for k in range(6):
        rounds.append({"group": 0, "image": str(k), "order": ["a", "x"], "ms": {"a": 1000.0, "x": 500.0}})
        rounds.append({"group": 1, "image": str(k), "order": ["a", "y"], "ms": {"a": 1000.0, "y": 250.0}})
    record = {"anchor": "a", "samples": rounds}
    assert timing.record_speed(record, "x", "a")["median"] == pytest.approx(2.0)
    via = timing.record_speed(record, "y", "x")
    assert via["median"] == pytest.approx(2.0) and via["via"] == "a"


def test_time_candidates_records_rounds_groups_and_memory(monkeypatch):
    """The suite's timing phase with stand-in runners: one record with every round's order,
    load and milliseconds; groups when the memory budget is short."""
    from studio import engine
    from studio.matte import Matte
    from studio.zoo import load_zoo

    zoo = load_zoo()
    vs = [zoo.get("grabcut"), zoo.get("isnet-general-use"), zoo.get("isnet-general-use-fp16")]

    class Fake:
        def __init__(self, cost: float):
            self.cost = cost

        def close(self) -> None:
            pass

    cost = {"grabcut": 0.010, "isnet-general-use": 0.004, "isnet-general-use-fp16": 0.002}
    monkeypatch.setattr(engine, "run_runner", lambda r, img: Matte(
        np.zeros(img.shape[:2], np.float32), "x", {"preprocess": 0.0, "inference": r.cost, "postprocess": 0.0}))
    images = [(f"s{i}", np.zeros((8, 8, 3), np.uint8)) for i in range(2)]
    req = TimingRequest(vs, images, anchor="isnet-general-use", rounds=2, seed=1,
                        memory_mb={"grabcut": 100.0, "isnet-general-use": 100.0, "isnet-general-use-fp16": 100.0},
                        budget_mb=250.0)
    rec = time_candidates(req, load=lambda v, d, t: Fake(cost[v.id]))
    assert rec["interleaved"] and rec["anchor"] == "isnet-general-use" and len(rec["groups"]) == 2
    assert all(g[0] == "isnet-general-use" for g in rec["groups"])
    assert len(rec["samples"]) == 2 * 2 * 2  # groups x rounds x images
    assert all(set(r["ms"]) == set(r["order"]) for r in rec["samples"])
    # the record's ms is preprocess + inference + postprocess from the matte's timings
    assert [r["ms"]["grabcut"] for r in rec["samples"] if "grabcut" in r["ms"]] == pytest.approx([10.0] * 4)
    s = Summary(variants=[VariantRow(id=v.id, n_images=2, n_scored=2) for v in vs])
    apply_timing(s, rec)
    g = s.row("grabcut")
    assert g.latency.p50_ms == pytest.approx(10.0) and g.latency.n_samples == 4 and g.timing["interleaved"]
    assert g.timing["speedup_vs"]["median"] == pytest.approx(0.4) and g.timing["speedup_vs"]["anchor"] == \
        "isnet-general-use"
    assert s.row("isnet-general-use").latency.n_samples == 8  # the anchor ran in both groups


def test_both_executors_satisfy_the_protocol():
    from studio.bench.ray_executor import RayExecutor

    assert isinstance(LocalExecutor(), Executor)
    assert isinstance(RayExecutor(), Executor)  # not connected: the protocol is structural


# --- the decision -----------------------------------------------------------------------------------

def _score(values: dict[str, float], name: str) -> dict:
    from studio.metrics import score_image

    base = score_image(np.ones((4, 4), np.float32), np.ones((4, 4), np.float32)).to_json()
    s = json.loads(json.dumps(base))
    s["name"] = name
    s["values"].update(values)
    return s


def _summary(per_image: dict[str, list[float]], ms: dict[str, float], memory: dict[str, float] | None = None,
             rounds: int = 12, jitter: float = 0.03, reference: str | None = None, load: float = 0.5) -> Summary:
    """A summary with per-image IoU and an interleaved timing record (`ms` per variant, a shared
    per-round load factor and a little independent noise)."""
    rng = np.random.default_rng(1)
    samples = []
    for k in range(rounds):
        f = 1 + 0.5 * rng.random()  # the machine's load this round: every variant alike
        samples.append({"group": 0, "image": f"i{k % 4}", "order": list(ms), "load": load,
                        "ms": {v: m * f * (1 + jitter * rng.standard_normal()) for v, m in ms.items()}})
    anchor = reference or max(per_image, key=lambda v: np.mean(per_image[v]))
    record = {"interleaved": True, "rounds": rounds // 4, "images": ["i0", "i1", "i2", "i3"], "anchor": anchor,
              "cores": 2, "node": "test", "samples": samples, "load_max": load}
    variants, scores = [], {}
    for vid, ious in per_image.items():
        q = float(np.mean(ious))
        variants.append(VariantRow(id=vid, n_images=len(ious), n_scored=len(ious), model_size_mb=100.0,
                                   memory_mb=(memory or {}).get(vid, 500.0), latency=Latency(p50_ms=ms[vid],
                                   p95_ms=ms[vid] * 1.2, mean_ms=ms[vid]), throughput_ips=1000 / ms[vid],
                                   timing={"interleaved": True},
                                   metrics={"iou": {"mean": q, "ci95": [q - 0.01, q + 0.01]}},
                                   is_reference=vid == reference, agreement_floor=vid == reference))
        scores[vid] = {f"im{i}": _score({"iou": x}, f"im{i}") for i, x in enumerate(ious)}
    s = Summary(config={"quality_metric": "iou"}, variants=variants, per_image_scores=scores,
                reference=reference_variant(reference) if reference else {"kind": "ground_truth"},
                environment={"cpu_count": 2})
    s.run["timing"] = record
    apply_timing(s, record)
    return s


def test_undecided_names_the_faster_candidate_with_the_images_that_would_settle_it():
    """Paired differences with a known spread: mean -0.001, sd 0.02, 40 images. The CI is too
    wide for the 0.005 tolerance, so fp32 stays, and int8 (2.5x faster) is named, with N."""
    rng = np.random.default_rng(7)  # a draw whose mean is near the true -0.001
    base = 0.85 + 0.1 * rng.random(40)
    d = rng.normal(-0.001, 0.02, 40)
    s = _summary({"fp32": list(base), "int8": list(base + d)}, {"fp32": 1000.0, "int8": 400.0})
    rec = recommend(s)
    assert rec["recommended"] == rec["best"] == rec["best_scoring"] == "fp32"
    (u,) = rec["undecided"]
    assert u["id"] == "int8" and u["vs"] == "fp32" and u["speedup"] == pytest.approx(2.5, rel=0.05)
    assert u["speedup_ci95"][0] > 1.0 and u["ci95"][0] < -0.005 <= u["diff"]
    # N from the paired differences' spread: (1.96 sd / (tol - |mean|))^2, at least n + 1
    sd, mean = float(np.std(d, ddof=1)), float(np.mean(d))
    assert u["diff"] == pytest.approx(mean, abs=1e-9) and u["sd"] == pytest.approx(sd, rel=1e-6)
    assert u["images_needed"] == math.ceil((1.959964 * sd / (0.005 + mean)) ** 2)
    assert 40 < u["images_needed"] < 400
    assert rec["undecided_sentence"].startswith(f"Undecided at 40 images: int8 is {u['speedup']:.2f}× faster than "
                                                "fp32 (95 % CI ")
    assert f"about {u['images_needed']:,} images would settle it at ±0.005" in rec["undecided_sentence"]
    assert rec["undecided_sentence"] in rec["lines"] and rec["lines"][0] == rec["sentence"]
    # the headline names the proven choice and, beside it, the undecided faster one
    assert rec["sentence"].startswith("fp32: the best iou") and "undecided beside it: int8 (2.5× faster)" in \
        rec["sentence"]
    assert rec["timing"] == {"interleaved": True, "rounds": 3, "images": 4, "n_rounds": 12, "load_max": 0.5,
                             "cores": 2, "anchor": "fp32", "node": "test"}
    # and N images are about what settles it: the same differences, repeated to N, pass
    k = math.ceil(u["images_needed"] / 40) + 1
    more = _summary({"fp32": list(base) * k, "int8": list(base + d) * k}, {"fp32": 1000.0, "int8": 400.0})
    assert recommend(more)["recommended"] == "int8" and not recommend(more)["undecided"]


def test_images_needed_formula():
    assert images_needed(-0.001, 0.02, 0.005, 40) == math.ceil((1.959964 * 0.02 / 0.004) ** 2)
    assert images_needed(-0.006, 0.02, 0.005, 40) is None  # the point estimate is outside the tolerance
    assert images_needed(0.0, 0.001, 0.005, 40) == 41  # n did not settle it: at least one more
    assert images_needed(-0.001, None, 0.005, 40) is None


def test_cheaper_only_when_the_speed_ratio_ci_excludes_one_else_memory_breaks_the_tie():
    rng = np.random.default_rng(2)
    base = list(0.9 + 0.05 * rng.random(30))
    ties = {"fp32": base, "fp16": [b - 0.0005 for b in base]}
    # fp16 looks 3 % faster but the interleaved ratio's CI holds 1: equally fast, and lighter
    s = _summary(ties, {"fp32": 1000.0, "fp16": 970.0}, memory={"fp32": 900.0, "fp16": 500.0}, jitter=0.1)
    rec = recommend(s)
    e = next(x for x in rec["equivalent"] if x["id"] == "fp16")
    assert e["speedup_ci95"][0] < 1.0 < e["speedup_ci95"][1]
    assert rec["recommended"] == "fp16" and "equally fast (speed ratio" in rec["sentence"]
    assert "memory 500 vs 900 MB" in rec["sentence"]
    # heavier instead: fp32, the best-scoring, stays (a 3 % point estimate is not "cheaper")
    heavy = _summary(ties, {"fp32": 1000.0, "fp16": 970.0}, memory={"fp32": 500.0, "fp16": 900.0}, jitter=0.1)
    assert recommend(heavy)["recommended"] == "fp32"
    # a real speed-up: cheaper, whatever the memory
    fast = _summary(ties, {"fp32": 1000.0, "fp16": 500.0}, memory={"fp32": 500.0, "fp16": 900.0})
    r = recommend(fast)
    sp = r["equivalent"][0]
    assert r["recommended"] == sp["id"] == "fp16" and sp["speedup_ci95"][0] > 1.0
    assert f"fp16: {sp['speedup']:.2f}× faster (95 % CI {sp['speedup_ci95'][0]:.2f}–" in r["sentence"]
    assert sp["speedup"] == pytest.approx(2.0, rel=0.03)


def test_a_busy_machine_is_said_in_the_recommendation():
    base = [0.9, 0.8, 0.85, 0.88]
    quiet = recommend(_summary({"a": base, "b": base}, {"a": 100.0, "b": 50.0}, load=1.5))
    busy = recommend(_summary({"a": base, "b": base}, {"a": 100.0, "b": 50.0}, load=5.2))
    assert quiet["busy"] is None
    assert busy["busy"] == ("timed on a busy machine (load 5.2 on 2 cores): ratios are interleaved and hold; "
                            "absolute milliseconds are inflated.")
    assert busy["lines"][-1].startswith("Timed on a busy machine (load 5.2 on 2 cores)")


def test_old_summary_files_still_get_a_recommendation_with_the_old_name():
    old = {"variants": [{"id": "x", "n_images": 2, "n_scored": 2, "latency": {"p95_ms": 5.0},
                         "metrics": {"iou": {"mean": 0.5, "ci95": [0.4, 0.6]}}}],
           "recommendation": {"best": "x"}}
    s = Summary.from_json(old)
    assert s.recommendation["best"] == "x"  # what old readers read stays readable
    rec = recommend(s)
    assert rec["recommended"] == rec["best"] == "x" and rec["timing"]["interleaved"] is False


# --- labels-free: the floor, the reference kept, the disagreements, preference ----------------------

def test_the_floor_perturbs_by_one_grey_level_deterministically():
    img = np.full((32, 32, 3), 128, np.uint8)
    img[0, 0] = 0
    img[0, 1] = 255
    a = labelsfree.perturb(img, "sample-1")
    assert np.abs(a.astype(int) - img).max() == 1 and (a != img).mean() > 0.5  # ±1 on most pixels
    assert a[0, 0].min() >= 0 and a[0, 1].max() <= 255  # clipped, never wrapped
    assert np.array_equal(a, labelsfree.perturb(img, "sample-1"))  # a resumed run perturbs the same way
    assert not np.array_equal(a, labelsfree.perturb(img, "sample-2"))


def _labels_free(cand: list[float], floor: list[float], ms_cand: float = 400.0) -> Summary:
    return _summary({"ref": floor, "int8": cand}, {"ref": 1000.0, "int8": ms_cand}, reference="ref")


def test_labels_free_judges_agreement_against_the_floor_not_one():
    rng = np.random.default_rng(4)
    floor = list(0.975 + 0.02 * rng.random(60))  # the reference against itself under noise: not 1.0
    close = [f - 0.001 + 0.002 * (rng.random() - 0.5) for f in floor]  # as close as the noise itself
    rec = recommend(_labels_free(close, floor))
    assert rec["recommended"] == "int8" and rec["best_scoring"] == "int8"
    assert rec["floor"]["value"] == pytest.approx(np.mean(floor)) and rec["floor"]["measured"]
    assert "agreement with ref (iou)" in rec["sentence"] and "from the floor" in rec["sentence"]
    assert f"floor {np.mean(floor):.4f}: ref against itself under ±1 grey-level input noise" in rec["sentence"]
    assert rec["why_not_best"].startswith("The reference ref is not a candidate against itself")
    # far below the floor: nothing cheaper agrees, and the decision says so
    far = [f - 0.05 for f in floor]
    keep = recommend(_labels_free(far, floor))
    assert keep["recommended"] == "ref" and keep["undecided"] == []
    assert keep["sentence"].startswith("Keep the reference ref: nothing cheaper agrees with it (iou agreement "
                                       f"judged against the floor {np.mean(floor):.4f}")


def test_the_disagreement_set_and_its_preference_feed_the_decision(tmp_path):
    floor = [0.98] * 10
    cand = [0.98] * 6 + [0.90, 0.85, 0.977, 0.70]  # four images below the floor, three beyond 0.005
    s = _labels_free(cand, floor)
    folder = tmp_path / "ds" / "im"
    folder.mkdir(parents=True)
    samples = {}
    from studio.data.dataset import Sample

    for i in range(10):
        img, _ = synthetic_photo(40, 48, seed=i)
        Image.fromarray(img).save(folder / f"im{i}.png")
        samples[f"im{i}"] = Sample(f"im{i}", image_path=folder / f"im{i}.png")
    dis = find_disagreements(s, samples)
    assert [e["image"] for e in dis["images"]] == ["im9", "im7", "im6"] and dis["candidates"] == ["int8"]
    assert dis["images"][0]["gap"] == pytest.approx(0.28) and dis["of"] == 10
    assert dis["hashes"]["im9"] == samples["im9"].content_hash  # votes on the copy count for the image
    s.run["disagreements"] = dis
    rec = recommend(s)
    assert rec["recommended"] == "ref" and rec["disagreements"]["n_images"] == 3
    assert "3 images where a cheaper candidate disagrees beyond the floor: judge them blind" in rec["sentence"]
    got = labelsfree.write_arena_set(s, tmp_path / "run", samples)
    assert got["n_images"] == 3 and got["variants"] == ["ref", "int8"]
    written = sorted(p.name for p in (tmp_path / "run" / "disagreements").iterdir())
    assert written == ["im6.png", "im7.png", "im9.png"]
    from studio.arena.images import open_set

    arena = open_set(got["spec"])  # the arena opens it, and its votes land on the run's hashes
    assert len(arena.samples) == 3 and set(arena.hashes) == set(got["hashes"].values()) == \
        {dis["hashes"][i] for i in ("im6", "im7", "im9")}
    assert got["link"].startswith("http://127.0.0.1:7860/?arena_set=") and "variants=ref%2Cint8" in got["link"]
    # people judge the disagreements blind and like int8 as much as the reference there
    rec2 = recommend(_voted(s, dis, tmp_path / "tied.sqlite", ["tie"] * 90))
    assert rec2["recommended"] == "int8" and rec2["preference_basis"] == "int8"
    assert "by preference on the 3 disagreement images (90 blind votes)" in rec2["sentence"]
    # or they prefer the reference there, 80 to 10: it stays, and the sentence says so
    rec3 = recommend(_voted(s, dis, tmp_path / "ref.sqlite", ["a"] * 80 + ["b"] * 10))
    assert rec3["recommended"] == "ref" and rec3["preference_basis"] is None
    assert "Preference on the 3 disagreement images (90 votes for ref)" in rec3["sentence"]


def _voted(s: Summary, dis: dict, db_path, choices: list[str]) -> Summary:
    """The summary with `choices` (a: ref, b: int8) voted on the disagreement images."""
    import copy

    from studio.arena.db import ArenaDB, Vote
    from studio.bench.suite import attach_preference

    db = ArenaDB(db_path)
    hashes = list(dis["hashes"].values())
    for k, c in enumerate(choices):
        db.record_vote(Vote(f"v{k}", hashes[k % len(hashes)], "ref", "int8", c, float(k), "me"))
    out = copy.deepcopy(s)
    attach_preference(out, db_path=db_path)
    pref = out.run["disagreements"]["preference"]
    assert pref["int8"]["votes"] == pref["ref"]["votes"] == len(choices)
    return out


def test_eval_run_arena_prints_the_set_and_the_link(tmp_path, capsys):
    from eval.run import print_arena
    from studio.data.dataset import Sample

    s = _labels_free([0.98, 0.90, 0.70, 0.98], [0.98] * 4)
    (tmp_path / "im").mkdir()
    samples = {}
    for i in range(4):
        img, _ = synthetic_photo(40, 48, seed=i)
        Image.fromarray(img).save(tmp_path / "im" / f"im{i}.png")
        samples[f"im{i}"] = Sample(f"im{i}", image_path=tmp_path / "im" / f"im{i}.png")
    s.run["disagreements"] = find_disagreements(s, samples)
    s.config["dataset"] = str(tmp_path / "im")  # print_arena opens the run's dataset again
    print_arena(s, tmp_path / "out")
    out = capsys.readouterr().out
    assert f"Arena set: 2 disagreement images in {(tmp_path / 'out' / 'disagreements').resolve()}" in out
    assert "judge them blind (ref, int8)" in out and "http://127.0.0.1:7860/?arena_set=" in out
    assert sorted(p.name for p in (tmp_path / "out" / "disagreements").iterdir()) == ["im1.png", "im2.png"]
