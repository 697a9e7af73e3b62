"""Browser fixtures: Debian's Chromium, once per session, on the session's app server
(`app_server` in tests/conftest.py: `python app.py` in a subprocess, shared with the client tests).

Never downloads a browser: without /usr/bin/chromium these tests skip, with the reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"needs Debian's Chromium at {CHROMIUM} (apt-get install chromium); not downloading one")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("needs the python playwright package")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def open_page(browser, url: str, viewport: dict, dark: bool = False, timeout_ms: int = 60_000):
    """(context, page): a fresh context of the session's browser on the app, its page up."""
    ctx = browser.new_context(viewport=viewport)
    pg = ctx.new_page()
    pg.set_default_timeout(timeout_ms)
    pg.goto(url.rstrip("/") + "/" + ("?__theme=dark" if dark else ""))
    pg.wait_for_selector("#compare-run")
    return ctx, pg


@pytest.fixture
def page(browser, app_server):
    ctx, pg = open_page(browser, app_server.url, {"width": 1440, "height": 1000}, timeout_ms=30_000)
    yield pg
    ctx.close()


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory) -> Path:
    """A dataset folder (im/ + gt/) of four small synthetic photos (tests.conftest.make_folder):
    for runs whose assertions are about the page, not about a model's numbers on real photos."""
    from tests.conftest import make_folder

    return make_folder(tmp_path_factory.mktemp("small-dataset"), n=4)


@pytest.fixture(scope="session")
def small_dataset_zip(small_dataset) -> Path:
    """`small_dataset` as the zip a user uploads (im/ and gt/ at its top)."""
    import zipfile

    z = small_dataset.parent / "small-dataset.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in sorted(small_dataset.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(small_dataset).as_posix())
    return z


def keep_only_tokens(page, selector: str, keep) -> list[str]:
    """Remove every chosen token of a multiselect whose label `keep(label)` refuses; returns the
    ids (first word of each label) left."""
    box = page.locator(selector)
    for label in box.locator(".token").all_inner_texts():
        if not keep(label):
            box.locator(".token", has_text=label).locator(".token-remove").first.click()
    return [label.split()[0] for label in box.locator(".token").all_inner_texts()]


def pick_first_sample(page) -> None:
    """Compare tab: choose the first embedded sample, and wait for its image and mask."""
    page.click("#sample-picker input")
    page.get_by_role("option").first.click()
    page.wait_for_selector("#compare-image img")
    page.wait_for_selector("#compare-reference img")


def compare_only(page, variant_id: str) -> None:
    """Compare tab: tick `variant_id` alone among the visible family checkboxes."""
    for box in page.locator(".family-group input[type=checkbox]").all():
        name = box.evaluate("e => e.closest('label')?.innerText.trim() || ''")
        if box.is_visible() and box.is_checked() != (name == variant_id):
            box.click()


def wait_for_compare_done(page, timeout_ms: int) -> None:
    page.wait_for_function(
        "() => (document.querySelector('#compare-status')?.innerText || '').includes('Done')", timeout=timeout_ms)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def wait_for_benchmark(page, timeout_ms: int) -> None:
    """Wait until a Benchmark run has rendered: its recommendation (or the lack of one) and the plot."""
    page.wait_for_function(
        "() => /Recommended|No recommendation/.test(document.querySelector('#recommendation')?.innerText || '')",
        timeout=timeout_ms)
    page.wait_for_selector("#bench-plot .js-plotly-plot")
