"""`studio build`: derived variants (quantized and converted builds) from their recipes.

    studio build isnet-general-use-int8-static       build one (cached by recipe hash)
    studio build 'isnet-*' --force                   rebuild every matching derived variant
    studio build --list                              what can be built, and what is built here
    studio build --recipe my.yaml --from isnet-general-use --as isnet-try1
    studio build --search isnet-general-use --budget 0.99 --out eval/quant/recipes/x.yaml
    studio build --write-ranges isnet-general-use-int8-static   remake its committed ranges file
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from studio import labels
from studio.errors import StudioError
from studio.terminal import format_table
from studio.zoo import load_zoo


def register(sub) -> None:
    p = sub.add_parser(
        "build", help="build derived variants (fp16, int8 dynamic/static, torch) from their recipes",
        description="Build derived variants from their recipes. Artifacts are cached under the "
                    "builds folder by recipe hash and rebuilt only when the recipe (or its source) "
                    "changes. Each build records its size, build time and agreement with its source.")
    p.add_argument("ids", nargs="*", metavar="VARIANT", help="derived variant ids or globs")
    p.add_argument("--list", action="store_true", help="list derived variants and their builds")
    p.add_argument("--force", action="store_true", help="rebuild even when a build of this recipe exists")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for calibration and checks (0: all)")
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="skip the agreement check against the source")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    adhoc = p.add_argument_group("a recipe file that is not in the zoo")
    adhoc.add_argument("--recipe", type=Path, help="recipe file (YAML) to build")
    adhoc.add_argument("--from", dest="source", help="source variant of --recipe (or of --search)")
    adhoc.add_argument("--as", dest="as_id", help="id for the --recipe build (default: file name)")
    search = p.add_argument_group("sensitivity search (int8-static)")
    search.add_argument("--search", metavar="SOURCE", nargs="?", const="", default=None,
                        help="search which nodes to keep in float; SOURCE defaults to --from")
    search.add_argument("--base", type=Path, help="recipe file the search starts from "
                        "(default: the zoo recipe of SOURCE-int8-static, else int8-static defaults)")
    search.add_argument("--budget", type=float, default=0.985,
                        help="agreement IoU with the source to hold on the calibration set (default 0.985)")
    search.add_argument("--metric", choices=("pooled", "mean"), default="pooled",
                        help="the agreement the budget is on: pooled IoU over the images (default) or their mean")
    search.add_argument("--cost", choices=("time", "macs"), default="time",
                        help="what keeping a unit in float costs: its measured time (default) or its MACs")
    search.add_argument("--max-float-time", type=float, default=0.25,
                        help="--cost time: units in float may add at most this share of the all-int8 time (default 0.25)")
    search.add_argument("--rounds", type=int, default=5, help="--cost time: interleaved timing rounds per batch")
    search.add_argument("--compare", type=Path, help="a recipe file to score and time beside the result "
                        "(e.g. the hand-made one)")
    search.add_argument("--min-budget", type=float, default=None,
                        help="also hold the worst image's agreement IoU at this level")
    search.add_argument("--granularity", choices=("block", "node", "auto"), default="auto",
                        help="units kept in float: whole blocks, single nodes, or blocks then nodes (default)")
    search.add_argument("--candidates", type=int, default=12,
                        help="at most this many units are tried in float, most sensitive first")
    search.add_argument("--probe", type=int, default=6,
                        help="sensitivity is measured on this many of the calibration images (default 6)")
    search.add_argument("--max-float-macs", type=float, default=0.1,
                        help="at most this share of the model's multiply-accumulates in float (default 0.1)")
    search.add_argument("--out", type=Path, help="where to write the winning recipe "
                        "(default eval/quant/recipes/SOURCE-int8-static.search.yaml)")
    p.add_argument("--clean", action="store_true", help="delete builds of older recipes of the given variants")
    p.add_argument("--write-ranges", action="store_true",
                   help="(re)make the calibration ranges file of the given int8-static variants from their "
                        "calibration images (the file their recipe names, or --out for one variant)")
    p.set_defaults(func=run)


def run(args) -> int:
    from studio.quant import builds

    if args.search is not None:
        return run_search(args)
    if args.recipe:
        return run_recipe(args)
    zoo = load_zoo()
    derived = builds.derived_variants()
    if args.list or not args.ids:
        if not args.list:
            print("name derived variants to build (or --list to see them):", file=sys.stderr)
        return print_list(derived, args.json)
    chosen = []
    for v in zoo.select(args.ids):
        if builds.is_derived(v):
            chosen.append(v)
        elif len(args.ids) == 1 and v.id == args.ids[0]:
            raise StudioError(f"{v.id} is not a derived variant; `studio build --list` shows those")
    if not chosen:
        raise StudioError(f"no derived variant matches {' '.join(args.ids)}; see `studio build --list`")
    if args.write_ranges:
        if args.out and len(chosen) > 1:
            raise StudioError("--out names one ranges file; give one variant")
        for v in chosen:
            builds.write_ranges(v, out=args.out, progress=not args.json, threads=args.threads)
        return 0
    if args.clean:
        for v in chosen:
            for d in builds.clean(v):
                print(f"removed {d}")
        return 0
    failed = 0
    results = []
    for v in chosen:
        try:
            rec = builds.build(v, force=args.force, progress=not args.json, threads=args.threads,
                               check=args.check)
        except StudioError as exc:
            failed += 1
            print(f"FAILED {v.id}: {exc}", file=sys.stderr)
            continue
        results.append(rec)
        if not args.json:
            print(summary_line(rec))
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
    return 1 if failed else 0


def summary_line(rec) -> str:
    a = rec.agreement
    pooled = f", pooled {a['iou_pooled']:.4f}" if a and "iou_pooled" in a else ""
    agree = (f", agreement IoU {a['iou_mean']:.4f} (min {a['iou_min']:.4f}{pooled}) MAE {a['mae_mean']:.5f} "
             f"on {labels.check_images(a)}") if a else ""
    tag = f" [{labels.UNTRAINED}]" if rec.untrained else ""
    return f"ok     {rec.variant}: {rec.path} ({rec.size / 1e6:.1f} MB, built in {rec.build_seconds:.1f} s{agree}){tag}"


def print_list(derived, as_json: bool) -> int:
    from studio.quant import builds

    rows = []
    for v in derived:
        try:
            recipe = builds.recipe_of(v)
            kind = recipe.kind
            key = builds.key_for(v, recipe)
        except StudioError as exc:
            kind, key = f"bad recipe: {exc}", None
        rec = builds.installed(v)
        a = rec.agreement if rec else None
        rows.append({"id": v.id, "kind": kind, "from": v.derived_from, "key": key[:12] if key else None,
                     "built": rec is not None, "size_mb": round(rec.size / 1e6, 1) if rec else None,
                     "agreement_iou": round(a["iou_mean"], 4) if a else None,
                     "untrained": bool(rec and rec.untrained), "requires": v.requires})
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [[r["id"], r["kind"], r["from"], r["key"] or "(source missing)",
              "yes" if r["built"] else "no", f"{r['size_mb']} MB" if r["size_mb"] else "",
              r["agreement_iou"] if r["agreement_iou"] is not None else "",
              " ".join(x for x in [labels.UNTRAINED if r["untrained"] else "",
                                   labels.needs(r["requires"]) if r["requires"] else ""] if x)]
             for r in rows]
    print(format_table(["id", "recipe", "from", "key", "built", "size", "agree IoU", "notes"], table,
                       max_width=80))
    return 0


def run_recipe(args) -> int:
    from studio.quant import builds
    from studio.recipe import load_recipe_file

    if not args.source:
        raise StudioError("--recipe needs --from SOURCE (the variant it is built from)")
    recipe = load_recipe_file(args.recipe)
    as_id = args.as_id or f"{args.source}-{args.recipe.stem.replace('.', '-')}"
    v = builds.adhoc_variant(args.source, recipe, as_id)
    rec = builds.build(v, force=args.force, progress=not args.json, threads=args.threads, check=args.check,
                       recipe=recipe)
    print(json.dumps(dataclasses.asdict(rec), indent=2) if args.json else summary_line(rec))
    return 0


def run_search(args) -> int:
    from studio.quant.search import default_base, search
    from studio.recipe import Recipe, load_recipe_file

    source = args.search or args.source
    if not source:
        raise StudioError("--search needs a SOURCE variant (e.g. --search isnet-general-use)")
    base = load_recipe_file(args.base) if args.base else default_base(source)
    if not isinstance(base, Recipe) or base.kind != "int8-static":
        raise StudioError("the search starts from an int8-static recipe")
    out = args.out or Path("eval/quant/recipes") / f"{source}-int8-static.search.yaml"
    compare = load_recipe_file(args.compare) if args.compare else None
    result = search(source, base, budget=args.budget, min_budget=args.min_budget,
                    granularity=args.granularity, candidates=args.candidates, threads=args.threads,
                    max_float_macs=args.max_float_macs, probe=args.probe, cost=args.cost, metric=args.metric,
                    max_float_time=args.max_float_time, rounds=args.rounds, compare=compare,
                    compare_name=args.compare.stem if args.compare else "compared recipe",
                    out=out, progress=not args.json)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(result.table())
        print(f"\nwrote {result.path}\nbuild it with: studio build --recipe {result.path} --from {source}")
    return 0 if result.met else 1
