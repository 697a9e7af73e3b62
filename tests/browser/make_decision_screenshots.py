"""Screenshots of the app helping decide (not a test): a labels-free benchmark and Compare
against a reference model.

    python tests/browser/make_decision_screenshots.py [--images 6] [--out docs/screenshots]

Starts `python app.py` with a temporary results folder, then in Debian's Chromium at 1440 px:
- Benchmark: "Your images, no masks" on a folder holding only the images of
  ../shared/datasets/sod-dev (their masks left out, and the images the int8-static builds were
  calibrated on), scored against isnet-general-use, every installed trained variant (the app's
  default selection) -> app_benchmark_labels_free.png;
- Compare: one of those images, no mask, reference model isnet-general-use, a few variants
  -> app_compare_reference.png.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from studio import settings  # noqa: E402
from studio.launch import running_app  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, wait_for_benchmark  # noqa: E402

REFERENCE = "isnet-general-use"
COMPARE_IMAGE = "100075.jpg"
COMPARE_MODELS = ["isnet-general-use-int8-static", "isnet-general-use-512-int8-static", "grabcut"]


def images_only(dest: Path, held_out: bool = True) -> Path:
    """sod-dev's images without their masks: what a user's own folder looks like. `held_out`
    leaves out the images the installed int8-static builds were calibrated on, as a user's own
    photos would be (otherwise a seeded subset of sod-dev is exactly their calibration set)."""
    from studio.bench.contamination import calibration_hashes
    from studio.data import open_dataset
    from studio.inventory import installed_variants

    src = settings.shared_dir() / "datasets" / "sod-dev" / "im"
    if not src.is_dir():
        sys.exit(f"needs {src}")
    seen: set[str] = set()
    if held_out:
        for v in installed_variants():
            seen |= set(calibration_hashes(v) or ())
    dest.mkdir(parents=True, exist_ok=True)
    for sample in open_dataset(src, unlabelled=True):
        if sample.content_hash not in seen:
            shutil.copyfile(sample.image_path, dest / sample.image_path.name)
    return dest


def keep_only(page, picker: str, keep: list[str]) -> None:
    """Remove every token of a multiselect dropdown whose id is not in `keep`."""
    box = page.locator(picker)
    for label in box.locator(".token").all_inner_texts():
        if label.split("  ·  ")[0].strip() not in keep:
            box.locator(".token", has_text=label).locator(".token-remove").first.click()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=6, help="benchmark images")
    ap.add_argument("--price", type=float, default=0.9, help="$/hour for the cost column")
    ap.add_argument("--models", nargs="*", default=None, help="benchmark these ids only (default: the app's)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    ap.add_argument("--skip-benchmark", action="store_true")
    ap.add_argument("--with-calibration-images", action="store_true",
                    help="keep the images the int8-static builds were calibrated on")
    a = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    a.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, \
            running_app(env={"STUDIO_RESULTS": str(Path(tmp) / "results"), "STUDIO_PREFETCH": "none"}) as srv, \
            sync_playwright() as p:
        folder = images_only(Path(tmp) / "my-photos", held_out=not a.with_calibration_images)
        print(f"app served in {srv.seconds_to_200:.2f} s at {srv.url}")
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(srv.url)
        page.wait_for_selector("#compare-run")

        if not a.skip_benchmark:
            page.get_by_role("tab", name="Benchmark").click()
            page.get_by_label("Your images, no masks (zip or folder)").check()
            page.wait_for_selector("#bench-folder textarea, #bench-folder input")
            page.locator("#bench-folder textarea, #bench-folder input").first.fill(str(folder))
            page.wait_for_function(
                "r => (document.querySelector('#bench-reference input')?.value || '').includes(r)", arg=REFERENCE)
            if a.models:
                keep_only(page, "#bench-variants", a.models)
            page.fill("#bench-limit input", str(a.images))
            page.fill("#bench-price input", str(a.price))
            page.click("#bench-run")
            wait_for_benchmark(page, 3_600_000)
            page.wait_for_function("() => (document.querySelector('#bench-notes')?.innerText || '').includes('mem MB')")
            page.wait_for_timeout(1500)
            page.screenshot(path=str(a.out / "app_benchmark_labels_free.png"), full_page=True)
            print("benchmark:", page.inner_text("#recommendation").splitlines()[:3])

        page.get_by_role("tab", name="Compare").click()
        image = folder / COMPARE_IMAGE if (folder / COMPARE_IMAGE).is_file() else sorted(folder.iterdir())[0]
        page.set_input_files("#compare-image input[type=file]", str(image))
        page.wait_for_selector("#compare-image img")
        page.click("#compare-reference-model input")
        page.get_by_role("option", name=REFERENCE, exact=True).click()
        for box in page.locator(".family-group input[type=checkbox]").all():
            name = box.evaluate("e => e.closest('label')?.innerText.trim() || ''")
            want = name.split("  ·  ")[0] in COMPARE_MODELS
            if box.is_visible() and box.is_checked() != want:
                box.click()
        page.click("#compare-run")
        page.wait_for_function("() => (document.querySelector('#compare-status')?.innerText || '').includes('Done')",
                               timeout=1_800_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(a.out / "app_compare_reference.png"), full_page=True)
        print("compare:", page.inner_text("#compare-status").splitlines()[:3])
        browser.close()
    print(f"screenshots in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
