"""Every backend returns the Matte contract; the onnx backend agrees with rembg's own pipeline."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from studio import engine, inventory
from studio.backends.base import Runner
from studio.cli import main as cli
from studio.errors import ModelError
from studio.imageio import load_image, load_mask
from studio.matte import Matte
from studio.metrics import iou  # the library's plain agreement IoU (both thresholded at 0.5)
from studio.pool import RunnerPool
from studio.zoo import load_zoo


def assert_matte(m: Matte, shape: tuple[int, int], variant: str) -> None:
    assert isinstance(m, Matte) and m.variant == variant
    assert m.alpha.dtype == np.float32 and m.alpha.shape == shape
    assert m.alpha.min() >= 0.0 and m.alpha.max() <= 1.0
    assert set(m.timings) >= {"preprocess", "inference", "postprocess"}
    assert m.timings["inference"] > 0


def test_grabcut_finds_a_centred_object(photo):
    img, mask = photo
    m = engine.predict("grabcut", img)
    assert_matte(m, mask.shape, "grabcut")
    assert iou(m.alpha, mask) > 0.8


def test_grabcut_on_a_flat_image_is_defined():
    flat = np.full((50, 60, 3), 128, np.uint8)
    m = engine.predict("grabcut", flat)
    assert m.alpha.shape == (50, 60) and np.isfinite(m.alpha).all()


def test_pool_loads_once_per_key_and_evicts_lru():
    made = []

    class Dummy(Runner):
        def predict(self, image):
            return Matte(np.zeros(image.shape[:2], np.float32), self.variant.id)

        def close(self):
            made.append(("closed", self.variant.id))

    zoo = load_zoo()
    pool = RunnerPool(budget_mb=100)
    v1, v2 = zoo.get("u2net"), zoo.get("u2netp")
    a = pool.get(("u2net", "cpu", 0), lambda: Dummy(v1, None), cost_mb=60)
    assert pool.get(("u2net", "cpu", 0), lambda: Dummy(v1, None), cost_mb=60) is a
    pool.get(("u2netp", "cpu", 0), lambda: Dummy(v2, None), cost_mb=60)  # over budget: u2net goes
    assert pool.keys() == [("u2netp", "cpu", 0)] and made == [("closed", "u2net")]


def test_a_crashing_model_is_one_model_error(photo):
    class Broken(Runner):
        def predict(self, image):
            raise RuntimeError("kaboom")

    with pytest.raises(ModelError, match="u2net: failed: RuntimeError: kaboom"):
        engine.run_runner(Broken(load_zoo().get("u2net"), None), photo[0])


@pytest.mark.slow
def test_onnx_backend_agrees_with_rembg_session(isnet_weights, photo):
    """Same weights, our runner vs rembg's own session, on a generated image (no ../shared)."""
    img, _ = photo
    ours = engine.predict("isnet-general-use", img)
    theirs = engine.predict("isnet-general-use-via-rembg", img)
    assert_matte(ours, img.shape[:2], "isnet-general-use")
    assert iou(ours.alpha, theirs.alpha) >= 0.999
    assert np.abs(ours.alpha - theirs.alpha).mean() <= 0.005


@pytest.mark.slow
def test_parity_with_rembg_published_output(isnet_weights, tmp_path):
    from tests.conftest import TEST_DATA  # rembg's own test image and result (tests/data/rembg)

    fixture = TEST_DATA / "rembg/fixtures/anime-girl-1.jpg"
    reference = load_mask(TEST_DATA / "rembg/results/anime-girl-1.isnet-general-use.png")
    out = tmp_path / "a.png"
    assert cli(["predict", "-m", "isnet-general-use", "-o", str(out), str(fixture)]) == 0
    alpha = load_mask(out)
    assert alpha.shape == reference.shape == load_image(fixture).shape[:2]
    assert iou(alpha, reference) >= 0.999
    assert np.abs(alpha - reference).mean() <= 0.005
    # and rembg's own session on the same weights, by the same bar
    theirs = engine.predict("isnet-general-use-via-rembg", fixture)
    assert iou(alpha, theirs.alpha) >= 0.999 and np.abs(alpha - theirs.alpha).mean() <= 0.005


@pytest.mark.slow
def test_quantized_builds_run(isnet_weights, photo):
    img, mask = photo
    ref = engine.predict("isnet-general-use", img).alpha
    for vid in ("isnet-general-use-fp16", "isnet-general-use-int8-dynamic"):
        m = engine.predict(vid, img)
        assert_matte(m, img.shape[:2], vid)
        assert iou(m.alpha, ref) > 0.95


@pytest.mark.slow
def test_predict_cli_writes_pngs_named_by_variant(isnet_weights, photo, tmp_path, monkeypatch, capsys):
    a, b = tmp_path / "a.jpg", tmp_path / "b.png"
    Image.fromarray(photo[0]).save(a)
    Image.fromarray(photo[0][:100, :150]).save(b)
    monkeypatch.chdir(tmp_path)
    assert cli(["predict", "-m", "isnet-general-use", str(a)]) == 0
    out = Image.open(tmp_path / "a.isnet-general-use.png")
    assert out.mode == "L" and out.size == (320, 240)
    assert cli(["predict", "-m", "isnet-general-use", "-o", str(tmp_path / "outs"), str(a), str(b)]) == 0
    assert Image.open(tmp_path / "outs" / "b.isnet-general-use.png").size == (150, 100)
    printed = capsys.readouterr().out
    assert "inference" in printed and "preprocess" in printed and "postprocess" in printed
    # a broken image among good ones: reported, the others still written, exit code 1
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    assert cli(["predict", "-m", "isnet-general-use", "-o", str(tmp_path / "o2"), str(bad), str(a)]) == 1
    assert (tmp_path / "o2" / "a.isnet-general-use.png").is_file()


@pytest.mark.slow
def test_inspyrenet_untrained_checkpoint_through_remover(tmp_path, monkeypatch, photo, capsys):
    """The --untrained path builds transparent-background's own model with random weights;
    Remover(ckpt=...) loads it in fast mode and the runner returns a Matte of the right shape."""
    monkeypatch.setenv("STUDIO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cli(["weights", "pull", "inspyrenet-fast", "--untrained"]) == 0
    assert "untrained — latency only" in capsys.readouterr().out
    info = inventory.describe("inspyrenet-fast")
    assert info.installed and info.untrained and "untrained — latency only" in info.flags
    img = photo[0][:120, :160]
    m = engine.predict("inspyrenet-fast", img)
    assert_matte(m, (120, 160), "inspyrenet-fast")
    # the same checkpoint serves the other fast variants, labelled too
    assert inventory.describe("inspyrenet-fast-jit").untrained
    assert cli(["models", "inspyrenet-fast"]) == 0
    assert "untrained — latency only" in capsys.readouterr().out
    # equal to what transparent-background's own process(type='map') gives, to 8-bit rounding
    runner = engine.get_runner("inspyrenet-fast")
    ref = np.asarray(runner.remover.process(Image.fromarray(img), type="map"))[..., 0] / 255.0
    assert np.abs(ref - m.alpha).max() <= 1.0 / 255 + 1e-6
