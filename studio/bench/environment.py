"""Where a run ran: the machine, the packages and the commit, recorded in summary.json.

One place for it: the local run's `environment` and each Ray node's probe (`node_info`) read the
same package versions and CPU name, so a driver and its nodes are compared like for like.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from importlib import metadata
from typing import TYPE_CHECKING, Any

from studio import settings

if TYPE_CHECKING:
    from studio.bench.config import SuiteConfig

# What a result depends on: recorded with every run and compared across Ray nodes.
PACKAGES = ("numpy", "onnxruntime", "onnxruntime-gpu", "torch", "torchvision", "rembg", "transparent-background",
            "opencv-python-headless", "scikit-image", "pillow", "gradio", "ray", "matting-studio")


def package_versions(packages: tuple[str, ...] | list[str] = PACKAGES) -> dict[str, str]:
    """{package: version} of those installed here (missing ones are left out)."""
    out = {}
    for p in packages:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[p] = metadata.version(p)
    return out


def cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo on Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=settings.REPO_ROOT, capture_output=True,
                              text=True, timeout=5).stdout.strip() or None
    except Exception:  # no git, not a checkout: the run still records everything else
        return None


def gpu_name(device: str) -> str | None:
    if not device.startswith("cuda"):
        return None
    try:
        import torch

        return torch.cuda.get_device_name(0)
    except Exception:
        return "unknown CUDA device"


def environment(cfg: SuiteConfig, executor_info: dict[str, Any]) -> dict[str, Any]:
    """summary.json's `environment`: machine, packages, conventions, how things were measured, and
    `executor_info` (the executor's `describe()`: where inference ran)."""
    from studio.metrics import CONVENTIONS

    return {
        "cpu": cpu_name(), "cpu_count": os.cpu_count(), "threads": cfg.threads or "runtime default",
        "device": cfg.device, "gpu": gpu_name(cfg.device), "python": platform.python_version(),
        "platform": platform.platform(), "packages": package_versions(), "git_commit": git_commit(),
        "metric_conventions": CONVENTIONS,
        **executor_info,
        "latency": "warm wall time per image of preprocess + inference + postprocess, from one interleaved "
                   "timing phase (rounds x timing images, every variant once per round in a shuffled order), "
                   "measured in this run's sitting only",
        "cold_start": "fresh subprocess, measured in this sitting; OS file cache may be warm",
        "memory": "cold-start subprocess peak RSS when cold start is measured, else peak RSS growth "
                  "while loading and warming up the model in-process (per variant: memory_source)",
    }
