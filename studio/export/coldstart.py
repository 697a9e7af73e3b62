"""Cold start of an exported bundle as its user sees it: `python serve.py` in a fresh process,
then the first `/api/remove` answer, then a warm one.

    python -m studio.export.coldstart DIR IMAGE [--repeat 3] [--warmup]

`measure_bundle(dir, image)` returns one dict; every time is seconds from the exec of the
server process (the parent's clock; CLOCK_MONOTONIC is shared by both processes on Linux):

| key | what |
|---|---|
| `listening_s` | exec -> the port accepts a connection |
| `first_answer_s` | exec -> the first `/api/remove` answer is read: the cold start the user sees |
| `first_request_s` | that first request alone: sent -> answered (waits for the model load) |
| `warm_request_s` | median of `warm` more requests on the loaded server (same image, same connection) |
| `interpreter_s` | exec -> serve.py's first line (Python's own start-up) |
| `phases_s` | the server's start-up marks from exec: `listening`, `runtime_imported` (numpy, the runtime), `session_ready` (the model loaded, compiled or imported), `imaging_ready` (Pillow configured; a first request may have done it sooner), `warmed_up` (with --warmup) |
| `server_timing_first`, `server_timing_warm` | the answers' Server-Timing split in seconds: read, decode, preprocess, wait (for the model load or a worker), inference, postprocess, encode |
| `rss_listening_mb`, `rss_first_mb`, `rss_warm_mb` | the server's resident memory at those points |
| `cpu_first_s` | CPU seconds (user + system, every thread) the server used up to its first answer |
| `peak_rss_mb` | its high-water mark (VmHWM) after the warm answer |
| `health` | the server's /healthz after the warm answer: which model file it loaded, and how (`load_optimization`: an ORT level, or OpenVINO's `compiled` / `imported`) |
| `variant`, `runtime`, `image`, `image_size`, `model_mb`, `warmup`, `command`, `load_average` | what was measured, and how busy the machine was |

The server is stopped (SIGTERM) before the function returns. Linux only (/proc); the OS file
cache may hold the model from an earlier run, as it would on a restarted container's host.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from studio.procs import free_port, stop


def proc_mb(pid: int, field: str) -> float | None:
    from studio.memory import status_mb

    return status_mb(field, pid)


def proc_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system, all threads) the process has used: on a shared machine the
    wall clock counts the neighbours' load, this counts only the server's own work."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def multipart(fields: dict[str, str], file_bytes: bytes, filename: str = "image") -> tuple[bytes, str]:
    """A multipart/form-data body as curl -F sends it: (body, content type)."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                 f"Content-Type: application/octet-stream\r\n\r\n".encode() + file_bytes + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def server_timing(header: str | None) -> dict[str, float]:
    """`decode;dur=12.5, inference;dur=300` -> {"decode": 0.0125, "inference": 0.3}."""
    out = {}
    for item in (header or "").split(","):
        name, _, rest = item.strip().partition(";")
        if rest.startswith("dur="):
            out[name] = float(rest[4:]) / 1e3
    return out


def post_remove(conn: http.client.HTTPConnection, body: bytes, ctype: str) -> tuple[int, bytes, dict[str, str]]:
    conn.request("POST", "/api/remove", body=body, headers={"Content-Type": ctype})
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, data, {k.lower(): v for k, v in resp.getheaders()}


def wait_listening(proc: subprocess.Popen, port: int, deadline: float, log: Path) -> None:
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace").strip().splitlines()[-5:]
                raise RuntimeError(f"the server exited with {proc.returncode} before listening: "
                                   + " | ".join(tail)) from None
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not listen in time") from None
            time.sleep(0.004)


