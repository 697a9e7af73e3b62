"""The `studio` console script. Each subcommand lives in its own module with
`register(subparsers)`; add a module to COMMANDS to add a command."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from studio.errors import StudioError

COMMANDS = [
    "studio.cli.models",
    "studio.cli.weights",
    "studio.cli.predict",
    "studio.cli.metrics",
    "studio.cli.data",
    "studio.cli.build",
    "studio.cli.export",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="studio", description="Matting Studio: choose a background-removal model for production."
    )
    parser.add_argument("--cache-dir", help="where weights and builds live (default: models/, or $STUDIO_CACHE)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cache_dir:
        os.environ["STUDIO_CACHE"] = os.path.abspath(args.cache_dir)
    try:
        return int(args.func(args) or 0)
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
