"""The Arena through the real app's API (`python app.py` in a subprocess, gradio_client):
rounds and votes are scriptable, retries count once, four clients vote at once."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytestmark = pytest.mark.slow

VARIANTS = ["grabcut", "isnet-general-use"]


@pytest.fixture(scope="module")
def arena_app(app_server):
    """The session's app (tests/conftest.py), with its own votes file at `.db`."""
    return app_server


def _client(url):
    from gradio_client import Client

    return Client(url, verbose=False)


def _next(c, voter="t"):
    return c.predict("embedded", VARIANTS, "checkerboard", voter, 1, api_name="/arena_next")


def test_next_and_vote_over_the_api(arena_app):
    from PIL import Image

    from studio.arena.db import ArenaDB

    c = _client(arena_app.url)
    rnd, view_a, view_b, cut_a, cut_b, prompt, voter, round_id = _next(c, "")
    assert voter.startswith("anon-") and round_id == rnd["round_id"]
    assert not any(v in str(rnd) or v in prompt for v in VARIANTS)  # blind until the vote
    with Image.open(cut_a) as a, Image.open(view_b) as vb:
        assert a.mode == "RGBA" and vb.size == a.size
    reveal, ack = c.predict(round_id, "A better", voter, api_name="/arena_vote")
    assert ack["recorded"] and {ack["a"], ack["b"]} == set(VARIANTS)
    assert ack["a"] in reveal and ack["b"] in reveal
    _, again = c.predict(round_id, "b", voter, api_name="/arena_vote")
    assert again["duplicate"] and again["choice"] == "a"
    assert ArenaDB(arena_app.db).get_vote(round_id).voter_id == voter


def test_errors_reach_the_client_as_messages(arena_app):
    from gradio_client.exceptions import AppError

    c = _client(arena_app.url)
    with pytest.raises(AppError, match="unknown round"):
        c.predict("no-such-round", "a", "t", api_name="/arena_vote")
    with pytest.raises(AppError, match="at least two"):
        c.predict("embedded", ["grabcut"], "checkerboard", "t", 1, api_name="/arena_next")


def test_four_clients_at_once_lose_no_vote_and_count_none_twice(arena_app):
    from studio.arena.db import ArenaDB

    db = ArenaDB(arena_app.db)
    before = db.count()
    sent: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def voter(k: int) -> None:
        c = _client(arena_app.url)
        rng = np.random.default_rng(k)
        try:
            for _ in range(6):
                rid = _next(c, f"v{k}")[7]
                choice = ["a", "b", "tie", "both_bad"][int(rng.integers(4))]
                c.predict(rid, choice, f"v{k}", api_name="/arena_vote")
                c.predict(rid, choice, f"v{k}", api_name="/arena_vote")  # every vote retried once
                with lock:
                    sent.append(rid)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=voter, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ids = [v.vote_id for v in db.votes()]
    assert db.count() - before == len(sent) == 24
    assert len(ids) == len(set(ids)) and set(sent) <= set(ids)
    reveal_table = _client(arena_app.url).predict(VARIANTS, "embedded", False, 1, api_name="/arena_ratings")
    assert len(reveal_table[0]["data"]) == 2


# --- the attacks of issue 21 that came through the API, sent again -------------------------------

def test_oversized_strings_are_refused_over_the_api_and_nothing_is_stored(arena_app):
    from gradio_client.exceptions import AppError

    from studio.arena.db import ArenaDB

    db = ArenaDB(arena_app.db)
    before, rounds_before = db.count(), len(db.pending())
    c = _client(arena_app.url)
    with pytest.raises(AppError, match="voter id: 5,000,000 characters, at most 64"):
        _next(c, "v" * 5_000_000)
    rid = _next(c, "fair")[7]
    with pytest.raises(AppError, match="voter id: 1,000,000 characters, at most 64"):
        c.predict(rid, "a", "v" * 1_000_000, api_name="/arena_vote")
    with pytest.raises(AppError, match="round id: 129 characters"):
        c.predict("r" * 129, "a", "fair", api_name="/arena_vote")
    assert db.count() == before and len(db.pending()) == rounds_before + 1  # only the fair round
    assert c.predict(rid, "a", "fair", api_name="/arena_vote")[1]["recorded"]


