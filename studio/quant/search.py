"""Sensitivity search: which nodes an int8-static build keeps in float, priced in time.

1. Calibrate once (cached; or the base recipe's committed ranges), run the float model on
   the calibration images: the reference.
2. Sensitivity: for each unit (a block such as `stage1d`, or a single node), quantize that
   unit alone and measure how far the output moves from the reference (mean absolute
   difference of the mattes, and mask IoU) on the `probe` most fragile calibration images
   (those with the most pixels near the threshold, where damage shows first).
3. Cost (`cost: time`, the default): for the most damaging units, the measured time of
   keeping each one in float: the build with that unit in float against the build with
   none, run in interleaved rounds in one process on one image (so a noisy neighbour slows
   both alike), in small batches (each with its own all-int8 baseline). Multiply-accumulates
   are not time: a float Concat or Resize has none but costs a DequantizeLinear/QuantizeLinear
   pair on its whole map, and a float Conv on a small map costs little. (`cost: macs` is the
   older proxy: a cap on the float share of the multiply-accumulates.)
4. Greedy, best improvement per second: starting from the base recipe's float nodes (usually
   none), take the `lookahead` units with the most damage per second of cost, try each in
   float and keep the one whose agreement gain per second is largest; when no single unit
   gains, try them in pairs (quantization errors interact: two blocks can help together and
   hurt apart). Repeat while the agreement is short of the budget (pooled mask IoU over the
   calibration images by default; the mean is swung by images where fp32 itself is unsure)
   and the summed cost stays under `max_float_time` (a share of the all-int8 build's time).
   A cost under the timing noise counts as the noise. Sensitivities are cached on disk.
5. Prune: give back to int8 the costliest kept units first, as long as the budget holds.
6. Measure the result against the all-int8 build, the fp32 source (and a recipe to compare
   with, such as the hand-made one) in one interleaved run, and write the winning recipe with
   its table of what was kept in float, why, and what it costs, to a file that
   `studio build --recipe` (or a zoo entry with `recipe: {file: ...}`) builds.

With `granularity: auto` the search ranks blocks first, then the nodes inside the most
sensitive blocks, and keeps whichever units (blocks or nodes) buy the budget.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from studio.errors import StudioError
from studio.recipe import Recipe, write_recipe_file
from studio.zoo import Variant, load_zoo

# Ops a unit can be made of: those ORT's quantizer turns into int8 work. Activations it fuses
# into the op before them (Relu, Clip) and shape ops are not units of their own.
COSTS = ("time", "macs")
METRICS = ("pooled", "mean")
QUANTIZABLE = ("Conv", "ConvTranspose", "MatMul", "Gemm", "Concat", "Add", "Mul", "Resize", "MaxPool",
               "AveragePool", "GlobalAveragePool", "Sigmoid", "LeakyRelu", "Softmax", "Where")


@dataclass
class Unit:
    name: str  # block name or node name
    nodes: list[str]
    macs: int = 0
    sensitivity: dict[str, float] = field(default_factory=dict)  # quantized alone: iou, mae
    seconds: float | None = None  # measured: time added by keeping it in float (s per image)
    noise: float = 0.0  # the spread of that measurement (median absolute deviation / sqrt(rounds))


@dataclass
class Step:
    action: str  # "float" | "back to int8" | "start"
    unit: str
    iou_mean: float
    iou_min: float
    mae_mean: float
    kept: bool = True
    iou_pooled: float = float("nan")
    seconds: float = float("nan")  # the unit's measured cost in float


@dataclass
class SearchResult:
    source: str
    recipe: Recipe
    path: Path
    budget: float
    min_budget: float | None
    met: bool
    units: list[Unit]
    floated: list[Unit]
    steps: list[Step]
    final: dict[str, float]
    seconds: float
    cost: str = "time"
    metric: str = "pooled"
    timing: dict[str, Any] = field(default_factory=dict)  # the final interleaved run
    compare: dict[str, Any] | None = None  # the recipe compared against, on the same images

    def table(self) -> str:
        from studio.terminal import format_table

        total = sum(u.macs for u in self.units) or 1
        rows = [[u.name, len(u.nodes), f"{100 * u.macs / total:.1f}%",
                 "—" if u.seconds is None else f"{1000 * u.seconds:+.0f} ms",
                 f"{u.sensitivity.get('iou', 0):.4f}", f"{u.sensitivity.get('mae', 0):.5f}",
                 why(u, self)] for u in self.floated]
        head = (f"kept in float: {len(self.floated)} unit(s), {sum(len(u.nodes) for u in self.floated)} node(s); "
                f"agreement IoU pooled {self.final.get('iou_pooled', float('nan')):.4f}, mean "
                f"{self.final['iou_mean']:.4f} (min {self.final['iou_min']:.4f}), MAE {self.final['mae_mean']:.5f} "
                f"on the calibration images; budget {self.metric} IoU >= {self.budget}"
                + (f" (min {self.min_budget})" if self.min_budget is not None else "")
                + ("" if self.met else "  [budget NOT met]"))
        lines = [head]
        if rows:
            lines.append(format_table(["unit", "nodes", "MACs", "cost in float", "IoU if int8 alone",
                                       "MAE if int8 alone", "why"], rows, max_width=90))
        if self.timing:
            lines.append(timing_line(self.timing))
        if self.compare:
            c = self.compare
            lines.append(f"compared with {c['name']}: {len(c['nodes_in_float'])} node(s) in float, agreement "
                         f"IoU pooled {c['score']['iou_pooled']:.4f}, mean {c['score']['iou_mean']:.4f}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "path": str(self.path), "budget": self.budget, "metric": self.metric,
                "cost": self.cost, "min_budget": self.min_budget, "met": self.met, "final": self.final,
                "seconds": round(self.seconds, 1), "timing": self.timing, "compare": self.compare,
                "kept_in_float": [{"unit": u.name, "nodes": u.nodes, "macs": u.macs, "seconds": u.seconds,
                                   **u.sensitivity} for u in self.floated],
                "steps": [vars(s) for s in self.steps],
                "sensitivity": [{"unit": u.name, "nodes": len(u.nodes), "macs": u.macs, "seconds": u.seconds,
                                 **u.sensitivity} for u in self.units]}


def timing_line(t: dict[str, Any]) -> str:
    """One line of the final interleaved timing: p50 per model and speed-up over fp32."""
    p50 = t["p50_s"]
    ref = p50.get("fp32")
    parts = [f"{k} {v:.3f} s" + (f" ({ref / v:.2f}x)" if ref else "") for k, v in p50.items()]
    return f"timing ({t['rounds']} interleaved rounds, {t['threads'] or 'all'} threads, p50 per image): " + ", ".join(parts)


def why(u: Unit, res: SearchResult) -> str:
    rank = sorted(res.units, key=lambda x: x.sensitivity.get("mae", 0), reverse=True).index(u) + 1
    text = f"#{rank} of {len(res.units)} by damage when quantized alone"
    if u.seconds is not None and res.cost == "time":
        text += f"; {u.sensitivity.get('mae', 0) / max(u.seconds, 1e-4):.3f} MAE per s of float"
    return text + f"; needed to reach IoU {res.budget}"


# --- the pieces -------------------------------------------------------------------------------


def default_base(source: str) -> Recipe:
    """The zoo's int8-static recipe for `source` when there is one, else the defaults."""
    for v in load_zoo().variants.values():
        if v.derived_from == source and v.recipe is not None:
            r = v.recipe
            if r.kind == "int8-static":
                return r.with_params(**{"quantize.nodes_in_float": []})
    return Recipe.from_dict({"kind": "int8-static"})


