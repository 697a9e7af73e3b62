"""Child processes on this machine: a free loopback port, an HTTP probe, and one way to stop a child.

Used by the app launcher (`studio.launch`), the background jobs (`studio.jobs`), the export's
cold-start measurement, the tests and the eval scripts. Standard library only.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
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


# exec'd first in the child: ask the kernel for SIGTERM when the parent dies (PR_SET_PDEATHSIG
# outlives execve), then become the real command; if the parent is already gone, exit
_DIE_WITH_PARENT = ("import ctypes, os, sys\n"
                    "ctypes.CDLL(None, use_errno=True).prctl(1, 15)\n"
                    "if os.getppid() != int(sys.argv[1]): sys.exit(143)\n"
                    "os.execv(sys.argv[2], sys.argv[2:])\n")


def dies_with_parent(cmd: list[str]) -> list[str]:
    """`cmd` such that the child gets SIGTERM when this process dies, even by SIGKILL (Linux):
    an app or a server a killed test run started is not left running. Elsewhere `cmd` as is.
    The signal follows the thread that starts the child: start it from a thread that lives as
    long as the child should (the main thread, as the tests and eval scripts do)."""
    if not sys.platform.startswith("linux"):
        return cmd
    exe = cmd[0] if os.path.isabs(cmd[0]) else (shutil.which(cmd[0]) or cmd[0])
    return [sys.executable, "-S", "-c", _DIE_WITH_PARENT, str(os.getpid()), exe, *cmd[1:]]


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
