"""`studio data list|info|pull|sample|contact-sheet`: datasets, the catalogue, the embedded sample."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from studio.data import EMBEDDED_NAME, catalog, open_dataset
from studio.terminal import format_table


def register(sub) -> None:
    p = sub.add_parser("data", help="datasets: the catalogue, downloads, the embedded sample, contact sheets")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    ls = dsub.add_parser("list", help="the dataset catalogue as a table")
    ls.add_argument("--json", action="store_true", help="print the catalogue as JSON")
    ls.set_defaults(func=run_list)

    info = dsub.add_parser("info", help="open a dataset and describe it (layout, pairs, unpaired files)")
    info.add_argument("dataset", nargs="?", default=EMBEDDED_NAME,
                      help=f"catalogue name, folder, or {EMBEDDED_NAME!r} (default)")
    info.add_argument("--limit", type=int, help="a deterministic subset of this many samples")
    info.add_argument("--seed", type=int, default=0)
    info.set_defaults(func=run_info)

    pull = dsub.add_parser("pull", help="download and unpack a catalogue dataset into the data folder")
    pull.add_argument("name", help="catalogue name (see `studio data list`) or group (DIS5K)")
    pull.add_argument("--force", action="store_true", help="download again even if installed")
    pull.add_argument("--keep-archive", action="store_true", help="keep the downloaded archive")
    pull.add_argument("--timeout", type=float, default=30.0, help="network timeout in seconds")
    pull.set_defaults(func=run_pull)

    smp = dsub.add_parser("sample", help="write the embedded sample as files (im/, gt/, alpha/)")
    smp.add_argument("--out", type=Path, required=True, help="folder to write into")
    smp.set_defaults(func=run_sample)

    cs = dsub.add_parser("contact-sheet", help="save a grid of (image | mask) pairs as a PNG")
    cs.add_argument("dataset", nargs="?", default=EMBEDDED_NAME,
                    help=f"catalogue name, folder, or {EMBEDDED_NAME!r} (default)")
    cs.add_argument("--out", type=Path, required=True, help="PNG file to write")
    cs.add_argument("--limit", type=int, default=48, help="at most this many samples (deterministic subset)")
    cs.add_argument("--seed", type=int, default=0)
    cs.add_argument("--columns", type=int, default=4)
    cs.add_argument("--thumb", type=int, default=180, help="thumbnail height in pixels")
    cs.set_defaults(func=run_contact_sheet)


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _trained_summary(ids: list[str]) -> str:
    """Variant ids grouped by family: 'inspyrenet ×8, birefnet-general, …'."""
    from studio.zoo import load_zoo

    zoo = load_zoo()
    fams: dict[str, list[str]] = {}
    for vid in ids:
        fams.setdefault(zoo.variants[vid].family, []).append(vid)
    parts = []
    for fam, vids in fams.items():
        everyone = [v.id for v in zoo.variants.values() if v.family == fam]
        parts.append(f"{fam} (all {len(vids)})" if len(vids) == len(everyone) and len(vids) > 1
                     else ", ".join(vids))
    return ", ".join(parts) or "—"


def run_list(args) -> int:
    entries = catalog()
    if args.json:
        out = {}
        for name, e in entries.items():
            out[name] = {
                "title": e.title, "task": e.task, "size": e.size, "resolution": e.resolution,
                "layout": e.layout, "reference": e.reference, "licence": e.licence, "url": e.url,
                "paper": e.paper, "download": "automatic" if e.download.automatic else "manual",
                "installed": e.installed, "local_folder": str(e.local_root()),
                "trained_on_by": e.trained_by(), "zoo_names": list(e.training_names),
            }
        print(json.dumps(out, indent=2))
        return 0
    rows = []
    for name, e in entries.items():
        rows.append([
            name, e.task, e.size, _short(e.resolution, 24), _short(e.licence, 34),
            "yes" if e.installed else ("pull" if e.download.automatic else "manual"),
            _trained_summary(e.trained_by()),
        ])
    print(format_table(["dataset", "task", "pairs", "resolution", "licence", "here", "zoo models trained on it"],
                       rows, max_width=70))
    print("\nhere: yes = installed; pull = `studio data pull NAME` downloads it; manual = it cannot be fetched "
          "automatically (`studio data pull NAME` says how).\nScores of a model on a set it was trained on "
          "are flagged wherever they show. `studio data info NAME` gives the URL and layout.")
    return 0


def run_info(args) -> int:
    from studio.data.catalogue import find_entry

    entry = find_entry(args.dataset) if not Path(args.dataset).exists() else None
    if entry is not None:
        print(f"{entry.name}: {entry.title}")
        for k, v in [("task", entry.task), ("pairs", entry.size), ("resolution", entry.resolution),
                     ("layout", entry.layout), ("reference", entry.reference), ("licence", entry.licence),
                     ("url", entry.url), ("paper", entry.paper),
                     ("download", ", ".join(u for u, _ in entry.download.sources()) or entry.download.manual),
                     ("folder", entry.local_root()), ("zoo models trained on it", ", ".join(entry.trained_by()) or "none")]:
            print(f"  {k:>24}: {v}")
        if not entry.installed:
            print("  (not installed)")
            return 0
    ds = open_dataset(args.dataset, limit=args.limit, seed=args.seed)
    print(ds.summary())
    for note in ds.notes:
        print(f"  note: {note}")
    if ds.unpaired:
        print(f"  {len(ds.unpaired)} file(s) without a partner:")
        for note in ds.unpaired[:10]:
            print(f"    {note}")
        if len(ds.unpaired) > 10:
            print(f"    … and {len(ds.unpaired) - 10} more")
    return 0


def run_pull(args) -> int:
    from studio.data.pull import pull

    res = pull(args.name, force=args.force, progress=sys.stderr.isatty(), keep_archives=args.keep_archive,
               timeout=args.timeout)
    verb = "downloaded" if res.fetched else "already installed"
    print(f"{', '.join(res.names)}: {verb} in {res.root}")
    return 0


def run_sample(args) -> int:
    from studio.data import write_sample

    files = write_sample(args.out)
    n = sum(1 for f in files if f.parent.name == "im")
    print(f"wrote the embedded sample ({n} pairs: im/, gt/, alpha/, manifest.json) to {args.out}")
    return 0


def run_contact_sheet(args) -> int:
    from studio.data.contact import save_contact_sheet

    ds = open_dataset(args.dataset)
    out = save_contact_sheet(ds, args.out, columns=args.columns, thumb=args.thumb, limit=args.limit,
                             seed=args.seed)
    shown = min(len(ds), args.limit) if args.limit else len(ds)
    print(f"contact sheet of {ds.name} ({shown} of {len(ds)} samples) -> {out}")
    return 0