def conv_macs(model: onnx.ModelProto) -> dict[str, int]:
    """Multiply-accumulates of each Conv node (what keeping it in float costs)."""
    from onnx import shape_inference

    m = shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*m.graph.value_info, *m.graph.output, *m.graph.input]}
    inits = {t.name: list(t.dims) for t in m.graph.initializer}
    out: dict[str, int] = {}
    for n in m.graph.node:
        if n.op_type == "Conv" and n.output[0] in shapes and n.input[1] in inits:
            w = inits[n.input[1]]
            o = shapes[n.output[0]]
            out[n.name] = int(np.prod(o[1:]) * np.prod(w[1:])) if all(o) else 0
    return out


def make_units(model: onnx.ModelProto, granularity: str, op_types: list[str] | None,
               blocks: list[str] | None = None) -> list[Unit]:
    from studio.quant.graph import block_of

    types = set(op_types or QUANTIZABLE)
    macs = conv_macs(model)
    nodes = [n for n in model.graph.node if n.op_type in types]
    if granularity == "node":
        chosen = [n for n in nodes if blocks is None or block_of(n.name) in blocks]
        return [Unit(n.name, [n.name], macs.get(n.name, 0)) for n in chosen]
    groups: dict[str, list[str]] = {}
    for n in nodes:
        groups.setdefault(block_of(n.name), []).append(n.name)
    return [Unit(b, names, sum(macs.get(x, 0) for x in names)) for b, names in groups.items()]


