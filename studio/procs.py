"""Child processes on this machine: a free loopback port, an HTTP probe, and one way to stop a child.

Used by the app launcher (`studio.launch`), the background jobs (`studio.jobs`), the export's
cold-start measurement, the tests and the eval scripts. Standard library only.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import urllib.error
import urllib.request

STOP_GRACE_S = 15.0  # how long a child may take to exit after SIGTERM before it is killed


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The HTTP status `url` answers with, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return None


def stop(proc: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> int:
    """Stop a child and reap it: SIGTERM (so it can clean up), then SIGKILL after `grace_s`.
    Returns its exit code; a child that has already exited is only reaped."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()
