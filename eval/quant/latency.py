"""Latency of some variants in one interleaved run (no quality: for untrained checkpoints).

    STUDIO_CACHE=/tmp/untrained-cache python eval/quant/latency.py inspyrenet-fast \\
        inspyrenet-fast-onnx inspyrenet-fast-onnx-384 inspyrenet-fast-onnx-384-int8-static --rounds 9

Each variant is loaded once (builds are built first), warmed up, then rounds run every variant
once each on the same image, in a shuffled order (`studio.timing.interleave`). The table gives model and whole
predict p50 per image, the session start, and the label "untrained — latency only" where the
weights are random. Writes latency.md and latency.json to --out.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from eval.quant.outputs import command_line, run_meta, write_tables  # noqa: E402
from studio import artifacts, engine, labels, settings  # noqa: E402
from studio.quant import builds  # noqa: E402
from studio.timing import interleave  # noqa: E402
from studio.zoo import load_zoo  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variants", nargs="+")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--gap", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0, help="seed of the rounds' shuffled order")
    ap.add_argument("--out", type=Path, default=settings.results_dir() / "quant")
    args = ap.parse_args(argv)
    cmd = command_line("latency.py", argv)
    from studio.data import open_dataset

    image = next(iter(open_dataset(None, limit=1))).image()
    zoo = load_zoo()
    runners, rows = {}, {}
    for vid in args.variants:
        v = zoo.get(vid)
        if builds.is_derived(v):
            builds.build(v, progress=True, threads=args.threads, check=False)
        rec = artifacts.installed(v)
        runner, load = engine.load_runner(v, "cpu", args.threads, verify=False)
        t0 = time.perf_counter()
        runner.predict(image)
        rows[vid] = {"id": vid, "backend": v.backend, "precision": v.precision, "input_size": v.input_size_label,
                     "untrained": bool(rec and rec.untrained), "size_mb": round(rec.size / 1e6, 1) if rec else None,
                     "init_s": load.init_s, "first_s": time.perf_counter() - t0, "model": [], "total": []}
        runners[vid] = runner
    res = interleave({vid: (lambda img, r=r: r.predict(img).timings) for vid, r in runners.items()}, [image],
                     args.rounds, seed=args.seed, gap=args.gap)
    for runner in runners.values():
        runner.close()
    for vid, row in rows.items():
        row["p50_model_s"] = statistics.median(res.samples(vid, "inference"))
        row["p50_total_s"] = statistics.median(res.samples(vid))
        del row["model"], row["total"]
    meta = run_meta(cmd, threads=args.threads, rounds=args.rounds, image_size=list(image.shape[:2]),
                    load_max=res.load_max)
    lines = [f"Latency: {args.threads} threads, {args.rounds} interleaved rounds (shuffled order, load average up to "
             f"{res.load_max}), one {image.shape[1]}x{image.shape[0]} "
             f"image of the embedded sample. Command: `{cmd}`", "",
             "| variant | backend | precision | input | size MB | session start s | first run s | p50 model s | "
             "p50 predict s | weights |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows.values():
        lines.append(f"| `{r['id']}` | {r['backend']} | {r['precision']} | {r['input_size']} | {r['size_mb'] or '—'} | "
                     f"{r['init_s']:.2f} | {r['first_s']:.2f} | {r['p50_model_s']:.3f} | {r['p50_total_s']:.3f} | "
                     f"{labels.UNTRAINED if r['untrained'] else 'trained'} |")
    write_tables(args.out, "latency", meta, list(rows.values()), "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
