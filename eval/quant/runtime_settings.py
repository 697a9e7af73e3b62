"""ONNX Runtime session settings on CPU, measured in one interleaved run.

    python eval/quant/runtime_settings.py --threads 2 --rounds 15
    python eval/quant/runtime_settings.py --models isnet-general-use-int8-static --rounds 3   # smoke

For each model, every setting gets its own session; then rounds run every session once each
on the same image, in a shuffled order (`studio.timing.interleave`), with a short pause between runs (so one
session's spinning threads do not eat into the next one's time). The table gives each
setting's p50 and p90 model time, its speed-up over ONNX Runtime's defaults as the median of
the per-round ratios (a paired comparison: a noisy neighbour slows both runs of a round)
with the share of rounds it was faster, the session start time (median of interleaved
loads), and the process's RSS growth when the session was made and first run (rough).

Settings (each against ONNX Runtime's defaults: all graph optimisations, 1 inter-op thread,
spinning on, memory arena on, sequential):
- graph optimisation level: disable / basic / extended (all is the default);
- a saved optimised model: optimised once at level all, saved in the cache, loaded with
  optimisations off (`options.ort.optimized_model`);
- intra-op threads: 1 instead of --threads;
- spinning off (`session.intra_op.allow_spinning = 0`);
- the CPU memory arena off; memory pattern planning off;
- parallel execution mode with 2 inter-op threads;
- dynamic block base 4 (the intra-op pool hands out shrinking blocks of work); denormals
  flushed to zero;
- `--combo JSON`: a combination to measure in the same run (e.g. the winners of a first run).

Writes runtime_settings.md and runtime_settings.json to --out.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from eval.quant.outputs import command_line, run_meta, write_tables  # noqa: E402
from studio import artifacts, settings  # noqa: E402
from studio.backends import onnx as ob  # noqa: E402
from studio.quant import builds  # noqa: E402
from studio.timing import interleave  # noqa: E402
from studio.zoo import OrtOptions, load_zoo  # noqa: E402

SETTINGS: list[tuple[str, str, dict, int | None]] = [
    ("default", "ONNX Runtime defaults (level all, spinning on, arena on, sequential)", {}, None),
    ("opt-disable", "graph optimisation: disable", {"graph_optimization": "disable"}, None),
    ("opt-basic", "graph optimisation: basic", {"graph_optimization": "basic"}, None),
    ("opt-extended", "graph optimisation: extended", {"graph_optimization": "extended"}, None),
    ("saved-optimised", "saved optimised model (level all), loaded without optimising", {"optimized_model": True}, None),
    ("threads-1", "1 intra-op thread", {}, 1),
    ("no-spin", "intra-op spinning off", {"allow_spinning": False}, None),
    ("no-arena", "CPU memory arena off", {"cpu_mem_arena": False}, None),
    ("no-mem-pattern", "memory pattern off", {"mem_pattern": False}, None),
    ("parallel", "parallel execution, 2 inter-op threads", {"execution_mode": "parallel", "inter_op_threads": 2}, None),
    ("dynamic-block", "dynamic block base 4 (work split into shrinking blocks)", {"dynamic_block_base": 4}, None),
    ("denormal-zero", "denormals flushed to zero", {"denormal_as_zero": True}, None),
]
DEFAULT_MODELS = ["isnet-general-use", "isnet-general-use-int8-static"]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e6


def model_input(v, seed: int = 0) -> dict[str, np.ndarray]:
    """An image of the embedded sample (on every machine), preprocessed as the variant does."""
    from studio.data import open_dataset

    sample = next(iter(open_dataset(None, limit=1, seed=seed)))
    return {"input": ob.preprocess(sample.image(), tuple(v.input_size), v.preprocess)}


def measure_model(vid: str, chosen: list[tuple[str, str, dict, int | None]], threads: int, rounds: int,
                  loads: int, gap: float, say, seed: int = 0) -> list[dict]:
    v = load_zoo().get(vid)
    if builds.is_derived(v):
        builds.build(v, progress=True, threads=threads, check=False)
    path = artifacts.require(v, verify=False).path
    base = ob.ort_options(v).to_dict()
    merged = {name: OrtOptions.from_dict({**base, **opts}) for name, _, opts, _ in chosen}
    feed = model_input(v)
    for o in merged.values():  # a saved optimised model from an earlier run would skew its first load
        if o.optimized_model:
            ob.optimized_path(path, o.level).unlink(missing_ok=True)

    # Session start: `loads` interleaved rounds of creating each setting's session.
    init: dict[str, list[float]] = {n: [] for n, *_ in chosen}
    first_init: dict[str, float] = {}
    sessions, rss = {}, {}
    for r in range(loads):
        for name, _, _, thr in chosen:
            gc.collect()
            before = rss_mb()
            t0 = time.perf_counter()
            sess = ob.create_session(path, "cpu", thr or threads, merged[name])
            dt = time.perf_counter() - t0
            if r == 0:
                first_init[name] = dt
            init[name].append(dt)
            if r == loads - 1:
                sess.run(None, feed)  # warm-up, and the first run's memory
                sessions[name] = sess
                rss[name] = rss_mb() - before
            else:
                del sess
    say(f"{vid}: {len(sessions)} sessions made; {rounds} interleaved rounds …")
    names = [n for n, *_ in chosen]
    res = interleave({n: (lambda f, s=sessions[n]: s.run(None, f)) for n in names}, [feed], rounds, seed=seed, gap=gap)
    times = {n: res.samples(n) for n in names}
    sessions.clear()
    gc.collect()
    rows = []
    for name, label, _, thr in chosen:
        ratios = res.ratios(name, "default")
        rows.append({
            "model": vid, "setting": name, "label": label, "ort": merged[name].to_dict(), "threads": thr or threads,
            "p50_s": statistics.median(times[name]), "p90_s": float(np.percentile(times[name], 90)),
            "speedup_median": statistics.median(ratios), "faster_share": sum(x > 1 for x in ratios) / len(ratios),
            "init_s": statistics.median(init[name][1:] or init[name]), "first_init_s": first_init[name],
            "rss_mb": rss[name], "times": [round(t, 4) for t in times[name]], "load_max": res.load_max,
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--loads", type=int, default=3, help="interleaved session loads per setting (start time)")
    ap.add_argument("--gap", type=float, default=0.05, help="pause before each timed run (s)")
    ap.add_argument("--only", nargs="*", help="setting names to measure (default: all)")
    ap.add_argument("--only-for", action="append", default=[], metavar="MODEL=S1,S2",
                    help="for one model, only these settings (and the defaults): keeps the sessions "
                         "of a big fp32 model within memory")
    ap.add_argument("--combo", type=json.loads, default=None,
                    help='a combination to measure too, as JSON options.ort (e.g. \'{"allow_spinning": false}\')')
    ap.add_argument("--out", type=Path, default=settings.results_dir() / "quant")
    args = ap.parse_args(argv)
    cmd = command_line("runtime_settings.py", argv)
    chosen = [s for s in SETTINGS if not args.only or s[0] in args.only or s[0] == "default"]
    if args.combo:
        chosen.append(("combo", "combination: " + json.dumps(args.combo, sort_keys=True), dict(args.combo), None))

    per_model = {k: set(v.split(",")) for k, v in (x.split("=", 1) for x in args.only_for)}
    rows = []
    for vid in args.models:
        these = [c for c in chosen if vid not in per_model or c[0] in per_model[vid] or c[0] == "default"]
        rows += measure_model(vid, these, args.threads, args.rounds, args.loads, args.gap,
                              lambda m: print(m, flush=True))
    meta = run_meta(cmd, threads=args.threads, rounds=args.rounds, loads=args.loads, gap_s=args.gap,
                    onnxruntime=ob.ort.__version__)
    write_tables(args.out, "runtime_settings", meta, rows, markdown(rows, meta))
    return 0


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        f"Runtime settings: ONNX Runtime {meta['onnxruntime']}, CPU, {meta['threads']} threads unless the row says, "
        f"{meta['rounds']} interleaved rounds per model (a shuffled order each round, {meta['gap_s']} s pause "
        f"before each run), session start = median of {meta['loads']} interleaved loads.",
        f"Command: `{meta['command']}`",
        "Speed-up is over the defaults' run in the same round, median of the rounds' ratios; "
        "'faster' is the share of rounds in which the setting beat the defaults.",
        "",
        "| model | setting | p50 s | p90 s | speed-up vs defaults | faster | session start s (first) | RSS +MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| `{r['model']}` | {r['label']} | {r['p50_s']:.3f} | {r['p90_s']:.3f} | "
                     f"{r['speedup_median']:.3f}x | {100 * r['faster_share']:.0f}% | "
                     f"{r['init_s']:.2f} ({r['first_init_s']:.2f}) | {r['rss_mb']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
