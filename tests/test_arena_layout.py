"""The Arena tab as built: its API endpoints, their queues, and the ids the keyboard script uses."""

from __future__ import annotations

import pytest

gr = pytest.importorskip("gradio")


@pytest.fixture(scope="module")
def demo():
    from studio.ui import build_app

    return build_app()


def test_arena_endpoints_and_their_queues(demo):
    by_name = {fn.api_name: fn for fn in demo.fns.values()}
    nxt, vote = by_name["arena_next"], by_name["arena_vote"]
    assert nxt.concurrency_id == "inference" and nxt.concurrency_limit == 1  # may run a model
    assert vote.concurrency_id == "arena_votes" and vote.concurrency_limit == 4  # writes only
    assert [c.label for c in vote.inputs] == ["round id", "choice", "voter id"]
    assert [c.label for c in nxt.inputs][0] == "image set"
    assert {"arena_prepare", "arena_ratings", "arena_export", "arena_import"} <= set(by_name)
    # every event that may run a model waits for the one inference slot
    for fn in demo.fns.values():
        if fn.fn is not None and getattr(fn.fn, "__name__", "") == "arena_next":
            assert fn.concurrency_id == "inference"


def test_keyboard_targets_exist(demo):
    from studio.ui.arena_blocks import BUTTONS, KEYS_JS

    ids = {b.elem_id for b in demo.blocks.values() if isinstance(b, gr.Button)}
    assert set(BUTTONS.values()) <= ids
    assert all(f"'{i}'" in KEYS_JS for i in BUTTONS.values())
