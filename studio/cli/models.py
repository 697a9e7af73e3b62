"""`studio models`: the zoo as a table, with what is installed here."""

from __future__ import annotations

import json

from studio.inventory import describe
from studio.terminal import format_table
from studio.zoo import load_zoo


def register(sub) -> None:
    p = sub.add_parser("models", help="list the model zoo and what is installed")
    p.add_argument("patterns", nargs="*", help="ids, globs or families (default: all)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--installed", action="store_true", help="only variants that can run here")
    p.set_defaults(func=run)


def zoo_rows(patterns: list[str] | None = None) -> list[dict]:
    """One dict per variant: what `studio models`, the app and reports show."""
    rows = []
    for v in load_zoo().select(patterns or None):
        info = describe(v)
        notes = " ".join(x for x in [*(f"[{f}]" for f in info.flags), v.notes] if x)
        rows.append({
            "id": v.id, "family": v.family, "backend": v.backend, "precision": v.precision,
            "input": v.input_size_label,
            "size_mb": round(info.size_mb, 1) if info.size_mb else 0.0,
            "license": v.license,
            "installed": info.installed,
            "where": info.path or ("no weights needed" if not v.file else info.pull_command),
            "untrained": info.untrained,
            "trained_on": list(v.trained_on),
            "notes": notes,
        })
    return rows


def run(args) -> int:
    rows = zoo_rows(args.patterns)
    if args.installed:
        rows = [r for r in rows if r["installed"]]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    headers = ["id", "family", "backend", "precision", "input", "size", "license", "installed", "where / notes"]
    table = []
    for r in rows:
        size = f"{r['size_mb']:.1f} MB" if r["installed"] else f"~{r['size_mb']:g} MB"
        where = r["where"] if r["installed"] else f"not installed: {r['where']}"
        table.append([r["id"], r["family"], r["backend"], r["precision"], r["input"], size,
                      r["license"], "yes" if r["installed"] else "no", f"{where}  {r['notes']}".strip()])
    print(format_table(headers, table, max_width=200))
    return 0
