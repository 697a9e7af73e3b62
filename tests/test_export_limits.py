"""The exported server's HTTP layer and its limits (issue 21), on a tiny ONNX model.

Most tests run the bundle's own serve.py in this process (uvicorn in a thread, a few ms per
request); the last ones run it as the user does, in a fresh process (marked slow).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from studio.export import bundle as bundle_mod
from studio.export import export_bundle
from studio.export.coldstart import multipart, proc_mb, server_timing, wait_listening
from studio.procs import free_port, stop
from studio.zoo import Variant
from tests.conftest import tiny_onnx_model


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """An exported bundle of a tiny ONNX variant (IS-Net's interface, a few KB)."""
    from studio import artifacts, inventory

    root = tmp_path_factory.mktemp("limits")
    model = tiny_onnx_model(root / "tiny.onnx")
    v = Variant(id="tiny-fp32", family="tiny", backend="onnx", input_size=(32, 32),
                preprocess={"mean": [0.5, 0.5, 0.5], "std": [1.0, 1.0, 1.0]}, file="tiny.onnx", license="MIT")
    rec = SimpleNamespace(path=str(model), sha256=bundle_mod.sha256_of(model))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(artifacts, "require", lambda v, verify=True: rec)
        mp.setattr(inventory, "describe", lambda v: SimpleNamespace(untrained=False, flags=[]))
        export_bundle(v, root / "bundle", check=False)
    return root / "bundle"


@pytest.fixture(scope="module")
def ov_bundle(tmp_path_factory) -> Path:
    """The same tiny model exported for OpenVINO: the IR and the compiled blob for this CPU."""
    from studio import artifacts, inventory

    root = tmp_path_factory.mktemp("limits-ov")
    model = tiny_onnx_model(root / "tiny.onnx")
    v = Variant(id="tiny-ov", family="tiny", backend="openvino", precision="int8-static", input_size=(32, 32),
                preprocess={"mean": [0.5, 0.5, 0.5], "std": [1.0, 1.0, 1.0]}, file="tiny.onnx", license="MIT")
    rec = SimpleNamespace(path=str(model), sha256=bundle_mod.sha256_of(model))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(artifacts, "require", lambda v, verify=True: rec)
        mp.setattr(inventory, "describe", lambda v: SimpleNamespace(untrained=False, flags=[]))
        export_bundle(v, root / "bundle", check=False)
    return root / "bundle"


class Blocking:
    """A runtime whose inference waits until released: to hold a request inside the server."""

    name = "blocking"
    model_file, level = "none", None

    def __init__(self):
        self.entered, self.release = threading.Event(), threading.Event()
        self.calls = 0

    def load(self, mark) -> None:
        mark("runtime_imported")

    def run(self, x):
        self.calls += 1
        self.entered.set()
        assert self.release.wait(30)
        return np.zeros((1, 1, x.shape[2], x.shape[3]), np.float32)


class InProcess:
    """The bundle's serve.py with `argv`, served by uvicorn in a thread of this process."""

    def __init__(self, bundle: Path, *argv: str, runtime=None):
        self.serve = bundle_mod.load_template(bundle / "serve.py", f"serve_{uuid.uuid4().hex[:8]}")
        args = self.serve.parse_args(["--port", "0", "--quiet", *argv])
        cfg = self.serve.read_config(str(bundle / "model.json"))
        args.max_pixels = cfg["max_pixels"]
        self.model = self.serve.Model(cfg, args)
        if runtime is not None:
            self.model.runtime = runtime
        self.model.load()
        sock = self.serve.bind("127.0.0.1", 0)
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = self.serve.make_server(args, cfg, self.model)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.01)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@pytest.fixture
def serve_with(bundle):
    started: list[InProcess] = []

    def start(*argv: str, runtime=None) -> InProcess:
        started.append(InProcess(bundle, *argv, runtime=runtime))
        return started[-1]

    yield start
    for s in started:
        s.close()


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def rgb():
    yy, xx = np.mgrid[0:45, 0:60]
    return np.clip(np.stack([xx * 4, yy * 5, (xx + yy) * 2], axis=2), 0, 255).astype(np.uint8)


