"""The Arena tab in Debian's Chromium: a round, a vote by keyboard, the names revealed."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_arena_round_and_keyboard_vote(isnet_weights, page):
    page.get_by_role("tab", name="Arena").click()
    page.fill("#arena-limit input", "1")
    page.click("#arena-start")
    page.wait_for_function("() => (document.querySelector('#arena-prompt')?.innerText || '').includes('Which')",
                           timeout=300_000)
    page.wait_for_selector("#arena-view-a img")
    page.wait_for_selector("#arena-view-b img")
    prompt = page.inner_text("#arena-prompt")
    page.locator("body").press("x")  # both bad
    page.wait_for_function("() => (document.querySelector('#arena-reveal')?.innerText || '').includes('was')",
                           timeout=300_000)
    reveal = page.inner_text("#arena-reveal")
    assert "Both bad" in reveal and "A was" in reveal and "B was" in reveal
    assert "isnet" not in prompt and "grabcut" not in prompt  # blind before the vote
    # typing in a field does not vote
    page.fill("#arena-limit input", "1")
    page.locator("#arena-limit input").press("a")
    page.wait_for_timeout(500)
    assert page.inner_text("#arena-reveal") == reveal
