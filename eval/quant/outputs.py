"""What every measurement script in eval/quant writes: the command line that made it, the
machine and the time, and NAME.json (meta and rows) beside NAME.md (the table people read)."""

from __future__ import annotations

import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from studio.fileio import atomic_write_json, atomic_write_text


def command_line(script: str, argv: list[str] | None) -> str:
    """The command as a reader would retype it, e.g. `python eval/quant/latency.py --rounds 5`."""
    args = argv if argv is not None else sys.argv[1:]
    return " ".join([f"python eval/quant/{script}", *(shlex.quote(a) for a in args)])


def run_meta(command: str, **fields: Any) -> dict[str, Any]:
    """The run's metadata: the command, the script's own fields, the machine and the time."""
    return {"command": command, **fields,
            "machine": f"{platform.processor() or platform.machine()}, {platform.node()}",
            "created": time.strftime("%Y-%m-%d %H:%M:%S")}


def write_tables(out: Path, name: str, meta: dict[str, Any], rows: list, md: str) -> None:
    """OUT/NAME.json and OUT/NAME.md, and the table on stdout."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / f"{name}.json", {"meta": meta, "rows": rows}, indent=2)
    atomic_write_text(out / f"{name}.md", md)
    print(md)
