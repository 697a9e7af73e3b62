"""What a fetch reports while it runs: one `Step` per stage of one weights file.

`ensure_file(..., report=fn)` calls `fn(step)` from the thread that fetches; the app's
Models tab keeps the latest step per job (`studio.jobs`), the CLI shows tqdm bars.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# What a fetcher calls as bytes arrive: (action, what, done, total)
Meter = Callable[[str, str, int, "int | None"], None]


@dataclass(frozen=True)
class Step:
    """One stage of installing one weights file."""

    file: str  # the weights file being installed (a parent's name while deriving from it)
    action: str  # download | assemble | derive | initialise | verify | installed | source-failed
    what: str  # the URL, tarball or recipe being read; the reason for source-failed
    done: int = 0  # bytes so far
    total: int | None = None  # bytes expected, when known

    @property
    def fraction(self) -> float | None:
        return min(1.0, self.done / self.total) if self.total else None


Report = Callable[[Step], None]


def meter_for(report: Report | None, file: str) -> Meter:
    """A fetcher's meter that turns its calls into Steps for `report` (a no-op without one)."""
    if report is None:
        return lambda action, what, done, total: None
    return lambda action, what, done, total: report(Step(file, action, what, done, total))
