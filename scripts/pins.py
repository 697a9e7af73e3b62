"""One set of pins for every install: `constraints.txt` (the whole tested environment) and the
pinned block of `requirements.txt` (the app's runtime part, what a Hugging Face Space installs),
both written from what is installed in the running interpreter's environment (the .venv).

    .venv/bin/python scripts/pins.py write   # after installing or upgrading something in .venv
    .venv/bin/python scripts/pins.py check   # exit 1 and show what differs

`scripts/setup.sh` installs through `pip -c constraints.txt`, so a new machine gets exactly these
versions; `tests/test_app_space.py` checks the files, the venv and pyproject.toml's ranges agree.

Groups (a package is in the first that reaches it):
- runtime: pyproject.toml's dependencies and transparent-background (which setup.sh installs with
  --no-deps but a Space installs with its requirements), walked through every installed
  package's requirements. requirements.txt pins exactly this group.
- torch's CUDA build: what PyPI's Linux torch adds through its platform-marked requirements
  (nvidia-*, cuda-*, triton). The CPU index's `torch+cpu` declares none of them, so a CPU Space
  installs none: requirements.txt leaves them out, constraints.txt pins them.
- the [ray] extra, then the [dev] extra and pysodmetrics (--no-deps: its own pins clash).
- the installer: pip, which setup.sh brings to its pin first.
Not pinned: this project (installed editable).
"""

from __future__ import annotations

import argparse
import difflib
import sys
import sysconfig
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints.txt"
REQUIREMENTS = ROOT / "requirements.txt"
PROJECT = "matting-studio"
EXEMPT = {PROJECT: "this project, installed editable"}
# Installed by scripts/setup.sh with --no-deps, and the group each belongs to.
NO_DEPS = {"transparent-background": "runtime", "pysodmetrics": "dev"}
# Not installed here, pinned at another package's version: transparent-background asks for
# opencv-python, which a Space installs beside opencv-python-headless (see requirements.txt).
ALIASES = {"opencv-python": "opencv-python-headless"}
# Served as `+cpu` builds by PyTorch's CPU index, whose metadata has no platform-marked
# requirements (checked on a torch+cpu wheel's METADATA: only filelock, typing-extensions,
# setuptools, sympy, networkx, jinja2, fsspec).
CPU_INDEX = {"torch", "torchvision"}
GROUPS = ("runtime", "cuda", "ray", "dev", "installer")
TITLES = {
    "runtime": "runtime: pyproject.toml's dependencies and transparent-background, with everything "
               "they need\n# (requirements.txt pins the same versions)",
    "cuda": "runtime with PyPI's Linux torch only (its CUDA build); a CPU Space's torch+cpu needs none",
    "ray": "the [ray] extra",
    "dev": "the [dev] extra and pysodmetrics (installed with --no-deps)",
    "installer": "the venv's pip, which scripts/setup.sh upgrades to this first",
}
REGENERATE = ".venv/bin/python scripts/pins.py write"
MARK = "# ---- pinned by scripts/pins.py"
PYTHON_LINE = "# python >= "


class PinError(Exception):
    """The environment cannot be pinned as it is (a missing or an undeclared package)."""


@dataclass(frozen=True)
class Dist:
    name: str  # canonical
    version: str
    requires: tuple[str, ...]
    requires_python: str = ""


Env = dict[str, Dist]


def site_dirs() -> list[str]:
    """Where this interpreter's environment installs packages (the .venv's site-packages)."""
    paths = sysconfig.get_paths()
    return list(dict.fromkeys([paths["purelib"], paths["platlib"]]))


def environment() -> Env:
    """Every distribution installed in this interpreter's site-packages, by canonical name.

    Only site-packages, not all of sys.path: `import ray` puts its vendored copies
    (ray/thirdparty_files: colorama, psutil) on sys.path, and those are not installs to pin."""
    env: Env = {}
    for d in metadata.distributions(path=site_dirs()):
        name = canonicalize_name(d.metadata["Name"] or "")
        if name and name not in env:  # the first site dir wins, as for imports
            env[name] = Dist(name, d.version, tuple(d.requires or ()), d.metadata.get("Requires-Python") or "")
    return env


def project_roots(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, list[str]]:
    """The requirements each group starts from."""
    proj = tomllib.loads(pyproject.read_text())["project"]
    extras = proj.get("optional-dependencies", {})
    roots = {"runtime": list(proj["dependencies"]), "ray": list(extras.get("ray", [])),
             "dev": list(extras.get("dev", [])), "installer": ["pip"]}
    for name, group in NO_DEPS.items():
        roots[group].append(name)
    return roots


def _applies(req: Requirement, extras: set[str]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({"extra": e}) for e in extras | {""})


def _platform_marked(marker: Marker | None) -> bool:
    return marker is not None and any(k in str(marker) for k in ("platform_system", "sys_platform"))


def closure(env: Env, roots: list[str], cpu_torch: bool = False) -> dict[str, str]:
    """{package: version} of everything the root requirements need here, walked through the
    installed packages' requirements (with the extras each asks for). `cpu_torch`: walk torch as
    the CPU index's build (without its platform-marked CUDA requirements)."""
    found: dict[str, str] = {}
    walked: set[tuple[str, frozenset[str]]] = set()
    todo = [(req, "pyproject.toml") for req in map(Requirement, roots) if _applies(req, set())]
    while todo:
        req, parent = todo.pop()
        name = canonicalize_name(req.name)
        if name in ALIASES:
            other = ALIASES[name]
            if other not in env:
                raise PinError(f"{name} (needed by {parent}) is pinned at {other}'s version, "
                               f"and {other} is not installed")
            found[name] = env[other].version
            continue
        if name not in env:
            raise PinError(f"{name} (needed by {parent}) is not installed: run scripts/setup.sh --dev")
        found[name] = env[name].version
        key = (name, frozenset(req.extras))
        if key in walked or (name in NO_DEPS and NO_DEPS[name] == "dev"):
            continue
        walked.add(key)
        for raw in env[name].requires:
            sub = Requirement(raw)
            if not _applies(sub, set(req.extras)):
                continue
            if cpu_torch and name in CPU_INDEX and _platform_marked(sub.marker):
                continue
            todo.append((sub, name))
    return found


