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


@pytest.fixture
def page(browser, app_server):
    ctx = browser.new_context(viewport={"width": 1440, "height": 1000})
    pg = ctx.new_page()
    pg.set_default_timeout(30_000)
    pg.goto(app_server.url)
    pg.wait_for_selector("#compare-run")
    yield pg
    ctx.close()


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
