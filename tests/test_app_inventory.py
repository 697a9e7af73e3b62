"""Every page load and every tab reads the inventory as it is on disk: a fetch or build made
anywhere (another app, `studio build` in a terminal) shows without the Models tab's timer. The
build's reported times: wall, the build itself, the agreement check.

On the tests' cache (a weights file taken away and put back, as a fetch puts it: no model runs).
"""

from __future__ import annotations

import shutil
import time
from types import SimpleNamespace

import pytest

gr = pytest.importorskip("gradio")

from studio import settings  # noqa: E402
from studio.ui import blocks, variants  # noqa: E402
from studio.ui import models as models_h  # noqa: E402

VID = "isnet-general-use-int8-dynamic"
FILE = "isnet-general-use-int8-dynamic.onnx"


@pytest.fixture
def hidden(isnet_weights, tmp_path):
    """The int8-dynamic weights moved out of the cache (as if never fetched); put back after."""
    src = settings.weights_dir()
    moved = []
    for name in (FILE, f"{FILE}.json"):
        shutil.move(src / name, tmp_path / name)
        moved.append(name)
    try:
        yield lambda: [shutil.move(tmp_path / n, src / n) for n in moved if (tmp_path / n).exists()]
    finally:
        for n in moved:
            if (tmp_path / n).exists():
                shutil.move(tmp_path / n, src / n)


def _refresh(seen):
    groups = variants.grouped(installed_only=True)
    return blocks.page_refresh(seen, [], [], None, [], "", "", *[[] for _ in groups])


def test_a_fetch_made_elsewhere_shows_on_the_next_load(hidden):
    before = models_h.snapshot()
    assert VID not in {vid for _, vid in before.installed}
    out = _refresh(None)
    seen, header = out[0], out[1]
    assert seen == before.key and f"{len(before.installed)} of" in header
    assert all(isinstance(x, dict) and x.get("__type__") == "update" and len(x) == 1 for x in _refresh(seen))
    hidden()  # the file arrives, as a fetch in a terminal would put it
    out = _refresh(seen)
    assert out[0] != seen and f"{len(before.installed) + 1} of" in out[1]
    bench = out[4]
    assert VID in [vid for _, vid in bench.choices] and VID in bench.value  # a new default joins the pick
    boxes = out[10:]
    assert any(VID in (b.value or []) for b in boxes)
    zoo = {row[0]: row[1] for row in out[2]["data"]}
    assert zoo[VID].startswith("✓")


def test_the_inventory_key_follows_the_files(hidden):
    k1 = models_h.inventory_key()
    assert models_h.inventory_key() == k1
    hidden()
    assert models_h.inventory_key() != k1


def test_build_times_split_wall_build_and_check():
    t0 = time.time()
    rec = SimpleNamespace(build_seconds=13.6, created_at=t0 + 20.0, agreement={"iou_mean": 0.99})
    text = models_h.build_times(t0, t0 + 292.0, rec)
    assert text.startswith("In **4 min 52 s wall time**")
    assert "the build itself 14 s" in text and "the agreement check 4 min 32 s" in text
    assert "fetching the source and loading 6 s" in text
    old = SimpleNamespace(build_seconds=13.6, created_at=t0 - 999, agreement=None)
    assert "already built earlier" in models_h.build_times(t0, t0 + 1.0, old)
