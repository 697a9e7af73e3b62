"""What a user may type or pick as a dataset, read the same way by every front (the app's
Benchmark and Arena tabs alike): the catalogue sets to offer, and "a folder or a catalogue name".

On a hosted app (`settings.on_spaces()`) the server's folders are off limits: images come from
the catalogue or an upload, so a typed path is refused, and so is a bare name that is not a
catalogue set (`open_dataset` would open a folder of that name relative to the app).
"""

from __future__ import annotations

import os
from pathlib import Path

from studio import settings
from studio.data.layout import DatasetError

HOSTED_REFUSAL = ("on the hosted app, images come from the catalogue or an uploaded zip, "
                  "not from the server's folders")


def catalogue_choices() -> list[str]:
    """Datasets to offer in a picker (`catalogue.local_choices`); never raises, since a broken
    catalogue file must not break the page that lists it."""
    try:
        from studio.data.catalogue import local_choices

        return local_choices()
    except Exception:
        return []


def looks_like_path(text: str) -> bool:
    """A typed dataset that names a folder rather than a catalogue set."""
    return "/" in text or os.sep in text or text.startswith((".", "~"))


def local_folder(text: str) -> str:
    """A folder on this machine, as an absolute path; DatasetError on a hosted app or when it
    is not a folder."""
    name = (text or "").strip()
    if settings.on_spaces():
        raise DatasetError(HOSTED_REFUSAL)
    if not name:
        raise DatasetError("type a folder of images")
    path = Path(name).expanduser()
    if not path.is_dir():
        raise DatasetError(f"{name}: no such folder")
    return str(path.resolve())


def folder_or_name(text: str) -> str:
    """A typed dataset: a folder (`local_folder`) when it looks like a path, else a catalogue
    name as typed. On a hosted app only catalogue names pass."""
    name = (text or "").strip()
    if not name:
        raise DatasetError("choose a catalogue dataset, or type a folder")
    if looks_like_path(name):
        return local_folder(name)
    if settings.on_spaces():
        from studio.data.catalogue import find_entry, groups

        if find_entry(name) is None and name.lower() not in {g.lower() for g in groups()}:
            raise DatasetError(f"{name}: not a catalogue dataset; {HOSTED_REFUSAL}")
    return name
