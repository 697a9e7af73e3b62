"""The app through its API: `python app.py` in a subprocess, driven by gradio_client."""

from __future__ import annotations

import threading

import pytest

pytestmark = pytest.mark.slow

SAMPLE = "02_potted_plant"


@pytest.fixture(scope="module")
def client(app_server):
    from gradio_client import Client

    return Client(app_server.url, verbose=False)


@pytest.fixture(scope="module")
def sample_pair(tmp_path_factory):
    from PIL import Image

    from studio.data import open_dataset
    from studio.imageio import alpha_to_uint8

    s = open_dataset(None)[SAMPLE]
    d = tmp_path_factory.mktemp("pair")
    Image.fromarray(s.image()).save(d / "plant.png")
    Image.fromarray(alpha_to_uint8(s.mask())).save(d / "plant_mask.png")
    return d / "plant.png", d / "plant_mask.png"


def _compare(client, image, mask, variants):
    from gradio_client import handle_file

    return client.predict(handle_file(str(image)), handle_file(str(mask)) if mask else None, variants,
                          api_name="/compare")


def test_compare_with_an_empty_variant_list_is_a_clear_error(client, sample_pair):
    """Not "every installed variant": an API caller is told to name some."""
    from gradio_client.exceptions import AppError

    image, mask = sample_pair
    with pytest.raises(AppError, match="no variants chosen.*installed here: .*grabcut"):
        _compare(client, image, mask, [])


def test_compare_metrics_equal_studio_metrics(client, sample_pair):
    """The API's metrics are `studio.metrics.score_image` on the same pair, for a real model."""
    from studio.engine import predict
    from studio.imageio import load_image, load_mask
    from studio.metrics import score_image

    image, mask = sample_pair
    out = _compare(client, image, mask, ["isnet-general-use", "grabcut"])
    rows = {r["id"]: r for r in out[4]}
    assert set(rows) == {"isnet-general-use", "grabcut"}
    ref = load_mask(mask)
    rgb = load_image(image)
    for vid, row in rows.items():
        assert row["status"] == "ok", row
        assert set(row["timings_ms"]) == {"preprocess", "inference", "postprocess", "total"}
        want = score_image(predict(vid, rgb).alpha, ref).values
        assert set(row["metrics"]) == set(want)
        for k, v in want.items():
            # the same engine on the same machine: equal up to float noise of the runtime's threads
            assert row["metrics"][k] == pytest.approx(float(v), rel=1e-6, abs=1e-6), (vid, k)
    assert rows["isnet-general-use"]["metrics"]["iou"] > 0.8
    # the gallery holds cut-out, mask and error overlay per variant, as PNG files
    gallery = out[0]["value"] if isinstance(out[0], dict) and "value" in out[0] else out[0]
    assert len(gallery) == 6 and all(str(g["image"]).endswith(".png") for g in gallery)


def test_corrupt_upload_gives_a_clear_error(client, tmp_path):
    from gradio_client.exceptions import AppError

    bad = tmp_path / "scan.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(AppError) as e:
        _compare(client, bad, None, ["grabcut"])
    msg = str(e.value)
    assert "image scan.png" in msg and ("corrupt" in msg or "cannot be opened" in msg or "not an image" in msg)


def test_mask_size_mismatch_gives_a_clear_error(client, sample_pair, tmp_path):
    from gradio_client.exceptions import AppError
    from PIL import Image

    image, _ = sample_pair
    small = tmp_path / "small_mask.png"
    Image.new("L", (64, 48)).save(small)
    with pytest.raises(AppError, match="small_mask.png: mask is 64x48"):
        _compare(client, image, small, ["grabcut"])


def test_two_clients_at_once_both_complete(app_server, sample_pair):
    from gradio_client import Client

    image, mask = sample_pair
    results, errors = {}, []

    def one(name):
        try:
            c = Client(app_server.url, verbose=False)
            results[name] = _compare(c, image, mask, ["grabcut"])
        except Exception as exc:  # surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors and set(results) == {"a", "b"}
    ious = [r[4][0]["metrics"]["iou"] for r in results.values()]
    assert ious[0] == ious[1]  # same answer for both users


def test_benchmark_is_callable_from_the_client(client, app_server, tmp_path):
    from tests.conftest import make_folder

    # a folder of small synthetic photos: the API's plumbing is the point, not GrabCut on big photos
    folder = make_folder(tmp_path / "small", n=3)
    md, fig, table, files, run_id, summary = client.predict(
        "Catalogue dataset / folder", str(folder), None, ["grabcut"], 2, 0, 1, False, None, None, 0.5,
        api_name="/benchmark")
    assert "grabcut" in md and "per 1,000 images" in md
    assert table["data"][0][1] == "grabcut"
    assert summary["variants"][0]["n_images"] == 2 and summary["recommendation"]["best"] == "grabcut"
    assert (app_server.results / run_id).is_file()
    md2, *_ = client.predict(run_id, 1, None, None, api_name="/recommend")
    assert "No recommendation" in md2
