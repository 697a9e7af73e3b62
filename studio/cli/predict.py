"""`studio predict -m VARIANT [-o OUT] IMAGE...`: alpha mattes as 8-bit PNGs."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from studio import artifacts, engine, inventory
from studio.errors import ImageError, ModelError, ModelLoadError, StudioError, WeightsNotInstalled
from studio.imageio import load_image, save_alpha_png
from studio.zoo import load_zoo


class OutputError(StudioError):
    """The output location cannot be written; found before any model runs."""


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


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def check_writable(dests: list[Path]) -> None:
    """Make each destination's folder and prove it takes a file, or raise OutputError.

    A probe file, not os.access: permission bits say nothing about a read-only file system,
    and root passes every access check."""
    for folder in dict.fromkeys(d.parent for d in dests):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".studio-write-test-", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except FileExistsError:
            raise OutputError(f"cannot write to {folder}/: a file of that name is in the way") from None
        except OSError as exc:
            raise OutputError(f"cannot write to {folder}/: {_reason(exc)}") from None
    for dest in dests:
        if dest.is_dir():
            raise OutputError(f"cannot write {dest}: it is a folder")


def run(args) -> int:
    variant = load_zoo().get(args.model)
    # The cheap checks first, so neither a missing model nor a bad -o costs an inference:
    artifacts.require(variant, verify=False)  # installed? (hash-checked when it loads)
    many = len(args.images) > 1
    dests = [output_path(p, variant.id, args.out, many) for p in args.images]
    check_writable(dests)
    info = inventory.describe(variant)
    if info.untrained:
        print(f"note: {variant.id} runs on untrained weights — latency only; its mattes are not meaningful",
              file=sys.stderr)
    failed = 0
    for image_path, dest in zip(args.images, dests, strict=True):
        try:
            image = load_image(image_path)
            matte = engine.predict(variant, image, device=args.device, threads=args.threads)
        except (WeightsNotInstalled, ModelLoadError):
            raise  # the same for every image: one line from the CLI, exit code 2
        except (ImageError, ModelError) as exc:  # this image only: report it, go on
            failed += 1
            print(f"error: {exc}", file=sys.stderr)
            continue
        try:
            save_alpha_png(matte.alpha, dest)
        except OSError as exc:  # e.g. the disk filled up since the check
            failed += 1
            print(f"error: {image_path}: cannot write {dest}: {_reason(exc)}", file=sys.stderr)
            continue
        t = matte.timings
        print(f"{image_path} -> {dest}  {matte.size[0]}x{matte.size[1]}  "
              f"preprocess {t['preprocess'] * 1e3:.0f} ms  inference {t['inference'] * 1e3:.0f} ms  "
              f"postprocess {t['postprocess'] * 1e3:.0f} ms")
    return 1 if failed else 0
