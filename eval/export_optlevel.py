"""Which ONNX Runtime optimisation level should the exported model be saved at, and loaded at?

    python eval/export_optlevel.py MODEL.onnx [--repeat 4]

Saves MODEL at basic, extended and all (SessionOptions.optimized_model_filepath), then for each
(saved, loaded-at) pair starts fresh processes that import onnxruntime, create the session
(`init`), run once (`first`) and three more times (`warm`, the median), on a fixed random
1024x1024 input. Pairs are interleaved per repetition; medians are printed, with the largest
difference of the output from the original model loaded at `all` (what the studio runs).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
          "all": "ORT_ENABLE_ALL"}
PAIRS = [("original", "all"), ("basic", "all"), ("extended", "all"), ("extended", "extended"),
         ("all", "disable"), ("all", "all")]
CHILD = r"""
import json, sys, time
import numpy as np, onnxruntime as ort
path, level, out = sys.argv[1:4]
o = ort.SessionOptions(); o.log_severity_level = 3
o.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
t0 = time.perf_counter()
s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
t1 = time.perf_counter()
inp = s.get_inputs()[0]
x = np.random.default_rng(0).random((1, 3, 1024, 1024), dtype=np.float32) - 0.5
y = s.run(None, {inp.name: x})[0]
t2 = time.perf_counter()
warm = []
for _ in range(3):
    a = time.perf_counter(); s.run(None, {inp.name: x}); warm.append(time.perf_counter() - a)
np.save(out, y)
print(json.dumps({"init": t1 - t0, "first": t2 - t1, "warm": sorted(warm)[1]}))
"""


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import onnxruntime as ort

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--repeat", type=int, default=4)
    a = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="optlevel-")
    files = {"original": a.model}
    for lv in ("basic", "extended", "all"):
        o = ort.SessionOptions()
        o.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[lv])
        o.optimized_model_filepath = files[lv] = os.path.join(tmp, f"{lv}.onnx")
        o.log_severity_level = 3
        ort.InferenceSession(a.model, o, providers=["CPUExecutionProvider"])
    runs: dict[tuple[str, str], list[dict]] = {p: [] for p in PAIRS}
    for _ in range(a.repeat):
        for saved, load in PAIRS:
            out = os.path.join(tmp, f"{saved}-{load}.npy")
            p = subprocess.run([sys.executable, "-c", CHILD, files[saved], LEVELS[load], out],
                               capture_output=True, text=True, check=True)
            runs[(saved, load)].append(json.loads(p.stdout.strip().splitlines()[-1]))
    ref = np.load(os.path.join(tmp, "original-all.npy"))
    print(f"{a.model}: medians of {a.repeat} fresh processes (seconds)")
    print(f"{'saved at':10} {'loaded at':10} {'init':>6} {'first':>6} {'warm':>6} {'init+first':>10} {'max |diff|':>10}")
    for (saved, load), rs in runs.items():
        m = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        diff = float(np.abs(np.load(os.path.join(tmp, f"{saved}-{load}.npy")) - ref).max())
        print(f"{saved:10} {load:10} {m['init']:6.3f} {m['first']:6.3f} {m['warm']:6.3f} "
              f"{m['init'] + m['first']:10.3f} {diff:10.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