class Evaluator:
    """Builds a candidate (quantize_static on cached ranges) and compares its mattes with the
    float model's on the calibration images."""

    def __init__(self, variant: Variant, prepared: Path, ranges, quant: dict[str, Any], samples: list,
                 threads: int = 0, workdir: Path | None = None):
        from studio.backends.onnx import preprocess

        self.variant = variant
        self.prepared = prepared
        self.ranges = ranges
        self.quant = quant
        self.threads = threads
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="studio-search-"))
        self.input_name = onnx.load(str(prepared), load_external_data=False).graph.input[0].name
        self.images = [s.image() for s in samples]
        self.image_keys = [s.content_hash for s in samples]  # what the sensitivity cache keys on
        self.feeds = [{self.input_name: preprocess(im, tuple(variant.input_size), variant.preprocess)}
                      for im in self.images]
        self.reference = self._mattes(str(prepared))
        self.calls = 0
        from studio.quant.makers import tensor_shapes

        model = onnx.load(str(prepared), load_external_data=False)
        self.shapes = tensor_shapes(model)
        self.all_nodes = [n.name for n in model.graph.node]

    def _mattes(self, model_path: str, idx: list[int] | None = None) -> list[np.ndarray]:
        from studio.backends.onnx import create_session
        from studio.prepost import levels_to_alpha, postprocess

        sess = create_session(model_path, "cpu", self.threads)
        out = []
        for i in idx if idx is not None else range(len(self.images)):
            im, feed = self.images[i], self.feeds[i]
            pred = sess.run(None, feed)[0]
            h, w = im.shape[:2]
            out.append(levels_to_alpha(postprocess(pred[0, 0], (w, h), self.variant.postprocess)))
        return out

    def probe(self, count: int) -> list[int]:
        """The images sensitivity is measured on: the `count` most fragile ones (the most
        pixels near the 0.5 threshold for their foreground), where damage shows first."""
        frag = [float(np.count_nonzero(np.abs(r - 0.5) < 0.1)) / max(float(np.count_nonzero(r > 0.5)), 1.0)
                for r in self.reference]
        return sorted(sorted(range(len(frag)), key=lambda i: (-frag[i], i))[:count])

    def build(self, nodes_in_float: list[str] | None = None, only: list[str] | None = None,
              name: str = "candidate") -> Path:
        """A candidate build keeping `nodes_in_float` in float (or quantizing `only`)."""
        from studio.quant.makers import quantize_static_model

        quant = dict(self.quant)
        if only is not None:
            keep = set(only)
            quant["nodes_in_float"] = sorted(n for n in self.all_nodes if n not in keep)
        else:
            quant["nodes_in_float"] = sorted(set(nodes_in_float or []))
        dest = self.workdir / f"{name}.onnx"
        quantize_static_model(self.prepared, self.ranges, quant, dest, self.shapes)
        return dest

    def score(self, nodes_in_float: list[str] | None = None, only: list[str] | None = None,
              images: list[int] | None = None) -> dict[str, float]:
        """Agreement of a build keeping `nodes_in_float` in float (or quantizing `only`),
        on all calibration images or the given ones."""
        from studio.quant.agreement import compare_mattes

        dest = self.build(nodes_in_float, only)
        idx = list(range(len(self.images))) if images is None else images
        got = self._mattes(str(dest), idx)
        ref = [self.reference[i] for i in idx]
        self.calls += 1
        c = compare_mattes(ref, got)
        return {"iou_mean": c["iou_mean"], "iou_min": c["iou_min"], "iou_pooled": c["iou_pooled"],
                "mae_mean": c["mae_mean"]}

    def time_models(self, paths: dict[str, Path], rounds: int, image: int = 0, gap: float = 0.02
                    ) -> dict[str, list[float]]:
        """Seconds per run of each model on one image, in interleaved rounds (`studio.timing`: a
        shuffled order each round, so no model always runs after the same one); a short pause
        between runs lets the last session's spinning threads go quiet. Lists are in round order,
        so index i of two models is the same round (paired)."""
        from studio.backends.onnx import create_session
        from studio.timing import interleave

        sessions = {k: create_session(str(p), "cpu", self.threads) for k, p in paths.items()}
        feed = self.feeds[image]
        for sess in sessions.values():
            sess.run(None, feed)  # warm-up
        res = interleave({k: (lambda f, s=s: s.run(None, f)) for k, s in sessions.items()}, [feed], rounds, gap=gap)
        return {k: res.samples(k) for k in sessions}


