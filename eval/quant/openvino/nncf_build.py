"""Build one NNCF int8 IR from a recipe, in its own process, and say what it cost.

    python eval/quant/openvino/nncf_build.py RECIPE.yaml|JSON --source isnet-general-use --out DIR

RECIPE is an `nncf-int8` recipe (a file, or inline JSON; `kind` may be left out). The build
is the studio's own maker (`studio.quant.makers.make_nncf_int8`), so what the lab measures is
what `studio build` makes. Writes DIR/model.xml, DIR/model.bin and DIR/build.json (recipe
filled with its defaults, sha256 of both files, seconds, peak RSS, ignored nodes).
A build runs in a fresh process: its peak RSS is its own, and two processes building the same
recipe are the determinism check (determinism.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lab import ROOT, artifact, peak_rss_mb, sha256_file, variant  # noqa: E402


def parse_recipe(text: str) -> dict[str, Any]:
    import yaml

    p = Path(text)
    raw = yaml.safe_load(p.read_text()) if p.suffix in (".yaml", ".yml", ".json") and p.is_file() else json.loads(text)
    raw.setdefault("kind", "nncf-int8")
    return raw


def build(raw: dict[str, Any], source: str, out: Path, threads: int = 0) -> dict[str, Any]:
    """The build, in this process."""
    from studio.quant.builds import adhoc_variant
    from studio.quant.makers import make
    from studio.recipe import Recipe

    recipe = Recipe.from_dict(raw)
    src_path = artifact(source)
    v = adhoc_variant(source, recipe, f"{source}-lab")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    made = make(v, recipe, src_path, out / "model.xml", progress=False, threads=threads)
    seconds = time.perf_counter() - t0
    meta = {"recipe": recipe.canonical(), "source": source, "input_size": list(variant(source).input_size),
            "seconds": round(seconds, 1), "peak_rss_mb": round(peak_rss_mb()),
            "xml_sha256": sha256_file(out / "model.xml"), "bin_sha256": sha256_file(out / "model.bin"),
            "bin_mb": round((out / "model.bin").stat().st_size / 1e6, 1), **(made.get("notes") or {})}
    (out / "build.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    return meta


def build_in_subprocess(raw: dict[str, Any], source: str, out: Path, timeout: float = 3600) -> dict[str, Any]:
    """The build in a fresh Python process; its build.json (or an error that says why)."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(Path(__file__)), json.dumps(raw), "--source", source, "--out", str(out)]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"build failed ({res.returncode}): {res.stderr[-2000:]}")
    return json.loads((out / "build.json").read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe")
    ap.add_argument("--source", default="isnet-general-use")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    meta = build(parse_recipe(args.recipe), args.source, args.out, args.threads)
    print(json.dumps({k: meta[k] for k in ("seconds", "peak_rss_mb", "xml_sha256", "bin_sha256", "bin_mb")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