def _made_up_csv(path, n: int = 100):
    """The attack's file: votes for a variant not in the zoo, on rounds never served."""
    head = "vote_id,image_hash,variant_a,variant_b,choice,created_at,voter_id\n"
    path.write_text(head + "".join(f"forged-{k},{k:064x},evil-model,grabcut,a,1.0,bot\n" for k in range(n)))
    return path


def test_a_made_up_csv_is_refused_by_the_local_app(arena_app, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from studio.arena.db import ArenaDB

    before = ArenaDB(arena_app.db).count()
    with pytest.raises(AppError, match="line 2: variant 'evil-model' is not in the zoo"):
        _client(arena_app.url).predict(handle_file(str(_made_up_csv(tmp_path / "votes.csv"))),
                                       api_name="/arena_import")
    assert ArenaDB(arena_app.db).count() == before


@pytest.fixture(scope="module")
def hosted_app(tmp_path_factory, isnet_weights):
    """The app as a hosted one (SPACE_ID set; STUDIO_ARENA_VARIANTS, the server's three
    candidates), served from this process on a free port, so its handlers read the environment
    set here. The models are a disk per variant (at `compare.infer`): the attacks are on the API."""
    from types import SimpleNamespace

    from studio.matte import Matte
    from studio.procs import free_port
    from studio.ui import build_app, compare, launch_kwargs

    def disk(variant_id, image):
        hgt, wid = image.shape[:2]
        yy, xx = np.mgrid[0:hgt, 0:wid]
        r = 0.2 + 0.05 * (sum(map(ord, variant_id)) % 5)
        alpha = (((yy - hgt / 2) / hgt) ** 2 + ((xx - wid / 2) / wid) ** 2 < r * r).astype(np.float32)
        return Matte(alpha, variant_id, {"inference": 0.01}), 0.0, False

    d = tmp_path_factory.mktemp("hosted")
    folder = d / "server-photos"
    folder.mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(folder / "p.png")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPACE_ID", "test/matting-studio")
        mp.setenv("STUDIO_ARENA_VARIANTS", "grabcut isnet-general-use isnet-general-use-fp16")
        mp.setenv("STUDIO_ARENA_DB", str(d / "votes.sqlite"))
        mp.setenv("STUDIO_RESULTS", str(d / "results"))
        mp.setattr(compare, "infer", disk)
        demo = build_app()
        port = free_port()
        demo.launch(**launch_kwargs(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                                    quiet=True))
        try:
            yield SimpleNamespace(url=f"http://127.0.0.1:{port}/", db=d / "votes.sqlite", folder=folder)
        finally:
            demo.close()


def test_hosted_import_is_off(hosted_app, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from studio.arena.db import ArenaDB

    with pytest.raises(AppError, match="importing votes is off on the hosted app"):
        _client(hosted_app.url).predict(handle_file(str(_made_up_csv(tmp_path / "votes.csv"))),
                                        api_name="/arena_import")
    assert ArenaDB(hosted_app.db).count() == 0


def test_hosted_arena_next_refuses_a_server_folder_as_arena_prepare_does(hosted_app):
    from gradio_client.exceptions import AppError

    from studio.arena.db import ArenaDB

    c = _client(hosted_app.url)
    with pytest.raises(AppError) as via_next:
        c.predict(str(hosted_app.folder), VARIANTS, "checkerboard", "t", 1, api_name="/arena_next")
    with pytest.raises(AppError) as via_prepare:
        c.predict("Catalogue dataset / folder", str(hosted_app.folder), None, None, 1, api_name="/arena_prepare")
    assert "on the hosted app, images come from the catalogue or an uploaded zip" in str(via_next.value)
    assert str(via_next.value) == str(via_prepare.value)
    assert ArenaDB(hosted_app.db).pending() == []  # no round was served


def test_a_hosted_client_cannot_choose_the_candidates(hosted_app):
    """The stuffing attack: ask only for pairs of [X, Y]. The hosted server draws from its own
    three candidates, so rounds come with pairs the client never asked for."""
    c = _client(hosted_app.url)
    seen = set()
    for k in range(9):
        rid = c.predict("embedded", ["grabcut", "isnet-general-use"], "checkerboard", f"s{k}", 1,
                        api_name="/arena_next")[7]
        ack = c.predict(rid, "a", f"s{k}", api_name="/arena_vote")[1]
        seen.add(frozenset((ack["a"], ack["b"])))
    assert any("isnet-general-use-fp16" in pair for pair in seen), seen
