"""Screenshots of every tab at 1440×900 and 390×844, light and dark, for the README and reviews
(not a test). They go to docs/screenshots/ as small, palette-quantised PNGs.

    python tests/browser/make_screenshots.py [--images 6] [--out docs/screenshots] [--url URL]

Starts `python app.py` (a temporary results folder and votes file; `--url` uses a running app
instead), then in Debian's Chromium, in a light page and then a dark one (`?__theme=dark`):
- Compare: an embedded-sample image with its mask, a few models (`--compare-models`), the
  slider set to model against model;
- Benchmark: the embedded sample (`--images`, `--bench-models`, $0.9/h) run once in the light
  page (a shot mid-run, scrolled down, shows the sticky progress line), opened from the past
  runs in the dark one; plus a full-page shot of the card, table, plot and drill-down;
- Models: the zoo;
- Arena: a few keyboard votes on the embedded sample, then the next pair and the ratings.
Each page is shot at 1440×900, then resized to 390×844 and shot again. Latencies are from
whatever machine runs it (a shared 2-core CPU here).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from studio.launch import running_app  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, wait_for_benchmark  # noqa: E402

SAMPLE = "24_bouquet"
# the prompt names another round than `r` (its text also changes while the next pair loads)
NEXT_ROUND = ("r => { const m = (document.querySelector('#arena-prompt')?.innerText || '')"
              ".match(/round ([0-9a-f]{8})/); return !!m && m[1] !== r; }")
SIZES = {"1440": (1440, 900), "390": (390, 844)}
COMPARE_MODELS = ["isnet-general-use", "isnet-general-use-int8-static", "grabcut"]
BENCH_MODELS = ["isnet-general-use", "isnet-general-use-int8-static", "isnet-general-use-cpu", "grabcut"]
ARENA_MODELS = ["isnet-general-use-int8-static", "isnet-general-use-cpu", "grabcut"]


def save_small(png: bytes, path: Path, colors: int = 256) -> int:
    """A screenshot as a palette PNG (what makes a UI shot 3-5× smaller); returns its bytes."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    img = img.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    img.save(path, optimize=True)
    return path.stat().st_size


def shoot(page, out: Path, name: str, full_page: bool = False) -> None:
    n = save_small(page.screenshot(full_page=full_page), out / name)
    print(f"  {name}: {n / 1024:.0f} KiB")


def keep_only(page, picker: str, keep: list[str]) -> None:
    """Remove every token of a multiselect dropdown whose id is not in `keep`."""
    box = page.locator(picker)
    for label in box.locator(".token").all_inner_texts():
        if label.split("  ·  ")[0].strip() not in keep:
            box.locator(".token", has_text=label).locator(".token-remove").first.click()


def tick_only(page, keep: list[str]) -> None:
    """The Compare tab's family pickers: exactly the `keep` models ticked."""
    for box in page.locator(".family-group input[type=checkbox]").all():
        name = box.evaluate("e => e.closest('label')?.innerText.trim() || ''")
        want = name.split("  ·  ")[0] in keep
        if box.is_visible() and box.is_checked() != want:
            box.click()


def top(page) -> None:
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(400)


def tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()
    page.wait_for_timeout(800)


def both_sizes(page, out: Path, stem: str, theme: str, at: str | None = None, phone_at: str | None = None) -> None:
    """The page at 1440×900, then at 390×844, shot each time (scrolled to `at`, or on the phone to
    `phone_at`, when given: the columns stack there, so the results come after the inputs)."""
    for size, (w, h) in SIZES.items():
        page.set_viewport_size({"width": w, "height": h})
        page.wait_for_timeout(900)
        top(page)
        where = phone_at if size == "390" and phone_at else at
        if where:
            page.locator(where).first.evaluate("e => e.scrollIntoView({block: 'start'})")
            page.evaluate("window.scrollBy(0, -70)")  # below the sticky bar
            page.wait_for_timeout(300)
        shoot(page, out, f"app_{stem}_{size}_{theme}.png")
    page.set_viewport_size({"width": 1440, "height": 900})


def compare(page, out: Path, theme: str, models: list[str]) -> None:
    tab(page, "Compare")
    page.click("#sample-picker input")
    page.get_by_role("option", name=SAMPLE).click()
    page.wait_for_selector("#compare-image img")
    page.wait_for_selector("#compare-reference img")
    tick_only(page, models)
    page.click("#compare-run")
    page.wait_for_function("() => (document.querySelector('#compare-status')?.innerText || '').includes('Done')",
                           timeout=1_800_000)
    # the slider: one model against another
    page.click("#slider-left input")
    page.get_by_role("option", name=models[-1], exact=True).click()
    page.wait_for_timeout(1200)
    print("compare:", page.inner_text("#compare-status").splitlines()[0])
    both_sizes(page, out, "compare", theme, phone_at="#compare-table")


