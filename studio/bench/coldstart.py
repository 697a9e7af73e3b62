"""Cold start in a fresh subprocess: the 11 s an API's first request pays.

The child measures its own phases and prints one JSON line:
  import       importing the studio and the backend's runtime (onnxruntime, torch, ...)
  weights      finding the weights and checking their sha256
  init         creating the session / model (and tracing, for jit variants)
  first_inference  the first prediction on a real image
The parent adds `interpreter` (process start-up and exit, the rest of the wall time) and
`total_s`. Peak RSS is the child's high-water mark; GPU memory is read on CUDA.

    python -m studio.bench.coldstart VARIANT IMAGE [--device cpu] [--threads 0]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

PHASES = ("interpreter", "import", "weights", "init", "first_inference")


def proc_status_mb(field: str) -> float:
    """A memory line of /proc/self/status (VmRSS, VmHWM) in MB; NaN where there is none.
    VmHWM, the peak, starts afresh at exec, unlike getrusage's ru_maxrss, which carries the
    parent's peak across fork+exec."""
    from studio.memory import status_mb

    mb = status_mb(field)
    return float("nan") if mb is None else mb


def process_gpu_mb(device: str) -> float | None:
    """This process's GPU memory in MB: torch's peak, else what the driver reports for it."""
    if not device.startswith("cuda"):
        return None
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
            return torch.cuda.max_memory_allocated() / 2**20
    except Exception:
        pass
    try:  # onnxruntime's CUDA memory is not torch's: ask the driver about this process
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            pid, mem = (x.strip() for x in line.split(","))
            if int(pid) == os.getpid():
                return float(mem)
    except Exception:
        pass
    return None


def child(variant_id: str, image_path: str, device: str, threads: int) -> dict:
    t0 = time.perf_counter()
    from studio import engine
    from studio.backends import runner_class
    from studio.imageio import load_image
    from studio.zoo import load_zoo

    variant = load_zoo().get(variant_id)
    runner_class(variant.backend)  # imports the runtime itself
    image = load_image(image_path)
    t1 = time.perf_counter()
    runner, load = engine.load_runner(variant, device=device, threads=threads, verify=True)
    t2 = time.perf_counter()
    engine.run_runner(runner, image)
    t3 = time.perf_counter()
    return {
        "import": t1 - t0, "weights": load.weights_s, "init": load.init_s, "first_inference": t3 - t2,
        "peak_rss_mb": proc_status_mb("VmHWM"), "gpu_mb": process_gpu_mb(device),
    }


def measure(variant_id: str, image_path: str | Path, device: str = "cpu", threads: int = 0,
            timeout: float = 900.0) -> dict:
    """Run the child and return the split; raises RuntimeError with the child's last words."""
    env = dict(os.environ)
    env.setdefault("PYTHONWARNINGS", "ignore")
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "studio.bench.coldstart", variant_id, str(image_path),
         "--device", device, "--threads", str(threads)],
        capture_output=True, text=True, timeout=timeout, env=env,
    )
    wall = time.perf_counter() - start
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        raise RuntimeError(f"cold-start child failed (exit {proc.returncode}): {tail[-1] if tail else ''}")
    res = json.loads(lines[-1])
    if "error" in res:
        raise RuntimeError(res["error"])
    inside = sum(res[k] for k in PHASES[1:])
    res["interpreter"] = max(0.0, wall - inside)
    res["total_s"] = wall
    return res


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variant")
    ap.add_argument("image")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args(argv)
    try:
        out = child(a.variant, a.image, a.device, a.threads)
    except Exception as exc:  # reported to the parent as data, not a traceback
        out = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
