"""Load test of an exported bundle's server: N concurrent clients x M requests each on 127.0.0.1.

    python eval/export_load.py BUNDLE IMAGE [--clients 16] [--requests 10] [--queue 8] [--workers 1]

Starts `python serve.py` from BUNDLE in a fresh process, waits until /healthz says the model is
loaded, sends one request to warm it, then lets every client (a thread with its own keep-alive
connection, as a rembg client would hold one) send its requests back to back. A 503 is an
answer: the client moves on to its next request without retrying (the point is to see the
bounded queue at work). Reports the answers by status, the latency of the 200s (p50, p95),
throughput (200s per second of wall time), errors (connection failures: must be 0), and the
server's RSS before and after (after each round with --rounds: memory must stay flat, one
session serving every request). Prints a table and writes JSON (--out).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studio.export.coldstart import multipart, proc_mb, wait_listening  # noqa: E402
from studio.procs import free_port, stop  # noqa: E402


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q / 100.0
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def run_load(bundle: Path, image: Path, clients: int = 16, requests: int = 10, queue: int = 8,
             workers: int = 1, only_mask: bool = True, threads: int = 0, rounds: int = 1,
             warm_image: Path | None = None) -> dict:
    body, ctype = multipart({"om": "true"} if only_mask else {}, image.read_bytes(), image.name)
    warm = warm_image or image
    warm_body, warm_ctype = multipart({"om": "true"} if only_mask else {}, warm.read_bytes(), warm.name)
    port = free_port()
    log = Path(f"/tmp/export-load-{port}.log")
    cmd = [sys.executable, "serve.py", "--port", str(port), "--quiet", "--queue", str(queue),
           "--workers", str(workers), "--threads", str(threads)]
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, cwd=bundle, stdout=f, stderr=subprocess.STDOUT)
    try:
        wait_listening(proc, port, time.monotonic() + 300, log)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        while True:
            conn.request("GET", "/healthz")
            r = conn.getresponse()
            health = json.loads(r.read())
            if r.status == 200:
                break
            time.sleep(0.1)
        conn.request("POST", "/api/remove", body=warm_body, headers={"Content-Type": warm_ctype})
        r = conn.getresponse()
        r.read()
        assert r.status == 200, r.status
        conn.close()
        rss_before = proc_mb(proc.pid, "VmRSS")
        sampled = [rss_before or 0.0]
        sampling = threading.Event()

        def sample() -> None:  # the peak during the load itself (VmHWM also holds the start-up's)
            while not sampling.is_set():
                sampled.append(proc_mb(proc.pid, "VmRSS") or 0.0)
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()

        answers: list[tuple[int, float, str | None]] = []
        errors: list[str] = []
        lock = threading.Lock()
        rss_rounds: list[float | None] = []

        def client(barrier: threading.Barrier) -> None:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            barrier.wait()
            for _ in range(requests):
                t = time.monotonic()
                try:
                    c.request("POST", "/api/remove", body=body, headers={"Content-Type": ctype})
                    resp = c.getresponse()
                    resp.read()
                    got = (resp.status, time.monotonic() - t, resp.getheader("Retry-After"))
                    if resp.getheader("Connection", "").lower() == "close":
                        c.close()
                        c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
                except Exception as exc:
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}")
                    c.close()
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
                    continue
                with lock:
                    answers.append(got)
            c.close()

        t0 = time.monotonic()
        for _ in range(rounds):  # the same server: its memory must not grow round after round
            barrier = threading.Barrier(clients)
            pool = [threading.Thread(target=client, args=(barrier,)) for _ in range(clients)]
            for t in pool:
                t.start()
            for t in pool:
                t.join()
            rss_rounds.append(proc_mb(proc.pid, "VmRSS"))
        wall = time.monotonic() - t0
        sampling.set()
        sampler.join()
        rss_after = rss_rounds[-1]
        peak = proc_mb(proc.pid, "VmHWM")
        alive = proc.poll() is None
    finally:
        stop(proc, grace_s=30)
    ok = [a[1] for a in answers if a[0] == 200]
    busy = [a for a in answers if a[0] == 503]
    by_status: dict[str, int] = {}
    for a in answers:
        by_status[str(a[0])] = by_status.get(str(a[0]), 0) + 1
    return {
        "variant": health["variant"], "image": str(image), "clients": clients, "requests_per_client": requests,
        "queue": queue, "workers": workers, "threads": threads or "runtime default", "om": only_mask,
        "answers": len(answers), "by_status": by_status, "errors": errors,
        "busy_with_retry_after": sum(1 for a in busy if a[2] and int(a[2]) >= 1),
        "ok_p50_s": percentile(ok, 50), "ok_p95_s": percentile(ok, 95), "ok_mean_s": statistics.fmean(ok) if ok else None,
        "all_p50_s": percentile([a[1] for a in answers], 50),
        "all_p95_s": percentile([a[1] for a in answers], 95),
        "throughput_ok_per_s": len(ok) / wall if wall else None, "wall_s": wall,
        "rounds": rounds, "rss_after_each_round_mb": rss_rounds,
        "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"),
        "load_average_end": [round(x, 1) for x in os.getloadavg()], "cpu_count": os.cpu_count(),
        "rss_before_mb": rss_before, "rss_after_mb": rss_after, "peak_rss_mb": peak,
        "peak_rss_during_load_mb": max(sampled), "server_alive": alive,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", type=Path)
    ap.add_argument("image", type=Path)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=10)
    ap.add_argument("--queue", type=int, nargs="+", default=[8], help="one run per queue size")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=1, help="run the whole load this many times on one server")
    ap.add_argument("--cutout", action="store_true", help="ask for the RGBA cut-out instead of the mask")
    ap.add_argument("--warm-image", type=Path, help="the image of the first, warm-up request (default: IMAGE)")
    ap.add_argument("--out", type=Path, help="write the results as JSON")
    a = ap.parse_args(argv)
    runs = [run_load(a.bundle, a.image, a.clients, a.requests, q, a.workers, not a.cutout, a.threads, a.rounds,
                     a.warm_image) for q in a.queue]
    print(f"{'queue':>5} {'answers':>7} {'200':>4} {'503':>4} {'errors':>6} {'p50 s':>6} {'p95 s':>6} "
          f"{'img/s':>6} {'RSS before':>10} {'peak':>6} {'after':>6} {'VmHWM':>6}")
    for r in runs:
        print(f"{r['queue']:>5} {r['answers']:>7} {r['by_status'].get('200', 0):>4} {r['by_status'].get('503', 0):>4} "
              f"{len(r['errors']):>6} {r['ok_p50_s'] or 0:6.2f} {r['ok_p95_s'] or 0:6.2f} "
              f"{r['throughput_ok_per_s'] or 0:6.2f} {r['rss_before_mb']:10.0f} {r['peak_rss_during_load_mb']:6.0f} "
              f"{r['rss_after_mb']:6.0f} {r['peak_rss_mb']:6.0f}")
        if r["rounds"] > 1:
            print(f"      RSS after each round: {', '.join(f'{x:.0f}' for x in r['rss_after_each_round_mb'])} MB")
    if a.out:
        a.out.write_text(json.dumps(runs, indent=2))
    return 0 if all(not r["errors"] and r["server_alive"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
