"""The Hugging Face Space files agree with the project: front matter, requirements, pins."""

from __future__ import annotations

import importlib.util
import re
import sys
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


# --- one set of pins: constraints.txt, requirements.txt, setup.sh, pyproject.toml and the venv ----

def _load_pins():
    spec = importlib.util.spec_from_file_location("studio_pins_script", ROOT / "scripts" / "pins.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


pins = _load_pins()
FIX = (f"If the tested environment (.venv) is right, regenerate the pins with `{pins.REGENERATE}`; "
       "if the pins are, bring .venv to them with `scripts/setup.sh --dev`.")


def _constraints() -> dict[str, str]:
    return pins.read_pins(ROOT / "constraints.txt")


def test_requirements_pin_the_runtime_as_constraints_and_the_venv_do():
    """Every requirements.txt line is `name==version`, the version constraints.txt pins and .venv
    has; and it names exactly the runtime closure (what a Space needs, torch as the CPU build)."""
    reqs, cons = pins.read_pins(ROOT / "requirements.txt"), _constraints()
    for name, version in reqs.items():
        assert cons.get(name) == version, f"{name}: requirements.txt pins {version}, constraints.txt {cons.get(name)}. {FIX}"
        have = pins.ALIASES.get(name, name)  # opencv-python: pinned at opencv-python-headless's version
        installed = pins.environment()[have].version
        assert installed == version, f"{name}: requirements.txt pins {version}, the tested environment has {installed}. {FIX}"
    runtime = pins.groups(pins.environment(), pins.project_roots())["runtime"]
    assert sorted(set(runtime) - set(reqs)) == [], f"the app needs these, requirements.txt lacks them. {FIX}"
    assert sorted(set(reqs) - set(runtime)) == [], f"requirements.txt pins what the app does not need. {FIX}"


def test_every_installed_package_is_pinned_in_constraints():
    cons = _constraints()
    env = pins.environment()
    unpinned = {n: d.version for n, d in env.items() if n not in cons and n not in pins.EXEMPT}
    assert not unpinned, f"installed in .venv but not in constraints.txt: {unpinned}. {FIX}"
    differ = {n: (cons[n], d.version) for n, d in env.items() if n in cons and cons[n] != d.version}
    assert not differ, f"(constraints.txt, .venv) versions differ: {differ}. {FIX}"
    # the one pin for a package not installed here: the Space's second OpenCV wheel
    assert sorted(set(cons) - set(env)) == sorted(pins.ALIASES), f"pinned but not installed. {FIX}"
    assert cons["opencv-python"] == cons["opencv-python-headless"]  # see the note in requirements.txt


def test_a_package_on_sys_path_outside_site_packages_is_not_an_install(tmp_path, monkeypatch):
    """`import ray` puts ray/thirdparty_files (a vendored colorama) on sys.path; a test file that
    imported ray ahead of these checks on the same xdist worker made them call colorama an
    unpinned install (CI, stop 25). Only the venv's site-packages count."""
    before = pins.environment()
    (tmp_path / "colorama-0.4.6.dist-info").mkdir()
    (tmp_path / "colorama-0.4.6.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: colorama\nVersion: 0.4.6\n")
    (tmp_path / "pip-1.0.dist-info").mkdir()  # a shadowing copy of an installed one, first on sys.path
    (tmp_path / "pip-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: pip\nVersion: 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "colorama" in {d.metadata["Name"] for d in metadata.distributions()}  # what the old code read
    after = pins.environment()
    assert "colorama" not in after and after["pip"].version != "1.0"
    assert after == before


def test_the_pin_files_are_what_the_venv_writes():
    """`scripts/pins.py check`: both files, comments and groups included, as the venv writes them."""
    for path, text in pins.wanted().items():
        assert path.read_text() == text, f"{path.name} is not what {pins.REGENERATE} writes here. {FIX}"


def test_pyproject_ranges_admit_every_pin():
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    cons = _constraints()
    declared = [*proj["dependencies"], *(r for extra in proj["optional-dependencies"].values() for r in extra)]
    for raw in declared:
        req = Requirement(raw)
        name = canonicalize_name(req.name)
        assert name in cons, f"pyproject.toml declares {req.name}, constraints.txt does not pin it. {FIX}"
        assert req.specifier.contains(cons[name], prereleases=True), (
            f"pyproject.toml's `{raw}` excludes the pinned {name}=={cons[name]}: widen the range, or pin "
            f"another version. {FIX}")


def test_setup_installs_everything_through_the_constraints():
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    code = [ln.split("#", 1)[0] for ln in setup.splitlines()]
    assert 'PINNED="$PIP install -c constraints.txt"' in setup
    installs = [ln for ln in code if re.search(r"\bpip\b.*\binstall\b|\$PIP install|\$PINNED", ln)
                and "PINNED=" not in ln]
    assert installs and all("$PINNED" in ln for ln in installs), installs
    assert "==" not in "".join(code), "setup.sh names no version: constraints.txt does"
    no_deps = set(re.findall(r"--no-deps ([\w.-]+)", setup))
    assert no_deps == set(pins.NO_DEPS), "scripts/pins.py's NO_DEPS lists what setup.sh installs with --no-deps"
    assert _pinned(_requirements()["gradio"]) == str(_front_matter()["sdk_version"])


def test_pins_groups_on_a_made_up_environment():
    """The grouping rules: torch's platform-marked (CUDA) requirements are left out of the
    runtime (a CPU Space's torch+cpu has none), extras are followed, a --no-deps dev package is
    not walked, an alias takes its twin's version, and an undeclared package is refused."""
    D = pins.Dist
    env = {
        "torch": D("torch", "2.0", ("filelock", 'nvidia-x==1; platform_system == "Linux"')),
        "filelock": D("filelock", "3.0", ()), "nvidia-x": D("nvidia-x", "1", ()),
        "app-lib": D("app-lib", "1.0", ("torch", "opencv-python", "uvicorn[standard]")),
        "uvicorn": D("uvicorn", "0.1", ('h11', 'watch; extra == "standard"', 'never; extra == "other"')),
        "h11": D("h11", "0.9", ()), "watch": D("watch", "2", ()),
        "opencv-python-headless": D("opencv-python-headless", "5.0", ()),
        "pytest": D("pytest", "9", ()), "pysodmetrics": D("pysodmetrics", "1.6", ("numpy<2",)),
        "pip": D("pip", "23", ()),
    }
    roots = {"runtime": ["app-lib", "opencv-python-headless"], "ray": [], "dev": ["pytest", "pysodmetrics"],
             "installer": ["pip"]}
    got = pins.groups(env, roots)
    assert got["runtime"] == {"app-lib": "1.0", "torch": "2.0", "filelock": "3.0", "opencv-python": "5.0",
                              "opencv-python-headless": "5.0", "uvicorn": "0.1", "h11": "0.9", "watch": "2"}
    assert got["cuda"] == {"nvidia-x": "1"} and got["dev"] == {"pytest": "9", "pysodmetrics": "1.6"}
    assert got["installer"] == {"pip": "23"}
    with pytest.raises(pins.PinError, match="stray==0.1"):
        pins.groups({**env, "stray": D("stray", "0.1", ())}, roots)
    with pytest.raises(pins.PinError, match="h11 .needed by uvicorn. is not installed"):
        pins.groups({k: v for k, v in env.items() if k != "h11"}, roots)


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

    from studio.launch import running_app
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
