"""The one progress line: the step running now, and an ETA from the per-image times measured in
the run (synthetic events on a fake clock: no model, no server)."""

from __future__ import annotations

import pytest

from studio.ui.progress import ProgressLine, duration


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _line(n_jobs: int = 2) -> tuple[ProgressLine, Clock]:
    clock = Clock()
    return ProgressLine(n_jobs, clock=clock, size_of=lambda vid: {"isnet-general-use": 176.2}.get(vid)), clock


def test_the_step_names_the_model_loading_and_its_size():
    line, _ = _line()
    line.event({"stage": "loading", "variant": "isnet-general-use"})
    assert line.step == "loading isnet-general-use (176 MB)…"
    line.event({"stage": "loading", "variant": "grabcut"})
    assert line.step == "loading grabcut…"  # no weights file: no size
    line.event({"stage": "loading", "variant": "isnet-general-use~floor"})
    assert line.step == "loading isnet-general-use (176 MB) for the agreement floor…"


def test_no_eta_before_an_image_time_is_measured():
    line, clock = _line()
    line.event({"stage": "loading", "variant": "a"})
    clock.t += 30
    line.event({"stage": "image", "variant": "a", "done": 1, "total": 4})
    assert line.eta_s() is None and "known after the first images" in line.markdown()


def test_the_eta_follows_the_measured_per_image_times():
    line, clock = _line(n_jobs=2)
    line.event({"stage": "loading", "variant": "a"})
    clock.t += 5  # load + first image
    line.event({"stage": "image", "variant": "a", "done": 1, "total": 4})
    for k in (2, 3):  # 2 s per image
        clock.t += 2
        line.event({"stage": "image", "variant": "a", "done": k, "total": 4})
    # a: 1 image left at 2 s; b: 4 images at the typical 2 s plus a's load (5 - 2 = 3 s)
    assert line.eta_s() == pytest.approx(1 * 2 + 4 * 2 + 3)
    assert "~13 s left" in line.markdown() and "a: image 3 of 4" in line.markdown()
    clock.t += 2
    line.event({"stage": "image", "variant": "a", "done": 4, "total": 4})
    line.event({"stage": "variant", "variant": "a", "done": 1, "total": 2})
    line.event({"stage": "loading", "variant": "b"})
    clock.t += 1
    line.event({"stage": "image", "variant": "b", "done": 1, "total": 4})
    clock.t += 0.5  # b is four times faster: its own pace counts once measured
    line.event({"stage": "image", "variant": "b", "done": 2, "total": 4})
    assert line.eta_s() == pytest.approx(2 * 0.5)
    assert line.frac == pytest.approx(0.75)


def test_the_timing_phase_is_counted_and_measured():
    line, clock = _line(n_jobs=1)
    line.event({"stage": "loading", "variant": "a"})
    clock.t += 3
    line.event({"stage": "image", "variant": "a", "done": 1, "total": 2})
    clock.t += 1
    line.event({"stage": "image", "variant": "a", "done": 2, "total": 2})
    line.event({"stage": "variant", "variant": "a", "done": 1, "total": 1})
    line.event({"stage": "timing", "done": 0, "total": 6})
    assert line.eta_s() == pytest.approx(6 * 1)  # six steps, each one image of a
    clock.t += 3
    line.event({"stage": "timing", "done": 2, "total": 6, "load": 3.2})
    assert line.eta_s() == pytest.approx(4 * 1.5)  # now its own measured pace
    assert "2 of 6 steps" in line.step and "load 3.2" in line.step


def test_the_bar_never_jumps_ahead_and_a_skip_is_a_note():
    line, _ = _line(n_jobs=2)
    line.event({"stage": "image", "variant": "a", "done": 1, "total": 2})
    assert line.frac == pytest.approx(0.25)
    line.event({"stage": "skipped", "variant": "u2net", "message": "skipped u2net: not installed"})
    assert line.frac == pytest.approx(0.25) and "skipped u2net" in line.markdown()
    line.end("✓ Done")
    assert line.markdown() == "✓ Done" and line.frac == 1.0


def test_durations_read_at_a_glance():
    assert [duration(s) for s in (4.4, 65, 3725)] == ["4 s", "1 min 05 s", "1 h 02 min"]


def test_compare_says_loading_with_the_size_then_running(monkeypatch):
    from studio import engine
    from studio.ui import compare as compare_h

    monkeypatch.setattr(compare_h, "_seconds", {})
    monkeypatch.setattr(engine, "is_loaded", lambda vid, device=None, threads=None: vid == "grabcut")
    monkeypatch.setattr("studio.ui.progress.model_size_mb", lambda vid: 176.2)
    assert compare_h.step_text("isnet-general-use") == "loading isnet-general-use (176 MB), then running it…"
    assert compare_h.step_text("grabcut") == "running grabcut…"
    md = compare_h.status_markdown([], ["isnet-general-use", "grabcut"], 2, 3.0)
    assert md.startswith("▸ **loading isnet-general-use (176 MB)") and "left" not in md
    compare_h._seconds.update({"isnet-general-use": 12.0, "grabcut": 0.5})  # both ran here before
    assert "~12 s left" in compare_h.status_markdown([], ["isnet-general-use", "grabcut"], 2, 3.0)


def test_the_eta_counts_the_timing_phase_to_come():
    line, clock = _line(n_jobs=2)
    line.n_timed, line.timing_planned = 2, 3  # 3 steps, each running both variants once
    line.event({"stage": "loading", "variant": "a"})
    clock.t += 2
    line.event({"stage": "image", "variant": "a", "done": 1, "total": 2})
    clock.t += 2
    line.event({"stage": "image", "variant": "a", "done": 2, "total": 2})
    line.event({"stage": "variant", "variant": "a", "done": 1, "total": 2})
    # b: 2 images at a's 2 s (load 0 s); timing: 3 steps of (a's 2 s + b's typical 2 s)
    assert line.eta_s() == pytest.approx(2 * 2 + 3 * (2 + 2))