def _raw(port: int, data: bytes, wait: float = 10.0) -> bytes:
    """Send raw bytes; everything the server answers until it closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(data)
        return _drain(s, wait)


def _drain(s: socket.socket, wait: float) -> bytes:
    s.settimeout(wait)
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return out


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def _post(url: str, data: bytes, fields: dict | None = None, timeout: float = 30.0):
    import requests

    return requests.post(f"{url}/api/remove", files={"file": ("x.png", data)}, data=fields or {}, timeout=timeout)


# --- rembg's API ------------------------------------------------------------------------------------


def test_rembg_api_on_the_tiny_model(serve_with, rgb):
    import requests

    s = serve_with()
    png = _png(rgb)
    r = _post(s.url, png, {"om": "true"})
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/png" and r.headers["X-Model"] == "tiny-fp32"
    timing = server_timing(r.headers["Server-Timing"])
    assert {"read", "admit", "decode", "preprocess", "wait", "inference", "postprocess", "encode"} <= set(timing)
    mask = Image.open(io.BytesIO(r.content))
    assert mask.mode == "L" and mask.size == (60, 45)
    cut = _post(s.url, png)
    arr = np.asarray(Image.open(io.BytesIO(cut.content)))
    assert arr.shape == (45, 60, 4) and np.array_equal(arr[..., :3], rgb)
    assert np.array_equal(arr[..., 3], np.asarray(mask))
    raw = requests.post(f"{s.url}/api/remove", data=png, headers={"Content-Type": "image/png"}, timeout=30)
    assert raw.status_code == 200 and raw.content == cut.content
    green = np.asarray(Image.open(io.BytesIO(_post(s.url, png, {"bgc": "0,255,0,255"}).content)))
    assert (green[..., 3] == 255).all()
    bad = _post(s.url, b"garbage")
    assert bad.status_code == 400 and "not a usable image" in bad.json()["detail"]
    missing = requests.post(f"{s.url}/api/remove", data={"om": "true"}, timeout=30)
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "file"]
    assert _post(s.url, png, {"om": "maybe"}).status_code == 422
    matting = _post(s.url, png, {"a": "true"})
    assert matting.status_code == 400 and "alpha matting" in matting.json()["detail"]
    assert requests.get(f"{s.url}/api/remove?url=http://example.com/x.png", timeout=30).status_code == 501
    assert requests.get(f"{s.url}/api/remove", timeout=30).status_code == 422
    nope = requests.get(f"{s.url}/nope", timeout=30)
    assert nope.status_code == 404 and nope.json() == {"detail": "Not Found"}
    broken = requests.post(f"{s.url}/api/remove", data=b"--x\r\nnot a part", timeout=30,
                           headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert broken.status_code in (400, 422) and "detail" in broken.json()
    health = requests.get(f"{s.url}/healthz", timeout=30).json()
    assert health["status"] == "ok" and health["runtime"] == "onnxruntime"
    assert health["queue"]["pixel_budget"] == 60_000_000 and health["queue"]["inflight"] == 0


def test_rembg_api_on_the_tiny_openvino_bundle(ov_bundle, rgb):
    """The OpenVINO bundle behind the same HTTP layer: masks, cut-outs, and what /healthz says
    about the compiled model it imported."""
    import requests

    s = InProcess(ov_bundle, "--workers", "2")
    try:
        png = _png(rgb)
        r = _post(s.url, png, {"om": "true"})
        assert r.status_code == 200 and r.headers["X-Model"] == "tiny-ov"
        mask = np.asarray(Image.open(io.BytesIO(r.content)))
        assert mask.shape == (45, 60)
        cut = np.asarray(Image.open(io.BytesIO(_post(s.url, png).content)))
        assert np.array_equal(cut[..., :3], rgb) and np.array_equal(cut[..., 3], mask)
        assert _post(s.url, b"garbage").status_code == 400
        health = requests.get(f"{s.url}/healthz", timeout=30).json()
        assert health["status"] == "ok" and health["runtime"] == "openvino"
        assert health["load_optimization"] == "imported" and health["model_file"].endswith(".blob")
        # the same bundle compiling its IR answers the same mask
        t = InProcess(ov_bundle, "--portable")
        try:
            r2 = _post(t.url, png, {"om": "true"})
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(r2.content))), mask)
            assert requests.get(f"{t.url}/healthz", timeout=30).json()["model_file"] == "model.xml"
        finally:
            t.close()
    finally:
        s.close()


# --- the limits ---------------------------------------------------------------------------------------


def test_a_declared_body_over_the_cap_is_refused_before_it_is_sent(serve_with):
    s = serve_with("--max-upload-mb", "1")
    head = (b"POST /api/remove HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Content-Length: 200000000\r\nExpect: 100-continue\r\n\r\n")
    answer = _raw(s.port, head)  # not one byte of the body sent
    assert _status(answer) == 413 and b"over the cap of 1 MB" in answer and b"connection: close" in answer.lower()


def test_a_client_that_sends_its_whole_refused_upload_still_reads_the_answer(serve_with):
    """A client (requests, say) sends its whole body before it reads; the server answered 413
    at the headers. Closing with unread bytes would reset the connection and lose the answer:
    the server drops what still arrives first (a lingering close). CI once lost it."""
    s = serve_with("--max-upload-mb", "1")
    body = b"\0" * (3 << 20)
    for pause in (0, 0.3):  # the body right behind the headers, or after the server answered
        with socket.create_connection(("127.0.0.1", s.port), timeout=30) as c:
            c.sendall(b"POST /api/remove HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body))
            time.sleep(pause)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                c.sendall(body)
            answer = _drain(c, 10)
        assert _status(answer) == 413, answer[:200]
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["detail"].startswith("upload of 3.1 MB is over the cap")
    for _ in range(50):  # through requests, multipart: a reset lost about half of these answers
        r = _post(s.url, body)
        assert r.status_code == 413 and "over the cap" in r.json()["detail"]


def _stream_until_refused(port: int, head: bytes, chunks) -> tuple[bytes, int]:
    """Send `head` then `chunks` until the server answers or closes; (answer, bytes sent)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head)
        try:
            for chunk in chunks:
                s.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return _drain(s, 10), sent


