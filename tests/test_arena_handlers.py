"""The Arena tab's handlers without a browser: rounds, votes, refusals, image sets, the shared
prediction cache, ratings and CSV. Models are faked here (a disk per variant) except GrabCut
where the benchmark and the arena must agree on a real prediction."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from PIL import Image

from studio.arena import images as arena_images
from studio.arena.ratings import MIN_VOTES
from studio.matte import Matte
from studio.ui import arena as h
from studio.ui.uploads import UploadError
from tests.conftest import pretend_untrained

PAIR = ["isnet-general-use", "isnet-general-use-fp16"]


@pytest.fixture
def arena(tmp_path, monkeypatch, isnet_weights):
    """Its own results folder (cache) and votes file; models replaced by a disk whose radius
    depends on the variant, counting the calls."""
    monkeypatch.setenv("STUDIO_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("STUDIO_ARENA_DB", str(tmp_path / "votes.sqlite"))
    calls: list[str] = []

    def fake_infer(variant_id: str, image: np.ndarray):
        calls.append(variant_id)
        hgt, wid = image.shape[:2]
        yy, xx = np.mgrid[0:hgt, 0:wid]
        r = 0.2 + 0.05 * (sum(map(ord, variant_id)) % 5)
        alpha = (((yy - hgt / 2) / hgt) ** 2 + ((xx - wid / 2) / wid) ** 2 < r * r).astype(np.float32)
        return Matte(alpha, variant_id, {"inference": 0.01}), 0.0, False

    from studio.ui import compare

    monkeypatch.setattr(compare, "infer", fake_infer)
    return calls


def test_a_round_hides_the_variants_and_the_vote_reveals_them(arena):
    r = h.next_round("embedded", PAIR, "white", "voter-1", limit=3, seed=1)
    rnd = r["round"]
    assert set(rnd) == {"round_id", "image_name", "image_hash", "image_set", "n_images", "background"}
    assert not any(vid in str(rnd.values()) for vid in PAIR)
    a, b = r["views"]
    assert a.shape == b.shape and a.dtype == np.uint8 and a.shape[2] == 3
    assert r["cutouts"][0].shape[2] == 4 and rnd["n_images"] == 3
    assert (a[0, 0] == 255).all()  # a corner is background: white
    ack = h.vote(rnd["round_id"], "A better", "voter-1")
    assert ack["recorded"] and not ack["duplicate"] and {ack["a"], ack["b"]} == set(PAIR)
    assert "was `" in h.reveal_markdown(ack)
    again = h.vote(rnd["round_id"], "b", "voter-1")  # a retried submit
    assert again["duplicate"] and again["choice"] == "a" and again["votes_total"] == 1
    stored = h.database().get_vote(rnd["round_id"])
    assert (stored.voter_id, stored.image_name, stored.background) == ("voter-1", rnd["image_name"], "white")


def test_cutouts_are_computed_once_then_served_from_the_cache(arena):
    for s in range(4):
        h.next_round("embedded", PAIR, None, None, limit=1, seed=s)
    assert sorted(arena) == sorted(PAIR)  # one image, two variants: two inferences in all


def test_votes_and_rounds_are_refused_clearly(arena):
    with pytest.raises(h.ArenaError, match="no round"):
        h.vote("", "a")
    with pytest.raises(h.ArenaError, match="unknown round"):
        h.vote("nope", "a")
    rid = h.next_round("embedded", PAIR, None, None, limit=1, seed=0)["round"]["round_id"]
    with pytest.raises(h.ArenaError, match="choice"):
        h.vote(rid, "maybe")
    with pytest.raises(h.ArenaError, match="at least two"):
        h.next_round("embedded", ["grabcut"])
    with pytest.raises(h.ArenaError, match="no such variant"):
        h.next_round("embedded", ["grabcut", "nope"])
    with pytest.raises(h.ArenaError, match="not installed"):
        h.next_round("embedded", ["grabcut", "u2net"])
    with pytest.raises(h.ArenaError, match="background"):
        h.next_round("embedded", PAIR, "purple")


def test_untrained_variants_are_refused(arena, monkeypatch):
    pretend_untrained(monkeypatch)
    with pytest.raises(h.ArenaError, match="untrained"):
        h.next_round("embedded", ["grabcut", "inspyrenet-fast"])
    assert "inspyrenet-fast" not in [vid for _, vid in h.variant_choices()]
    assert arena == []  # refused before any model ran


def test_parse_choice_aliases():
    assert [h.parse_choice(c) for c in ("A", "a better", "B better", "right", "Tie", "both bad", "both-bad")] == \
        ["a", "a", "b", "b", "tie", "both_bad", "both_bad"]


def test_image_sets_folder_without_masks_zip_and_past_run(arena, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(folder / f"p{k}.png")
    Image.open(folder / "p0.png").save(folder / "copy_of_p0.png")  # same content: one image
    spec, note = h.prepare(h.SOURCE_FOLDER, str(folder), None, None)
    assert spec == str(folder.resolve()) and "3 images" in note
    r = h.next_round(spec, PAIR, "black", None, seed=0)
    assert r["round"]["image_name"].startswith(("p", "copy"))

    z = tmp_path / "photos.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for k in range(2):
            zf.write(folder / f"p{k}.png", f"trip/p{k}.png")  # one top folder, images only
    spec, note = h.prepare(h.SOURCE_ZIP, None, str(z), None)
    assert spec.startswith(arena_images.UPLOAD_PREFIX) and "2 images" in note
    assert h.prepare(h.SOURCE_ZIP, None, str(z), None)[0] == spec  # the same zip: extracted once
    h.next_round(spec, PAIR, "photo", None, seed=0)

    run = tmp_path / "results" / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "summary.json").write_text('{"config": {"dataset": null, "limit": 2, "seed": 0}, '
                                      '"dataset": {"name": "embedded", "n_images": 2}}')
    runs = arena_images.past_runs()
    assert runs and runs[0][1] == arena_images.RUN_PREFIX + str(run / "summary.json")
    spec, note = h.prepare(h.SOURCE_RUN, None, None, runs[0][1])
    assert "2 images" in note

    with pytest.raises(UploadError, match="no such folder"):
        h.prepare(h.SOURCE_FOLDER, str(tmp_path / "missing"), None, None)
    with pytest.raises(UploadError, match="past benchmark run"):
        h.prepare(h.SOURCE_RUN, None, None, None)


def test_backgrounds():
    for kind in arena_images.BACKGROUNDS:
        bg = arena_images.background(kind, 30, 50)
        assert bg.shape == (30, 50, 3) and bg.dtype == np.uint8
    assert arena_images.background("white", 2, 2).min() == 255
    assert arena_images.background("black", 2, 2).max() == 0


def test_ratings_view_greys_below_the_minimum_and_csv_round_trip(arena, tmp_path):
    ids = [*PAIR, "grabcut"]
    for s in range(MIN_VOTES + 2):  # 12 votes over 3 variants: some reach the minimum, some not
        rnd = h.next_round("embedded", ids, None, "v", limit=4, seed=s)["round"]
        assert h.vote(rnd["round_id"], ("a", "b", "tie")[s % 3], "v")["recorded"]
    table, matrix, note = h.ratings_view(ids, n_boot=50)
    assert table["headers"][:4] == ["#", "variant", "rating", "95 % CI"]
    assert len(table["data"]) == 3 and len(matrix["data"]) == 3
    for row in table["data"]:
        shown = row[4] >= MIN_VOTES
        assert (row[0] != "") == shown and (row[2].startswith("needs") != shown)
    assert f"{MIN_VOTES} votes" in note
    path, n = h.export_votes()
    assert n == MIN_VOTES + 2 and path.is_file()
    other = tmp_path / "other.sqlite"
    assert h.import_votes(str(path), db_path=other) == (n, 0)
    assert h.import_votes(str(path), db_path=other) == (0, n)


def test_the_arena_and_the_benchmark_share_predictions(tmp_path, monkeypatch):
    """A benchmark run's cached GrabCut mattes are what the arena shows, not recomputed."""
    monkeypatch.setenv("STUDIO_RESULTS", str(tmp_path / "results"))
    from studio.bench.config import SuiteConfig
    from studio.bench.suite import run_suite
    from studio.data import open_dataset
    from studio.zoo import load_zoo

    run_suite(SuiteConfig(models=["grabcut"], limit=1, cold_start=False, warmup=0, out=tmp_path / "run"),
              show_bars=False, n_boot=10)
    sample = open_dataset(None, limit=1)[0]
    alpha, cached = h.cutout_alpha(load_zoo().get("grabcut"), sample)
    assert cached and alpha.shape == sample.image().shape[:2]
