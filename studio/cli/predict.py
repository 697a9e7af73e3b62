"""`studio predict -m VARIANT [-o OUT] IMAGE...`: alpha mattes as 8-bit PNGs."""

from __future__ import annotations

import sys
from pathlib import Path

from studio import engine, inventory
from studio.errors import StudioError
from studio.imageio import load_image, save_alpha_png
from studio.zoo import load_zoo


def register(sub) -> None:
    p = sub.add_parser("predict", help="remove backgrounds: write each alpha matte as a PNG")
    p.add_argument("-m", "--model", required=True, help="variant id (see `studio models`)")
    p.add_argument("-o", "--out", type=Path,
                   help="output file (one image) or folder (several); default <stem>.<variant>.png here")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--threads", type=int, default=0, help="inference threads (0: the runtime's default)")
    p.add_argument("images", nargs="+", type=Path)
    p.set_defaults(func=run)


def output_path(image: Path, variant: str, out: Path | None, many: bool) -> Path:
    name = f"{image.stem}.{variant}.png"
    if out is None:
        return Path.cwd() / name
    if many or out.is_dir() or not out.suffix:
        return out / name
    return out


def run(args) -> int:
    variant = load_zoo().get(args.model)
    info = inventory.describe(variant)
    if info.untrained:
        print(f"note: {variant.id} runs on untrained weights — latency only; its mattes are not meaningful",
              file=sys.stderr)
    many = len(args.images) > 1
    failed = 0
    for image_path in args.images:
        try:
            image = load_image(image_path)
            matte = engine.predict(variant, image, device=args.device, threads=args.threads)
        except StudioError as exc:
            if "weights not installed" in str(exc):
                raise
            failed += 1
            print(f"error: {exc}", file=sys.stderr)
            continue
        dest = save_alpha_png(matte.alpha, output_path(image_path, variant.id, args.out, many))
        t = matte.timings
        print(f"{image_path} -> {dest}  {matte.size[0]}x{matte.size[1]}  "
              f"preprocess {t['preprocess'] * 1e3:.0f} ms  inference {t['inference'] * 1e3:.0f} ms  "
              f"postprocess {t['postprocess'] * 1e3:.0f} ms")
    return 1 if failed else 0
