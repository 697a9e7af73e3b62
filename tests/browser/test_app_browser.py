"""The app in a real browser: upload, compare, see results; run a small benchmark.

Slow (a real app, real models, Chromium). Screenshots go to artifacts/.
"""

from __future__ import annotations

import pytest

from tests.browser.conftest import keep_only_tokens, wait_for_compare_done

pytestmark = pytest.mark.slow

SAMPLE = "24_bouquet"


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory):
    """An embedded-sample image and its reference mask, as the files a user would upload."""
    from PIL import Image

    from studio.data import open_dataset
    from studio.imageio import alpha_to_uint8

    s = open_dataset(None)[SAMPLE]
    d = tmp_path_factory.mktemp("upload")
    Image.fromarray(s.image()).save(d / "bouquet.png")
    Image.fromarray(alpha_to_uint8(s.mask())).save(d / "bouquet_mask.png")
    return d / "bouquet.png", d / "bouquet_mask.png"


def _table_rows(page, selector: str) -> int:
    """Data rows of a Gradio Dataframe (a virtualised ARIA grid: header row + data rows)."""
    return int(page.get_attribute(f"{selector} [role=grid]", "aria-rowcount")) - 1


def test_compare_upload_run_shows_gallery_and_table(page, sample_files, artifacts):
    from studio.ui.variants import default_ids

    # what the pickers start with, from the tests' own cache (the app runs on it too)
    n = len(default_ids())
    assert n >= 2  # grabcut and the seeded IS-Net files at least
    image, mask = sample_files
    page.set_input_files("#compare-image input[type=file]", str(image))
    page.set_input_files("#compare-reference input[type=file]", str(mask))
    # the upload finishes before Run is honoured: wait for both previews
    page.wait_for_selector("#compare-image img")
    page.wait_for_selector("#compare-reference img")
    page.click("#compare-run")
    wait_for_compare_done(page, n * 90_000)

    gallery_imgs = page.locator("#compare-gallery img")
    assert gallery_imgs.count() == 3 * n  # cut-out, mask, error overlay per variant
    assert _table_rows(page, "#compare-table") == n
    table_text = page.inner_text("#compare-table")
    assert "IoU" in table_text and "infer ms" in table_text
    assert "grabcut" in table_text
    # every served image is a PNG (never lossy webp)
    srcs = [gallery_imgs.nth(i).get_attribute("src") for i in range(gallery_imgs.count())]
    assert all(s.endswith(".png") for s in srcs), srcs
    page.wait_for_selector("#compare-slider img")
    # the slider follows the picker: original against grabcut's cut-out
    page.click("#slider-pick input")
    page.get_by_role("option", name="grabcut").click()
    page.wait_for_selector("#compare-slider img[src*='grabcut_on_checkerboard']")
    page.click("#slider-pick input")
    page.get_by_role("option", name="isnet-general-use", exact=True).click()
    page.wait_for_selector("#compare-slider img[src*='isnet-general-use_on_checkerboard']")
    page.wait_for_timeout(800)  # let the thumbnails paint
    page.screenshot(path=str(artifacts / "browser_test_compare.png"), full_page=True)


def test_sample_picker_fills_image_and_mask(page):
    page.click("#sample-picker input")
    page.get_by_role("option", name=SAMPLE).click()
    page.wait_for_selector("#compare-image img")
    page.wait_for_selector("#compare-reference img")


def test_corrupt_upload_shows_a_clear_error(page, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"definitely not the rest of a PNG")
    page.set_input_files("#compare-image input[type=file]", str(bad))
    # Run is honoured once the upload is the component's value: its preview names the file
    page.wait_for_selector("#compare-image img[src*='broken.png']", state="attached")
    page.click("#compare-run")
    toast = page.locator(".toast-body, [data-testid='toast-body']").first
    toast.wait_for(timeout=30_000)
    assert "broken.png" in toast.inner_text()


def _fast(variant_id: str) -> bool:
    return "grabcut" in variant_id or "int8" in variant_id


def test_benchmark_tab_runs_and_recommends(page, artifacts, small_dataset_zip):
    from studio.ui.variants import default_ids

    # the fast variants the picker starts with, counted in the tests' own cache
    expected = [vid for vid in default_ids() if _fast(vid)]
    assert "grabcut" in expected and "isnet-general-use-int8-dynamic" in expected
    page.get_by_role("tab", name="Benchmark").click()
    page.wait_for_selector("#bench-run")
    # a small run: the fast variants, two small images of an uploaded zip (im/ + gt/)
    page.get_by_label("Upload a zip (im/ + gt/)").check()
    page.set_input_files("#bench-zip input[type=file]", str(small_dataset_zip))
    page.wait_for_selector("#bench-zip .file-preview, #bench-zip table, #bench-zip a")
    kept = keep_only_tokens(page, "#bench-variants", lambda label: _fast(label.split()[0]))
    assert kept == expected
    page.fill("#bench-limit input", "2")
    page.click("#bench-run")
    page.wait_for_function(
        "() => (document.querySelector('#recommendation')?.innerText || '').includes('Recommended')",
        timeout=600_000)
    page.wait_for_selector("#bench-plot .js-plotly-plot")
    assert _table_rows(page, "#bench-table") == len(expected)
    # a budget recomputes the recommendation without rerunning
    page.fill("#bench-p95 input", "1")
    page.locator("#bench-p95 input").press("Enter")
    page.wait_for_function(
        "() => (document.querySelector('#recommendation')?.innerText || '').includes('No recommendation')",
        timeout=60_000)
    page.fill("#bench-p95 input", "")
    page.locator("#bench-p95 input").press("Enter")
    page.wait_for_function(
        "() => (document.querySelector('#recommendation')?.innerText || '').includes('Recommended')",
        timeout=60_000)
    page.wait_for_timeout(800)
    page.screenshot(path=str(artifacts / "browser_test_benchmark.png"), full_page=True)
