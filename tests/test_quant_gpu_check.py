"""eval/gpu_check.sh on a machine without CUDA (this one): one line, exit 0. And its table."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "eval" / "gpu_check.sh"


def _path_without_nvidia_smi(tmp_path: Path) -> str:
    """PATH with bash and coreutils but no nvidia-smi (a folder of links to what it needs)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "timeout", "dirname", "env"):
        found = next((Path(d) / tool for d in os.environ["PATH"].split(os.pathsep) if (Path(d) / tool).is_file()), None)
        if found:
            (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def test_without_nvidia_smi_it_says_so_in_one_line(tmp_path):
    env = {**os.environ, "PATH": _path_without_nvidia_smi(tmp_path)}
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0]


def test_a_gpu_listed_but_no_cuda_runtime_still_exits_cleanly(tmp_path):
    """nvidia-smi answers (a stand-in here) but neither torch nor onnxruntime sees CUDA:
    the Python side says so in one line and exits 0, measuring nothing."""
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'GPU 0: Stand-in (UUID: GPU-0)'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}", "PYTHON": sys.executable}
    import torch

    if torch.cuda.is_available():  # pragma: no cover - a CUDA machine runs the real check instead
        pytest.skip("CUDA is available here: the stand-in nvidia-smi case cannot be staged")
    proc = subprocess.run(["bash", str(SCRIPT), "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and "neither torch nor onnxruntime sees CUDA" in lines[0]
    assert not (tmp_path / "out").exists()


def test_table_marks_untrained_rows_and_skips():
    sys.path.insert(0, str(REPO))
    from eval.quant.gpu_check import UNTRAINED, table

    rows = [
        {"label": "IS-Net fp32, CUDA EP", "precision": "fp32", "status": "ok", "untrained": False, "gpu_mb": 900.0,
         "cold": {"total_s": 4.2, "import": 1.5, "weights": 0.4, "init": 1.1, "first_inference": 0.9},
         "warm": {"p50_model_s": 0.012, "p50_total_s": 0.05}},
        {"label": "InSPyReNet base bf16, torch", "precision": "bf16", "status": "skipped: time budget spent",
         "untrained": True},
    ]
    md = table(rows)
    assert "| IS-Net fp32, CUDA EP | fp32 | 4.2 (1.5 / 1.5 / 0.9) | 12.0 / 50.0 | 900 |" in md
    assert "skipped: time budget spent" in md and UNTRAINED in md
