"""``python -m mslib data ...``: list, download, verify the datasets, and generate the embedded glyphs.

    python -m mslib data list
    python -m mslib data download NAME [--root DIR] [--keep-archives]
    python -m mslib data verify NAME [--root DIR] [--no-count-check] [--no-images]
    python -m mslib data glyphs [--seed 0] [--images-per-class 50] [--no-cache]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mslib.data.datasets import DATASETS, EXPECTED, verify_dataset
from mslib.data.errors import DatasetError
from mslib.paths import data_dir


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mslib data", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="datasets, their published counts and whether they are on disk")
    dl = sub.add_parser("download", help="download, verify and extract a dataset into data/<name>/")
    dl.add_argument("name")
    dl.add_argument("--root", type=Path, default=None, help="target folder (default data/<name>/)")
    dl.add_argument("--keep-archives", action="store_true")
    dl.add_argument("--no-progress", action="store_true")
    ver = sub.add_parser("verify", help="check layout, published counts and that every image decodes")
    ver.add_argument("name")
    ver.add_argument("--root", type=Path, default=None, help="dataset folder (default data/<name>/)")
    ver.add_argument("--no-count-check", action="store_true", help="accept a subset (e.g. a test fixture)")
    ver.add_argument("--no-images", action="store_true", help="skip decoding every image")
    gl = sub.add_parser("glyphs", help="generate (and cache) the embedded Glyphs-208 dataset; print its sha256")
    gl.add_argument("--seed", type=int, default=0)
    gl.add_argument("--images-per-class", type=int, default=50)
    gl.add_argument("--fonts", choices=("matplotlib", "extended"), default="matplotlib")
    gl.add_argument("--no-cache", action="store_true")
    return parser.parse_args(argv)


def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m mslib data``; returns the exit status."""
    args = _parse(argv)
    try:
        if args.command == "list":
            for name in DATASETS:
                counts = ", ".join(f"{s} {n:,}" for s, (n, _) in EXPECTED[name].items())
                where = "embedded" if name == "glyphs" else (
                    "present" if (data_dir() / name).is_dir() else "absent")
                print(f"{name:8s} {where:9s} {counts}")
            return 0
        if args.command == "glyphs":
            from mslib.data.glyphs import generate_glyphs, glyphs_sha256

            start = time.perf_counter()
            X, y, chars = generate_glyphs(args.seed, args.images_per_class, cache=not args.no_cache, fonts=args.fonts)
            print(json.dumps({"images": len(X), "classes": len(chars), "seconds": round(time.perf_counter() - start, 1),
                              "sha256": glyphs_sha256(X)}, indent=2))
            return 0
        _check_name(args.name)
        if args.command == "download":
            if args.name == "glyphs":
                print("glyphs is generated locally, nothing to download: `python -m mslib data glyphs`")
                return 0
            from mslib.data.download import download_dataset

            root = args.root or data_dir() / args.name
            placed = download_dataset(args.name, root, progress=not args.no_progress,
                                      keep_archives=args.keep_archives)
            print("placed: " + ", ".join(str(p) for p in placed))
            args.no_count_check, args.no_images = False, False
        summary = verify_dataset(args.name, args.root, check_counts=not args.no_count_check,
                                 check_images=not args.no_images, progress=sys.stderr.isatty())
        for split, info in summary.items():
            print(f"{args.name} {split}: {info['images']:,} images, {info['classes']:,} classes")
        print(f"{args.name}: OK")
        return 0
    except (DatasetError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