def test_a_chunked_body_over_the_cap_is_refused_as_it_arrives(serve_with):
    s = serve_with("--max-upload-mb", "1")
    head = (b"POST /api/remove HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: image/png\r\n\r\n")  # a raw body: nothing refuses it before the cap
    rss = proc_mb(os.getpid(), "VmRSS")
    answer, sent = _stream_until_refused(s.port, head, (b"10000\r\n" + b"\0" * 0x10000 + b"\r\n"
                                                        for _ in range(3200)))  # 200 MB offered
    assert _status(answer) == 413 and b"over the cap" in answer
    assert sent < 100e6  # the server stopped taking it long before the end
    assert proc_mb(os.getpid(), "VmRSS") - rss < 100  # and did not keep it


def test_a_chunk_size_line_that_never_ends_is_not_buffered(serve_with):
    s = serve_with("--max-header-kb", "16")
    head = b"POST /api/remove HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: image/png\r\n\r\n"
    rss = proc_mb(os.getpid(), "VmRSS")
    answer, sent = _stream_until_refused(s.port, head, (b"f" * (1 << 20) for _ in range(200)))
    assert _status(answer) == 400
    assert sent < 100e6 and proc_mb(os.getpid(), "VmRSS") - rss < 100


def test_header_size_and_count(serve_with):
    s = serve_with("--max-header-kb", "32", "--max-headers", "50")
    big = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(
        f"X-Big-{i}: ".encode() + b"a" * 60_000 + b"\r\n" for i in range(10)) + b"\r\n"
    assert _status(_raw(s.port, big)) == 400  # 600 KB of headers: refused once over 32 KB
    many = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(f"X-{i}: v\r\n".encode() for i in range(60)) + b"\r\n"
    answer = _raw(s.port, many)
    assert _status(answer) == 431 and b"more than 50 headers" in answer
    few = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + b"X-1: v\r\n" * 40 + b"\r\n"
    assert _status(_raw(s.port, few)) == 200


def test_slow_headers_are_cut_off(serve_with):
    s = serve_with("--header-timeout", "1")
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        answered = None
        for i in range(20):  # a header line every 0.3 s: never finished
            time.sleep(0.3)
            c.setblocking(False)
            try:
                if c.recv(1, socket.MSG_PEEK):  # the answer is here
                    answered = time.monotonic() - t0
                    break
            except BlockingIOError:
                pass
            except ConnectionResetError:
                break
            finally:
                c.setblocking(True)
            try:
                c.sendall(f"X-Slow-{i}: {i}\r\n".encode())
            except (BrokenPipeError, ConnectionResetError):
                break
        answered = answered or time.monotonic() - t0
        answer = _drain(c, 10)
        closed = time.monotonic() - t0
    assert _status(answer) == 408 and answered < 5  # at the 1 s deadline, not after 20 lines
    assert closed < 15  # the server stops reading the connection soon after (its lingering close)
    # a connection that sends nothing at all is closed too
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        t0 = time.monotonic()
        assert _status(_drain(c, 5)) == 408 and time.monotonic() - t0 < 5


