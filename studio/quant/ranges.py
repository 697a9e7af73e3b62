"""Calibration ranges committed beside an int8-static recipe: builds that reproduce anywhere.

An int8-static build needs, beyond its fp32 source, one (low, high) activation range per
tensor. Computed from the calibration images, they tie the build to the machine that has
the images (`../shared/datasets/sod-dev`, research-use only, which the repository may not
carry). Written once to `eval/quant/recipes/NAME.ranges.json` (the recipe's
`calibration.ranges`), they let any machine with the source file make the same bytes:

    studio build --write-ranges isnet-general-use-int8-static   # from the images, when present
    studio build isnet-general-use-int8-static                  # anywhere: reads the file

The file is small and deterministic: tensor names sorted, each value the shortest decimal
that gives back the same float32 (the quantizer works in float32). It records which images
the ranges came from (ids and content hashes), the dataset's name and licence, the method,
and the model they were measured on. The build key hashes the ranges themselves (method,
parameters and values), never the file's path or its provenance fields.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from studio.errors import StudioError
from studio.fileio import atomic_write_text
from studio.quant.calibrate import Ranges

FORMAT = 1


class RangesError(StudioError):
    """A ranges file that is missing, malformed, or does not fit its recipe or model."""


def f32(x: float) -> float:
    """The shortest decimal that round-trips to the same float32 (what the quantizer uses)."""
    x32 = np.float32(x)
    short = float(np.format_float_scientific(x32, unique=True))
    # parsed as float64, then rounded to float32: check the double rounding kept the value
    return short if np.float32(short) == x32 else float(x32)


def canonical_ranges(ranges: Ranges) -> dict[str, Any]:
    """What decides the quantized bytes: method, its parameters and the float32 values."""
    return {"method": ranges.method, "params": dict(sorted(ranges.params.items())),
            "ranges": {k: [f32(lo), f32(hi)] for k, (lo, hi) in sorted(ranges.ranges.items())}}


def ranges_sha256(ranges: Ranges) -> str:
    blob = json.dumps(canonical_ranges(ranges), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def dumps(ranges: Ranges, meta: dict[str, Any]) -> str:
    """The file's text: the provenance first, then one tensor per line (small diffs)."""
    body = canonical_ranges(ranges)
    head = {"format": FORMAT, **meta, "method": body["method"], "params": body["params"],
            "ranges_sha256": ranges_sha256(ranges), "tensors": len(body["ranges"])}
    lines = ["{"]
    for k, v in sorted(head.items()):
        if isinstance(v, list) and v and isinstance(v[0], dict):  # the images: one a line
            items = [f"    {json.dumps(x, sort_keys=True, ensure_ascii=True)}" for x in v]
            lines.append(f"  {json.dumps(k)}: [\n" + ",\n".join(items) + "\n  ],")
        else:
            lines.append(f"  {json.dumps(k)}: {json.dumps(v, sort_keys=True, ensure_ascii=True)},")
    lines.append('  "ranges": {')
    items = list(body["ranges"].items())
    for i, (k, (lo, hi)) in enumerate(items):
        sep = "," if i < len(items) - 1 else ""
        lines.append(f"    {json.dumps(k)}: [{json.dumps(lo)}, {json.dumps(hi)}]{sep}")
    lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_ranges(path: str | Path, ranges: Ranges, meta: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, dumps(ranges, meta))
    return path


def read_ranges(path: str | Path) -> tuple[Ranges, dict[str, Any]]:
    """The ranges and the provenance fields of a ranges file."""
    path = Path(path)
    if not path.is_file():
        raise RangesError(f"calibration ranges file {path} does not exist")
    try:
        raw = json.loads(path.read_text())
        ranges = Ranges(str(raw["method"]), {k: (float(v[0]), float(v[1])) for k, v in raw["ranges"].items()},
                        dict(raw.get("params") or {}))
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise RangesError(f"calibration ranges file {path} is malformed: {exc}") from None
    if int(raw.get("format", 0)) != FORMAT:
        raise RangesError(f"calibration ranges file {path} has format {raw.get('format')}, expected {FORMAT}")
    want = raw.get("ranges_sha256")
    if want and want != ranges_sha256(ranges):
        raise RangesError(f"calibration ranges file {path} was edited by hand (its ranges_sha256 does not "
                          "match its ranges); regenerate it with `studio build --write-ranges`")
    meta = {k: v for k, v in raw.items() if k != "ranges"}
    return ranges, meta


def file_sha256(path: str | Path) -> str:
    """The key's view of a ranges file: the hash of its ranges, not of its bytes or path."""
    return ranges_sha256(read_ranges(path)[0])


def check_fits(ranges: Ranges, meta: dict[str, Any], calibration: dict[str, Any], tensors: list[str],
               path: str | Path) -> None:
    """The file must have been made by the recipe's method and cover the model's tensors."""
    method = calibration["method"]
    if ranges.method != method:
        raise RangesError(f"{path} holds {ranges.method} ranges but the recipe asks for {method}; "
                          "regenerate it with `studio build --write-ranges`")
    if method == "percentile" and abs(float(ranges.params.get("percentile", -1)) - float(calibration["percentile"])) > 1e-12:
        raise RangesError(f"{path} was made at percentile {ranges.params.get('percentile')} but the recipe "
                          f"asks for {calibration['percentile']}; regenerate it with `studio build --write-ranges`")
    for key in ("dataset", "seed", "count"):
        if key in meta and str(meta[key]) != str(calibration[key]):
            raise RangesError(f"{path} was calibrated with {key}={meta[key]} but the recipe says "
                              f"{calibration[key]}; regenerate it with `studio build --write-ranges`")
    missing = [t for t in tensors if t not in ranges.ranges]
    if missing:
        raise RangesError(f"{path} has no range for {len(missing)} tensor(s) of this model (e.g. {missing[0]}): "
                          "it was made for another model; regenerate it with `studio build --write-ranges`")


def calibration_fingerprint(recipe) -> dict[str, Any]:
    """Which images an int8-static build's ranges come from: read from its committed ranges
    file when it has one (no image is opened), else from the images themselves."""
    if recipe.ranges_path is not None:
        _, meta = read_ranges(recipe.ranges_path)
        images = meta.get("images") or []
        return {"dataset": meta.get("dataset"), "part": meta.get("part"), "count": len(images),
                "seed": meta.get("seed"), "ids": [i["id"] for i in images],
                "content_sha256": meta.get("content_sha256"), "licence": meta.get("licence"),
                "ranges": str(recipe.params["calibration"]["ranges"]), "ranges_sha256": meta.get("ranges_sha256")}
    from studio.quant.images import ImageSet

    return ImageSet.from_dict(recipe.params["calibration"]).fingerprint()
