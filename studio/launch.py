"""Start `python app.py` in a subprocess and time it to its first HTTP 200.

Used by the tests (a real app on a free port), the eval scripts (the arena's scripted voters)
and to measure the app's cold start:

    python -m studio.launch --measure      # seconds from process start to the page served
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from studio import settings
from studio.procs import dies_with_parent, free_port, http_status, stop

__all__ = ["Server", "measure", "running_app"]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    seconds_to_200: float
    log: Path


@contextlib.contextmanager
def running_app(port: int | None = None, env: dict[str, str] | None = None, timeout: float = 120.0,
                log: Path | None = None) -> Iterator[Server]:
    """`python app.py` on a free loopback port; yields once `/` answers 200, stops it after."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}/"
    log = log or Path(os.environ.get("TMPDIR", "/tmp")) / f"matting-studio-app-{port}.log"
    full_env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
                "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(dies_with_parent([sys.executable, "app.py"]), cwd=settings.REPO_ROOT, env=full_env, stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            while True:
                if http_status(url) == 200:
                    break
                if proc.poll() is not None:
                    raise RuntimeError(f"app.py exited with {proc.returncode}; see {log}:\n"
                                       + log.read_text(errors="replace")[-3000:])
                if time.perf_counter() - t0 > timeout:
                    raise TimeoutError(f"app.py did not serve {url} within {timeout:.0f} s; see {log}")
                time.sleep(0.05)
            yield Server(url, proc, time.perf_counter() - t0, log)
        finally:
            stop(proc)


def measure(runs: int = 3) -> list[float]:
    """Seconds from `python app.py` starting to the first HTTP 200 on `/`, per run."""
    times = []
    for _ in range(runs):
        with running_app() as server:
            times.append(server.seconds_to_200)
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--measure", action="store_true", help="time app.py to its first HTTP 200")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args(argv)
    if not a.measure:
        ap.print_help()
        return 2
    times = measure(a.runs)
    times_s = ", ".join(f"{t:.2f}" for t in times)
    print(f"app.py to first HTTP 200: median {sorted(times)[len(times) // 2]:.2f} s (runs: {times_s})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