def measure_bundle(bundle: str | os.PathLike, image: str | os.PathLike, *, warmup: bool = False,
                   warm: int = 3, python: str | None = None, extra_args: tuple[str, ...] = (),
                   timeout: float = 300.0) -> dict[str, Any]:
    """Start the bundle's server in a fresh process and time it to its first and a warm answer."""
    bundle = Path(bundle).resolve()
    data = Path(image).read_bytes()
    body, ctype = multipart({}, data, Path(image).name)
    cfg = json.loads((bundle / "model.json").read_text())
    files = [f for f in (cfg["model_file"], cfg.get("weights_file")) if f]  # an IR's .bin too
    port = free_port()
    cmd = [python or sys.executable, "serve.py", "--port", str(port), "--quiet",
           *(["--warmup"] if warmup else []), *extra_args]
    with tempfile.NamedTemporaryFile(prefix="serve-", suffix=".log", delete=False) as f:
        log = Path(f.name)
    out: dict[str, Any] = {"variant": cfg["variant"], "image": str(image), "warmup": warmup,
                           "model_mb": round(sum((bundle / f).stat().st_size for f in files) / 1e6, 1),
                           "runtime": cfg.get("runtime", "onnxruntime"),
                           "command": " ".join(["python", *cmd[1:]])}
    with open(log, "wb") as logf:
        t_exec = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=bundle, stdout=subprocess.DEVNULL, stderr=logf)
    try:
        wait_listening(proc, port, t_exec + timeout, log)
        out["listening_s"] = time.monotonic() - t_exec
        out["rss_listening_mb"] = proc_mb(proc.pid, "VmRSS")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        t_send = time.monotonic()
        status, png, headers = post_remove(conn, body, ctype)
        t_first = time.monotonic()
        if status != 200:
            raise RuntimeError(f"the first request got HTTP {status}: {png[:300]!r}")
        out["first_answer_s"] = t_first - t_exec
        out["first_request_s"] = t_first - t_send
        out["server_timing_first"] = server_timing(headers.get("server-timing"))
        out["rss_first_mb"] = proc_mb(proc.pid, "VmRSS")
        out["cpu_first_s"] = proc_cpu_s(proc.pid)
        import io

        from PIL import Image

        out["image_size"] = list(Image.open(io.BytesIO(png)).size)
        warm_times, warm_timing = [], []
        for _ in range(max(1, warm)):
            t = time.monotonic()
            status, _, headers = post_remove(conn, body, ctype)
            warm_times.append(time.monotonic() - t)
            warm_timing.append(server_timing(headers.get("server-timing")))
            if status != 200:
                raise RuntimeError(f"a warm request got HTTP {status}")
        out["warm_request_s"] = statistics.median(warm_times)
        out["server_timing_warm"] = {k: statistics.median(t.get(k, 0.0) for t in warm_timing)
                                     for k in warm_timing[0]}
        out["rss_warm_mb"] = proc_mb(proc.pid, "VmRSS")
        out["peak_rss_mb"] = proc_mb(proc.pid, "VmHWM")
        conn.request("GET", "/healthz")
        health = json.loads(conn.getresponse().read())
        conn.close()
        t_script = health["t_start_monotonic"]
        out["interpreter_s"] = t_script - t_exec
        out["health"] = {k: health.get(k) for k in ("model_file", "load_optimization", "compiled_fallback")
                         if health.get(k) is not None}
        out["load_average"] = [round(x, 1) for x in os.getloadavg()]
        out["phases_s"] = {k: round(t_script - t_exec + v, 4) for k, v in health["startup_s"].items()}
        return out
    finally:
        stop(proc, grace_s=10)
        log.unlink(missing_ok=True)


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-key medians of several measure_bundle dicts (nested dicts too)."""
    out: dict[str, Any] = {}
    for k, v in runs[0].items():
        if isinstance(v, bool) or not isinstance(v, int | float | dict):
            out[k] = v
        elif isinstance(v, dict):
            out[k] = median_of([r.get(k) or {} for r in runs])
        else:
            vals = [r[k] for r in runs if isinstance(r.get(k), int | float)]
            out[k] = statistics.median(vals) if vals else None
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Cold start of an exported bundle's server.")
    ap.add_argument("bundle")
    ap.add_argument("image")
    ap.add_argument("--repeat", type=int, default=3, help="fresh processes; the medians are printed")
    ap.add_argument("--warmup", action="store_true", help="start the server with --warmup")
    a = ap.parse_args(argv)
    runs = [measure_bundle(a.bundle, a.image, warmup=a.warmup) for _ in range(max(1, a.repeat))]
    print(json.dumps({"median": median_of(runs), "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