def benchmark(page, out: Path, theme: str, models: list[str], images: int, run: bool) -> None:
    tab(page, "Benchmark")
    if run:
        keep_only(page, "#bench-variants", models)
        page.fill("#bench-limit input", str(images))
        page.fill("#bench-price input", "0.9")
        page.click("#bench-run")
        # mid-run, scrolled far down: the progress line is still in view (sticky)
        page.wait_for_function("() => /left|image|loading/.test(document.querySelector('#bench-status')?.innerText"
                               " || '')", timeout=600_000)
        page.wait_for_function("() => /left \\(from/.test(document.querySelector('#bench-status')?.innerText || '')",
                               timeout=900_000)
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        page.wait_for_timeout(600)
        shoot(page, out, f"app_benchmark_progress_1440_{theme}.png")
        wait_for_benchmark(page, 3_600_000)
    else:
        page.click("#past-runs input")
        page.get_by_role("option").first.click()
        page.click("#open-run")
        wait_for_benchmark(page, 300_000)
    page.wait_for_function("() => (document.querySelector('#bench-notes')?.innerText || '').includes('mem MB')")
    page.wait_for_selector("#drilldown-worst img", timeout=120_000)
    page.wait_for_timeout(1500)
    print("benchmark:", page.inner_text("#recommendation").splitlines()[:2])
    both_sizes(page, out, "benchmark", theme, phone_at="#recommendation")
    if run:
        top(page)
        shoot(page, out, f"app_benchmark_1440_{theme}_full.png", full_page=True)


def models_tab(page, out: Path, theme: str) -> None:
    tab(page, "Models")
    page.wait_for_selector("#zoo-table")
    page.wait_for_function("() => (document.querySelector('#pool-status')?.innerText || '').includes('Loaded models')")
    both_sizes(page, out, "models", theme)


def arena(page, out: Path, theme: str, models: list[str], votes: int) -> None:
    tab(page, "Arena")
    page.wait_for_selector("#arena-ratings [role=grid]")
    keep_only(page, "#arena-variants", models)
    page.fill("#arena-limit input", "4")
    page.click("#arena-start")
    for i in range(votes + 1):
        page.wait_for_function("() => /round [0-9a-f]{8}/.test(document.querySelector('#arena-prompt')?.innerText"
                               " || '')", timeout=600_000)
        page.wait_for_selector("#arena-original img")
        if i == votes:
            break
        shown = re.search(r"round ([0-9a-f]{8})", page.inner_text("#arena-prompt")).group(1)
        page.locator("body").press("1234"[i % 4])
        page.wait_for_function(NEXT_ROUND, arg=shown, timeout=600_000)
    page.wait_for_timeout(1500)
    both_sizes(page, out, "arena", theme, at="#arena-prompt")


@contextlib.contextmanager
def app(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory() as tmp, running_app(
            env={"STUDIO_RESULTS": str(Path(tmp) / "results"), "STUDIO_ARENA_DB": str(Path(tmp) / "votes.sqlite"),
                 "STUDIO_PREFETCH": "none"}, timeout=600) as srv:
        print(f"app served in {srv.seconds_to_200:.2f} s at {srv.url}")
        yield srv.url


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=6, help="benchmark images (embedded sample)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    ap.add_argument("--url", help="a running app instead of starting one")
    ap.add_argument("--compare-models", nargs="+", default=COMPARE_MODELS)
    ap.add_argument("--bench-models", nargs="+", default=BENCH_MODELS)
    ap.add_argument("--arena-models", nargs="+", default=ARENA_MODELS)
    ap.add_argument("--votes", type=int, default=6, help="keyboard votes cast in the Arena first")
    ap.add_argument("--only", nargs="+", choices=["compare", "benchmark", "models", "arena"],
                    default=["compare", "benchmark", "models", "arena"])
    ap.add_argument("--themes", nargs="+", choices=["light", "dark"], default=["light", "dark"])
    a = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    a.out.mkdir(parents=True, exist_ok=True)
    with app(a.url) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        ran = False
        for theme in a.themes:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.set_default_timeout(60_000)
            page.goto(url.rstrip("/") + "/" + ("?__theme=dark" if theme == "dark" else ""))
            page.wait_for_selector("#compare-run")
            print(f"[{theme}]")
            if "compare" in a.only:
                compare(page, a.out, theme, a.compare_models)
            if "benchmark" in a.only:
                benchmark(page, a.out, theme, a.bench_models, a.images, run=not ran)
                ran = True
            if "models" in a.only:
                models_tab(page, a.out, theme)
            if "arena" in a.only:
                arena(page, a.out, theme, a.arena_models, a.votes if theme == a.themes[0] else 1)
            page.close()
        browser.close()
    total = sum(f.stat().st_size for f in a.out.glob("app_*_*_*.png"))
    print(f"screenshots in {a.out} ({total / 1e6:.1f} MB for app_*)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
