"""The benchmark suite. With no arguments: the embedded sample through every installed variant.

    python eval/run.py                                   # embedded sample, every installed model
    python eval/run.py --dataset ../shared/datasets/sod-dev --models 'isnet-*' grabcut
    python eval/run.py --config isnet-builds             # a named suite in eval/suites/
    python eval/run.py --budget-p95-ms 1500 --price-per-hour 0.9

Writes per_image.csv, summary.json and report.html to --out (default eval/results/latest).
Exit code 0 when every variant ran on every image, 1 when something failed, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studio.bench import SuiteConfig, exit_code, load_suite_file, run_suite  # noqa: E402
from studio.errors import StudioError  # noqa: E402
from studio.terminal import format_table  # noqa: E402


def parse_args(argv: list[str] | None = None) -> SuiteConfig:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="a suite file (eval/suites/NAME.yaml or a path); flags override it")
    ap.add_argument("--models", nargs="+", help="variant ids, globs or families (default: every installed one)")
    ap.add_argument("--dataset", help="a catalogue name or a folder (default: the embedded sample)")
    ap.add_argument("--limit", type=int, help="a deterministic subset of this many images")
    ap.add_argument("--untrained-limit", type=int,
                    help="untrained variants (latency only) run on this many images (default 8; 0: all)")
    ap.add_argument("--device", help="cpu (default) or cuda[:N]")
    ap.add_argument("--threads", type=int, help="inference threads (0: the runtime's default)")
    ap.add_argument("--warmup", type=int, help="untimed runs per variant before timing (default 1)")
    ap.add_argument("--repeats", type=int, help="timed runs per image (default 1)")
    ap.add_argument("--cold-start", dest="cold_start", action=argparse.BooleanOptionalAction, default=None,
                    help="measure cold start in a fresh subprocess (default on)")
    ap.add_argument("--budget-p95-ms", type=float, help="latency budget: p95 per image, ms")
    ap.add_argument("--budget-memory-mb", type=float, help="memory budget: peak RSS, MB")
    ap.add_argument("--price-per-hour", type=float, help="instance price, for the cost per 1,000 images")
    ap.add_argument("--quality-metric", help="metric the recommendation ranks by (default iou)")
    ap.add_argument("--out", type=Path, help="output folder (default eval/results/latest)")
    ap.add_argument("--resume", action=argparse.BooleanOptionalAction, default=None,
                    help="reuse cached predictions; --no-resume recomputes everything (default on)")
    ap.add_argument("--seed", type=int, help="subset and bootstrap seed")
    a = ap.parse_args(argv)
    values = load_suite_file(a.config) if a.config else {}
    for key in ("models", "dataset", "limit", "untrained_limit", "device", "threads", "warmup", "repeats", "cold_start",
                "budget_p95_ms", "budget_memory_mb", "price_per_hour", "quality_metric", "out", "resume", "seed"):
        v = getattr(a, key)
        if v is not None:
            values[key] = v
    return SuiteConfig(**values)


def print_summary(summary: dict) -> None:
    rows = []
    for r in summary["variants"]:
        m = r.get("metrics") or {}

        def mean(k: str, m: dict = m) -> str:
            return f"{m[k]['mean']:.4f}" if k in m and m[k].get("mean") is not None else "—"

        lat = r.get("latency") or {}
        cs = r.get("cold_start") or {}
        rows.append([r["id"], r.get("n_images", 0), len(r.get("errors", [])), mean("iou"), mean("fmeasure_max"),
                     mean("smeasure"), f"{lat['p50_ms']:.0f}" if lat else "—", f"{lat['p95_ms']:.0f}" if lat else "—",
                     f"{cs['total_s']:.1f}" if cs.get("total_s") else "—",
                     f"{r['peak_rss_mb']:.0f}" if r.get("peak_rss_mb") else "—", f"{r.get('model_size_mb', 0):.0f}",
                     ", ".join(r.get("flags", []))])
    print()
    print(format_table(["variant", "imgs", "errs", "iou", "Fmax", "S", "p50 ms", "p95 ms", "cold s", "RSS MB",
                        "MB", "flags"], rows, max_width=70))
    for r in summary["variants"]:
        for e in r.get("errors", [])[:3]:
            where = f" [{e['image']}]" if e.get("image") else ""
            print(f"  ! {r['id']}{where}: {e['error']}")
    rec = summary.get("recommendation") or {}
    print(f"\nRecommendation: {rec.get('reason', '—')}")
    run = summary.get("run", {})
    if run.get("overhead_ratio"):
        print(f"Run: {run['wall_s']:.1f} s wall, {run['model_s']:.1f} s in models, cold starts {run['cold_start_s']:.1f} s,"
              f" overhead ratio {run['overhead_ratio']:.3f}")


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_args(argv)
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
    return exit_code(summary)


if __name__ == "__main__":
    sys.exit(main())
