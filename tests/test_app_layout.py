"""The Blocks as built: API names, the shared inference queue, PNG outputs, error conversion."""

from __future__ import annotations

import pytest

gr = pytest.importorskip("gradio")


def test_every_event_has_an_api_name(demo):
    names = [fn.api_name for fn in demo.fns.values()]
    assert all(names), names
    assert len(names) == len(set(names))
    assert {"compare", "benchmark", "recommend", "open_run", "fetch_weights"} <= set(names)


def test_timed_functions_share_one_queue_slot_and_take_raw_uploads(demo):
    by_name = {fn.api_name: fn for fn in demo.fns.values()}
    for name in ("compare", "benchmark"):
        fn = by_name[name]
        assert fn.concurrency_id == "inference" and fn.concurrency_limit == 1, name
        assert fn.preprocess is False and fn.queue is True, name  # uploads reach studio.imageio undecoded


def test_images_are_served_as_png_and_nothing_is_example_cached(demo):
    blocks = list(demo.blocks.values())
    outputs = [b for b in blocks if isinstance(b, gr.Gallery | gr.ImageSlider)]
    assert outputs and all(b.format == "png" for b in outputs)
    assert not [b for b in blocks if isinstance(b, gr.Dataset)]  # no gr.Examples, so no example cache


def test_compare_api_signature(demo):
    fn = next(f for f in demo.fns.values() if f.api_name == "compare")
    labels = [c.label for c in fn.inputs]
    assert labels[0] == "Image" and labels[1].startswith("Reference mask") and labels[2] == "variants"
    assert any(isinstance(c, gr.JSON) for c in fn.outputs)


def test_user_errors_become_gr_error_for_plain_and_streaming_handlers():
    from studio.errors import WeightsNotInstalled
    from studio.ui.blocks import user_errors
    from studio.ui.uploads import UploadError

    @user_errors
    def plain(x):
        raise UploadError(f"bad {x}")

    @user_errors
    def streaming(x):
        yield 1
        raise WeightsNotInstalled(f"missing {x}")

    with pytest.raises(gr.Error, match="bad a"):
        plain("a")
    g = streaming("b")
    assert next(g) == 1
    with pytest.raises(gr.Error, match="missing b"):
        next(g)


def test_launch_kwargs(monkeypatch):
    from studio.ui import launch_kwargs

    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.setenv("STUDIO_MAX_UPLOAD_MB", "12")
    kw = launch_kwargs()
    assert kw["server_name"] == "127.0.0.1" and kw["max_file_size"] == "12mb"
    assert launch_kwargs(server_port=9999)["server_port"] == 9999


def test_refresh_after_a_fetch_keeps_the_users_choices():
    from studio.ui import variants
    from studio.ui.blocks import refresh_models

    groups = variants.grouped(installed_only=True)
    shown = variants.installed_ids()
    current = [[vid for _, vid in items][:1] for items in groups.values()]  # the user kept one per family
    out = refresh_models(shown, *current)
    zoo, fetch_list, bench, pool, new_shown, *boxes = out
    assert len(boxes) == len(groups) and new_shown == shown
    assert [b.value for b in boxes] == [c for c in current]


def test_the_ui_reaches_models_jobs_and_votes_only_through_their_rooms():
    """No studio/ui module imports `studio.pool` (the engine offers what a front may do with it)
    or a private name of another package; no eval script imports `studio.ui` (the app is started
    through `studio.launch`)."""
    import ast
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]

    def imports(path: Path) -> list[tuple[str, str]]:
        out = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                out += [(a.name, "") for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                out += [(node.module, a.name) for a in node.names]
        return out

    bad = []
    for path in sorted((repo / "studio" / "ui").glob("*.py")):
        for module, name in imports(path):
            if module == "studio.pool" or (module, name) == ("studio", "pool"):
                bad.append(f"{path.name}: imports studio.pool")
            if name.startswith("_") and not module.startswith("studio.ui") and module.startswith("studio"):
                bad.append(f"{path.name}: imports the private {module}.{name}")
    for path in sorted((repo / "eval").rglob("*.py")):
        bad += [f"eval/{path.relative_to(repo / 'eval')}: imports {m}" for m, _ in imports(path)
                if m == "studio.ui" or m.startswith("studio.ui.")]
    assert bad == []


def test_every_page_load_and_tab_reads_the_inventory(demo):
    """Not only the Models tab's timer: the page load and every tab's select run `page_refresh`,
    which redraws the header and every model picker when the inventory on disk changed."""
    fn = next(f for f in demo.fns.values() if f.name == "page_refresh")
    tabs = {b._id for b in demo.blocks.values() if isinstance(b, gr.Tab)}
    triggers = {tuple(t) for t in fn.targets}
    assert {(t, "select") for t in tabs} <= triggers and any(ev == "load" for _, ev in triggers)
    outs = {o.elem_id for o in fn.outputs}
    assert {"bench-variants", "compare-reference-model", "bench-reference", "zoo-table", "build-pick",
            "pool-status"} <= outs
    assert sum(isinstance(o, gr.CheckboxGroup) for o in fn.outputs) >= 1 and fn.queue is False


def test_loaded_models_follow_a_comparison(demo):
    """After Compare (and Benchmark) runs, the Models tab's "Loaded models" is redrawn."""
    pool = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "pool-status")
    after = {f.trigger_after for f in demo.fns.values() if f.name == "pool_status" and pool in f.outputs}
    runs = {i for i, f in demo.fns.items() if f.name in ("compare", "benchmark_page")}
    assert runs and runs <= after


def test_the_pages_benchmark_streams_its_line_in_the_inference_slot(demo):
    page = next(f for f in demo.fns.values() if f.name == "benchmark_page")
    assert page.concurrency_id == "inference" and page.concurrency_limit == 1 and page.preprocess is False
    assert page.outputs[0].elem_id == "bench-status"
    run_buttons = [b for b in demo.blocks.values() if isinstance(b, gr.Button)
                   and b.elem_id in ("compare-run", "bench-run")]
    assert len(run_buttons) == 2  # both inside the sticky bars (layout: tests/browser)
