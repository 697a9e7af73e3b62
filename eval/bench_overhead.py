"""Is the studio's onnx backend slower than rembg's own pipeline on the same weights?

End to end per image, from the file on disk to a float alpha at the input size:
  studio:  load_image -> engine runner (onnx backend) -> Matte
  rembg:   PIL open -> rembg.remove(only_mask=True) with a session on the same file
Both pipelines run the same ONNX Runtime session object (rembg's session is handed ours), so
inference itself is identical and what differs is everything around it: decode, resize,
normalisation, post-processing. One process, same threads, A/B interleaved per image with
the order alternating. Prints medians, the median of the paired per-image ratios, and
studio / rembg (≤ 1.0 means the studio is not slower).

    python eval/bench_overhead.py [--model isnet-general-use] [--threads 2] [--rounds 5] [IMAGE ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studio import engine, settings  # noqa: E402
from studio.backends.onnx import session_options  # noqa: E402
from studio.backends.rembg import rembg_home  # noqa: E402
from studio.imageio import load_image  # noqa: E402
from studio.zoo import load_zoo  # noqa: E402


def default_images() -> list[Path]:
    peer = settings.shared_dir() / "peer" / "rembg" / "fixtures"
    if peer.is_dir():
        return sorted(peer.glob("*.jpg"))
    raise SystemExit("no images given and ../shared is absent: pass image paths")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="*", type=Path)
    ap.add_argument("--model", default="isnet-general-use")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    images = args.images or default_images()

    from rembg import new_session, remove

    variant = load_zoo().get(args.model)
    runner, _ = engine.load_runner(variant, threads=args.threads)
    rec = engine.weights.require(variant)
    with rembg_home(str(Path(rec.path).parent)):
        session = new_session(variant.rembg_session, providers=["CPUExecutionProvider"],
                              sess_opts=session_options(args.threads))
    session.inner_session = runner.session  # one session: the comparison is of the pipelines

    def studio_once(path: Path) -> np.ndarray:
        return engine.run_runner(runner, load_image(path)).alpha

    def rembg_once(path: Path) -> np.ndarray:
        mask = remove(Image.open(path), session=session, only_mask=True)
        return np.asarray(mask, dtype=np.float32) / 255.0

    for p in images:  # warm-up both
        studio_once(p)
        rembg_once(p)
    times: dict[str, list[float]] = {"studio": [], "rembg": []}
    pair_ratios: list[float] = []
    for r in range(args.rounds):
        order = [("studio", studio_once), ("rembg", rembg_once)]
        if r % 2:
            order.reverse()
        for p in images:
            pair = {}
            for name, fn in order:
                t0 = time.perf_counter()
                fn(p)
                pair[name] = time.perf_counter() - t0
                times[name].append(pair[name])
            pair_ratios.append(pair["studio"] / pair["rembg"])
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"model {args.model}, {len(images)} images x {args.rounds} rounds, {args.threads} threads, "
          "one shared ORT session, interleaved")
    for k in ("studio", "rembg"):
        print(f"  {k:7s} median {med[k] * 1e3:8.1f} ms per image (n={len(times[k])})")
    ratio = med["studio"] / med["rembg"]
    paired = statistics.median(pair_ratios)
    print(f"  ratio of medians studio/rembg = {ratio:.3f}; median paired ratio = {paired:.3f}  "
          f"({'OK: not slower' if paired <= 1.0 else 'SLOWER'})")
    return 0 if paired <= 1.0 else 1

if __name__ == "__main__":
    sys.exit(main())
