"""Sensitivity search: which nodes an int8-static build keeps in float.

1. Calibrate once (cached), run the float model on the calibration images: the reference.
2. Sensitivity: for each unit (a block such as `stage1d`, or a single node), quantize that
   unit alone and measure how far the output moves from the reference (mean absolute
   difference of the mattes, and mask IoU) on the `probe` most fragile calibration images
   (those with the most pixels near the threshold, where damage shows first).
3. Greedy: starting from the base recipe fully quantized, keep the most sensitive unit in
   float, then the next, until the build's agreement with the reference is within budget
   (mean mask IoU, and optionally the worst image's). A unit is kept only when it helps,
   and never past `max_float_macs` (the share of the model's multiply-accumulates allowed
   in float: the speed the build must keep).
4. Prune: try each unit kept in float back in int8 (least sensitive first) and leave it
   there when the budget still holds, so the recipe keeps the fewest units in float.
5. Write the winning recipe, with a table of what was kept in float and why, to a file
   that `studio build --recipe` (or a zoo entry with `recipe: {file: ...}`) builds.

With `granularity: auto` the search ranks blocks first, then the nodes inside the most
sensitive blocks, and keeps whichever units (blocks or nodes) buy the budget.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from studio.errors import StudioError
from studio.quant.recipe import Recipe, write_recipe_file
from studio.zoo import Variant, load_zoo

# Ops a unit can be made of: those ORT's quantizer turns into int8 work. Activations it fuses
# into the op before them (Relu, Clip) and shape ops are not units of their own.
QUANTIZABLE = ("Conv", "ConvTranspose", "MatMul", "Gemm", "Concat", "Add", "Mul", "Resize", "MaxPool",
               "AveragePool", "GlobalAveragePool", "Sigmoid", "LeakyRelu", "Softmax", "Where")


@dataclass
class Unit:
    name: str  # block name or node name
    nodes: list[str]
    macs: int = 0
    sensitivity: dict[str, float] = field(default_factory=dict)  # quantized alone: iou, mae


@dataclass
class Step:
    action: str  # "float" | "back to int8" | "start"
    unit: str
    iou_mean: float
    iou_min: float
    mae_mean: float
    kept: bool = True


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

    def table(self) -> str:
        from studio.terminal import format_table

        total = sum(u.macs for u in self.units) or 1
        rows = [[u.name, len(u.nodes), f"{100 * u.macs / total:.1f}%",
                 f"{u.sensitivity.get('iou', 0):.4f}", f"{u.sensitivity.get('mae', 0):.5f}",
                 why(u, self)] for u in self.floated]
        head = (f"kept in float: {len(self.floated)} unit(s), {sum(len(u.nodes) for u in self.floated)} node(s); "
                f"agreement IoU {self.final['iou_mean']:.4f} (min {self.final['iou_min']:.4f}), "
                f"MAE {self.final['mae_mean']:.5f} on the calibration images; budget {self.budget}"
                + (f" (min {self.min_budget})" if self.min_budget is not None else "")
                + ("" if self.met else "  [budget NOT met]"))
        if not rows:
            return head
        return head + "\n" + format_table(
            ["unit", "nodes", "MACs", "IoU if int8 alone", "MAE if int8 alone", "why"], rows, max_width=90)

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "path": str(self.path), "budget": self.budget,
                "min_budget": self.min_budget, "met": self.met, "final": self.final,
                "seconds": round(self.seconds, 1),
                "kept_in_float": [{"unit": u.name, "nodes": u.nodes, "macs": u.macs, **u.sensitivity}
                                  for u in self.floated],
                "steps": [vars(s) for s in self.steps],
                "sensitivity": [{"unit": u.name, "nodes": len(u.nodes), "macs": u.macs, **u.sensitivity}
                                for u in self.units]}


def why(u: Unit, res: SearchResult) -> str:
    rank = sorted(res.units, key=lambda x: x.sensitivity.get("mae", 0), reverse=True).index(u) + 1
    return (f"#{rank} of {len(res.units)} by damage when quantized alone; "
            f"needed to reach IoU {res.budget}")


# --- the pieces -------------------------------------------------------------------------------


def default_base(source: str) -> Recipe:
    """The zoo's int8-static recipe for `source` when there is one, else the defaults."""
    for v in load_zoo().variants.values():
        if v.derived_from == source and v.recipe is not None:
            r = Recipe.from_dict(v.recipe)
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
        self.feeds = [{self.input_name: preprocess(im, tuple(variant.input_size), variant.preprocess)}
                      for im in self.images]
        self.reference = self._mattes(str(prepared))
        self.calls = 0
        from studio.quant.makers import tensor_shapes

        model = onnx.load(str(prepared), load_external_data=False)
        self.shapes = tensor_shapes(model)
        self.all_nodes = [n.name for n in model.graph.node]

    def _mattes(self, model_path: str, idx: list[int] | None = None) -> list[np.ndarray]:
        from studio.backends.onnx import create_session, postprocess

        sess = create_session(model_path, "cpu", self.threads)
        out = []
        for i in idx if idx is not None else range(len(self.images)):
            im, feed = self.images[i], self.feeds[i]
            pred = sess.run(None, feed)[0]
            h, w = im.shape[:2]
            out.append(postprocess(pred[0, 0], (w, h), self.variant.postprocess))
        return out

    def probe(self, count: int) -> list[int]:
        """The images sensitivity is measured on: the `count` most fragile ones (the most
        pixels near the 0.5 threshold for their foreground), where damage shows first."""
        frag = [float(np.count_nonzero(np.abs(r - 0.5) < 0.1)) / max(float(np.count_nonzero(r > 0.5)), 1.0)
                for r in self.reference]
        return sorted(sorted(range(len(frag)), key=lambda i: (-frag[i], i))[:count])

    def score(self, nodes_in_float: list[str] | None = None, only: list[str] | None = None,
              images: list[int] | None = None) -> dict[str, float]:
        """Agreement of a build keeping `nodes_in_float` in float (or quantizing `only`),
        on all calibration images or the given ones."""
        from studio.metrics import iou, mae
        from studio.quant.makers import quantize_static_model

        quant = dict(self.quant)
        if only is not None:
            keep = set(only)
            quant["nodes_in_float"] = sorted(n for n in self.all_nodes if n not in keep)
        else:
            quant["nodes_in_float"] = sorted(set(nodes_in_float or []))
        dest = self.workdir / "candidate.onnx"
        quantize_static_model(self.prepared, self.ranges, quant, dest, self.shapes)
        idx = list(range(len(self.images))) if images is None else images
        got = self._mattes(str(dest), idx)
        ref = [self.reference[i] for i in idx]
        self.calls += 1
        ious = [iou(b, a) for a, b in zip(ref, got, strict=True)]
        maes = [mae(b, a) for a, b in zip(ref, got, strict=True)]
        return {"iou_mean": float(np.mean(ious)), "iou_min": float(np.min(ious)),
                "mae_mean": float(np.mean(maes))}