def groups(env: Env, roots: dict[str, list[str]]) -> dict[str, dict[str, str]]:
    """{group: {package: version}}; raises PinError for an installed package nothing declares."""
    runtime = closure(env, roots["runtime"], cpu_torch=True)
    full = closure(env, roots["runtime"])
    ray = {k: v for k, v in closure(env, roots["ray"]).items() if k not in full}
    dev = {k: v for k, v in closure(env, roots["dev"]).items() if k not in full and k not in ray}
    installer = {k: v for k, v in closure(env, roots.get("installer", [])).items()
                 if k not in full and k not in ray and k not in dev}
    out = {"runtime": runtime, "cuda": {k: v for k, v in full.items() if k not in runtime},
           "ray": ray, "dev": dev, "installer": installer}
    pinned = {k for g in out.values() for k in g}
    stray = sorted(set(env) - pinned - set(EXEMPT))
    if stray:
        raise PinError("installed, but nothing in pyproject.toml (or setup.sh's --no-deps installs) "
                       "needs: " + ", ".join(f"{n}=={env[n].version}" for n in stray)
                       + ". Declare them in pyproject.toml, or `pip uninstall` them; then run " + REGENERATE)
    return out


def python_floor(env: Env, names: set[str]) -> tuple[str, str]:
    """(the lowest Python every pinned package admits, the package that sets it): a pin such as
    soupsieve 4.1.4 (>=3.11.5) is what a too-old interpreter cannot install."""
    best, who = Version("0"), ""
    for name in sorted(names & set(env)):
        for spec in SpecifierSet(env[name].requires_python):
            if spec.operator in (">=", "~=", "==") and Version(spec.version.rstrip(".*")) > best:
                best, who = Version(spec.version.rstrip(".*")), f"{name}=={env[name].version}"
    return str(best), who


def render_constraints(pins: dict[str, dict[str, str]], floor: tuple[str, str] = ("", "")) -> str:
    lines = [
        "# Every package of the tested environment, pinned: scripts/setup.sh installs through this",
        "# file (pip -c), so `make test` on any machine tests these versions; requirements.txt (what a",
        "# Space installs) pins the runtime part to the same versions. Do not edit by hand: written",
        f"# from the installed .venv by `{REGENERATE}`. To change a version, install",
        "# it in .venv (or change pyproject.toml and run scripts/setup.sh), then run that command.",
        "# Not pinned: " + "; ".join(f"{k} ({v})" for k, v in EXEMPT.items()) + ".",
    ]
    if floor[0]:  # scripts/setup.sh reads this line and refuses an older interpreter
        lines.append(f"{PYTHON_LINE}{floor[0]} ({floor[1]} needs it)")
    for g in GROUPS:
        if pins[g]:
            lines += ["", f"# {TITLES[g]}", *(f"{k}=={v}" for k, v in sorted(pins[g].items()))]
    return "\n".join(lines) + "\n"


def render_requirements(pins: dict[str, dict[str, str]], current: str) -> str:
    """requirements.txt: its hand-written head (up to MARK) kept, the runtime pins below it."""
    head = current.split(MARK, 1)[0].rstrip("\n")
    body = [f"{MARK} from the tested environment (constraints.txt's runtime part);",
            f"# not by hand: change pyproject.toml, run scripts/setup.sh, then {REGENERATE}",
            *(f"{k}=={v}" for k, v in sorted(pins["runtime"].items()))]
    return head + "\n\n" + "\n".join(body) + "\n"


def read_pins(path: Path) -> dict[str, str]:
    """{package: version} of a constraints or requirements file's `name==version` lines."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        if len(specs) != 1 or specs[0].operator != "==":
            raise PinError(f"{path.name}: `{line}` is not pinned (name==version)")
        out[canonicalize_name(req.name)] = specs[0].version
    return out


def wanted(env: Env | None = None) -> dict[Path, str]:
    """What the two files should hold for this environment."""
    env = environment() if env is None else env
    pins = groups(env, project_roots())
    floor = python_floor(env, {k for g in pins.values() for k in g})
    return {CONSTRAINTS: render_constraints(pins, floor),
            REQUIREMENTS: render_requirements(pins, REQUIREMENTS.read_text())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=["write", "check"])
    args = ap.parse_args(argv)
    try:
        files = wanted()
    except PinError as exc:
        print(f"pins: {exc}", file=sys.stderr)
        return 1
    stale = []
    for path, text in files.items():
        old = path.read_text() if path.exists() else ""
        if old == text:
            continue
        if args.action == "write":
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
        else:
            stale.append(path)
            sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), text.splitlines(True),
                                                       f"{path.name} (committed)", f"{path.name} (this venv)"))
    if stale:
        print(f"pins: {', '.join(p.name for p in stale)} differ from the installed environment "
              f"({sys.prefix}). If the environment is right, run: {REGENERATE}; if the files are, "
              "run: scripts/setup.sh --dev", file=sys.stderr)
        return 1
    if args.action == "check":
        print("pins: constraints.txt and requirements.txt match the installed environment")
    return 0


if __name__ == "__main__":
    sys.exit(main())
