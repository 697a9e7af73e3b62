"""The arena without a browser: the game (`studio.arena.rounds`: rounds, votes, refusals) and the
tab's handlers (`studio.ui.arena`: image sets, ratings tables, CSV), and the prediction cache the
arena shares with the benchmark. Models are faked here (a disk per variant, at `compare.infer`,
the app's one way to a model) except GrabCut, where the benchmark and the arena must agree on a
real prediction."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from PIL import Image

from studio.arena import images as arena_images
from studio.arena import rounds
from studio.arena.ratings import MIN_VOTES
from studio.errors import StudioError
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
    assert set(rnd) == {"round_id", "image_name", "image_hash", "image_set", "n_images", "background", "reopened",
                        "open_rounds"}
    assert rnd["reopened"] is False and rnd["open_rounds"] == 1
    assert not any(vid in str(rnd.values()) for vid in PAIR)
    a, b = r["views"]
    assert a.shape == b.shape and a.dtype == np.uint8 and a.shape[2] == 3
    assert r["cutouts"][0].shape[2] == 4 and rnd["n_images"] == 3
    assert (a[0, 0] == 255).all()  # a corner is background: white
    ack = rounds.vote(rnd["round_id"], "A better", "voter-1")
    assert ack["recorded"] and not ack["duplicate"] and {ack["a"], ack["b"]} == set(PAIR)
    assert "was `" in h.reveal_markdown(ack)
    again = rounds.vote(rnd["round_id"], "b", "voter-1")  # a retried submit
    assert again["duplicate"] and again["choice"] == "a" and again["votes_total"] == 1
    stored = rounds.database().get_vote(rnd["round_id"])
    assert (stored.voter_id, stored.image_name, stored.background) == ("voter-1", rnd["image_name"], "white")


def test_cutouts_are_computed_once_then_served_from_the_cache(arena):
    for s in range(4):
        h.next_round("embedded", PAIR, None, None, limit=1, seed=s)
    assert sorted(arena) == sorted(PAIR)  # one image, two variants: two inferences in all


def test_votes_and_rounds_are_refused_clearly(arena):
    with pytest.raises(rounds.ArenaError, match="no round"):
        rounds.vote("", "a")
    with pytest.raises(rounds.ArenaError, match="unknown round"):
        rounds.vote("nope", "a")
    rid = h.next_round("embedded", PAIR, None, None, limit=1, seed=0)["round"]["round_id"]
    with pytest.raises(rounds.ArenaError, match="choice"):
        rounds.vote(rid, "maybe")
    with pytest.raises(rounds.ArenaError, match="at least two"):
        h.next_round("embedded", ["grabcut"])
    with pytest.raises(rounds.ArenaError, match="no such variant"):
        h.next_round("embedded", ["grabcut", "nope"])
    with pytest.raises(rounds.ArenaError, match="not installed"):
        h.next_round("embedded", ["grabcut", "u2net"])
    with pytest.raises(rounds.ArenaError, match="background"):
        h.next_round("embedded", PAIR, "purple")


def test_untrained_variants_are_refused(arena, monkeypatch):
    pretend_untrained(monkeypatch)
    with pytest.raises(rounds.ArenaError, match="untrained"):
        h.next_round("embedded", ["grabcut", "inspyrenet-fast"])
    assert "inspyrenet-fast" not in [vid for _, vid in rounds.variant_choices()]
    assert arena == []  # refused before any model ran


def test_parse_choice_aliases():
    assert [rounds.parse_choice(c) for c in ("A", "a better", "B better", "right", "Tie", "both bad", "both-bad")] == \
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

    with pytest.raises(StudioError, match="no such folder"):
        h.prepare(h.SOURCE_FOLDER, str(tmp_path / "missing"), None, None)
    with pytest.raises(UploadError, match="past benchmark run"):
        h.prepare(h.SOURCE_RUN, None, None, None)


def test_backgrounds():
    for kind in arena_images.BACKGROUNDS:
        bg = arena_images.background(kind, 30, 50)
        assert bg.shape == (30, 50, 3) and bg.dtype == np.uint8
    assert arena_images.background("white", 2, 2).min() == 255
    assert arena_images.background("black", 2, 2).max() == 0


def test_ratings_view_labels_provisional_ratings_below_the_minimum_and_csv_round_trip(arena, tmp_path):
    ids = [*PAIR, "grabcut"]
    for s in range(MIN_VOTES + 2):  # 12 votes over 3 variants: some reach the minimum, some not
        rnd = h.next_round("embedded", ids, None, "v", limit=4, seed=s)["round"]
        assert rounds.vote(rnd["round_id"], ("a", "b", "tie")[s % 3], "v")["recorded"]
    table, matrix, note = h.ratings_view(ids, n_boot=50)
    assert table["headers"][:4] == ["#", "variant", "rating", "95 % CI"]
    assert len(table["data"]) == 3 and len(matrix["data"]) == 3
    for row in table["data"]:
        shown = row[4] >= MIN_VOTES
        # ranked once it has the minimum; below it the rating shows, labelled provisional, unranked
        assert (row[0] != "") == shown and (h.PROVISIONAL in row[2]) != shown
        if not shown:
            assert row[2].split()[0].isdigit() and f"{row[4]} of {MIN_VOTES} votes" in row[2]
    assert f"{MIN_VOTES} votes" in note and h.PROVISIONAL in note
    empty, _m, _n = h.ratings_view(["isnet-general-use-int8-dynamic", "grabcut"], n_boot=10,
                                   db_path=tmp_path / "none.sqlite")
    assert [r[2] for r in empty["data"]] == ["no votes yet"] * 2  # rows, not an empty table
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
    from studio import engine

    alpha, cached = engine.cutout(load_zoo().get("grabcut"), sample.image(), sample.content_hash)
    assert cached and alpha.shape == sample.image().shape[:2]
    # the arena's own path (the app's cut-out) reads the same entry: no model runs
    def no_model(*a):
        raise AssertionError("the cached prediction should have been used")

    from studio.ui import compare

    monkeypatch.setattr(compare, "infer", no_model)
    assert np.array_equal(h.app_cutout(load_zoo().get("grabcut"), sample, sample.image()), alpha)


# --- what the arena accepts (issue 21): bounded input, one set resolver, the server's candidates,
# rounds that expire, a bounded number of open rounds per voter, imports it can vouch for --------

def test_every_string_input_is_bounded_with_a_clear_error(arena):
    db = rounds.database()
    refusals = [
        (lambda: h.next_round("embedded", PAIR, None, "v" * 65, 1), "voter id: 65 characters, at most 64"),
        (lambda: h.next_round("embedded", PAIR, None, "v" * 1_000_000, 1), "voter id: 1,000,000 characters"),
        (lambda: h.next_round("x" * 1025, PAIR, None, "v", 1), "image set: 1,025 characters, at most 1024"),
        (lambda: h.next_round("embedded", [PAIR[0], "m" * 129], None, "v", 1), "variant id: 129 characters"),
        (lambda: h.next_round("embedded", [f"m{k}" for k in range(65)], None, "v", 1), "65 named, at most 64"),
        (lambda: h.next_round("embedded", PAIR, "b" * 200, "v", 1), "background: 200 characters"),
        (lambda: h.next_round("embedded", PAIR, None, "v\x00x", 1), "control or invisible characters"),
        (lambda: h.next_round(["embedded"], PAIR, None, "v", 1), "image set: expected text"),
        (lambda: rounds.vote("r" * 129, "a", "v"), "round id: 129 characters, at most 128"),
        (lambda: rounds.vote("some-round", "a" * 33, "v"), "choice: 33 characters, at most 32"),
        (lambda: rounds.vote("some-round", "a", "v" * 65), "voter id: 65 characters, at most 64"),
    ]
    for call, message in refusals:
        with pytest.raises(StudioError, match=message):  # ArenaError, or the image set's own error
            call()
    assert arena == [] and db.count() == 0 and db.pending() == []  # nothing ran, nothing stored
    ok = h.next_round("embedded", PAIR, None, "v" * 64, 1, seed=0)  # at the bound: accepted
    assert rounds.vote(ok["round"]["round_id"], "a", "v" * 64)["recorded"]


def test_one_resolver_refuses_server_folders_on_a_hosted_app_wherever_the_spec_comes_from(arena, tmp_path,
                                                                                            monkeypatch):
    folder = tmp_path / "server-photos"
    folder.mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(folder / "p.png")
    assert h.next_round(str(folder), PAIR, None, "v", seed=0)["round"]["n_images"] == 1  # locally: fine
    monkeypatch.setenv("SPACE_ID", "test/arena")
    elsewhere = tmp_path / "elsewhere" / "summary.json"
    for spec in (str(folder), "./models", "~", "models", f"run:{elsewhere}", "upload:../../etc", "upload:zz"):
        with pytest.raises(StudioError) as via_next:  # arena_next, as a script sends it
            h.next_round(spec, PAIR, None, "v", seed=0)
        with pytest.raises(StudioError) as via_prepare:  # arena_prepare, as the tab sends it
            h.prepare(h.SOURCE_FOLDER, spec, None, None)
        assert str(via_next.value) == str(via_prepare.value), spec
        if not spec.startswith("upload:"):
            assert "hosted app" in str(via_next.value), spec
    assert h.next_round("embedded", PAIR, None, "v", seed=0)["round"]["n_images"] > 1  # the sample still works


def test_on_a_hosted_app_rounds_come_from_the_servers_candidates(arena, monkeypatch):
    """A client that asks only for [X, Y] is not obeyed: the server draws from its own set."""
    monkeypatch.setenv("SPACE_ID", "test/arena")
    monkeypatch.setenv("STUDIO_ARENA_VARIANTS", " ".join([*PAIR, "grabcut"]))
    pairs = set()
    for s in range(12):
        r = h.next_round("embedded", PAIR, None, f"v{s}", 2, seed=s)["round"]
        ack = rounds.vote(r["round_id"], "a", f"v{s}")
        pairs.add(frozenset((ack["a"], ack["b"])))
    assert any("grabcut" in p for p in pairs)  # pairs the client never asked for
    assert set().union(*pairs) == {*PAIR, "grabcut"}
    monkeypatch.delenv("SPACE_ID")
    for s in range(6):  # locally the user chooses
        r = h.next_round("embedded", PAIR, None, "local", 2, seed=s)["round"]
        ack = rounds.vote(r["round_id"], "b", "local")
        assert {ack["a"], ack["b"]} == set(PAIR)


def test_rounds_expire(arena, monkeypatch):
    monkeypatch.setenv("STUDIO_ARENA_ROUND_TTL_S", "60")
    voted = h.next_round("embedded", PAIR, None, "v", 1, seed=0)["round"]["round_id"]
    rounds.vote(voted, "a", "v")
    late = h.next_round("embedded", PAIR, None, "v", 1, seed=1)["round"]["round_id"]
    db = rounds.database()
    with db.connect() as conn:  # both drawn 90 s ago: past the 60 s a round takes votes
        conn.execute("UPDATE rounds SET created_at = created_at - 90")
    with pytest.raises(rounds.ArenaError, match="expired: it was drawn 2 min ago, and a round takes votes for 1 min"):
        rounds.vote(late, "b", "v")
    assert db.get_vote(late) is None
    assert rounds.vote(voted, "b", "v")["duplicate"]  # a retry of a vote made in time still answers
    with db.connect() as conn:  # past twice its time an unvoted round is purged by the next draw
        conn.execute("UPDATE rounds SET created_at = created_at - 60")
    h.next_round("embedded", PAIR, None, "other", 1, seed=2)
    assert db.get_round(late) is None and db.get_round(voted) is not None


def test_a_voter_holds_a_bounded_number_of_open_rounds(arena, monkeypatch):
    monkeypatch.setenv("STUDIO_ARENA_MAX_OPEN_ROUNDS", "2")
    drawn = [h.next_round("embedded", PAIR, None, "fisher", 4, seed=s)["round"] for s in range(5)]
    assert [r["reopened"] for r in drawn] == [False, False, True, True, True]
    first, second = drawn[0]["round_id"], drawn[1]["round_id"]
    assert [r["round_id"] for r in drawn[2:]] == [first] * 3  # the oldest open round, shown again
    assert drawn[2]["image_hash"] == drawn[0]["image_hash"] and drawn[2]["open_rounds"] == 2
    assert "shown again: you have 2 rounds open" in h.prompt_markdown(drawn[2])
    assert len(rounds.database().open_rounds("fisher", 3600)) == 2
    assert h.next_round("embedded", PAIR, None, "someone-else", 4, seed=0)["round"]["reopened"] is False
    rounds.vote(first, "a", "fisher")  # a vote frees a place
    fresh = h.next_round("embedded", PAIR, None, "fisher", 4, seed=9)["round"]
    assert not fresh["reopened"] and fresh["round_id"] not in (first, second)


def test_import_checks_every_row_marks_it_and_the_ratings_count_it(arena, tmp_path, monkeypatch):
    for s in range(3):
        r = h.next_round("embedded", PAIR, None, "v", 2, seed=s)["round"]
        rounds.vote(r["round_id"], "a", "v")
    path, n = h.export_votes()
    assert n == 3
    text = path.read_text()
    assert text.splitlines()[0].split(",")[-2:] == ["imported", "created_utc"]
    head, *rows = text.splitlines()
    evil = tmp_path / "evil.csv"
    made_up = rows[0].split(",")
    made_up[0], made_up[2] = "forged-1", "evil-model"  # a variant not in the zoo, on a round never served
    evil.write_text("\n".join([head, rows[1], ",".join(made_up)]) + "\n")
    other = tmp_path / "other.sqlite"
    with pytest.raises(StudioError, match="evil.csv, line 3: variant 'evil-model' is not in the zoo"):
        h.import_votes(str(evil), db_path=other)
    assert rounds.database(other).count() == 0  # nothing of a bad file is kept
    assert h.import_votes(str(path), db_path=other) == (3, 0)
    assert rounds.database(other).count(imported=True) == 3
    _table, _matrix, note = h.ratings_view(PAIR, n_boot=20, db_path=other)
    assert "3 votes on all images between these variants, 3 of them imported from a CSV" in note
    _table, _matrix, note = h.ratings_view(PAIR, n_boot=20)
    assert ", none imported" in note
    monkeypatch.setenv("SPACE_ID", "test/arena")
    with pytest.raises(rounds.ArenaError, match="importing votes is off on the hosted app"):
        h.import_votes(str(path), db_path=tmp_path / "hosted.sqlite")
