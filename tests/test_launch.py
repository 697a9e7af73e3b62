"""Child processes (`studio.procs`): stopping one, which every launcher in the tree uses, and the
engine's pool functions the app uses instead of reaching into `studio.pool`."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import numpy as np

from studio import engine, procs

IGNORES_TERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"


def _child(code: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "up"  # its handler is set
    return proc


def test_stop_terminates_then_kills_a_child_that_ignores_sigterm():
    polite = _child("import time; print('up', flush=True); time.sleep(60)")
    assert procs.stop(polite, grace_s=5) == -signal.SIGTERM
    stubborn = _child(IGNORES_TERM)
    t0 = time.monotonic()
    assert procs.stop(stubborn, grace_s=0.5) == -signal.SIGKILL
    assert time.monotonic() - t0 < 5  # killed after the grace period, not after its sleep
    assert procs.stop(stubborn) == -signal.SIGKILL  # already gone: only reaped again


def test_free_port_is_free_and_http_status_says_none_when_nothing_listens():
    port = procs.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # nothing holds it
    assert procs.http_status(f"http://127.0.0.1:{port}/", timeout=0.5) is None


def test_engine_infer_says_cold_once_and_unload_makes_it_cold_again():
    rgb = np.zeros((24, 32, 3), np.uint8)
    rgb[6:18, 8:24] = 220
    engine.unload("grabcut")
    assert not engine.is_loaded("grabcut")
    _, _, cold = engine.infer("grabcut", rgb)
    assert cold and engine.is_loaded("grabcut", "cpu") and ("grabcut", "cpu", 0) in engine.loaded_models()
    matte, _, cold_again = engine.infer("grabcut", rgb)
    assert not cold_again and matte.alpha.shape == (24, 32)
    assert not engine.is_loaded("grabcut", "cuda")  # another device is another runner
    engine.unload("grabcut")
    assert not engine.is_loaded("grabcut") and engine.infer("grabcut", rgb)[2]


def test_the_pool_budget_is_set_through_the_engine():
    _used, before = engine.pool_usage()
    try:
        engine.set_pool_budget(1234)
        assert engine.pool_usage()[1] == 1234.0
    finally:
        engine.set_pool_budget(before)
    assert engine.pool_usage()[1] == before


def test_a_child_started_dies_with_parent_goes_when_its_parent_is_killed(tmp_path):
    """A killed test run (or eval script) must not leave its app or server running."""
    parent = subprocess.Popen([sys.executable, "-c",
                               "import subprocess, sys, time\n"
                               "from studio.procs import dies_with_parent\n"
                               "c = subprocess.Popen(dies_with_parent([sys.executable, '-c', 'import time; time.sleep(120)']))\n"
                               "print(c.pid, flush=True); time.sleep(120)"],
                              stdout=subprocess.PIPE, text=True, cwd=procs.__file__.rsplit("/studio/", 1)[0])
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    time.sleep(0.3)  # the child has exec'd its real command
    with open(f"/proc/{child}/cmdline", "rb") as f:
        assert b"time.sleep(120)" in f.read()
    parent.kill()  # SIGKILL: no clean-up of its own runs
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{child}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in "ZX":
                    break  # dead (a zombie until init reaps it)
        except FileNotFoundError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"child {child} outlived its killed parent")
