"""Issue 21's attacks on the exported server, re-run: what each one does now.

    python eval/export_attacks.py BUNDLE [--image PATH] [--slow-interval 100] [--out FILE]
    python eval/export_attacks.py --port PORT --pid PID          (a server that is already running)

Starts `python serve.py` from BUNDLE (or attacks a running server), then, one at a time on
127.0.0.1:
- `chunked-endless-size-line`: a chunked upload whose chunk-size line never ends (200 MB of hex
  digits, no CRLF);
- `chunked-over-cap`: a well-formed chunked upload that keeps going past the upload cap;
- `content-length-over-cap`: a declared 200 MB body;
- `big-headers`: 10 headers of 60 KB each;
- `many-headers`: 500 small headers;
- `slow-headers`: one header line every --slow-interval seconds (issue 21: 100 s);
- `slow-body`: headers at once, then one body byte every --slow-interval seconds;
- `idle-connections`: --connections connections opened and left silent, then a /healthz on a new one.
For each: the status the attacker got (or how the connection ended), how long the server held
the connection, and the server's RSS growth (sampled every 20 ms). After all: whether the server
still answers /healthz and /api/remove. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studio.export.coldstart import multipart, proc_mb, wait_listening  # noqa: E402
from studio.procs import free_port, stop  # noqa: E402

CAP_ATTACK_MB = 200


class RssWatch:
    """The server's peak VmRSS while an attack runs, sampled every 20 ms."""

    def __init__(self, pid: int):
        self.pid, self.peak, self.start = pid, 0.0, proc_mb(pid, "VmRSS") or 0.0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, proc_mb(self.pid, "VmRSS") or 0.0)
            time.sleep(0.02)

    def __enter__(self) -> RssWatch:
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, proc_mb(self.pid, "VmRSS") or 0.0)

    @property
    def growth_mb(self) -> float:
        return round(self.peak - self.start, 1)


def _status(data: bytes) -> str:
    line = data.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    return line if line.startswith("HTTP/") else ("connection closed, no answer" if not data else repr(data[:60]))


def _read_answer(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    try:
        while True:
            b = sock.recv(65536)
            if not b:
                break
            chunks.append(b)
            if b"\r\n\r\n" in b"".join(chunks):
                break
    except (TimeoutError, ConnectionResetError, OSError):
        pass
    return b"".join(chunks)


def _stream(host: str, port: int, head: bytes, body_chunks, timeout: float = 120.0) -> dict:
    """Send `head`, then the chunks while the server takes them; the answer and how it ended."""
    t0 = time.monotonic()
    sent, ended = 0, "sent everything"
    with socket.create_connection((host, port), timeout=timeout) as s:
        try:
            s.sendall(head)
            for chunk in body_chunks:
                s.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError) as exc:
            ended = f"server closed it after {sent / 1e6:.1f} MB ({type(exc).__name__})"
        answer = _read_answer(s, 30)
    return {"answer": _status(answer), "ended": ended, "held_s": round(time.monotonic() - t0, 1),
            "sent_mb": round(sent / 1e6, 1)}


def chunked_endless_size_line(host: str, port: int) -> dict:
    head = (b"POST /api/remove HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n\r\n")
    return _stream(host, port, head, (b"f" * (1 << 20) for _ in range(CAP_ATTACK_MB)))


def chunked_over_cap(host: str, port: int) -> dict:
    # a raw image body, so that only the upload cap can stop it (zeros are no multipart body)
    head = (b"POST /api/remove HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: image/png\r\n\r\n")
    one = b"100000\r\n" + b"\0" * 0x100000 + b"\r\n"
    return _stream(host, port, head, (one for _ in range(CAP_ATTACK_MB)))


def content_length_over_cap(host: str, port: int) -> dict:
    head = (f"POST /api/remove HTTP/1.1\r\nHost: x\r\nContent-Length: {CAP_ATTACK_MB << 20}\r\n"
            f"Content-Type: image/png\r\n\r\n").encode()
    return _stream(host, port, head, (b"\0" * (1 << 20) for _ in range(CAP_ATTACK_MB)))


def big_headers(host: str, port: int) -> dict:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(
        f"X-Big-{i}: ".encode() + b"a" * 60_000 + b"\r\n" for i in range(10)) + b"\r\n"
    return _stream(host, port, head, ())


def many_headers(host: str, port: int) -> dict:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(
        f"X-H-{i}: v\r\n".encode() for i in range(500)) + b"\r\n"
    return _stream(host, port, head, ())


def _trickle(host: str, port: int, head: bytes, pieces: list[bytes], interval: float, limit_s: float) -> dict:
    """Send `head`, then one piece every `interval` s; how long the server kept the connection."""
    t0 = time.monotonic()
    ended, answer = "the client gave up", b""
    with socket.create_connection((host, port), timeout=limit_s) as s:
        s.sendall(head)
        for piece in pieces:
            s.settimeout(interval)
            try:  # the server answering or closing ends the wait for the next piece early
                answer = s.recv(65536)
                ended = "server answered" if answer else "server closed the connection"
                break
            except TimeoutError:
                pass
            except (ConnectionResetError, OSError):
                ended = "server reset the connection"
                break
            if time.monotonic() - t0 > limit_s:
                break
            try:
                s.sendall(piece)
            except (BrokenPipeError, ConnectionResetError, OSError):
                ended = "server closed the connection"
                break
    return {"answer": _status(answer), "ended": ended, "held_s": round(time.monotonic() - t0, 1)}


