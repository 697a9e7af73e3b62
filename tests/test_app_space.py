"""The Hugging Face Space files agree with the project: front matter, requirements, pins."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from studio import settings

ROOT = settings.REPO_ROOT


def _front_matter() -> dict:
    text = (ROOT / "README.md").read_text()
    assert text.startswith("---\n"), "README.md must open with the Space's YAML front matter"
    return yaml.safe_load(text.split("---\n", 2)[1])


def _requirements() -> dict[str, Requirement]:
    reqs = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            r = Requirement(line)
            reqs[canonicalize_name(r.name)] = r
    return reqs


def _pinned(r: Requirement) -> str | None:
    specs = list(r.specifier)
    return specs[0].version if len(specs) == 1 and specs[0].operator == "==" else None


def test_front_matter():
    fm = _front_matter()
    assert fm["sdk"] == "gradio" and fm["app_file"] == "app.py" and fm["title"]
    assert fm["license"] == "mit"
    assert str(fm["sdk_version"]) == metadata.version("gradio")
    assert len(fm.get("short_description", "")) <= 60


def test_requirements_mirror_pyproject():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    reqs = _requirements()
    for raw in deps:
        want = Requirement(raw)
        name = canonicalize_name(want.name)
        assert name in reqs, f"{want.name} is in pyproject.toml but not in requirements.txt"
        got = reqs[name]
        pin = _pinned(got)
        if pin:
            assert want.specifier.contains(pin, prereleases=True), f"{got} is outside pyproject's {want}"
        else:
            assert got.specifier == want.specifier, f"{got} != pyproject's {want}"


def test_pins_match_setup_and_the_tested_environment():
    reqs = _requirements()
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    for name in ("torch", "torchvision"):
        pin = _pinned(reqs[name])
        assert f'"{name}=={pin}"' in setup, f"{name}=={pin} differs from scripts/setup.sh"
    assert _pinned(reqs["gradio"]) == str(_front_matter()["sdk_version"])
    assert _pinned(reqs["transparent-background"]) == re.search(
        r"transparent-background==([\d.]+)", setup).group(1)
    # the two OpenCV wheels on a Space are the same release (see the note in requirements.txt)
    assert _pinned(reqs["opencv-python"]) == _pinned(reqs["opencv-python-headless"])
    for name, r in reqs.items():
        pin = _pinned(r)
        if pin is None:
            continue
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # opencv-python: not installed here on purpose
        assert installed == pin, f"{name}: requirements.txt pins {pin}, the tested environment has {installed}"


def test_packages_txt_lets_either_cv2_build_import():
    pkgs = (ROOT / "packages.txt").read_text().split()
    assert "libgl1" in pkgs and "libglib2.0-0" in pkgs


@pytest.mark.parametrize("mod", ["app"])
def test_app_py_is_thin(mod):
    src = (ROOT / f"{mod}.py").read_text()
    code = [ln for ln in src.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert len(code) < 20 and "from studio.ui import" in src
