"""`studio data ...`: list, pull (real HTTP against a local server, and offline), sample, contact-sheet."""

from __future__ import annotations

import functools
import http.server
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.cli import main
from studio.data import catalog, open_dataset
from studio.data import embedded as emb


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _tiny_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for stem in ("a", "b"):
            for sub, arr, ext in (("im", np.full((6, 9, 3), 90, np.uint8), ".jpg"),
                                  ("gt", np.full((6, 9), 255, np.uint8), ".png")):
                tmp = path.parent / f"{stem}{ext}"
                Image.fromarray(arr).save(tmp)
                zf.write(tmp, f"tiny-v1/{sub}/{stem}{ext}")
                tmp.unlink()


@pytest.fixture
def env(tmp_path, monkeypatch, server):
    www, base = server
    _tiny_zip(www / "tiny.zip")
    (www / "page.html").write_text("<html>please sign in</html>")
    cat = tmp_path / "catalog.yaml"
    common = ("    title: t\n    task: salient-object\n    size: 2\n    resolution: 9x6\n    layout: im + gt\n"
              "    images: im\n    masks: gt\n    reference: mask\n    licence: test\n    url: https://example.org\n")
    cat.write_text(
        "datasets:\n"
        f"  TINY:\n{common}    dir: TINY\n    download:\n      urls: [{base}/tiny.zip]\n"
        f"  OFFLINE:\n{common}    dir: OFFLINE\n    download:\n      urls: [http://127.0.0.1:9/x.zip]\n"
        f"  HTML:\n{common}    dir: HTML\n    download:\n      urls: [{base}/page.html]\n"
        f"  GONE:\n{common}    dir: GONE\n    download:\n      urls: [{base}/missing.zip]\n"
        f"  MANUAL:\n{common}    dir: MANUAL\n    download:\n      manual: behind a form\n"
    )
    monkeypatch.setenv("STUDIO_CATALOG", str(cat))
    monkeypatch.setenv("STUDIO_DATA", str(tmp_path / "data"))
    return tmp_path


def _one_error_line(capsys) -> str:
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1, out.err
    assert lines[0].startswith("error: ") and "Traceback" not in out.err
    return lines[0]


def test_list_prints_the_catalogue_table(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in catalog():
        assert name in out
    assert "zoo models trained on it" in out and "inspyrenet" in out


def test_pull_downloads_unpacks_and_opens(env, capsys):
    assert main(["data", "pull", "TINY"]) == 0
    assert "downloaded" in capsys.readouterr().out
    ds = open_dataset("TINY")
    assert [s.id for s in ds] == ["a", "b"] and ds.catalog_name == "TINY"
    assert ds["a"].mask().shape == (6, 9)
    root = env / "data" / "TINY"
    assert (root / ".studio-pull.json").is_file()
    assert not list((env / "data" / ".downloads").glob("*"))  # archive removed, no .part left
    assert main(["data", "pull", "tiny"]) == 0
    assert "already installed" in capsys.readouterr().out


def test_pull_offline_is_one_clean_line(env, capsys):
    assert main(["data", "pull", "OFFLINE"]) == 2
    line = _one_error_line(capsys)
    assert "cannot download http://127.0.0.1:9/x.zip" in line and "unpack it into" in line
    assert not (env / "data" / "OFFLINE").exists()
    assert not list((env / "data").rglob("*.part"))


@pytest.mark.parametrize("name, words", [("HTML", "web page"), ("GONE", "HTTP 404"), ("MANUAL", "behind a form"),
                                         ("NOPE", "no catalogue dataset")])
def test_pull_failures_are_one_line(env, capsys, name, words):
    assert main(["data", "pull", name]) == 2
    assert words in _one_error_line(capsys)


def test_opening_a_set_that_is_not_pulled_says_how(env, capsys):
    assert main(["data", "info", "TINY"]) == 0  # catalogue info works before the pull
    assert main(["data", "contact-sheet", "TINY", "--out", str(env / "x.png")]) == 2
    assert "studio data pull TINY" in _one_error_line(capsys)


def test_contact_sheet_writes_a_png(tmp_path, capsys):
    root = tmp_path / "set"
    (root / "im").mkdir(parents=True)
    (root / "gt").mkdir()
    for i in range(5):
        Image.fromarray(np.full((20, 30, 3), 40 * i, np.uint8)).save(root / "im" / f"{i}.jpg")
        Image.fromarray(np.eye(20, 30, dtype=np.uint8) * 255).save(root / "gt" / f"{i}.png")
    (root / "im" / "broken.jpg").write_bytes(b"not a jpeg")
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(root / "gt" / "broken.png")
    out = tmp_path / "sheets" / "sheet.png"
    assert main(["data", "contact-sheet", str(root), "--out", str(out), "--columns", "3", "--thumb", "60"]) == 0
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > 3 * 60 and im.height > 2 * 60
    assert "6 of 6" in capsys.readouterr().out


def test_contact_sheet_of_the_embedded_sample(tmp_path):
    out = tmp_path / "embedded.png"
    assert main(["data", "contact-sheet", "--out", str(out), "--limit", "3", "--thumb", "80"]) == 0
    with Image.open(out) as im:
        assert im.format == "PNG"


def test_sample_writes_files_that_open_again(tmp_path, capsys):
    out = tmp_path / "sample"
    assert main(["data", "sample", "--out", str(out)]) == 0
    n = len(emb.specs())
    assert len(list((out / "im").glob("*.png"))) == n == len(list((out / "alpha").glob("*.png")))
    assert (out / "manifest.json").is_file() and (out / "README.txt").is_file()
    ds = open_dataset(out)
    assert len(ds) == n and not ds.unpaired
    first, truth = ds[0], emb.pair(0)
    assert np.array_equal(first.image(), truth.image)
    assert np.array_equal(first.mask(), truth.mask)
    assert np.array_equal(first.alpha(), truth.alpha)
