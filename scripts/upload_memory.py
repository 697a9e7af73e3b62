"""Peak memory of the largest upload the app accepts, through the Compare handler.

    python scripts/upload_memory.py                      # 49 MP image + reference, grabcut
    python scripts/upload_memory.py --megapixels 20 --no-reference --variant isnet-general-use
    python scripts/upload_memory.py --soft-matte          # the metrics' worst case

Each measurement runs in a fresh subprocess. The child warms up first (imports, the model
loaded into the pool, two small comparisons), then resets its peak (`/proc/self/clear_refs`)
and runs `studio.ui.compare.compare` on the big image to the end. It reports the growth of
the peak resident set (VmHWM) over the resident set just before (VmRSS), in MB. Only the
image's own cost is counted: not the model's weights, nor the imports. Linux only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def proc_status_mb(key: str) -> float:
    """A /proc/self/status field (VmRSS, VmHWM, ...) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0
    raise KeyError(key)


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def write_inputs(folder: Path, megapixels: float) -> tuple[Path, Path, tuple[int, int]]:
    """A smooth square test image of `megapixels` and its reference mask, as PNGs.

    Smooth, so the PNG stays under the upload cap (a camera photo of this size is a JPEG
    of about the same byte size); drawn in bands so making it costs little memory."""
    import numpy as np
    from PIL import Image

    side = int(math.sqrt(megapixels * 1e6))
    img = Image.new("RGB", (side, side))
    mask = Image.new("L", (side, side))
    band = 512
    xx = np.arange(side, dtype=np.float32)[None, :]
    for y0 in range(0, side, band):
        yy = np.arange(y0, min(side, y0 + band), dtype=np.float32)[:, None]
        inside = ((yy - side / 2) / (side * 0.3)) ** 2 + ((xx - side / 2) / (side * 0.22)) ** 2 < 1
        r = np.broadcast_to(60 + 150 * inside + 0 * xx, inside.shape)
        g = np.broadcast_to(40 + 80 * (xx / side) + 0 * yy, inside.shape)
        b = np.broadcast_to(50 + 60 * (yy / side) + 0 * xx, inside.shape)
        rows = np.stack([r, g, b], axis=2).astype(np.uint8)
        img.paste(Image.fromarray(rows), (0, y0))
        mask.paste(Image.fromarray((inside * 255).astype(np.uint8)), (0, y0))
    folder.mkdir(parents=True, exist_ok=True)
    img.save(folder / "big.png", compress_level=1)
    mask.save(folder / "big_mask.png", compress_level=1)
    return folder / "big.png", folder / "big_mask.png", (side, side)


def soft_everywhere(compare_h) -> None:
    """Make the model's matte soft over the whole image (smooth noise, as an untrained model
    gives): the metrics' worst case, as they do more work where a matte is neither 0 nor 1.
    The model still runs (its time and memory count); only its output is replaced."""
    import cv2
    import numpy as np

    from studio.matte import Matte

    real = compare_h.infer

    def infer(variant_id, image):
        matte, load_s, cold = real(variant_id, image)
        h, w = image.shape[:2]
        small = np.random.default_rng(0).random((256, 256), dtype=np.float32)
        del matte
        return Matte(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), variant_id), load_s, cold

    compare_h.infer = infer


def child(image: str, mask: str | None, variant: str, soft: bool = False) -> dict:
    """Runs in the subprocess: warm up, reset the peak, compare once, report."""
    import numpy as np

    from studio.ui import compare as compare_h
    from studio.ui import outputs

    if soft:
        soft_everywhere(compare_h)

    warm = np.zeros((64, 64, 3), np.uint8)
    warm[16:48, 16:48] = 200
    tmp = Path(tempfile.mkdtemp(prefix="upload-memory-warm-"))
    try:
        from PIL import Image

        Image.fromarray(warm).save(tmp / "w.png")
        Image.fromarray(warm[..., 0]).save(tmp / "m.png")
        for _ in range(2):  # onnxruntime sizes its memory arena on the second run
            for _ in compare_h.compare(str(tmp / "w.png"), str(tmp / "m.png"), [variant]):
                pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rss0 = proc_status_mb("VmRSS")
    exact = reset_peak()
    hwm0 = proc_status_mb("VmHWM")
    outs = list(compare_h.compare(image, mask, [variant]))  # small tuples of paths and rows
    rows = outs[-1][4] if outs else []
    shutil.rmtree(outputs.root(), ignore_errors=True)
    return {"variant": variant, "soft_matte": soft, "rss_before_mb": round(rss0, 1),
            "peak_mb": round(proc_status_mb("VmHWM"), 1),
            "growth_mb": round(proc_status_mb("VmHWM") - rss0, 1),
            "peak_reset": exact, "peak_before_reset_mb": None if exact else round(hwm0, 1),
            "ok": bool(rows) and all(r["status"] == "ok" for r in rows),
            "errors": [r["error"] for r in rows if r["error"]]}


def measure(megapixels: float = 49.0, variant: str = "grabcut", reference: bool = True,
            soft: bool = False, workdir: Path | None = None) -> dict:
    """Make the inputs, run the child in a fresh interpreter, return its report (plus sizes)."""
    own = workdir is None
    folder = Path(workdir or tempfile.mkdtemp(prefix="upload-memory-"))
    try:
        image, mask, (w, h) = write_inputs(folder, megapixels)
        cmd = [sys.executable, __file__, "--child", str(image), "--variant", variant]
        if reference:
            cmd += ["--mask", str(mask)]
        if soft:
            cmd.append("--soft-matte")
        env = {**os.environ, "STUDIO_MAX_PIXELS": os.environ.get("STUDIO_MAX_PIXELS", "50000000")}
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=1200)
        if proc.returncode != 0:
            raise RuntimeError(f"the measuring child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        report.update(width=w, height=h, megapixels=round(w * h / 1e6, 2),
                      image_file_mb=round(image.stat().st_size / 1e6, 2), reference=reference)
        return report
    finally:
        if own:
            shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--megapixels", type=float, default=49.0)
    ap.add_argument("--variant", default="grabcut")
    ap.add_argument("--no-reference", action="store_true", help="no reference mask (no metrics, no error overlay)")
    ap.add_argument("--soft-matte", action="store_true",
                    help="replace the model's matte by one soft everywhere (the metrics' worst case)")
    ap.add_argument("--child", metavar="IMAGE", help=argparse.SUPPRESS)
    ap.add_argument("--mask", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child, a.mask, a.variant, soft=a.soft_matte)))
        return 0
    r = measure(a.megapixels, a.variant, reference=not a.no_reference, soft=a.soft_matte)
    print(f"{r['megapixels']} MP ({r['width']}x{r['height']}, {r['image_file_mb']} MB PNG), "
          f"{r['variant']}{' (matte soft everywhere)' if r['soft_matte'] else ''}, "
          f"reference: {'yes' if r['reference'] else 'no'}: "
          f"peak RSS grew by {r['growth_mb']:.0f} MB (from {r['rss_before_mb']:.0f} MB to "
          f"{r['peak_mb']:.0f} MB){'' if r['ok'] else '; FAILED: ' + '; '.join(r['errors'])}")
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
