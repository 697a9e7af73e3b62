"""The Arena through the real app's API (`python app.py` in a subprocess, gradio_client):
rounds and votes are scriptable, retries count once, four clients vote at once."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytestmark = pytest.mark.slow

VARIANTS = ["grabcut", "isnet-general-use"]


@pytest.fixture(scope="module")
def arena_app(tmp_path_factory, isnet_weights):
    from studio.ui.serve import running_app

    d = tmp_path_factory.mktemp("arena")
    db = d / "votes.sqlite"
    with running_app(env={"STUDIO_RESULTS": str(d / "results"), "STUDIO_ARENA_DB": str(db)},
                     timeout=300) as server:  # a loaded shared machine can take minutes
        server.db = db
        yield server


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
