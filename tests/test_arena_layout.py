"""The Arena tab as built: its API endpoints, their queues, and the ids the keyboard script uses."""

from __future__ import annotations

import pytest

gr = pytest.importorskip("gradio")


def test_arena_endpoints_and_their_queues(demo):
    by_name = {fn.api_name: fn for fn in demo.fns.values()}
    nxt, vote = by_name["arena_next"], by_name["arena_vote"]
    assert nxt.concurrency_id == "inference" and nxt.concurrency_limit == 1  # may run a model
    assert vote.concurrency_id == "arena_votes" and vote.concurrency_limit == 4  # writes only
    assert [c.label for c in vote.inputs] == ["round id", "choice", "voter id"]
    assert [c.label for c in nxt.inputs][0] == "image set"
    assert {"arena_prepare", "arena_ratings", "arena_export", "arena_import"} <= set(by_name)


def test_the_pages_own_draws_wait_for_the_inference_slot_too(demo):
    """Not only the API: Start, each of the four vote buttons and the Benchmark card's "Judge the
    disagreements blind" chain a private arena_next, which may run a model, so each waits for the
    one inference slot."""
    draws = [fn for fn in demo.fns.values() if getattr(fn.fn, "__name__", "") == "arena_next"]
    private = [fn for fn in draws if fn.api_name != "arena_next"]
    assert len(draws) == 7 and len(private) == 6
    assert {(fn.concurrency_id, fn.concurrency_limit) for fn in draws} == {("inference", 1)}


def test_keyboard_targets_exist_and_the_help_is_made_from_the_same_keys(demo):
    import json
    import re

    from studio.ui.arena_blocks import BUTTONS, KEYS, KEYS_JS, keys_help

    ids = {b.elem_id for b in demo.blocks.values() if isinstance(b, gr.Button)}
    assert set(BUTTONS.values()) <= ids
    keymap = json.loads(re.search(r"const keys = (\{.*?\});", KEYS_JS).group(1))
    assert set(keymap.values()) == set(BUTTONS.values())
    helped = {}
    for choice, kbds in re.findall(r'data-vote="(\w+)">(.*?)</span>', keys_help()):
        helped[choice] = re.findall(r"<kbd>(.*?)</kbd>", kbds)
    assert helped == {c: list(k) for c, k in KEYS.items()}
    names = {"←": "arrowleft", "→": "arrowright"}
    for choice, kbds in helped.items():  # every key the help names presses the button it says
        for k in kbds:
            assert keymap[names.get(k, k.lower())] == BUTTONS[choice], (choice, k)
    assert len(keymap) == sum(len(k) for k in KEYS.values())  # and no key the help leaves out


def test_the_ratings_load_when_the_tab_opens(demo):
    """Opening the Arena tab fills the ratings (provisional ones labelled), before any vote."""
    tab = next(b for b in demo.blocks.values() if isinstance(b, gr.Tab) and b.id == "arena")
    on_select = {i for i, fn in demo.fns.items() if (tab._id, "select") in [tuple(t) for t in fn.targets]}
    assert on_select, "nothing runs when the Arena tab opens"
    after = [fn for fn in demo.fns.values() if fn.name == "arena_ratings" and fn.trigger_after in on_select]
    assert after, "the ratings do not follow the tab opening"


def test_on_a_hosted_app_the_server_picks_the_models_and_import_is_hidden(monkeypatch):
    """SPACE_ID set: the model picker shows the server's candidates and cannot be changed, and
    the CSV import controls are not on the page (the handler refuses it too)."""
    from studio.arena import rounds
    from studio.ui import build_app

    monkeypatch.setenv("SPACE_ID", "test/arena")
    monkeypatch.setenv("STUDIO_ARENA_VARIANTS", "grabcut isnet-general-use")
    demo = build_app()
    blocks = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    picker = blocks["arena-variants"]
    assert picker.interactive is False and picker.value == ["grabcut", "isnet-general-use"]
    assert rounds.server_candidates() == ["grabcut", "isnet-general-use"]
    assert blocks["arena-import"].visible is False
    monkeypatch.delenv("SPACE_ID")
    local = {b.elem_id: b for b in build_app().blocks.values() if getattr(b, "elem_id", None)}
    assert local["arena-variants"].interactive is not False and local["arena-import"].visible is True


def test_the_public_endpoints_keep_their_names(demo):
    """Private chains of the same handlers (tab open, votes) must not take the API's names."""
    by_name = {fn.api_name: fn for fn in demo.fns.values()}
    for name in ("arena_next", "arena_vote", "arena_ratings", "arena_prepare"):
        assert name in by_name and by_name[name].api_visibility != "private", name
