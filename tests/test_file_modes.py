"""What the studio publishes (reports, summaries, weights, mattes) is 0644 under umask 022:
readable by other users and by a web server, as files written the usual way are."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from studio import settings
from tests.conftest import synthetic_photo


@pytest.mark.slow  # a subprocess: eval/run.py as a user runs it
def test_a_benchmark_report_and_summary_are_0644(tmp_path):
    ds = tmp_path / "ds"
    for d in ("im", "gt"):
        (ds / d).mkdir(parents=True)
    for i in range(2):
        img, mask = synthetic_photo(80, 100, seed=i)
        Image.fromarray(img).save(ds / "im" / f"s{i}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(ds / "gt" / f"s{i}.png")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(settings.REPO_ROOT / "eval" / "run.py"), "--models", "grabcut", "--dataset",
         str(ds), "--no-cold-start", "--out", str(out)],
        capture_output=True, text=True, timeout=600, preexec_fn=lambda: os.umask(0o022))
    assert proc.returncode == 0, proc.stderr[-2000:]
    published = [out / "report.html", out / "summary.json"]
    published += [p for p in out.rglob("*") if p.is_file() and p not in published]
    for path in published:
        assert oct(path.stat().st_mode & 0o777) == oct(0o644), path
