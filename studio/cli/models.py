"""`studio models`: the zoo as a table, with what is installed here.

The default table fits 120 columns (the runtime, what runs each model, follows the precision:
ort for ONNX Runtime, ov for OpenVINO, torch, opencv): licences are shortened to their name, how to get a
missing variant is a short word explained under the table, and notes are cut to the room
left. `--wide` shows every column in full; `--json` gives the rows as data.
"""

from __future__ import annotations

import json

from studio import labels
from studio.inventory import zoo_rows
from studio.terminal import format_table

WIDTH = 120
MIN_NOTES = 12  # narrower than this, the notes column is left out
WIDE_HEADERS = ["id", "family", "backend", "runtime", "precision", "input", "size", "license", "installed",
                "where / notes"]
HEADERS = ["id", "precision/runtime", "input", "size", "license", "installed", "notes"]
# the narrow table's short runtime names (the wide table and --json spell them out)
RUNTIME_SHORT = {"onnxruntime": "ort", "openvino": "ov"}
RUNTIME_NAMES = {short: labels.RUNTIME_NAMES[name] for name, short in RUNTIME_SHORT.items()}


def register(sub) -> None:
    p = sub.add_parser("models", help="list the model zoo and what is installed")
    p.add_argument("patterns", nargs="*", help="ids, globs or families (default: all)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--installed", action="store_true", help="only variants that can run here")
    p.add_argument("--wide", action="store_true",
                   help=f"every column in full (default: fit {WIDTH} columns)")
    p.set_defaults(func=run)


def size_label(row: dict) -> str:
    """The file's size when installed; the expected download size (~) when not; "—" where
    there is nothing to size (no weights, or a build not made yet)."""
    if row["size_mb"] is None:
        return "—"
    return f"{row['size_mb']:.1f} MB" if row["installed"] else f"~{row['size_mb']:g} MB"


def short_licence(text: str) -> str:
    """"Apache-2.0 (xuebinqin/DIS)" -> "Apache-2.0": the name; the rest is in --wide."""
    return text.split(" (", 1)[0].split(",", 1)[0].strip()


def status(row: dict) -> str:
    """yes, or no with how it is obtained: pulled (a download) or built here."""
    if row["installed"]:
        return "yes"
    return "no: build" if row["is_build"] else "no: pull"


def _cut(text: str, width: int) -> tuple[str, bool]:
    return (text, False) if len(text) <= width else (text[: width - 1] + "…", True)


def wide_table(rows: list[dict]) -> str:
    table = []
    for r in rows:
        where = r["where"] if r["installed"] else f"not installed: {r['where']}"
        table.append([r["id"], r["family"], r["backend"], r["runtime"], r["precision"], r["input"], size_label(r),
                      r["license"], "yes" if r["installed"] else "no", f"{where}  {r['notes']}".strip()])
    return format_table(WIDE_HEADERS, table, max_width=10_000)


def narrow_table(rows: list[dict], width: int = WIDTH) -> str:
    fixed = [[r["id"], f"{r['precision']} {RUNTIME_SHORT.get(r['runtime'], r['runtime'])}", r["input"],
              size_label(r), short_licence(r["license"]), status(r)]
             for r in rows]
    widths = [max([len(h), *(len(c[i]) for c in fixed)]) for i, h in enumerate(HEADERS[:-1])]
    room = width - sum(widths) - 2 * len(widths)  # two spaces before each following column
    notes_fit = room >= MIN_NOTES
    table, cut = [], False
    for r, cells in zip(rows, fixed, strict=True):
        if notes_fit:
            text, was_cut = _cut(r["notes"], room)
            cut |= was_cut
            cells = [*cells, text]
        table.append(cells)
    out = format_table(HEADERS if notes_fit else HEADERS[:-1], table, max_width=10_000)
    legend = []
    shown = sorted({RUNTIME_SHORT[r["runtime"]] for r in rows if r["runtime"] in RUNTIME_SHORT})
    if shown:
        legend.append("; ".join(f"{s:<9} = {RUNTIME_NAMES[s]}" if i == 0 else f"{s} = {RUNTIME_NAMES[s]}"
                                for i, s in enumerate(shown)))
    missing = [r for r in rows if not r["installed"]]
    if any(not r["is_build"] for r in missing):
        legend.append("no: pull  = download it: studio weights pull ID")
    if any(not r["is_build"] and r["backend"] == "inspyrenet" for r in missing):
        legend.append("            (InSPyReNet offline: add --untrained for a latency-only checkpoint)")
    if any(r["is_build"] for r in missing):
        legend.append("no: build = make it here: studio build ID")
    if cut or not notes_fit:
        legend.append("notes cut to fit: --wide shows every column in full, --json everything")
    return out + ("\n\n" + "\n".join(legend) if legend else "")


def run(args) -> int:
    rows = zoo_rows(args.patterns)
    if args.installed:
        rows = [r for r in rows if r["installed"]]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(wide_table(rows) if args.wide else narrow_table(rows))
    return 0