# --- the search ---------------------------------------------------------------------------------


def search(source: str, base: Recipe, budget: float = 0.99, min_budget: float | None = None,
           granularity: str = "auto", candidates: int = 12, threads: int = 0,
           out: str | Path | None = None, progress: bool | Callable[[str], None] = True,
           top_blocks: int = 3, max_float_macs: float = 0.1, probe: int = 6) -> SearchResult:
    from tqdm.auto import tqdm

    from studio.quant.builds import ensure_source
    from studio.quant.images import ImageSet
    from studio.quant.makers import calibration_dir, calibration_ranges, prepared_model

    t_start = time.perf_counter()
    say = progress if callable(progress) else ((lambda m: print(m, flush=True)) if progress else (lambda m: None))
    zoo = load_zoo()
    src = zoo.get(source)
    if src.backend != "onnx":
        raise StudioError(f"the sensitivity search works on ONNX variants; {source} is {src.backend}")
    pv = Variant(**{**vars(src), "id": f"{source}-search", "derived_from": source,
                       "recipe": base.canonical(), "precision": "int8-static"})
    src_rec = ensure_source(pv, progress, threads)
    prepared = prepared_model(Path(src_rec.path), base.params["outputs"], calibration_dir())
    ranges, fp = calibration_ranges(pv, base, prepared, progress, threads)
    samples = ImageSet.from_dict(base.params["calibration"]).samples()
    say(f"search on {len(samples)} calibration images ({fp['dataset']}, seed {fp['seed']}); "
        f"budget: agreement IoU >= {budget}" + (f", worst >= {min_budget}" if min_budget is not None else ""))
    ev = Evaluator(pv, prepared, ranges, base.params["quantize"], samples, threads)
    model = onnx.load(str(prepared), load_external_data=False)
    fixed = list(base.params["quantize"]["nodes_in_float"])

    def ok(score: dict[str, float]) -> bool:
        return score["iou_mean"] >= budget and (min_budget is None or score["iou_min"] >= min_budget)

    probe_idx = ev.probe(probe)

    def rank(units: list[Unit], desc: str) -> list[Unit]:
        for u in tqdm(units, desc=desc, unit="unit", disable=not progress, leave=False):
            s = ev.score(only=u.nodes, images=probe_idx)
            u.sensitivity = {"iou": s["iou_mean"], "iou_min": s["iou_min"], "mae": s["mae_mean"]}
        return sorted(units, key=lambda u: (-u.sensitivity["mae"], u.name))

    op_types = base.params["quantize"]["op_types"]
    if granularity == "node":
        units = rank(make_units(model, "node", op_types), "sensitivity (nodes)")
    else:
        units = rank(make_units(model, "block", op_types), "sensitivity (blocks)")
        if granularity == "auto":
            top = [u.name for u in units[:top_blocks]]
            units = units + rank(make_units(model, "node", op_types, blocks=top), f"sensitivity (nodes of {', '.join(top)})")
            units = sorted(units, key=lambda u: (-u.sensitivity["mae"], u.name))

    steps: list[Step] = []
    current = ev.score(fixed)
    steps.append(Step("start", "(all quantized)" if not fixed else f"{len(fixed)} node(s) from the base recipe",
                      current["iou_mean"], current["iou_min"], current["mae_mean"]))
    say(f"fully quantized: IoU {current['iou_mean']:.4f} (min {current['iou_min']:.4f})")
    floated: list[Unit] = []
    in_float = set(fixed)
    total_macs = sum(conv_macs(model).values()) or 1
    macs_of = conv_macs(model)

    def float_share(nodes: set[str]) -> float:
        return sum(macs_of.get(n, 0) for n in nodes) / total_macs

    bar = tqdm(total=candidates, desc="greedy", unit="unit", disable=not progress, leave=False)
    for u in units:
        if ok(current) or len(floated) >= candidates:
            break
        if set(u.nodes) <= in_float:
            continue
        if float_share(in_float | set(u.nodes)) > max_float_macs:
            steps.append(Step("skip (float MACs over the cap)", u.name, float("nan"), float("nan"),
                              float("nan"), kept=False))
            continue
        trial = sorted(in_float | set(u.nodes))
        s = ev.score(trial)
        bar.update(1)
        better = s["mae_mean"] < current["mae_mean"] or s["iou_mean"] > current["iou_mean"]
        steps.append(Step("float", u.name, s["iou_mean"], s["iou_min"], s["mae_mean"], kept=better))
        if better:
            floated.append(u)
            in_float = set(trial)
            current = s
            say(f"  float {u.name}: IoU {s['iou_mean']:.4f} (min {s['iou_min']:.4f}) MAE {s['mae_mean']:.5f}")
    bar.close()

    # Prune: least sensitive first, give back to int8 what the budget does not need.
    if ok(current):
        for u in sorted(floated, key=lambda x: x.sensitivity["mae"]):
            trial = sorted(in_float - set(u.nodes))
            s = ev.score(trial)
            keep_float = not ok(s)
            steps.append(Step("back to int8", u.name, s["iou_mean"], s["iou_min"], s["mae_mean"], kept=not keep_float))
            if not keep_float:
                floated.remove(u)
                in_float = set(trial)
                current = s
                say(f"  {u.name} back to int8: IoU {s['iou_mean']:.4f}")

    met = ok(current)
    notes = {
        "search": {
            "source": source, "budget": budget, "min_budget": min_budget, "granularity": granularity,
            "max_float_macs": max_float_macs, "float_macs": round(float_share(in_float), 4),
            "calibration_images": len(samples), "met": met,
            "agreement": {k: round(v, 5) for k, v in current.items()},
            "kept_in_float": [
                {"unit": u.name, "nodes": len(u.nodes), "iou_if_int8_alone": round(u.sensitivity["iou"], 4),
                 "mae_if_int8_alone": round(u.sensitivity["mae"], 6)} for u in floated],
            "most_sensitive": [
                {"unit": u.name, "mae_if_int8_alone": round(u.sensitivity["mae"], 6),
                 "iou_if_int8_alone": round(u.sensitivity["iou"], 4)} for u in units[:8]],
        }
    }
    recipe = Recipe.from_dict({**base.canonical(), "notes": {**base.notes, **notes}})
    recipe = recipe.with_params(**{"quantize.nodes_in_float": sorted(in_float)})
    recipe = Recipe(recipe.kind, recipe.params, {**base.notes, **notes})
    path = Path(out) if out else Path(f"{source}-int8-static.search.yaml")
    header = (f"# Written by `studio build --search {source}`: int8-static with the fewest nodes kept in\n"
              f"# float that hold agreement IoU >= {budget} with {source} on the calibration images.\n"
              f"# Build it: studio build --recipe {path} --from {source}")
    write_recipe_file(recipe, path, header)
    res = SearchResult(source, recipe, path, budget, min_budget, met, units, floated, steps, current,
                       time.perf_counter() - t_start)
    path.with_suffix(".json").write_text(json.dumps(res.to_json(), indent=2, sort_keys=True))
    return res