def test_a_stalled_body_gets_408(serve_with):
    s = serve_with("--body-timeout", "1")
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        c.sendall(b"POST /api/remove HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n"
                  + b"x" * 10)
        t0 = time.monotonic()
        answer = _drain(c, 10)
    assert _status(answer) == 408 and b"stalled" in answer and time.monotonic() - t0 < 5


def test_connections_are_capped(serve_with):
    s = serve_with("--max-connections", "3", "--header-timeout", "2")
    idle = [socket.create_connection(("127.0.0.1", s.port), timeout=10) for _ in range(3)]
    try:
        time.sleep(0.2)
        answer = _raw(s.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _status(answer) == 503 and b"retry-after" in answer.lower()
    finally:
        for c in idle:
            c.close()
    time.sleep(0.3)  # the idle ones gone, there is room again
    assert _status(_raw(s.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")) == 200


def test_a_full_queue_answers_503_at_once(serve_with, rgb):
    runtime = Blocking()
    s = serve_with("--queue", "0", "--workers", "1", runtime=runtime)
    first: dict = {}
    t = threading.Thread(target=lambda: first.update(r=_post(s.url, _png(rgb), {"om": "true"})))
    t.start()
    try:
        assert runtime.entered.wait(30)  # the first request holds the only slot
        busy = _post(s.url, _png(rgb))
        assert busy.status_code == 503 and int(busy.headers["Retry-After"]) >= 1
        assert "busy" in busy.json()["detail"]
    finally:
        runtime.release.set()
        t.join(30)
    assert first["r"].status_code == 200
    assert _post(s.url, _png(rgb)).status_code == 200


def test_a_crash_in_the_model_is_one_500_and_the_server_stays_up(serve_with, rgb):
    import requests

    class Broken(Blocking):
        def run(self, x):
            raise RuntimeError("the runtime fell over")

    s = serve_with("--queue", "0", runtime=Broken())
    r = _post(s.url, _png(rgb))
    assert r.status_code == 500 and "the runtime fell over" in r.json()["detail"]
    health = requests.get(f"{s.url}/healthz", timeout=30).json()
    assert health["status"] == "ok" and health["queue"]["inflight"] == 0 and health["queue"]["pixels_inflight"] == 0


def test_images_in_flight_are_bounded_by_pixels(serve_with, rgb):
    """With room for one 60x45 image's pixels, a second waits (admit) until the first is done,
    while it already holds a queue slot."""
    import requests

    runtime = Blocking()
    s = serve_with("--max-inflight-mp", "0.003", runtime=runtime)  # 3000 pixels: one 2700-pixel image
    answers: list = []
    threads = [threading.Thread(target=lambda: answers.append(_post(s.url, _png(rgb), {"om": "true"})))
               for _ in range(2)]
    for t in threads:
        t.start()
    try:
        assert runtime.entered.wait(30)
        deadline = time.monotonic() + 10
        while (q := requests.get(f"{s.url}/healthz", timeout=10).json()["queue"])["inflight"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert q["pixels_inflight"] == 60 * 45  # the second is admitted but holds no pixels yet
        time.sleep(0.3)
        assert runtime.calls == 1  # and it is not decoded, let alone run, while the first holds them
    finally:
        runtime.release.set()
        for t in threads:
            t.join(30)
    assert [a.status_code for a in answers] == [200, 200]
    admits = sorted(server_timing(a.headers["Server-Timing"])["admit"] for a in answers)
    assert admits[1] >= 0.25  # the second waited for the first's pixels


def test_pixel_gate_is_first_come_first_served(bundle):
    serve = bundle_mod.load_template(bundle / "serve.py", "serve_gate")

    async def scenario() -> list[str]:
        gate = serve.Gate(workers=1, queue=4, pixel_budget=100)
        order: list[str] = []

        done_a = asyncio.Event()  # "a" holds its pixels until told: no race with a busy machine

        async def job(name: str, pixels: int, hold: asyncio.Event | None = None) -> None:
            await gate.admit(pixels)
            order.append(name)
            if hold is not None:
                await hold.wait()
            gate.release(pixels)

        tasks = [asyncio.create_task(job("a", 60, done_a))]
        await asyncio.sleep(0.01)
        tasks += [asyncio.create_task(job("big", 500)), asyncio.create_task(job("small", 10))]
        await asyncio.sleep(0.01)
        assert order == ["a"]  # big waits for room; small waits behind big (first come, first served)
        assert gate.pixels == 60
        done_a.set()
        await asyncio.gather(*tasks)
        assert gate.pixels == 0
        # a waiter that gives up gives its place back
        await gate.admit(90)
        waiter = asyncio.create_task(gate.admit(20))
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        gate.release(90)
        assert gate.pixels == 0 and not gate._waiting
        assert gate.enter() and gate.enter() and gate.enter() and gate.enter() and gate.enter()
        assert not gate.enter() and gate.retry_after() >= 1  # capacity 5: the sixth is turned away
        return order

    # a thread of its own: an earlier test in the session may leave an event loop set on this one
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert pool.submit(asyncio.run, scenario()).result(timeout=60) == ["a", "big", "small"]


# --- as the user runs it: a fresh process -----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_the_bundle_runs_where_the_studio_is_not_installed(request, runtime, rgb, tmp_path):
    """`python -S` (no site: the studio's editable install is not on the path) with only the
    installed packages on PYTHONPATH, from the bundle folder: the studio cannot be imported
    there, and the server answers."""
    bundle = request.getfixturevalue("bundle" if runtime == "onnxruntime" else "ov_bundle")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([sysconfig.get_paths()["purelib"],
                                                       sysconfig.get_paths()["platlib"]]))
    probe = subprocess.run([sys.executable, "-S", "-c", "import studio"], cwd=bundle, env=env,
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode != 0 and "No module named 'studio'" in probe.stderr  # the check can fail
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-S", "serve.py", "--port", str(port), "--quiet"], cwd=bundle,
                                env=env, stdout=f, stderr=subprocess.STDOUT)
    try:
        wait_listening(proc, port, time.monotonic() + 60, log)
        body, ctype = multipart({"om": "true"}, _png(rgb), "x.png")
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/api/remove", body=body, headers={"Content-Type": ctype})
        r = conn.getresponse()
        assert r.status == 200 and Image.open(io.BytesIO(r.read())).size == (60, 45)
        conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0, log.read_text()  # a graceful stop: SIGTERM is how docker stops it


@pytest.mark.slow
def test_four_concurrent_49_mp_uploads_stay_under_1_5_gb(bundle, tmp_path):
    """Issue 21: 4 concurrent 49 MP uploads took the old server to 2.96 GB. Admitted by pixels,
    they are decoded and encoded one at a time: the server's extra RSS stays under 1.5 GB."""
    side = 7000  # 49 MP, smooth: cheap to encode, as dear as any photograph to hold
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    big = tmp_path / "49mp.jpg"
    Image.fromarray(np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], 128), axis=2).astype(np.uint8)
                    ).save(big, quality=85)
    body, ctype = multipart({}, big.read_bytes(), big.name)  # the cut-out: the dearer answer
    small, small_ctype = multipart({}, _png(np.zeros((45, 60, 3), np.uint8)), "small.png")
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen([sys.executable, "serve.py", "--port", str(port), "--quiet"], cwd=bundle,
                                stdout=f, stderr=subprocess.STDOUT)
    try:
        wait_listening(proc, port, time.monotonic() + 60, log)
        import http.client

        def call(data: bytes = body, content_type: str = ctype) -> tuple[int, dict]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            conn.request("POST", "/api/remove", body=data, headers={"Content-Type": content_type})
            r = conn.getresponse()
            r.read()
            return r.status, server_timing(r.getheader("Server-Timing"))

        call(small, small_ctype)  # one first, alone: the model and the imaging code loaded
        before = proc_mb(proc.pid, "VmRSS")
        peak = [before]
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                peak.append(proc_mb(proc.pid, "VmRSS") or 0.0)
                time.sleep(0.02)

        w = threading.Thread(target=watch)
        w.start()
        results: list = [None] * 4
        clients = [threading.Thread(target=lambda i=i: results.__setitem__(i, call())) for i in range(4)]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        done.set()
        w.join()
    finally:
        stop(proc)
    assert [r[0] for r in results] == [200] * 4
    assert max(peak) - before < 1500, (before, max(peak))
    assert sum(r[1]["admit"] > 0.1 for r in results) >= 2  # they took turns
