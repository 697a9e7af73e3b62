"""The Space's background prefetch and the Models tab's fetch and build handlers, against a
local mirror with a tiny zoo: the declared set in order, after the page is served, with progress;
a tiny declared build built from the tab; and the pickers refreshed when a job ends."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from studio import artifacts, jobs, settings
from studio.ui import models as models_h
from studio.weights import mirror, store
from studio.weights.progress import Step
from studio.zoo import load_zoo

RELEASE = "https://github.com/example/models/releases/download/v1"
PRE = {"mean": [0.5, 0.5, 0.5], "std": [1.0, 1.0, 1.0], "scale": "255", "resize": "bilinear"}
POST = {"activation": "none", "normalize": "minmax", "resize": "bilinear"}


def tiny_onnx() -> bytes:
    """conv 3->1 then sigmoid at 32x32: a model ONNX Runtime loads and quantizes in a blink."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 0.5, (1, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(1, np.float32), "b")
    nodes = [helper.make_node("Conv", ["input", "w", "b"], ["logits"], name="/head/Conv", pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["logits"], ["output"], name="/Sigmoid")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, 32, 32])], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="test")
    model.ir_version = 8
    return model.SerializeToString()


@pytest.fixture
def space(tmp_path, monkeypatch):
    """A tiny zoo (three fetched variants, one declared build) on a local mirror, as a Space
    would see it: SPACE_ID set, no shared folder, a cache of its own."""
    model, blob = tiny_onnx(), b"x" * 300_000
    root = tmp_path / "mirror"
    for name, data in (("tiny.onnx", model), ("blob-a.bin", blob), ("blob-b.bin", blob[::-1])):
        path = root / mirror.relative_path(f"{RELEASE}/{name}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    httpd, url = mirror.serve(root)
    tiny = {"family": "tiny", "backend": "onnx", "input_size": [32, 32], "license": "MIT (test)",
            "preprocess": PRE, "postprocess": POST}

    def file(name, data):
        return {"size": len(data), "sources": [{"url": f"{RELEASE}/{name}", "sha256": hashlib.sha256(data).hexdigest()}]}

    zoo = {"files": {"tiny.onnx": file("tiny.onnx", model), "blob-a.bin": file("blob-a.bin", blob),
                     "blob-b.bin": file("blob-b.bin", blob[::-1])},
           "variants": [{"id": "tiny", **tiny, "precision": "fp32", "file": "tiny.onnx"},
                        {"id": "blob-a", **tiny, "file": "blob-a.bin"},
                        {"id": "blob-b", **tiny, "file": "blob-b.bin"},
                        {"id": "tiny-int8-dynamic", **tiny, "precision": "int8-dynamic",
                         "file": "tiny-int8-dynamic.onnx", "derived_from": "tiny",
                         "recipe": {"kind": "int8-dynamic", "check": {"count": 2}}}]}
    (tmp_path / "zoo").mkdir()
    (tmp_path / "zoo" / "zoo.yaml").write_text(yaml.safe_dump(zoo))
    for var, value in {"STUDIO_ZOO": tmp_path / "zoo" / "zoo.yaml", "STUDIO_CACHE": tmp_path / "cache",
                       "STUDIO_MIRROR": url, "HOME": tmp_path / "home", "STUDIO_SHARED": tmp_path / "no-shared",
                       "SPACE_ID": "someone/matting-studio"}.items():
        monkeypatch.setenv(var, str(value))
    load_zoo.cache_clear()
    yield SimpleNamespace(url=url, root=root)
    httpd.shutdown()
    load_zoo.cache_clear()


def test_the_prefetch_set_is_declared(monkeypatch):
    monkeypatch.delenv("STUDIO_PREFETCH", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert settings.prefetch_set() == []  # locally nothing unless asked
    monkeypatch.setenv("SPACE_ID", "a/b")
    assert settings.prefetch_set() == list(settings.DEFAULT_SPACE_PREFETCH) == ["u2netp", "isnet-general-use"]
    monkeypatch.setenv("STUDIO_PREFETCH", "none")
    assert settings.prefetch_set() == []
    monkeypatch.setenv("STUDIO_PREFETCH", "isnet-general-use, u2netp")
    assert settings.prefetch_set() == ["isnet-general-use", "u2netp"]
    # the default set is real: zoo variants with a public URL source (rembg's release)
    zoo = load_zoo()
    for vid in settings.DEFAULT_SPACE_PREFETCH:
        wf = zoo.file_of(zoo.get(vid))
        assert wf.sources[0].kind == "url" and "github.com/danielgatis/rembg/releases/" in wf.sources[0].location


class RecordingTracker(jobs.Tracker):
    def __init__(self):
        super().__init__()
        self.steps: list[tuple[int, Step]] = []

    def step(self, job, step):
        self.steps.append((job.id, step))
        super().step(job, step)


def test_prefetch_waits_for_the_page_then_fetches_the_set_in_order(space, monkeypatch):
    tracker = RecordingTracker()
    worker = jobs.Worker(tracker)
    demo = SimpleNamespace(server_port=None, local_url=None)  # not launched yet
    monkeypatch.setenv("STUDIO_PREFETCH", "blob-b tiny blob-a nonexistent")
    thread = jobs.start_after_served(demo, worker=worker, poll=0.02)
    time.sleep(0.3)
    assert tracker.snapshot() == [] and thread.is_alive()  # nothing before the page is served
    demo.server_port = int(space.url.rsplit(":", 1)[1])  # "launched": the mirror answers 200 on /
    thread.join(10)
    assert worker.wait_idle(60)
    ran = tracker.snapshot()
    assert [j.variant for j in ran] == ["blob-b", "tiny", "blob-a", "nonexistent"]
    assert [j.state for j in ran] == ["done", "done", "done", "failed"]
    assert "unknown model variant" in ran[3].message
    assert tracker.served_at is not None and all(j.queued_at >= tracker.served_at for j in ran)
    started = [j.started_at for j in ran[:3]]
    assert started == sorted(started) and ran[0].finished_at <= ran[1].started_at  # one at a time
    # progress: bytes grow to the size, then installed
    b = [s for jid, s in tracker.steps if jid == ran[0].id]
    dl = [s.done for s in b if s.action == "download"]
    assert dl == sorted(dl) and dl[-1] == 300_000 and b[-1].action == "installed"
    assert any(line.startswith("✓ blob-b.bin") for line in ran[0].log)
    assert tracker.generation == 4
    # a Space restart finds them installed and skips them
    again = worker.submit(["blob-a"], origin="prefetch")
    assert worker.wait_idle(30) and tracker.snapshot()[-1].state == "skipped" and again[0].message == "already here"


def test_fetch_handler_follows_the_worker_with_progress(space):
    tracker = jobs.Tracker()
    worker = jobs.Worker(tracker)
    seen = []
    md = models_h.fetch(["blob-a", "tiny"], progress=lambda frac, desc: seen.append((frac, desc)),
                        worker=worker, poll=0.001)
    assert md.startswith("**Fetched 2 of 2.**") and "✓ `blob-a`" in md and "mirror:" in md
    assert [j.variant for j in tracker.snapshot()] == ["blob-a", "tiny"]
    assert store.installed("blob-a.bin") and store.installed("tiny.onnx")
    assert all(0.0 <= f <= 1.0 for f, _ in seen if f is not None)


def test_models_tab_builds_a_declared_build_and_the_pickers_refresh(space):
    from studio.ui.blocks import weights_tick

    v = load_zoo().get("tiny-int8-dynamic")
    assert [vid for _, vid in models_h.buildable()] == ["tiny-int8-dynamic"]
    assert "(fetched first" in models_h.buildable()[0][0]
    tracker = jobs.Tracker()
    messages = []
    md = models_h.build("tiny-int8-dynamic", progress=lambda frac, desc: messages.append(desc), tracker=tracker)
    assert md.startswith("**Built `tiny-int8-dynamic`**") and "sha256" in md
    rec = artifacts.installed(v)
    assert rec is not None and Path(rec.path).is_file()
    assert store.installed("tiny.onnx") is not None  # its source was fetched first, from the mirror
    assert any("fetching its source tiny" in m for m in messages) and any("built" in m for m in messages)
    (job,) = tracker.snapshot()
    assert job.kind == "build" and job.state == "done" and job.log
    assert models_h.buildable() == []

    # the timer's first tick (seen = -1) redraws the header, the table and every picker
    from studio.ui import variants

    groups = variants.grouped(installed_only=True)
    out = weights_tick(-1, [], [], None, [], *[[] for _ in groups])
    status, gen, header, zoo, to_fetch, bench, pool, shown, *rest = out
    boxes, to_build = rest[:-1], rest[-1]
    assert gen == jobs.TRACKER.generation and "models installed" in header
    assert "tiny-int8-dynamic" in shown and "tiny" in shown
    assert any("tiny-int8-dynamic" in (b.value or []) for b in boxes)  # a new default joins the picker
    assert "tiny-int8-dynamic" in bench.value and to_build.choices == []
    # nothing ended since: the next tick changes nothing
    quiet = weights_tick(gen, [], [], None, shown, *[b.value for b in boxes])
    assert quiet[1] == gen and all(not isinstance(x, dict) or x.get("__type__") == "update" for x in quiet[2:])


def test_a_failed_build_is_shown_and_raised(space, monkeypatch):
    from studio.quant import builds

    tracker = jobs.Tracker()
    root_file = space.root / mirror.relative_path(f"{RELEASE}/tiny.onnx")
    root_file.write_bytes(b"not the file")  # the source fails its checksum: the build cannot start
    with pytest.raises(builds.BuildError, match="could not be fetched"):
        models_h.build("tiny-int8-dynamic", tracker=tracker)
    (job,) = tracker.snapshot()
    assert job.state == "failed" and "refused" in job.message


def test_status_panel_shows_bytes_failures_and_escapes():
    t = jobs.Tracker()
    a = t.add("fetch", "isnet-general-use", "prefetch")
    b = t.add("fetch", "u2netp", "prefetch")
    t.start(b)
    t.step(b, Step("u2netp.onnx", "source-failed", "url https://x/u2netp.onnx: HTTPError: <404>"))
    t.finish(b, "failed", "could not fetch u2netp.onnx")
    t.start(a)
    t.step(a, Step("isnet-general-use-fp16.onnx", "download", "http://m/x.tgz", 45_000_000, 113_025_777))
    html = models_h.status_html(t.snapshot())
    assert "1 in progress or queued" in html and "1 failed" in html
    assert "downloading isnet-general-use-fp16.onnx" in html and "45.0 MB of 113.0 MB (40 %)" in html
    assert "&lt;404&gt;" in html and "<404>" not in html
    assert "<progress" in html
    json.dumps(html)  # plain text for the timer's output


def test_no_jobs_says_what_would_happen(monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("STUDIO_PREFETCH", raising=False)
    assert "nothing is fetched in the background here" in models_h.status_html([])
    monkeypatch.setenv("SPACE_ID", "a/b")
    assert "u2netp, isnet-general-use" in models_h.status_html([])


def test_pages_share_one_refresh_per_generation(space, monkeypatch):
    """Every open page refreshes after each job; the zoo is described once per job, not per page."""
    from studio.ui import variants
    from studio.ui.blocks import weights_tick

    groups = variants.grouped(installed_only=True)
    calls = []
    real = variants.choices
    monkeypatch.setattr(variants, "choices", lambda: calls.append(1) or real())
    for _ in range(3):  # three pages load
        out = weights_tick(-1, [], [], None, [], *[[] for _ in groups])
    assert len(calls) == 1 and out[1] == jobs.TRACKER.generation
    assert weights_tick(out[1], [], [], None, [], *[[] for _ in groups])[2:] == tuple(
        weights_tick(out[1], [], [], None, [], *[[] for _ in groups])[2:])  # idle: all skips
    assert len(calls) == 1