# --- the search ---------------------------------------------------------------------------------


def measure_costs(ev: Evaluator, units: list[Unit], fixed: list[str], rounds: int, batch: int = 4,
                  progress: bool = True) -> float:
    """Set each unit's `seconds`: the time its being in float adds to the build with `fixed` in
    float, measured against that build in the same interleaved run (batches of `batch`, each
    with the baseline, so a few sessions are alive at once): the median over rounds of the
    unit's time minus the baseline's in that round. Returns the baseline's p50."""
    from tqdm.auto import tqdm

    base = ev.build(fixed, name="cost-base")
    bases: list[float] = []
    bar = tqdm(total=len(units), desc="cost (interleaved timing)", unit="unit", disable=not progress, leave=False)
    for start in range(0, len(units), batch):
        part = units[start:start + batch]
        paths = {"base": base}
        for i, u in enumerate(part):
            paths[u.name] = ev.build(sorted(set(fixed) | set(u.nodes)), name=f"cost-{i}")
        times = ev.time_models(paths, rounds)
        bases.append(statistics.median(times["base"]))
        for u in part:  # paired by round: a slow round slows the unit's run and the baseline's alike
            diffs = [t - b for t, b in zip(times[u.name], times["base"], strict=True)]
            u.seconds = statistics.median(diffs)
            u.noise = statistics.median(abs(d - u.seconds) for d in diffs) / math.sqrt(len(diffs))
        bar.update(len(part))
    bar.close()
    return statistics.median(bases)


