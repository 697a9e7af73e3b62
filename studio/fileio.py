"""Writing files so that a killed process never leaves a half-written one under the name.

Files are written to a temporary name beside the target and renamed into place. mkstemp
creates its file 0600; the result gets the usual 0644 (less the umask), because reports,
results and weights are meant to be read by other users and by a web server.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

FILE_MODE = 0o644
DIR_MODE = 0o755


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Give a finished temporary file the usual mode and rename it into place."""
    os.chmod(tmp, FILE_MODE & ~_umask())
    os.replace(tmp, path)


def temp_beside(path: str | os.PathLike) -> Path:
    """A new empty temporary file in `path`'s folder (created, so the name is ours)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def temp_dir_beside(path: str | os.PathLike, prefix: str) -> Path:
    """A new temporary folder beside `path`, with a folder's usual mode (mkdtemp makes 0700),
    to be renamed into place once complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
    os.chmod(tmp, DIR_MODE & ~_umask())
    return tmp


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    tmp = temp_beside(path)
    try:
        tmp.write_bytes(data)
        publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, value: Any, indent: int | None = 2, **kw: Any) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=indent, **kw) + "\n").encode())
