"""`studio metrics PRED_DIR GT_DIR [--json] [--compare OTHER_PRED_DIR]`: score a folder of
predicted mattes against references, paired by file stem.

A prediction may be named `<stem>.png` or `<stem>.<variant>.png` (as `studio predict`
writes). GT_DIR may be the references' folder or a dataset root holding `gt/` (or
`masks/`). Unpaired files are reported; the aggregate table (or JSON, one key per metric
with `mean` and `ci95`, plus `n_images` and `conventions`) is printed. `--compare` scores a
second folder on the same images and adds a paired bootstrap comparison per metric.
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from studio.data.layout import IMAGE_EXTS, DatasetError, detect
from studio.errors import StudioError
from studio.imageio import ImageError, load_mask
from studio.metrics import (
    HIGHER_IS_BETTER,
    METRIC_NAMES,
    ImageScore,
    aggregate,
    compare_paired,
    score_image,
)
from studio.metrics.conventions import conventions
from studio.terminal import format_table


@dataclass
class Pairing:
    pairs: list[tuple[str, Path, Path]]            # (stem, prediction, reference)
    unpaired_pred: list[Path] = field(default_factory=list)
    unpaired_gt: list[Path] = field(default_factory=list)
    other_variants: int = 0                        # predictions of variants not asked for


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS
                  and not p.name.startswith("."))


def reference_dir(gt_dir: Path) -> Path:
    """The references' folder: GT_DIR itself when it holds images, else the reference folder
    of the dataset at GT_DIR, as `studio.data.layout.detect` (the one layout detector, as for
    `eval/run.py --dataset` and the app's zips) finds it: gt/, masks/, DUTS's X-Mask/, ..."""
    if not gt_dir.is_dir():
        raise StudioError(f"{gt_dir}: no such folder")
    if _images(gt_dir):
        return gt_dir
    try:
        layout = detect(gt_dir)
    except DatasetError as exc:
        raise StudioError(f"{exc} (or pass the folder of reference masks itself)") from None
    if layout.masks is None:
        raise StudioError(f"{gt_dir}: a dataset without references ({layout.describe(gt_dir)}): "
                          "pass the folder of reference masks")
    return layout.masks


def pair_by_stem(pred_dir: Path, gt_dir: Path, variant: str | None = None) -> Pairing:
    """Pair `<stem>.<ext>` or `<stem>.<variant>.<ext>` predictions with `<stem>.<ext>` references."""
    if not pred_dir.is_dir():
        raise StudioError(f"{pred_dir}: no such folder")
    refs = {p.stem: p for p in _images(reference_dir(gt_dir))}
    found: dict[str, list[Path]] = {}
    out = Pairing(pairs=[])
    for p in _images(pred_dir):
        stem, var = p.stem, None
        if stem not in refs and "." in stem:
            stem, var = stem.rsplit(".", 1)
        if stem not in refs:
            out.unpaired_pred.append(p)
            continue
        if variant is not None and var not in (None, variant):
            out.other_variants += 1
            continue
        found.setdefault(stem, []).append(p)
    ambiguous = {s: ps for s, ps in found.items() if len(ps) > 1}
    if ambiguous:
        s, ps = next(iter(sorted(ambiguous.items())))
        raise StudioError(
            f"{pred_dir}: {len(ambiguous)} references have several predictions (e.g. {s}: "
            f"{', '.join(p.name for p in ps)}); pick one with --variant")
    out.pairs = [(s, found[s][0], refs[s]) for s in sorted(found)]
    out.unpaired_gt = [refs[s] for s in sorted(refs) if s not in found]
    return out


def score_pairs(pairs: list[tuple[str, Path, Path]]) -> tuple[dict[str, ImageScore], list[str]]:
    """Score each pair; a pair that cannot be read or scored is reported, not fatal."""
    scores: dict[str, ImageScore] = {}
    problems: list[str] = []
    for stem, pred_path, gt_path in pairs:
        try:
            scores[stem] = score_image(load_mask(pred_path), load_mask(gt_path), name=stem)
        except ImageError as exc:  # MetricInputError is one too (size mismatch, ...)
            problems.append(f"{pred_path.name}: {exc}")
    return scores, problems


def _fmt(x: float) -> str:
    return f"{x:.4f}"


def _ci(ci: list[float]) -> str:
    return f"[{_fmt(ci[0])}, {_fmt(ci[1])}]"


def _arrow(metric: str) -> str:
    return "higher" if HIGHER_IS_BETTER[metric] else "lower"


def _report_unpaired(pairing: Pairing, label: str) -> None:
    for kind, files in (("predictions without a reference", pairing.unpaired_pred),
                        ("references without a prediction", pairing.unpaired_gt)):
        if files:
            names = ", ".join(p.name for p in files[:8]) + (" ..." if len(files) > 8 else "")
            print(f"{label}: {len(files)} {kind}: {names}", file=sys.stderr)
    if pairing.other_variants:
        print(f"{label}: {pairing.other_variants} predictions of other variants ignored",
              file=sys.stderr)


def register(sub) -> None:
    p = sub.add_parser("metrics", help="score predicted mattes against references (paired by stem)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("pred_dir", type=Path, metavar="PRED_DIR")
    p.add_argument("gt_dir", type=Path, metavar="GT_DIR")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--compare", type=Path, metavar="OTHER_PRED_DIR",
                   help="a second model's predictions: paired bootstrap comparison on the same images")
    p.add_argument("--variant", help="only predictions named <stem>.<VARIANT>.<ext> (or <stem>.<ext>)")
    p.add_argument("--compare-variant", help="the same filter for --compare")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-image", type=Path, metavar="CSV", help="also write per-image values")
    p.set_defaults(func=run)


def run(args) -> int:
    pairing = pair_by_stem(args.pred_dir, args.gt_dir, args.variant)
    other = pair_by_stem(args.compare, args.gt_dir, args.compare_variant) if args.compare else None
    pairs = pairing.pairs
    if other is not None:  # the same images for both models
        common = {s for s, _, _ in pairs} & {s for s, _, _ in other.pairs}
        dropped = len(pairs) + len(other.pairs) - 2 * len(common)
        if dropped:
            print(f"{dropped} predictions not present in both folders are left out of the "
                  "comparison", file=sys.stderr)
        pairs = [p for p in pairs if p[0] in common]
    if not pairs:
        raise StudioError(f"no prediction in {args.pred_dir} pairs with a reference in "
                          f"{args.gt_dir} (files are paired by stem: <stem>.png or "
                          "<stem>.<variant>.png)")
    _report_unpaired(pairing, str(args.pred_dir))
    scores, problems = score_pairs(pairs)
    other_scores: dict[str, ImageScore] = {}
    if other is not None:
        _report_unpaired(other, str(args.compare))
        other_scores, more = score_pairs([p for p in other.pairs if p[0] in scores])
        problems += more
    for line in problems:
        print(f"skipped {line}", file=sys.stderr)
    names = sorted(scores) if other is None else sorted(set(scores) & set(other_scores))
    if not names:
        raise StudioError("no pair could be scored (see the messages above)")
    a = [scores[s] for s in names]
    agg = aggregate(a, n_boot=args.n_boot, seed=args.seed)
    result: dict = {k: agg[k] for k in METRIC_NAMES}
    result.update(n_images=len(names), conventions=conventions(n_boot=args.n_boot, seed=args.seed),
                  pred_dir=str(args.pred_dir), gt_dir=str(args.gt_dir),
                  unpaired={"pred": [p.name for p in pairing.unpaired_pred],
                            "gt": [p.name for p in pairing.unpaired_gt]},
                  skipped=problems)
    if other is not None:
        b = [other_scores[s] for s in names]
        agg_b = aggregate(b, n_boot=args.n_boot, seed=args.seed)
        paired = {m: compare_paired(a, b, metric=m, n_boot=max(args.n_boot, 2000), seed=args.seed)
                  for m in METRIC_NAMES}
        result["compare"] = {"pred_dir": str(args.compare),
                             "metrics": {k: agg_b[k] for k in METRIC_NAMES},
                             "paired": paired}
    if args.per_image:
        write_per_image(args.per_image, a)

    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(render(result))
    return 1 if problems else 0


def write_per_image(path: Path, scores: list[ImageScore]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", *METRIC_NAMES])
        for s in scores:
            w.writerow([s.name, *(repr(s.values[k]) for k in METRIC_NAMES)])


def render(result: dict) -> str:
    conv = result["conventions"]
    boot = conv["bootstrap"]
    head = (f"{result['n_images']} images  pred: {result['pred_dir']}  gt: {result['gt_dir']}\n"
            f"averaging: per image (PySODMetrics); reference > 128; prediction min-max normalised; "
            f"95% CI: bootstrap over images ({boot['n_boot']} replicates, seed {boot['seed']}); "
            "sad/grad/conn in thousands")
    if "compare" not in result:
        rows = [[m, _arrow(m), _fmt(result[m]["mean"]), _ci(result[m]["ci95"])] for m in METRIC_NAMES]
        return head + "\n\n" + format_table(["metric", "better", "mean", "95% CI"], rows)
    cmp = result["compare"]
    rows = []
    for m in METRIC_NAMES:
        pc = cmp["paired"][m]
        verdict = {"a": "A better", "b": "B better", None: "no difference"}[pc["better"]]
        rows.append([m, _arrow(m), _fmt(result[m]["mean"]), _ci(result[m]["ci95"]),
                     _fmt(cmp["metrics"][m]["mean"]), _ci(cmp["metrics"][m]["ci95"]),
                     f"{pc['diff']:+.4f}", _ci(pc["ci95"]), f"{pc['p_value']:.3f}", verdict])
    head += f"\nA: {result['pred_dir']}   B: {cmp['pred_dir']}   (paired bootstrap, same images)"
    return head + "\n\n" + format_table(
        ["metric", "better", "A mean", "A 95% CI", "B mean", "B 95% CI", "A-B", "A-B 95% CI",
         "p", "verdict"], rows)
