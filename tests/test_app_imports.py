"""What starting the app imports, in one fresh interpreter (the only honest place to read
`sys.modules`): `import app` loads no model runtime, and building the app with a Ray address
set loads no Ray (the Benchmark tab connects when a run asks for it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from studio import settings

pytestmark = pytest.mark.slow

# Loaded on first use only: the page must be served in seconds (cold start).
HEAVY = ["torch", "onnxruntime", "rembg", "transparent_background", "cv2", "skimage", "plotly", "openvino",
         "nncf", "ray"]
CODE = f"""
import json, sys
import app
imported = [m for m in {HEAVY!r} if m in sys.modules]
from studio.ui import build_app
build_app()
ray = sorted(m for m in sys.modules if m == "ray" or m.startswith("ray."))
print(json.dumps({{"import app": imported, "build_app with a Ray address": ray}}))
"""


def test_app_start_imports_no_model_runtime_and_no_ray():
    env = {**os.environ, "STUDIO_RAY_ADDRESS": "127.0.0.1:6379"}
    out = subprocess.run([sys.executable, "-c", CODE], cwd=settings.REPO_ROOT, capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == {"import app": [], "build_app with a Ray address": []}
