"""Screenshots of the app's three tabs, for the README and reviews (not a test).

    python tests/browser/make_screenshots.py [--images 6] [--out artifacts]

Starts `python app.py`, then in Debian's Chromium: picks an embedded-sample image (with its
reference) and compares every installed model; runs the benchmark on the embedded sample with
every installed model; shows the zoo. Results go to a temporary results folder.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from studio.ui.serve import running_app  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, wait_for_benchmark  # noqa: E402

SAMPLE = "24_bouquet"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=6, help="benchmark images (embedded sample)")
    ap.add_argument("--price", type=float, default=0.9, help="$/hour for the cost figure")
    ap.add_argument("--out", type=Path, default=ROOT / "artifacts")
    a = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    a.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as results, running_app(env={"STUDIO_RESULTS": results}) as srv, \
            sync_playwright() as p:
        print(f"app served in {srv.seconds_to_200:.2f} s at {srv.url}")
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(srv.url)
        page.wait_for_selector("#compare-run")

        page.click("#sample-picker input")
        page.get_by_role("option", name=SAMPLE).click()
        page.wait_for_selector("#compare-image img")
        page.wait_for_selector("#compare-reference img")
        page.click("#compare-run")
        page.wait_for_function("() => (document.querySelector('#compare-status')?.innerText || '').includes('Done')",
                               timeout=1_800_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(a.out / "app_compare.png"), full_page=True)
        print("compare:", page.inner_text("#compare-status").splitlines()[0])

        page.get_by_role("tab", name="Benchmark").click()
        page.fill("#bench-limit input", str(a.images))
        page.fill("#bench-price input", str(a.price))
        page.click("#bench-run")
        wait_for_benchmark(page, 3_600_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(a.out / "app_benchmark.png"), full_page=True)
        print("benchmark:", page.inner_text("#recommendation").splitlines()[0])

        page.get_by_role("tab", name="Models").click()
        page.wait_for_selector("#zoo-table")
        page.wait_for_timeout(800)
        page.screenshot(path=str(a.out / "app_models.png"), full_page=True)
        browser.close()
    print(f"screenshots in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
