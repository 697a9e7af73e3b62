"""The session's guard over the user's folders (tests/conftest.py): the listing and the
changes it reports, on a temporary tree."""

from __future__ import annotations

import os

from tests.conftest import listing_changes, tree_listing, watched_changes


def _tree(root):
    (root / "weights").mkdir(parents=True)
    (root / "weights" / "a.onnx").write_bytes(b"a" * 10)
    (root / "builds" / "x").mkdir(parents=True)
    (root / "builds" / "x" / "model.onnx").write_bytes(b"m" * 5)
    (root / "zoo.yaml").write_text("files: {}\n")
    return root


def test_listing_has_every_file_with_its_size(tmp_path):
    root = _tree(tmp_path / "models")
    listing = tree_listing(root)
    assert set(listing) == {"weights/a.onnx", "builds/x/model.onnx", "zoo.yaml"}
    assert listing["weights/a.onnx"][0] == 10
    assert tree_listing(tmp_path / "absent") == {}
    assert listing_changes(listing, tree_listing(root)) == []  # looking changes nothing


def test_every_kind_of_change_is_reported(tmp_path):
    root = _tree(tmp_path / "models")
    before = tree_listing(root)
    (root / "builds" / "y").mkdir()
    (root / "builds" / "y" / "model.onnx").write_bytes(b"new")       # added
    (root / "zoo.yaml").unlink()                                     # removed
    (root / "weights" / "a.onnx").write_bytes(b"a" * 11)             # changed size
    same = root / "builds" / "x" / "model.onnx"
    st = same.stat()
    same.write_bytes(b"M" * 5)                                       # rewritten, same size
    os.utime(same, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a later mtime, whatever the clock
    assert listing_changes(before, tree_listing(root)) == [
        "builds/x/model.onnx: rewritten (same size)",
        "builds/y/model.onnx: added",
        "weights/a.onnx: changed size (10 -> 11 bytes)",
        "zoo.yaml: removed",
    ]


def test_watched_changes_name_each_root(tmp_path):
    a, b = _tree(tmp_path / "models"), tmp_path / "results"
    before = {str(a): tree_listing(a), str(b): tree_listing(b)}
    b.mkdir()
    (b / "latest").mkdir()
    (b / "latest" / "summary.json").write_text("{}")
    assert watched_changes(before, roots=(a, b)) == [f"{b}/latest/summary.json: added"]


def test_the_session_keeps_its_temp_files_in_its_own_folder():
    """What the session's processes write to the temp dir (the app's result files, Gradio's
    upload cache, gradio_client's downloads, Ray's sessions) lands in the session's folder, which
    the session removes; the studio's folders are there too, on every xdist worker."""
    import tempfile
    from pathlib import Path

    session_tmp = Path(os.environ["TMPDIR"])
    assert session_tmp.name == "tmp" and session_tmp.parent.name.startswith("studio-tests-")
    assert Path(tempfile.gettempdir()) == session_tmp
    for var in ("STUDIO_CACHE", "STUDIO_RESULTS", "STUDIO_DATA"):
        folder = Path(os.environ[var])
        assert folder.parent.name.startswith("studio-tests-") and folder.is_relative_to(session_tmp.parent), var


def test_every_test_of_the_app_server_runs_in_its_group(request):
    """Under xdist, a file that uses the session's app server (or its browser) but is not in
    APP_SERVER_FILES would start a second app on the other worker: the list must name them all."""
    from tests.conftest import APP_SERVER_FIXTURES, scheduling_group

    users = {item.nodeid for item in request.session.items
             if any(f in item.fixturenames for f in APP_SERVER_FIXTURES)}
    assert not {n for n in users if scheduling_group(n) != "app-server"}
    assert scheduling_group("tests/test_bench.py::test_x[a-b]") == "tests/test_bench.py"
