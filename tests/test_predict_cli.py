"""`studio predict`: the output location is checked before any model runs, and the errors
are told apart by their classes (a broken image is skipped, a model that cannot load stops)."""

from __future__ import annotations

import pytest
from PIL import Image

from studio import engine
from studio.cli import main as cli
from studio.errors import ModelError, ModelLoadError


@pytest.fixture
def images(tmp_path, photo):
    paths = []
    for name in ("a.png", "b.png"):
        Image.fromarray(photo[0]).save(tmp_path / name)
        paths.append(tmp_path / name)
    return paths


@pytest.fixture
def calls(monkeypatch):
    """Every engine.predict call, still running the real model."""
    seen = []
    real = engine.predict

    def spy(variant, image, **kw):
        seen.append(variant)
        return real(variant, image, **kw)

    monkeypatch.setattr(engine, "predict", spy)
    return seen


@pytest.mark.parametrize("where", ["under-a-file", "under-a-file/deeper", "a-folder"])
def test_an_unwritable_output_is_one_line_before_any_inference(tmp_path, images, calls, capsys, where):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    (tmp_path / "o" / "a.grabcut.png").mkdir(parents=True)  # where a.png's matte would go
    out = {"under-a-file": blocker / "m.png", "under-a-file/deeper": blocker / "sub" / "m.png",
           "a-folder": tmp_path / "o"}[where]
    assert cli(["predict", "-m", "grabcut", "-o", str(out), str(images[0])]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot write") and err.count("\n") == 0, err
    assert "Traceback" not in err
    assert calls == []  # the model never ran


def test_output_folder_is_made_and_files_are_0644(tmp_path, images, capsys):
    out = tmp_path / "new" / "folder"
    assert cli(["predict", "-m", "grabcut", "-o", str(out), *map(str, images)]) == 0
    for img in images:
        written = out / f"{img.stem}.grabcut.png"
        assert written.is_file() and (written.stat().st_mode & 0o777) == 0o644 & ~_umask()
    assert not list(out.glob(".studio-write-test-*"))  # the probe is gone


def test_a_model_error_on_one_image_skips_it(tmp_path, images, monkeypatch, capsys):
    real = engine.predict

    def flaky(variant, image, **kw):
        if not flaky.failed:
            flaky.failed = True
            raise ModelError("grabcut: failed: RuntimeError: simulated")
        return real(variant, image, **kw)

    flaky.failed = False
    monkeypatch.setattr(engine, "predict", flaky)
    assert cli(["predict", "-m", "grabcut", "-o", str(tmp_path / "o"), *map(str, images)]) == 1
    err = capsys.readouterr().err
    assert "simulated" in err and "Traceback" not in err
    assert (tmp_path / "o" / "b.grabcut.png").is_file() and not (tmp_path / "o" / "a.grabcut.png").exists()


def test_a_model_that_cannot_load_stops_at_once(tmp_path, images, monkeypatch, capsys):
    seen = []

    def broken(variant, image, **kw):
        seen.append(variant)
        raise ModelLoadError("grabcut: cannot load (simulated)")

    monkeypatch.setattr(engine, "predict", broken)
    assert cli(["predict", "-m", "grabcut", "-o", str(tmp_path / "o"), *map(str, images)]) == 2
    assert len(seen) == 1  # not retried for the second image
    assert capsys.readouterr().err.strip() == "error: grabcut: cannot load (simulated)"


def test_missing_weights_stop_before_the_output_is_touched(tmp_path, images, monkeypatch, capsys):
    monkeypatch.setenv("STUDIO_CACHE", str(tmp_path / "empty-cache"))
    out = tmp_path / "never-made"
    assert cli(["predict", "-m", "u2net", "-o", str(out), str(images[0])]) == 2
    err = capsys.readouterr().err.strip()
    assert "studio weights pull u2net" in err and err.count("\n") == 0
    assert not out.exists()


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
