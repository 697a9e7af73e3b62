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


def _lines() -> list[str]:
    lines = [ln.split("#", 1)[0].strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()]
    return [ln for ln in lines if ln]


def _requirements() -> dict[str, Requirement]:
    reqs = {}
    for line in _lines():
        if line.startswith("-"):  # pip options (--extra-index-url)
            continue
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


def test_a_cpu_space_gets_the_cpu_only_torch():
    """PyTorch's CPU index is an extra index, and torch/torchvision are pinned without a local
    label, so pip prefers `X+cpu` from that index (PEP 440 sorts it above `X`) and falls back to
    the plain release where the index is unreachable. No other index or option sneaks in."""
    options = [ln for ln in _lines() if ln.startswith("-")]
    assert options == ["--extra-index-url https://download.pytorch.org/whl/cpu"]
    reqs = _requirements()
    for name in ("torch", "torchvision"):
        pin = _pinned(reqs[name])
        assert pin and "+" not in pin, f"{name}=={pin}: pin the public release; the index picks +cpu"
    from packaging.version import Version

    assert Version("2.14.1+cpu") > Version("2.14.1")  # what makes pip take the CPU build


def test_readme_says_how_the_space_gets_cpu_torch_and_its_weights():
    text = (ROOT / "README.md").read_text()
    assert "download.pytorch.org/whl/cpu" in text and "ZeroGPU" in text
    assert "STUDIO_PREFETCH" in text and "STUDIO_MIRROR" in text
    for vid in settings.DEFAULT_SPACE_PREFETCH:
        assert vid in text


def test_packages_txt_lets_either_cv2_build_import():
    pkgs = (ROOT / "packages.txt").read_text().split()
    assert "libgl1" in pkgs and "libglib2.0-0" in pkgs


@pytest.mark.parametrize("mod", ["app"])
def test_app_py_is_thin(mod):
    src = (ROOT / f"{mod}.py").read_text()
    code = [ln for ln in src.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert len(code) < 20 and "from studio.ui import" in src


@pytest.mark.slow
def test_a_space_serves_its_page_first_then_prefetches(tmp_path):
    """`python app.py` as a Space (SPACE_ID, no shared folder) with a tiny zoo on a local mirror:
    the page answers before the first request reaches the mirror, then the set is fetched in
    order and installed."""
    import hashlib
    import time

    from studio.ui.serve import running_app
    from studio.weights import mirror

    release = "https://github.com/example/models/releases/download/v1"
    blobs = {"first.bin": b"a" * 200_000, "second.bin": b"b" * 100_000}
    hits: list[tuple[float, str]] = []

    class Handler(mirror.RangeHandler):
        def send_head(self):
            hits.append((time.time(), self.path))
            return super().send_head()

    root = tmp_path / "mirror"
    for name, data in blobs.items():
        path = root / mirror.relative_path(f"{release}/{name}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    httpd, url = mirror.serve(root, handler=Handler)
    zoo = {"files": {n: {"sources": [{"url": f"{release}/{n}", "sha256": hashlib.sha256(d).hexdigest()}]}
                     for n, d in blobs.items()},
           "variants": [{"id": n.removesuffix(".bin"), "family": "isnet", "backend": "onnx", "file": n,
                         "license": "MIT"} for n in blobs]}
    (tmp_path / "zoo.yaml").write_text(yaml.safe_dump(zoo))
    cache = tmp_path / "cache"
    env = {"SPACE_ID": "test/matting-studio", "STUDIO_ZOO": str(tmp_path / "zoo.yaml"), "STUDIO_CACHE": str(cache),
           "STUDIO_MIRROR": url, "STUDIO_SHARED": str(tmp_path / "no-shared"), "STUDIO_PREFETCH": "second first",
           "HOME": str(tmp_path / "home")}
    try:
        with running_app(env=env, log=tmp_path / "app.log"):
            served = time.time()
            deadline = served + 60
            while not all((cache / "weights" / f"{n}.json").is_file() for n in blobs):
                assert time.time() < deadline, (tmp_path / "app.log").read_text()[-2000:]
                time.sleep(0.1)
        log = (tmp_path / "app.log").read_text()
    finally:
        httpd.shutdown()
    import re

    m = re.search(r"\[prefetch\] page served \(HTTP 200 at ([\d.]+)\); fetching in the background, "
                  r"in order: second, first", log)
    assert m, log[-2000:]
    page_up = float(m.group(1))
    assert page_up <= served + 1.0  # the prefetch saw the same page the test did
    assert hits and hits[0][0] >= page_up  # no request reached the mirror before the page answered
    assert [p.rsplit("/", 1)[1] for _, p in hits] == ["second.bin", "first.bin"]  # the declared order
    for name, data in blobs.items():
        assert (cache / "weights" / name).read_bytes() == data