def slow_headers(host: str, port: int, interval: float) -> dict:
    lines = [f"X-Slow-{i}: {i}\r\n".encode() for i in range(20)] + [b"\r\n"]
    return _trickle(host, port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", lines, interval, 4 * interval + 60)


def slow_body(host: str, port: int, interval: float) -> dict:
    head = (b"POST /api/remove HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
            b"Content-Type: image/png\r\n\r\n")
    return _trickle(host, port, head, [b"x"] * 1000, interval, 4 * interval + 60)


def idle_connections(host: str, port: int, n: int) -> dict:
    socks, refused = [], 0
    for _ in range(n):
        try:
            socks.append(socket.create_connection((host, port), timeout=5))
        except OSError:
            refused += 1
    time.sleep(1.0)
    t0 = time.monotonic()
    with socket.create_connection((host, port), timeout=120) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = _read_answer(s, 120)
    waited = time.monotonic() - t0
    time.sleep(12)  # past the server's header deadline (10 s by default): the idle ones should be gone
    with socket.create_connection((host, port), timeout=120) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        later = _status(_read_answer(s, 120))
    kinds: dict[str, int] = {}
    for s in socks:  # what each idle connection got from the server by now
        got = b""
        s.settimeout(0.01)
        with contextlib.suppress(TimeoutError, OSError):
            got = s.recv(200)
        kind = _status(got) if got else "nothing yet"
        kinds[kind] = kinds.get(kind, 0) + 1
        s.close()
    return {"answer": _status(answer), "ended": f"{n} idle connections opened ({refused} refused by the "
            f"kernel); a new /healthz answered in {waited:.1f} s; the idle ones got: {kinds}; 12 s later a new "
        f"/healthz: {later}",
            "held_s": round(waited, 1)}


def still_serving(host: str, port: int, image: Path | None) -> str:
    import http.client

    conn = http.client.HTTPConnection(host, port, timeout=300)
    conn.request("GET", "/healthz")
    health = conn.getresponse()
    health.read()
    out = f"healthz {health.status}"
    if image is not None:
        body, ctype = multipart({"om": "true"}, image.read_bytes(), image.name)
        conn.request("POST", "/api/remove", body=body, headers={"Content-Type": ctype})
        r = conn.getresponse()
        r.read()
        out += f", /api/remove {r.status}"
    conn.close()
    return out


def run_attacks(host: str, port: int, pid: int, image: Path | None, interval: float, connections: int,
                only: list[str] | None = None) -> dict:
    attacks = {
        "chunked-endless-size-line": lambda: chunked_endless_size_line(host, port),
        "chunked-over-cap": lambda: chunked_over_cap(host, port),
        "content-length-over-cap": lambda: content_length_over_cap(host, port),
        "big-headers": lambda: big_headers(host, port),
        "many-headers": lambda: many_headers(host, port),
        "slow-headers": lambda: slow_headers(host, port, interval),
        "slow-body": lambda: slow_body(host, port, interval),
        "idle-connections": lambda: idle_connections(host, port, connections),
    }
    rows = {}
    for name, attack in attacks.items():
        if only and name not in only:
            continue
        with RssWatch(pid) as watch:
            row = attack()
        row["rss_growth_mb"] = watch.growth_mb
        rows[name] = row
        print(f"{name:28s} {row['answer'][:40]:40s} held {row['held_s']:6.1f} s  RSS +{row['rss_growth_mb']:.0f} MB"
              f"  ({row['ended']})", flush=True)
    after = still_serving(host, port, image)
    print(f"afterwards: {after}", flush=True)
    return {"attacks": rows, "afterwards": after, "rss_end_mb": proc_mb(pid, "VmRSS")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", nargs="?", type=Path)
    ap.add_argument("--image", type=Path, help="an image for the final /api/remove check")
    ap.add_argument("--port", type=int, help="attack a running server on this port (with --pid)")
    ap.add_argument("--pid", type=int)
    ap.add_argument("--slow-interval", type=float, default=100.0, help="seconds between slow pieces (issue 21: 100)")
    ap.add_argument("--connections", type=int, default=200, help="idle connections to open")
    ap.add_argument("--only", nargs="*", help="attack names to run")
    ap.add_argument("--server-args", default="", help="extra arguments for serve.py")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    proc = None
    if a.port:
        port, pid = a.port, a.pid
    else:
        port = free_port()
        log = Path(f"/tmp/export-attacks-{port}.log")
        with open(log, "wb") as f:
            proc = subprocess.Popen([sys.executable, "serve.py", "--port", str(port), "--quiet",
                                     *a.server_args.split()], cwd=a.bundle, stdout=f, stderr=subprocess.STDOUT)
        wait_listening(proc, port, time.monotonic() + 120, log)
        pid = proc.pid
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # the model loaded: its own memory is not the attacks'
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
    try:
        res = run_attacks("127.0.0.1", port, pid, a.image, a.slow_interval, a.connections, a.only)
    finally:
        if proc is not None:
            stop(proc)
    res.update({"load_average": [round(x, 1) for x in os.getloadavg()], "slow_interval_s": a.slow_interval})
    if a.out:
        a.out.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