def _greedy_time(ev: Evaluator, priced: list[Unit], fixed: list[str], current: dict[str, float], key: str,
                 ok: Callable[[dict[str, float]], bool], floor: float, allowed: float, candidates: int,
                 lookahead: int, min_gain: float, steps: list[Step], say: Callable[[str], None],
                 progress: Any) -> tuple[dict[str, float], set[str], list[Unit], float]:
    """Best improvement per second, one step at a time: among the `lookahead` units with the
    most damage per second of cost, float the one whose agreement gain per second is largest;
    when no single unit gains, try them in pairs (quantization errors interact: two blocks can
    help together and hurt apart). Stops at the budget, the time cap, or when nothing gains."""
    from itertools import combinations

    from tqdm.auto import tqdm

    def price(u: Unit) -> float:
        return max(u.seconds or 0.0, floor)

    order = sorted(priced, key=lambda u: (-u.sensitivity["mae"] / price(u), u.name))
    in_float, floated, spent = set(fixed), [], 0.0
    skipped: set[str] = set()
    bar = tqdm(total=candidates, desc="greedy (time)", unit="step", disable=not progress, leave=False)
    while not ok(current) and len(floated) < candidates:
        open_units = [u for u in order if not set(u.nodes) <= in_float]
        for u in open_units[:lookahead]:
            if spent + max(u.seconds or 0.0, 0.0) > allowed and u.name not in skipped:
                skipped.add(u.name)
                steps.append(Step("skip (float time over the cap)", u.name, *([float("nan")] * 3), kept=False,
                                  seconds=max(u.seconds or 0.0, 0.0)))
        pool = [u for u in open_units if spent + max(u.seconds or 0.0, 0.0) <= allowed][:lookahead]
        if not pool:
            steps.append(Step("stop (nothing left under the time cap)", "-", *([float("nan")] * 3), kept=False))
            break
        best: tuple[float, list[Unit], dict[str, float]] | None = None
        for group_size in (1, 2):
            for group in combinations(pool, group_size):
                extra = sum(max(u.seconds or 0.0, 0.0) for u in group)
                if spent + extra > allowed:
                    continue
                trial = sorted(in_float.union(*(u.nodes for u in group)))
                sc = ev.score(trial)
                gain = sc[key] - current[key]
                name = " + ".join(u.name for u in group)
                steps.append(Step("try float", name, sc["iou_mean"], sc["iou_min"], sc["mae_mean"], kept=False,
                                  iou_pooled=sc["iou_pooled"], seconds=extra))
                value = gain / sum(price(u) for u in group)
                if gain > min_gain and (best is None or value > best[0]):
                    best = (value, list(group), sc)
            if best is not None:
                break  # a single unit gains: no need for pairs
        if best is None:
            steps.append(Step("stop (no unit or pair gains)", "-", *([float("nan")] * 3), kept=False))
            break
        _, group, sc = best
        for u in group:
            floated.append(u)
            in_float |= set(u.nodes)
            spent += max(u.seconds or 0.0, 0.0)
        current = sc
        steps.append(Step("float", " + ".join(u.name for u in group), sc["iou_mean"], sc["iou_min"],
                          sc["mae_mean"], kept=True, iou_pooled=sc["iou_pooled"],
                          seconds=sum(max(u.seconds or 0.0, 0.0) for u in group)))
        say(f"  float {' + '.join(u.name for u in group)}: IoU pooled {sc['iou_pooled']:.4f}, mean "
            f"{sc['iou_mean']:.4f} (min {sc['iou_min']:.4f}); +{1000 * sum(max(u.seconds or 0, 0) for u in group):.0f} ms")
        bar.update(1)
    bar.close()
    return current, in_float, floated, spent


class SensitivityCache:
    """Each unit's damage when quantized alone, on disk: it depends only on the prepared model,
    the ranges, the quantizer's settings and the probe images, so a second search (another
    budget, cost or greedy) skips the slowest phase."""

    def __init__(self, ev: Evaluator, probe_idx: list[int]):
        from studio.quant.makers import calibration_dir
        from studio.quant.ranges import ranges_sha256
        from studio.weights.store import hash_file

        quant = {k: v for k, v in ev.quant.items() if k != "nodes_in_float"}
        ctx = json.dumps({"model": hash_file(ev.prepared, ("sha256",))["sha256"], "ranges": ranges_sha256(ev.ranges),
                          "quant": quant, "probe": [ev.image_keys[i] for i in probe_idx]}, sort_keys=True, default=str)
        self.path = calibration_dir() / f"sensitivity-{hashlib.sha256(ctx.encode()).hexdigest()[:16]}.json"
        self.data: dict[str, dict[str, float]] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    @staticmethod
    def _key(nodes: list[str]) -> str:
        return hashlib.sha256("\n".join(sorted(nodes)).encode()).hexdigest()[:20]

    def get(self, nodes: list[str]) -> dict[str, float] | None:
        hit = self.data.get(self._key(nodes))
        return dict(hit) if hit is not None else None

    def put(self, nodes: list[str], value: dict[str, float]) -> None:
        from studio.fileio import atomic_write_json

        self.data[self._key(nodes)] = dict(value)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path, self.data, sort_keys=True)


