"""The largest upload the app accepts (49 MP, under the 50 MP cap) costs a bounded amount of
memory through the Compare handler: measured in a fresh process (scripts/upload_memory.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from studio import settings

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "upload_memory.py"
BOUND_MB = 1500


def _script():
    spec = importlib.util.spec_from_file_location("upload_memory", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_measured_size_is_just_under_the_cap():
    assert 49e6 < settings.DEFAULT_MAX_PIXELS <= 50e6


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_a_49_mp_upload_with_reference_stays_under_the_bound(tmp_path):
    # the metrics' worst case: a matte soft over the whole image, scored against a reference
    r = _script().measure(49.0, "grabcut", reference=True, soft=True, workdir=tmp_path)
    assert r["ok"], r["errors"]
    assert r["megapixels"] >= 49.0
    print(f"\n49 MP upload, soft matte, with reference: peak RSS +{r['growth_mb']:.0f} MB")
    assert r["growth_mb"] <= BOUND_MB, r
