"""The Blocks as built: API names, the shared inference queue, PNG outputs, error conversion."""

from __future__ import annotations

import pytest

gr = pytest.importorskip("gradio")


@pytest.fixture(scope="module")
def demo():
    from studio.ui import build_app

    return build_app()


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