def search(source: str, base: Recipe, budget: float = 0.985, min_budget: float | None = None,
           granularity: str = "auto", candidates: int = 12, threads: int = 0,
           out: str | Path | None = None, progress: bool | Callable[[str], None] = True,
           top_blocks: int = 3, max_float_macs: float = 0.1, probe: int = 6, cost: str = "time",
           max_float_time: float = 0.25, metric: str = "pooled", rounds: int = 5, cost_units: int = 24,
           compare: Recipe | None = None, compare_name: str = "compared recipe", lookahead: int = 6,
           min_gain: float = 0.0005) -> SearchResult:
    from studio.quant.builds import ensure_source
    from studio.quant.images import ImageSet
    from studio.quant.makers import (
        calibration_dir,
        calibration_ranges,
        committed_ranges,
        prepared_model,
    )

    if cost not in COSTS:
        raise StudioError(f"search cost must be one of {COSTS}, got {cost!r}")
    if metric not in METRICS:
        raise StudioError(f"search metric must be one of {METRICS}, got {metric!r}")
    t_start = time.perf_counter()
    say = progress if callable(progress) else ((lambda m: print(m, flush=True)) if progress else (lambda m: None))
    zoo = load_zoo()
    src = zoo.get(source)
    if src.backend != "onnx":
        raise StudioError(f"the sensitivity search works on ONNX variants; {source} is {src.backend}")
    pv = Variant(**{**vars(src), "id": f"{source}-search", "derived_from": source,
                       "recipe": base, "precision": "int8-static"})
    src_rec = ensure_source(pv, progress, threads)
    prepared = prepared_model(Path(src_rec.path), base.params["outputs"], calibration_dir())
    if base.ranges_path is not None:  # the ranges the build will use
        ranges, fp = committed_ranges(base, prepared)
    else:
        ranges, fp = calibration_ranges(pv, base, prepared, progress, threads)
    samples = ImageSet.from_dict(base.params["calibration"]).samples()
    say(f"search on {len(samples)} calibration images ({fp['dataset']}, seed {fp['seed']}); "
        f"budget: agreement IoU ({metric}) >= {budget}" + (f", worst >= {min_budget}" if min_budget is not None else "")
        + f"; cost: {cost}")
    ev = Evaluator(pv, prepared, ranges, base.params["quantize"], samples, threads)
    args = {"source": source, "base": base, "budget": budget, "min_budget": min_budget, "metric": metric,
            "cost": cost, "granularity": granularity, "candidates": candidates, "progress": progress, "say": say,
            "probe": probe, "top_blocks": top_blocks, "max_float_macs": max_float_macs,
            "max_float_time": max_float_time, "rounds": rounds, "cost_units": cost_units, "compare": compare,
            "compare_name": compare_name, "threads": threads, "out": out, "t_start": t_start,
            "lookahead": lookahead, "min_gain": min_gain}
    try:
        return _search(ev, args)
    finally:
        shutil.rmtree(ev.workdir, ignore_errors=True)


