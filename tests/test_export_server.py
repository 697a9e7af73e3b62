"""The exported bundle's server, for real: `python serve.py` in a subprocess on the IS-Net model.

rembg's API (mask, cut-out, the form fields a rembg client sends), its masks against
`studio predict`, bad uploads, the bounded queue, and what the child imports. All slow: each
starts a server process and runs the real model.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio import engine
from studio.export import export_bundle
from studio.export.coldstart import free_port, measure_bundle, proc_mb, wait_listening
from studio.imageio import alpha_to_uint8, load_image
from studio.procs import dies_with_parent
from studio.procs import stop as stop_process

pytestmark = pytest.mark.slow
VARIANT = "isnet-general-use"
REPO = Path(__file__).resolve().parents[1]

# Runs serve.py as __main__ and, when it exits, writes the names in sys.modules to a file:
# what the server imported, start-up and requests included.
WRAPPER = """
import json, runpy, sys
out = sys.argv.pop(1)
try:
    runpy.run_path("serve.py", run_name="__main__")
finally:
    with open(out, "w") as f:
        json.dump(sorted(sys.modules), f)
"""


class Server:
    def __init__(self, bundle: Path, *args: str, modules_out: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = bundle.parent / f"serve-{self.port}.log"
        if modules_out is not None:
            wrapper = bundle.parent / "wrapper.py"
            wrapper.write_text(WRAPPER)
            cmd = [sys.executable, str(wrapper), str(modules_out), "--port", str(self.port), *args]
        else:
            cmd = [sys.executable, "serve.py", "--port", str(self.port), *args]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(dies_with_parent(cmd), cwd=bundle, stdout=log, stderr=subprocess.STDOUT)
        wait_listening(self.proc, self.port, time.monotonic() + 120, self.log)

    def stop(self) -> int:
        return stop_process(self.proc, grace_s=20)


@pytest.fixture(scope="module")
def bundle(isnet_weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "bundle"
    res = export_bundle(VARIANT, out, check=True)
    res.path = out
    return res


@pytest.fixture(scope="module")
def server(bundle):
    # a tiny queue (one request at a time) and a small upload cap, to reach 503 and 413 cheaply
    s = Server(bundle.path, "--queue", "0", "--workers", "1", "--max-upload-mb", "2")
    yield s
    s.stop()


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def _post(server: Server, data: bytes, fields: dict | None = None, name: str = "photo.png"):
    import requests

    # exactly what a rembg client sends: multipart `file`, form fields as strings
    return requests.post(f"{server.url}/api/remove", files={"file": (name, data)}, data=fields or {},
                         timeout=300)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 127, b > 127
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def test_export_checked_itself_against_the_studio(bundle):
    assert bundle.agreement["iou_min"] >= 0.999
    assert set(bundle.files) >= {"model.onnx", "model.json", "serve.py", "requirements.txt", "Dockerfile",
                                 "README.md", "Dockerfile.cuda"}


def test_healthz(server):
    import requests

    r = requests.get(f"{server.url}/healthz", timeout=60)
    while r.status_code == 503:  # still loading the model
        assert r.json()["status"] == "loading"
        time.sleep(0.2)
        r = requests.get(f"{server.url}/healthz", timeout=60)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "ok" and body["variant"] == VARIANT
    assert body["queue"]["capacity"] == 1 and "session_ready" in body["startup_s"]


def test_mask_and_cutout_as_rembg_serves_them(server):
    from studio.data.embedded import pair

    for i in (1, 7):
        rgb = pair(i).image
        r = _post(server, _png(rgb), {"om": "true"})
        assert r.status_code == 200 and r.headers["Content-Type"] == "image/png"
        assert r.headers["X-Model"] == VARIANT and "inference;dur=" in r.headers["Server-Timing"]
        mask = Image.open(io.BytesIO(r.content))
        assert mask.mode == "L" and mask.size == (rgb.shape[1], rgb.shape[0])
        studio = alpha_to_uint8(engine.predict(VARIANT, rgb).alpha)
        assert _iou(np.asarray(mask), studio) >= 0.999

        r = _post(server, _png(rgb))  # no om: the cut-out
        cut = Image.open(io.BytesIO(r.content))
        assert r.status_code == 200 and cut.mode == "RGBA"
        arr = np.asarray(cut)
        assert np.array_equal(arr[..., :3], rgb) and np.array_equal(arr[..., 3], np.asarray(mask))

    r = _post(server, _jpeg(rgb), {"om": "false", "bgc": "0,255,0,255", "model": "isnet-general-use",
                                   "a": "false", "ppm": "false"})
    arr = np.asarray(Image.open(io.BytesIO(r.content)))
    assert r.status_code == 200 and arr.shape[2] == 4 and (arr[..., 3] == 255).all()


def test_curl_client(server, tmp_path):
    curl = shutil.which("curl")
    if not curl:
        pytest.skip("curl is not installed")
    from studio.data.embedded import pair

    src = tmp_path / "in.jpg"
    src.write_bytes(_jpeg(pair(2).image))
    out = tmp_path / "mask.png"
    subprocess.run([curl, "-sf", "-F", f"file=@{src}", "-F", "om=true", f"{server.url}/api/remove", "-o", str(out)],
                   check=True, timeout=300)
    mask = Image.open(out)
    assert mask.mode == "L" and mask.size == Image.open(src).size


def test_bad_uploads_get_400_and_the_server_stays_up(server):
    import requests

    from studio.data.embedded import pair

    jpeg = _jpeg(np.tile(pair(0).image, (2, 2, 1)))
    big = io.BytesIO()
    Image.new("1", (12000, 12000)).save(big, format="PNG")  # 144 MP in a few KB
    cases = {"corrupt": b"GIF89a this is not really an image", "text": b"hello",
             "truncated": jpeg[: len(jpeg) // 2], "empty": b"", "huge": big.getvalue()}
    for name, data in cases.items():
        r = _post(server, data, name=f"{name}.jpg")
        assert r.status_code == 400, (name, r.text)
        assert "not a usable image" in r.json()["detail"], name
    assert "over the cap" in _post(server, big.getvalue()).json()["detail"]
    # a CMYK JPEG, an RGBA PNG and a 16-bit PNG are images: answered as the studio reads them
    rgb = pair(3).image
    for img in (Image.fromarray(rgb).convert("CMYK"), Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])),
                Image.fromarray(np.asarray(Image.fromarray(rgb).convert("L")).astype(np.uint16) * 257)):
        buf = io.BytesIO()
        img.save(buf, format="JPEG" if img.mode == "CMYK" else "PNG")
        r = _post(server, buf.getvalue(), {"om": "true"})
        assert r.status_code == 200
        studio = alpha_to_uint8(engine.predict(VARIANT, load_image(buf.getvalue())).alpha)
        assert _iou(np.asarray(Image.open(io.BytesIO(r.content))), studio) >= 0.999
    assert requests.get(f"{server.url}/healthz", timeout=60).status_code == 200
    assert _post(server, _png(rgb), {"om": "true"}).status_code == 200


def test_api_errors_are_explicit(server):
    import requests

    from studio.data.embedded import pair

    png = _png(pair(0).image)
    r = requests.post(f"{server.url}/api/remove", data={"om": "true"}, timeout=60)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "file"]
    assert _post(server, png, {"om": "maybe"}).status_code == 422
    r = _post(server, png, {"a": "true"})
    assert r.status_code == 400 and "alpha matting" in r.json()["detail"]
    assert requests.get(f"{server.url}/api/remove?url=http://example.com/x.png", timeout=60).status_code == 501
    assert requests.get(f"{server.url}/api/remove", timeout=60).status_code == 422
    assert requests.get(f"{server.url}/nope", timeout=60).status_code == 404
    r = _post(server, b"\0" * (3 * 1024 * 1024))  # over --max-upload-mb 2
    assert r.status_code == 413 and "over the cap" in r.json()["detail"]
    # none of the above needed the model, which loads in a thread while the port is open:
    # /healthz says "loading" (503) until it is ready, then 200
    deadline = time.monotonic() + 120
    while (h := requests.get(f"{server.url}/healthz", timeout=60)).status_code == 503:
        assert h.json()["status"] == "loading" and time.monotonic() < deadline
        time.sleep(0.2)
    assert h.status_code == 200 and h.json()["status"] == "ok"


def test_a_burst_beyond_the_queue_gets_503_not_errors(server):
    from studio.data.embedded import pair

    png = _png(pair(4).image)
    n = 8

    def burst() -> list:
        barrier = threading.Barrier(n)
        results: list = [None] * n

        def client(i: int) -> None:
            barrier.wait()
            try:
                results[i] = _post(server, png, {"om": "true"})
            except Exception as exc:  # a connection error would be a failure of the server
                results[i] = exc

        threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results

    rss = []
    for _ in range(3):
        results = burst()
        errors = [r for r in results if isinstance(r, Exception)]
        assert not errors, errors
        codes = [r.status_code for r in results]
        assert set(codes) <= {200, 503}, codes
        assert 200 in codes and 503 in codes, codes  # capacity 1: eight at once cannot all be admitted
        for r in results:
            if r.status_code == 503:
                assert int(r.headers["Retry-After"]) >= 1 and "busy" in r.json()["detail"]
        assert server.proc.poll() is None
        assert _post(server, png, {"om": "true"}).status_code == 200
        rss.append(proc_mb(server.proc.pid, "VmRSS"))
    # one model serves every request: memory does not grow burst after burst (a leak of a copy of
    # each image, 3 MB here, would add 20 MB a burst)
    assert rss[2] - rss[1] < 20, rss


def test_the_child_imports_neither_the_studio_nor_torch(bundle, tmp_path):
    from studio.data.embedded import pair

    modules = tmp_path / "modules.json"
    s = Server(bundle.path, "--quiet", modules_out=modules)
    try:
        r = _post(s, _png(pair(0).image))  # a cut-out: every lazy import of a request done
        assert r.status_code == 200
        r = _post(s, _png(pair(0).image), {"om": "true"})
        assert r.status_code == 200
    finally:
        assert s.stop() == 0  # SIGTERM: a clean exit
    names = json.loads(modules.read_text())
    roots = {n.split(".")[0] for n in names}
    assert "onnxruntime" in roots and "numpy" in roots and "PIL" in roots
    assert not roots & {"studio", "torch", "rembg", "gradio", "cv2", "scipy", "skimage"}, roots


def test_prepare_writes_a_model_for_this_cpu_and_the_server_uses_it(bundle, tmp_path):
    from studio.data.embedded import pair

    b = tmp_path / "prepared"
    shutil.copytree(bundle.path, b)
    # a prepared model of another kind of CPU beside it (garbage): it must be left alone
    (b / "model.0123456789ab.ort0.0-x86_64-other.onnx").write_bytes(b"not a model")
    out = subprocess.run([sys.executable, "serve.py", "--prepare"], cwd=b, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    prepared = [p for p in b.glob("model.*.*.onnx") if "other" not in p.name]
    assert len(prepared) == 1
    rgb = pair(5).image
    studio = alpha_to_uint8(engine.predict(VARIANT, rgb).alpha)
    for args, expect in ((("--quiet",), prepared[0].name), (("--quiet", "--portable"), "model.onnx")):
        s = Server(b, *args)
        try:
            r = _post(s, _png(rgb), {"om": "true"})
            assert r.status_code == 200
            assert _iou(np.asarray(Image.open(io.BytesIO(r.content))), studio) >= 0.999
            import requests

            health = requests.get(f"{s.url}/healthz", timeout=60).json()
            assert health["model_file"] == expect
        finally:
            s.stop()


def test_measure_bundle_keys(bundle):
    from studio.data.embedded import pair

    img = bundle.path.parent / "cold.png"
    img.write_bytes(_png(pair(0).image))
    res = measure_bundle(bundle.path, img, warm=1)
    for key in ("listening_s", "first_answer_s", "first_request_s", "warm_request_s", "interpreter_s",
                "phases_s", "server_timing_first", "server_timing_warm", "rss_listening_mb", "rss_first_mb",
                "rss_warm_mb", "peak_rss_mb", "variant", "image_size", "model_mb", "command"):
        assert key in res, key
    assert 0 < res["listening_s"] < res["first_answer_s"]
    assert {"runtime_imported", "session_ready", "listening"} <= set(res["phases_s"])
    assert res["image_size"] == [pair(0).image.shape[1], pair(0).image.shape[0]]


def test_masks_equal_studio_predict_on_jpeg_photographs(server, tmp_path):
    """Eight embedded-sample photographs (not the ones above), uploaded as the JPEG files a user
    sends: the served mask equals `studio predict` on the same file."""
    from studio.data.embedded import pair

    files = []
    for i in (2, 4, 8, 11, 14, 17, 20, 23):
        files.append(tmp_path / f"{pair(i).id}.jpg")
        files[-1].write_bytes(_jpeg(pair(i).image))
    for f in files:
        r = _post(server, f.read_bytes(), {"om": "true"}, name=f.name)
        assert r.status_code == 200, f
        studio = alpha_to_uint8(engine.predict(VARIANT, load_image(f)).alpha)
        assert _iou(np.asarray(Image.open(io.BytesIO(r.content))), studio) >= 0.999, f.name


def test_app_export_zip(isnet_weights):
    import zipfile

    from studio.ui.export import export_zip

    path = Path(export_zip(VARIANT))
    assert path.is_file() and REPO not in path.parents
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
    assert {f"{VARIANT}/{n}" for n in ("model.onnx", "model.json", "serve.py", "README.md", "Dockerfile",
                                       "requirements.txt")} <= names
    assert export_zip(VARIANT) == str(path)  # unchanged: the same zip


# --- the OpenVINO bundle of IS-Net ----------------------------------------------------------------------

OV_VARIANT = "isnet-general-use-ov"  # the fp32 file on OpenVINO: no build needed


@pytest.fixture(scope="module")
def ov_bundle(isnet_weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("export-ov") / "bundle"
    res = export_bundle(OV_VARIANT, out, check=True, ship_compiled=True)  # a float build ships none by default
    res.path = out
    return res


def test_openvino_bundle_of_isnet_serves_the_studios_masks(ov_bundle, tmp_path):
    """The IR the export wrote and the blob it compiled, against the studio's openvino runner on the
    original ONNX file: the export's own check (both ways of loading), then the server in a fresh
    process, which imports nothing of the studio or of ONNX Runtime."""
    from studio.data.embedded import pair

    a = ov_bundle.agreement
    assert a["iou_min"] >= 0.999 and a["max_abs_diff_8bit"] <= 2, a
    assert len(a["model_files"]) == 2  # the shipped blob and the IR compiled
    assert {"model.xml", "model.bin", "requirements.txt"} <= set(ov_bundle.files)
    assert "Dockerfile.cuda" not in ov_bundle.files
    modules = tmp_path / "modules.json"
    s = Server(ov_bundle.path, "--quiet", modules_out=modules)
    try:
        import requests

        for i in (1, 7):
            rgb = pair(i).image
            r = _post(s, _png(rgb), {"om": "true"})
            assert r.status_code == 200 and r.headers["X-Model"] == OV_VARIANT
            studio = alpha_to_uint8(engine.predict(OV_VARIANT, rgb).alpha)
            assert _iou(np.asarray(Image.open(io.BytesIO(r.content))), studio) >= 0.999
        health = requests.get(f"{s.url}/healthz", timeout=60).json()
        assert health["runtime"] == "openvino" and health["load_optimization"] == "imported"
    finally:
        assert s.stop() == 0
    roots = {n.split(".")[0] for n in json.loads(modules.read_text())}
    assert "openvino" in roots and not roots & {"studio", "torch", "onnxruntime", "rembg", "cv2"}, roots
