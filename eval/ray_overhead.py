"""What does running the benchmark on Ray cost over the local executor? Same run, same machine.

Runs the same suite (default: 24 sod-dev images × IS-Net fp32 and its shipped int8-static build,
cold start on) as `eval/run.py` would, once per configuration, each computing everything
(`resume=False`, its own results folder and prediction cache):

    local        the local executor, --threads 2
    ray-1x2      --executor ray --threads 2 (a local Ray cluster: one worker of 2 CPUs)
    ray-2x1      --executor ray --threads 1 (two workers of 1 CPU)

and prints, per configuration, wall time, cold starts, Σ model time (timed images and warm-up
runs) and the overhead ratio (wall − cold starts) ÷ Σ model time, with each Ray ratio over the
local one (target ≤ 1.15). Then the identical-results check: the 8-bit mattes and the per-image
metrics of local and ray-1x2 (same threads), max |Δ|; ray-2x1 (1 thread) is compared too, for
information. On a shared machine only same-run ratios mean anything: `--rounds 2` runs the
configurations again in reverse order.

    python eval/ray_overhead.py [--out /tmp/ray-overhead] [--limit 24] [--rounds 1]
        [--models isnet-general-use isnet-general-use-int8-static] [--configs local ray-1x2 ray-2x1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studio import settings  # noqa: E402
from studio.bench import SuiteConfig, run_suite  # noqa: E402

CONFIGS = {"local": ("local", 2), "ray-1x2": ("ray", 2), "ray-2x1": ("ray", 1)}


def run_one(name: str, root: Path, args: argparse.Namespace, round_: int) -> dict:
    executor, threads = CONFIGS[name]
    here = root / f"{name}-r{round_}"
    os.environ["STUDIO_RESULTS"] = str(here / "results")  # its own prediction cache
    cfg = SuiteConfig(models=args.models, dataset=args.dataset, limit=args.limit, threads=threads,
                      executor=executor, cold_start=True, resume=False, out=here / "out", name="ray-overhead")
    print(f"\n== {name} (round {round_}) → {here}", flush=True)
    t0 = time.perf_counter()
    s = run_suite(cfg, show_bars=True, n_boot=200)
    run = s.run
    row = {"config": name, "round": round_, "executor": executor, "threads": threads, "out": str(here),
           "wall_s": run["wall_s"], "cold_start_s": run["cold_start_s"], "model_s": run["model_s"],
           "overhead_ratio": run["overhead_ratio"], "outer_wall_s": time.perf_counter() - t0,
           "ray_connect_s": (s.environment.get("ray") or {}).get("connect_s"),
           "workers": len((run.get("executor") or {}).get("workers") or []) or 1,
           "variants": {r.id: {"model_s": r.timing.get("model_s"), "warmup_s": r.timing.get("warmup_s"),
                               "load_s": r.timing.get("load_s"), "p50_ms": r.latency.p50_ms if r.latency else None,
                               "cold_start_s": (r.cold_start or {}).get("total_s"), "n_images": r.n_images,
                               "errors": len(r.errors)} for r in s.variants}}
    return row


def mattes(here: Path) -> dict[str, bytes]:
    """(variant/image hash) -> the cached 8-bit matte PNG (cache folders are per variant and threads)."""
    summary = json.loads((here / "out" / "summary.json").read_text())
    variant_of = {r["cache_key"]: r["id"] for r in summary["variants"] if r.get("cache_key")}
    return {f"{variant_of.get(p.parent.name, p.parent.name)}/{p.name}": p.read_bytes()
            for p in (here / "results" / "cache").glob("*/*.png")}


def metrics(here: Path) -> dict[tuple, float]:
    raw = json.loads((here / "out" / "scores.json").read_text())["scores"]
    return {(v, img, m): x for v, imgs in raw.items() for img, sc in imgs.items() for m, x in sc["values"].items()}


def compare(a: Path, b: Path) -> dict:
    ma, mb = mattes(a), mattes(b)
    xa, xb = metrics(a), metrics(b)
    same_keys = ma.keys() == mb.keys()
    diff_mattes = sum(1 for k in ma if mb.get(k) != ma[k])  # byte-compare of the PNGs
    common = xa.keys() & xb.keys()
    return {"mattes": len(ma), "same_images": same_keys, "mattes_differing": diff_mattes,
            "metric_values": len(common), "max_abs_delta": max((abs(xa[k] - xb[k]) for k in common), default=None)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("/tmp/ray-overhead"))
    ap.add_argument("--dataset", default=str(settings.shared_dir() / "datasets" / "sod-dev"))
    ap.add_argument("--limit", type=int, default=24)
    ap.add_argument("--models", nargs="+", default=["isnet-general-use", "isnet-general-use-int8-static"])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for r in range(1, args.rounds + 1):
        order = args.configs if r % 2 else list(reversed(args.configs))
        for name in order:
            rows.append(run_one(name, args.out, args, r))
            (args.out / "overhead.json").write_text(json.dumps({"rows": rows}, indent=1))
    print("\nconfig    round  wall s  cold s  model s  overhead  ÷ local   ray.init s")
    for row in rows:
        local = next((x for x in rows if x["config"] == "local" and x["round"] == row["round"]), None)
        rel = row["overhead_ratio"] / local["overhead_ratio"] if local and local["overhead_ratio"] else None
        row["vs_local"] = rel
        init = f"{row['ray_connect_s']:.1f}" if row["ray_connect_s"] is not None else "—"
        print(f"{row['config']:<9} {row['round']:>5}  {row['wall_s']:6.1f}  {row['cold_start_s']:6.1f}  "
              f"{row['model_s']:7.1f}  {row['overhead_ratio']:8.3f}  {rel if rel is None else f'{rel:.3f}':>7}  {init:>9}")
    checks = {}
    for r in range(1, args.rounds + 1):
        base = next((Path(x["out"]) for x in rows if x["config"] == "local" and x["round"] == r), None)
        for x in rows:
            if base is not None and x["round"] == r and x["config"] != "local":
                checks[f"{x['config']} vs local, round {r}"] = c = compare(base, Path(x["out"]))
                print(f"{x['config']} vs local (round {r}): {c['mattes']} mattes, {c['mattes_differing']} differ; "
                      f"per-image metrics max |Δ| = {c['max_abs_delta']}")
    (args.out / "overhead.json").write_text(json.dumps({"rows": rows, "checks": checks}, indent=1))
    print(f"\n{args.out / 'overhead.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
