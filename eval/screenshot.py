"""Screenshot a report or page in Debian's headless Chromium (Playwright drives it).

    python eval/screenshot.py eval/results/latest/report.html artifacts/report.png [--width 1400]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def screenshot(target: str, out: Path, width: int = 1400, full_page: bool = True, wait_ms: int = 1500) -> Path:
    from playwright.sync_api import sync_playwright

    url = target if "://" in target else Path(target).resolve().as_uri()
    out.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.goto(url, wait_until="load")
        page.wait_for_timeout(wait_ms)  # let plotly draw
        page.screenshot(path=str(out), full_page=full_page)
        browser.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", help="an HTML file or a URL")
    ap.add_argument("out", type=Path)
    ap.add_argument("--width", type=int, default=1400)
    a = ap.parse_args()
    print(screenshot(a.target, a.out, a.width))
    return 0


if __name__ == "__main__":
    sys.exit(main())
