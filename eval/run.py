"""The benchmark suite. With no arguments: the embedded sample through every installed variant.

    python eval/run.py                                   # embedded sample, every installed model
    python eval/run.py --dataset ../shared/datasets/sod-dev --models 'isnet-general-use*' grabcut
    python eval/run.py --config sod-dev                  # a named suite in eval/suites/
    python eval/run.py --budget-p95-ms 1500 --price-per-hour 0.9
    python eval/run.py --dataset my-photos/ --reference isnet-general-use   # no masks needed
    python eval/run.py --dataset my-photos/ --reference isnet-general-use --arena  # + the disagreements, blind

Writes per_image.csv, summary.json and report.html to --out (default eval/results/latest).
Latencies come from one interleaved timing phase: --timing-rounds passes over --timing-images
images, every variant once per round in a shuffled order.
A glob or family runs what is installed or built here and lists the rest as skipped, with the
command that would make them; an explicit id that cannot run is an error.
Exit code 0 when every variant ran on every image, 1 when something failed, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studio.bench import SuiteConfig, Summary, exit_code, load_suite_file, run_suite  # noqa: E402
from studio.bench.labelsfree import write_arena_set  # noqa: E402
from studio.bench.recommend import DEFAULT_TOLERANCE, recommendation_lines  # noqa: E402
from studio.bench.table import legend, summary_table  # noqa: E402
from studio.errors import StudioError  # noqa: E402
from studio.terminal import format_table  # noqa: E402

FLAGS = ("models", "dataset", "limit", "held_out", "untrained_limit", "device", "threads", "warmup", "repeats", "cold_start",
         "budget_p95_ms", "budget_memory_mb", "price_per_hour", "quality_metric", "tolerance", "reference", "bundle_cold_start",
         "timing_images", "timing_rounds", "executor", "ray_address", "out", "resume", "seed")


def _tolerances() -> str:
    groups: dict[float, list[str]] = {}
    for m, t in DEFAULT_TOLERANCE.items():
        groups.setdefault(t, []).append(m)
    return "; ".join(f"{t:g} for {', '.join(ms)}" for t, ms in groups.items())


def parse_args(argv: list[str] | None = None) -> tuple[SuiteConfig, bool]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="a suite file (eval/suites/NAME.yaml, e.g. quick or sod-dev, or a path); "
                                     "flags override it")
    ap.add_argument("--models", nargs="+", help="variant ids, globs or families (default: every installed one)")
    ap.add_argument("--dataset", help="a catalogue name or a folder (default: the embedded sample)")
    ap.add_argument("--reference", metavar="VARIANT",
                    help="score every variant against this variant's mattes (labels-free: the numbers are "
                         "agreement, not accuracy); images with masks are also scored against them, apart")
    ap.add_argument("--limit", type=int, help="a deterministic subset of this many images")
    ap.add_argument("--held-out", dest="held_out", action="store_true", default=None,
                    help="leave out every image a build in the run was calibrated on (then apply --limit)")
    ap.add_argument("--untrained-limit", type=int,
                    help="untrained variants (latency only) run on this many images (default 8; 0: all)")
    ap.add_argument("--device", help="cpu (default) or cuda[:N]")
    ap.add_argument("--threads", type=int, help="inference threads (0: the runtime's default)")
    ap.add_argument("--warmup", type=int, help="untimed runs per variant before timing (default 1)")
    ap.add_argument("--repeats", type=int, help="timed runs per image (default 1)")
    ap.add_argument("--timing-images", type=int,
                    help="images of the interleaved timing phase: every latency and speed ratio comes from it, "
                         "in this run (default 4; 0: no timing phase)")
    ap.add_argument("--timing-rounds", type=int,
                    help="passes over the timing images; each pass is one round per image with every variant once, "
                         "in a shuffled order (default 3)")
    ap.add_argument("--cold-start", dest="cold_start", action=argparse.BooleanOptionalAction, default=None,
                    help="measure cold start in a fresh subprocess (default on)")
    ap.add_argument("--bundle-cold-start", dest="bundle_cold_start", action=argparse.BooleanOptionalAction,
                    default=None, help="with cold start: also time the exported server (`studio export`) of each "
                                       "ONNX variant to its first answer (default on)")
    ap.add_argument("--budget-p95-ms", type=float, help="latency budget: p95 per image, ms")
    ap.add_argument("--budget-memory-mb", type=float, help="memory budget, MB")
    ap.add_argument("--price-per-hour", type=float, help="instance price: rank equivalents by cost per 1,000 images")
    ap.add_argument("--quality-metric", help="metric the recommendation ranks by (default iou)")
    ap.add_argument("--tolerance", type=float,
                    help=f"how much worse still counts as equivalent to the best (defaults: {_tolerances()})")
    ap.add_argument("--executor", choices=["local", "ray"], help="where inference runs (default local)")
    ap.add_argument("--ray-address", help="ray: the cluster to join (default: a local one)")
    ap.add_argument("--out", type=Path, help="output folder (default eval/results/latest)")
    ap.add_argument("--resume", action=argparse.BooleanOptionalAction, default=None,
                    help="reuse cached predictions; --no-resume recomputes everything (default on)")
    ap.add_argument("--seed", type=int, help="subset, bootstrap and timing-order seed")
    ap.add_argument("--arena", action="store_true",
                    help="labels-free runs: write the images where a cheaper candidate disagrees with the reference "
                         "beyond the agreement floor as an arena set, and print the app link to judge them blind")
    a = ap.parse_args(argv)
    values = load_suite_file(a.config) if a.config else {}
    for key in FLAGS:
        v = getattr(a, key)
        if v is not None:
            values[key] = v
    return SuiteConfig(**values), bool(a.arena)


def _wrap(text: str, indent: str = "  ") -> str:
    width = max(60, min(110, shutil.get_terminal_size((110, 24)).columns))
    return textwrap.fill(text, width=width, initial_indent=indent, subsequent_indent=indent)


def print_summary(summary: Summary) -> None:
    cols, rows = summary_table(summary)
    ref = summary.reference_id
    print()
    if ref:
        print(f"Scores are agreement with {ref} (no ground truth), not accuracy.")
    print(format_table([c.header for c in cols], [[cell.text for cell in r] for r in rows], max_width=48))
    print()
    for line in legend(cols, ref):
        print(_wrap(line, ""))
    for r in summary.variants:
        for e in r.errors[:3]:
            where = f" [{e['image']}]" if e.get("image") else ""
            msg = e["error"] if e["error"].startswith(r.id) else f"{r.id}: {e['error']}"
            print(f"  ! {msg}{where}")
    for s in summary.skipped:
        print(f"  - skipped {s['id']}: {s['why']}")
    rec = summary.recommendation
    print(f"\nRecommendation ({rec.get('budgets_text', 'no budget given')}):")
    for line in rec.get("lines") or recommendation_lines(rec):
        print(_wrap(line))
    eq = [e["id"] for e in rec.get("equivalent") or []]
    if eq:
        print(_wrap(f"Equivalent set (tolerance {rec.get('tolerance'):g} on {rec.get('metric')}): {', '.join(eq)}"))
    t = rec.get("timing") or {}
    if t.get("interleaved"):
        load = f"load average up to {t['load_max']:.1f}" if t.get("load_max") is not None else "load not read"
        print(_wrap(f"Speed: {t.get('n_rounds')} interleaved rounds ({t.get('rounds')} passes × {t.get('images')} "
                    f"images, shuffled), {load} on {t.get('cores')} cores."))
    dis = summary.run.get("disagreements")
    if dis:
        print(_wrap(f"Disagreement set: {dis['n_images']} of {dis['of']} images ({dis['rule']})."))
    gt_rows = [r for r in summary.variants if r.metrics_gt]
    if gt_rows:
        n = len(next(iter(summary.per_image_gt_scores.values()), {}))
        print(f"\nAgainst ground truth, the {n} images with masks:")
        print(format_table(["variant", "IoU", "maxF", "S", "MAE"],
                           [[r.id, *(f"{(r.metrics_gt.get(m) or {}).get('mean', float('nan')):.4f}"
                                     for m in ("iou", "fmeasure_max", "smeasure", "mae"))] for r in gt_rows]))
    run = summary.run
    if run.get("overhead_ratio"):
        print(f"\nRun: {run['wall_s']:.1f} s wall, {run['model_s']:.1f} s in models, cold starts "
              f"{run['cold_start_s']:.1f} s, overhead ratio {run['overhead_ratio']:.3f} (sitting {run.get('sitting')})")


def main(argv: list[str] | None = None) -> int:
    try:
        cfg, arena = parse_args(argv)
        if arena and not cfg.reference:
            raise ValueError("--arena needs a labels-free run: --reference VARIANT")
        print(f"Matting Studio benchmark → {cfg.out}")
        summary = run_suite(cfg)
    except (StudioError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished images are cached; rerun the same command to resume", file=sys.stderr)
        return 130
    print_summary(summary)
    print(f"\nReport: {Path(cfg.out) / 'report.html'}")
    if arena:
        print_arena(summary, Path(cfg.out))
    return exit_code(summary)


def print_arena(summary: Summary, out: Path) -> None:
    """Write the disagreement set as an arena set and say how to judge it."""
    got = write_arena_set(summary, out)
    if not got["n_images"]:
        print("\nArena: no image where a cheaper candidate disagrees with the reference beyond the floor.")
        return
    print(f"\nArena set: {got['n_images']} disagreement images in {got['spec']}")
    print(f"  judge them blind ({', '.join(got['variants'])}): start the app (python app.py) and open")
    print(f"  {got['link']}")
    print("  (or the Arena tab: image set = that folder). Once enough votes are in, rerun this command: the "
          "preference on these images feeds the recommendation, labelled as preference.")


if __name__ == "__main__":
    sys.exit(main())
