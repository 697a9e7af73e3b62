"""Builds that reproduce anywhere (slow): the shipped int8-static build made on a "fresh clone"
(no ../shared, no npm on PATH, only the fp32 source in an empty cache) has the same sha256 as
the build made in this session (with ../shared where this machine has it); and, where the
sod-dev images are here, the committed ranges are what those images give.

A real `git clone` is not possible from a test, so the fresh machine is emulated: a subprocess
with STUDIO_SHARED pointing at an empty folder, PATH without npm or node, and STUDIO_CACHE an
empty folder holding only the fp32 source file (copied, as a user would fetch it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from studio import settings
from studio.quant import builds
from studio.quant.ranges import read_ranges
from studio.zoo import load_zoo

pytestmark = pytest.mark.slow
SHIPPED = "isnet-general-use-int8-static"


def _sod_dev() -> Path:
    root = settings.shared_dir() / "datasets" / "sod-dev"
    if not root.is_dir():
        pytest.skip(f"needs {root} (the images the committed ranges were measured on)")
    return root


def _path_without_npm() -> str:
    keep = [d for d in os.environ["PATH"].split(os.pathsep)
            if d and not any((Path(d) / tool).exists() for tool in ("npm", "node", "npx"))]
    return os.pathsep.join([str(Path(sys.executable).parent), *keep])


def test_shipped_int8_static_builds_the_same_bytes_on_a_fresh_machine(isnet_weights, tmp_path):
    here = builds.build(load_zoo().get(SHIPPED), progress=False, threads=2, check=False)

    fresh = tmp_path / "fresh"
    (fresh / "cache" / "weights").mkdir(parents=True)
    (fresh / "shared").mkdir()  # an empty shared folder: no datasets, no peer
    src = Path(isnet_weights["isnet-general-use"].path)
    for name in (src.name, f"{src.name}.json"):
        shutil.copyfile(src.parent / name, fresh / "cache" / "weights" / name)
    env = {**os.environ, "STUDIO_CACHE": str(fresh / "cache"), "STUDIO_SHARED": str(fresh / "shared"),
           "PATH": _path_without_npm(), "STUDIO_RESULTS": str(fresh / "results")}
    assert shutil.which("npm", path=env["PATH"]) is None
    proc = subprocess.run([sys.executable, "-m", "studio", "build", SHIPPED, "--threads", "2", "--json"],
                          capture_output=True, text=True, env=env, timeout=1800, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rec = json.loads(proc.stdout)[0]
    assert rec["sha256"] == here.sha256
    assert rec["calibration"]["ranges_sha256"] == here.calibration["ranges_sha256"]
    assert rec["agreement"] is None  # the check needs sod-dev (skipped); the build did not
    # nothing was calibrated and nothing came from npm
    cal = fresh / "cache" / "builds" / "calibration"
    assert not list(cal.glob("stats-*.npz")) and not (fresh / "cache" / "npm").exists()


@pytest.mark.shared
def test_committed_ranges_are_what_the_images_give(isnet_weights, tmp_path):
    """Remake the 512 build's ranges from the sod-dev images: the same images (ids and content
    hashes) and the same values (bit for bit on the machine that wrote them; within float noise
    on another CPU, whose convolutions may round differently). Identical ranges build identical
    bytes.

    An optional extra where ../shared is present: the only check that a committed ranges file is
    what its (research-use, uncommitted) images give. The same machinery on generated images runs
    everywhere: tests/test_quant_resolution.py (ranges deterministic, the key hashes the ranges
    and not the path, committed ranges build without their images)."""
    _sod_dev()
    v = load_zoo().get("isnet-general-use-512-int8-static")
    committed, meta = read_ranges(builds.recipe_of(v).ranges_path)
    fresh_path = builds.write_ranges(v, out=tmp_path / "remade.ranges.json", progress=False, threads=2)
    remade, remeta = read_ranges(fresh_path)
    assert remeta["images"] == meta["images"] and remeta["content_sha256"] == meta["content_sha256"]
    assert set(remade.ranges) == set(committed.ranges)
    for name, (lo, hi) in committed.ranges.items():
        rlo, rhi = remade.ranges[name]
        scale = max(abs(lo), abs(hi), 1e-6)
        assert abs(rlo - lo) <= 1e-3 * scale and abs(rhi - hi) <= 1e-3 * scale, name
    if fresh_path.read_bytes() == builds.recipe_of(v).ranges_path.read_bytes():
        recipe = builds.recipe_of(v).with_params(**{"calibration.ranges": str(fresh_path)})
        a = builds.build(v, progress=False, threads=2, check=False)
        b = builds.build(v, progress=False, threads=2, check=False, recipe=recipe)
        assert a.key == b.key and a.sha256 == b.sha256  # the key hashes the ranges, not the path
    # else: another machine's convolutions rounded differently; the values are within the
    # tolerance above, and the committed file is what every machine builds from.