def _search(ev: Evaluator, a: dict[str, Any]) -> SearchResult:
    """The search proper (see the module doc); `a` holds `search`'s arguments and set-up."""
    from tqdm.auto import tqdm

    source, base, budget, min_budget, metric, cost = (a["source"], a["base"], a["budget"], a["min_budget"],
                                                     a["metric"], a["cost"])
    granularity, candidates, progress, say = a["granularity"], a["candidates"], a["progress"], a["say"]
    model = onnx.load(str(ev.prepared), load_external_data=False)
    fixed = list(base.params["quantize"]["nodes_in_float"])
    key = "iou_pooled" if metric == "pooled" else "iou_mean"

    def ok(score: dict[str, float]) -> bool:
        return score[key] >= budget and (min_budget is None or score["iou_min"] >= min_budget)

    probe_idx = ev.probe(a["probe"])

    cache = SensitivityCache(ev, probe_idx)

    def rank(units: list[Unit], desc: str) -> list[Unit]:
        for u in tqdm(units, desc=desc, unit="unit", disable=not progress, leave=False):
            u.sensitivity = cache.get(u.nodes)
            if u.sensitivity is None:
                s = ev.score(only=u.nodes, images=probe_idx)
                u.sensitivity = {"iou": s["iou_mean"], "iou_min": s["iou_min"], "mae": s["mae_mean"]}
                cache.put(u.nodes, u.sensitivity)
        return sorted(units, key=lambda u: (-u.sensitivity["mae"], u.name))

    op_types = base.params["quantize"]["op_types"]
    if granularity == "node":
        units = rank(make_units(model, "node", op_types), "sensitivity (nodes)")
    else:
        units = rank(make_units(model, "block", op_types), "sensitivity (blocks)")
        if granularity == "auto":
            top = [u.name for u in units[:a["top_blocks"]]]
            units = units + rank(make_units(model, "node", op_types, blocks=top), f"sensitivity (nodes of {', '.join(top)})")
            units = sorted(units, key=lambda u: (-u.sensitivity["mae"], u.name))

    macs_of = conv_macs(model)
    total_macs = sum(macs_of.values()) or 1

    def float_share(nodes: set[str]) -> float:
        return sum(macs_of.get(n, 0) for n in nodes) / total_macs

    steps: list[Step] = []
    current = ev.score(fixed)
    steps.append(Step("start", "(all quantized)" if not fixed else f"{len(fixed)} node(s) from the base recipe",
                      current["iou_mean"], current["iou_min"], current["mae_mean"], iou_pooled=current["iou_pooled"]))
    say(f"fully quantized: IoU pooled {current['iou_pooled']:.4f}, mean {current['iou_mean']:.4f} "
        f"(min {current['iou_min']:.4f})")

    floated: list[Unit] = []
    in_float = set(fixed)
    spent = 0.0
    t_base, allowed = float("nan"), float("inf")
    if cost == "time":
        # Price the most damaging units (the rest would not be chosen); a cost under the
        # measurement's noise counts as the noise, so no unit looks free by luck.
        priced = [u for u in units if not set(u.nodes) <= set(fixed)][:a["cost_units"]]
        t_base = measure_costs(ev, priced, fixed, a["rounds"], progress=bool(progress))
        floor = max(0.01 * t_base, 2 * statistics.median([u.noise for u in priced] or [0.0]))
        allowed = a["max_float_time"] * t_base
        say(f"all-int8 build: {t_base:.3f} s per image; float units may add up to {allowed:.3f} s; "
            f"costs below {1000 * floor:.0f} ms count as {1000 * floor:.0f} ms")
        current, in_float, floated, spent = _greedy_time(
            ev, priced, fixed, current, key, ok, floor, allowed, candidates, a["lookahead"], a["min_gain"],
            steps, say, progress)
    else:
        bar = tqdm(total=candidates, desc="greedy", unit="unit", disable=not progress, leave=False)
        for u in units:
            if ok(current) or len(floated) >= candidates:
                break
            if set(u.nodes) <= in_float:
                continue
            if float_share(in_float | set(u.nodes)) > a["max_float_macs"]:
                steps.append(Step("skip (float MACs over the cap)", u.name, *([float("nan")] * 3), kept=False))
                continue
            trial = sorted(in_float | set(u.nodes))
            s = ev.score(trial)
            bar.update(1)
            better = s["mae_mean"] < current["mae_mean"] or s[key] > current[key]
            steps.append(Step("float", u.name, s["iou_mean"], s["iou_min"], s["mae_mean"], kept=better,
                              iou_pooled=s["iou_pooled"]))
            if better:
                floated.append(u)
                in_float = set(trial)
                current = s
                say(f"  float {u.name}: IoU pooled {s['iou_pooled']:.4f}, mean {s['iou_mean']:.4f} "
                    f"(min {s['iou_min']:.4f}) MAE {s['mae_mean']:.5f}")
        bar.close()

    # Prune: give back to int8 what the budget does not need, the costliest first (by time;
    # by MACs, the least sensitive first).
    if ok(current):
        prune_order = (sorted(floated, key=lambda x: -(x.seconds or 0.0)) if cost == "time"
                       else sorted(floated, key=lambda x: x.sensitivity["mae"]))
        for u in prune_order:
            trial = sorted(in_float - set(u.nodes))
            s = ev.score(trial)
            keep_float = not ok(s)
            steps.append(Step("back to int8", u.name, s["iou_mean"], s["iou_min"], s["mae_mean"], kept=not keep_float,
                              iou_pooled=s["iou_pooled"]))
            if not keep_float:
                floated.remove(u)
                in_float = set(trial)
                current = s
                say(f"  {u.name} back to int8: IoU pooled {s['iou_pooled']:.4f}")

    # The result, the all-int8 build, fp32 (and the compared recipe) in one interleaved run.
    paths = {"fp32": ev.prepared, "all int8": ev.build(fixed, name="final-base"),
             "searched": ev.build(sorted(in_float), name="final")}
    compared = None
    if a["compare"] is not None:
        cnodes = list(a["compare"].params["quantize"]["nodes_in_float"])
        paths[a["compare_name"]] = ev.build(cnodes, name="final-compare")
        compared = {"name": a["compare_name"], "nodes_in_float": cnodes, "score": ev.score(cnodes)}
    say("timing the result (interleaved) …")
    times = ev.time_models(paths, max(2 * a["rounds"], 5))
    timing = {"rounds": max(2 * a["rounds"], 5), "threads": a["threads"], "image": 0,
              "p50_s": {k: round(statistics.median(v), 4) for k, v in times.items()}}

    met = ok(current)
    notes = {
        "search": {
            "source": source, "budget": budget, "metric": metric, "min_budget": min_budget,
            "granularity": granularity, "cost": cost,
            **({"max_float_time": a["max_float_time"], "all_int8_seconds": round(t_base, 4),
                "float_seconds_estimated": round(spent, 4)} if cost == "time" else
               {"max_float_macs": a["max_float_macs"]}),
            "float_macs": round(float_share(in_float), 4),
            "calibration_images": len(ev.images), "met": met,
            "agreement": {k: round(v, 5) for k, v in current.items()},
            "timing_p50_s": timing["p50_s"],
            "kept_in_float": [
                {"unit": u.name, "nodes": len(u.nodes), "iou_if_int8_alone": round(u.sensitivity["iou"], 4),
                 "mae_if_int8_alone": round(u.sensitivity["mae"], 6),
                 **({"seconds_in_float": round(u.seconds, 4)} if u.seconds is not None else {})} for u in floated],
            "most_sensitive": [
                {"unit": u.name, "mae_if_int8_alone": round(u.sensitivity["mae"], 6),
                 "iou_if_int8_alone": round(u.sensitivity["iou"], 4),
                 **({"seconds_in_float": round(u.seconds, 4)} if u.seconds is not None else {})} for u in units[:8]],
            **({"compared": {"name": compared["name"], "nodes_in_float": len(compared["nodes_in_float"]),
                             "agreement": {k: round(v, 5) for k, v in compared["score"].items()}}}
               if compared else {}),
        }
    }
    recipe = Recipe.from_dict({**base.canonical(), "notes": {**base.notes, **notes}})
    recipe = recipe.with_params(**{"quantize.nodes_in_float": sorted(in_float)})
    recipe = Recipe(recipe.kind, recipe.params, {**base.notes, **notes})
    path = Path(a["out"]) if a["out"] else Path(f"{source}-int8-static.search.yaml")
    header = (f"# Written by `studio build --search {source}`: int8-static with the nodes kept in float that\n"
              f"# hold agreement IoU ({metric}) >= {budget} with {source} on the calibration images"
              + (", bought at the least measured time" if cost == "time" else "") + ".\n"
              f"# Build it: studio build --recipe {path} --from {source}")
    write_recipe_file(recipe, path, header)
    res = SearchResult(source, recipe, path, budget, min_budget, met, units, floated, steps, current,
                       time.perf_counter() - a["t_start"], cost=cost, metric=metric, timing=timing, compare=compared)
    path.with_suffix(".json").write_text(json.dumps(res.to_json(), indent=2, sort_keys=True, default=_nan_none))
    return res


def _nan_none(x: Any) -> Any:
    return None if isinstance(x, float) and math.isnan(x) else str(x)
