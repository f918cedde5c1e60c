"""The command line, ``python -m mslib <command> ...`` (also installed as ``mslib``): one module for every command.

    python -m mslib train --config FILE [--set KEY=VALUE ...] [--results-dir DIR] [--no-progress]
    python -m mslib data list
    python -m mslib data download NAME [--root DIR] [--keep-archives]
    python -m mslib data verify NAME [--root DIR] [--option KEY=VALUE ...] [--no-count-check] [--no-images]
    python -m mslib data glyphs [--seed 0] [--images-per-class 50] [--no-cache]
    python -m mslib notebooks ...   (run/list/strip the book's notebooks: :mod:`mslib.notebooks`)
    python -m mslib records list    (the committed record sets: runs, code hash, whether current)
    python -m mslib records pack NAME --description TEXT
    python -m mslib env             (the versions and hardware a run record stores)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from mslib import distributed, notebooks
from mslib.data.errors import DatasetError
from mslib.data.glyphs import generate_glyphs, glyphs_sha256
from mslib.data.loading import download_dataset, verify_dataset
from mslib.data.registry import DATASETS, dataset_spec
from mslib.data.sampler import check_global_batch
from mslib.paths import data_dir
from mslib.provenance import git_commit, hardware, versions
from mslib.run.codehash import run_code_hash
from mslib.run.config import TrainConfig
from mslib.run.records import MANIFEST, RunRecord, RunStore, pack_record_set
from mslib.run.runs import train_or_load


# ----------------------------------------------------------------------------------------------- train
def _train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mslib train", description=train_main.__doc__)
    parser.add_argument("--config", help="YAML file of TrainConfig settings (see configs/)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting (YAML value), e.g. --set iterations=100 --set device=cpu")
    parser.add_argument("--results-dir", default=None, help="where the run record goes (default results/)")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def _overrides(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict:
    """Every ``--set KEY=VALUE`` as ``{KEY: VALUE}`` (values read as YAML; a later one wins)."""
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set needs KEY=VALUE, got {item!r}")
        overrides[key] = yaml.safe_load(value)
    return overrides


def _print_record(record: RunRecord, results_dir: str | None) -> None:
    """One line per model group of the record (its test metrics in percent), and where the record is."""
    for group, values in record.metrics.items():
        test = values.get("test", {})
        shown = ", ".join(f"{k} {100 * v:.2f}" for k, v in test.items() if k.startswith(("R@", "MAP", "RP", "NMI")))
        print(f"{group:20s} (iteration {values['iteration']}): {shown}")
    print(f"record: {record.run_id}.json in {results_dir or 'results/'}")


def train_main(argv: Sequence[str] | None = None) -> int:
    """``python -m mslib train --config FILE [--set KEY=VALUE ...]``: train, evaluate, write a run record."""
    parser = _train_parser()
    args = parser.parse_args(argv)
    try:
        cfg = TrainConfig.from_file(args.config, _overrides(args, parser))
    except (ValueError, TypeError, OSError) as err:  # a misspelt setting, a bad value, no such file
        print(f"error: {err}", file=sys.stderr)
        return 2
    distributed.init_from_env()
    try:
        check_global_batch(cfg.p, distributed.world_size())  # p × k is the global batch, shared by the processes
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        record, _ = train_or_load(cfg, RunStore(args.results_dir), progress=not args.no_progress)
    except (DatasetError, RuntimeError) as err:  # missing/corrupt data, no CUDA: the message says what to do
        print(f"error: {err}", file=sys.stderr)
        return 1
    if distributed.rank() == 0:
        _print_record(record, args.results_dir)
    return 0


# ----------------------------------------------------------------------------------------------- data
def _data_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mslib data", description=data_main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="datasets, their published counts and whether they are on disk")
    dl = sub.add_parser("download", help="download, verify and extract a dataset into data/<name>/")
    dl.add_argument("name")
    dl.add_argument("--root", type=Path, default=None, help="target folder (default data/<name>/)")
    dl.add_argument("--keep-archives", action="store_true")
    dl.add_argument("--no-progress", action="store_true")
    ver = sub.add_parser("verify", help="check layout, published counts and that every image decodes")
    ver.add_argument("name")
    ver.add_argument("--root", type=Path, default=None,
                     help="dataset folder (default data/<name>/; folder: your images' folder or CSV)")
    ver.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                     help="an option of the dataset's reader (YAML value), e.g. --option csv=labels.csv")
    ver.add_argument("--no-count-check", action="store_true", help="accept a subset (e.g. a test fixture)")
    ver.add_argument("--no-images", action="store_true", help="skip decoding every image")
    gl = sub.add_parser("glyphs", help="generate (and cache) the embedded Glyphs-208 dataset; print its sha256")
    gl.add_argument("--seed", type=int, default=0)
    gl.add_argument("--images-per-class", type=int, default=50)
    gl.add_argument("--fonts", choices=("matplotlib", "extended"), default="matplotlib")
    gl.add_argument("--no-cache", action="store_true")
    return parser


def _data_list(args: argparse.Namespace) -> int:
    where_by_origin = {"generated": "embedded", "own": "--root"}
    for name, spec in DATASETS.items():
        counts = ", ".join(f"{s} {n:,}" for s, (n, _) in spec.expected.items()) or spec.title
        where = where_by_origin.get(spec.origin) or ("present" if (data_dir() / str(spec.default_root)).is_dir()
                                                     else "absent")
        print(f"{name:8s} {where:9s} {counts}")
    return 0


def _data_glyphs(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    X, y, chars = generate_glyphs(args.seed, args.images_per_class, cache=not args.no_cache, fonts=args.fonts)
    print(json.dumps({"images": len(X), "classes": len(chars), "seconds": round(time.perf_counter() - start, 1),
                      "sha256": glyphs_sha256(X)}, indent=2))
    return 0


def _options(items: Sequence[str]) -> dict:
    """``--option KEY=VALUE`` items as a dict (values read as YAML)."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--option needs KEY=VALUE, got {item!r}")
        options[key] = yaml.safe_load(value)
    return options


def _data_download_verify(args: argparse.Namespace) -> int:
    """``download`` (then verify everything) or ``verify`` one dataset."""
    spec = dataset_spec(args.name)
    options = _options(getattr(args, "option", []))
    if args.command == "download":
        if spec.origin in ("generated", "own"):  # nothing to fetch: say where it comes from
            print(spec.manual)
            return 0
        placed = download_dataset(args.name, args.root or data_dir() / str(spec.default_root),
                                  progress=not args.no_progress, keep_archives=args.keep_archives)
        print("placed: " + ", ".join(str(p) for p in placed))
        args.no_count_check, args.no_images = False, False
    summary = verify_dataset(args.name, args.root, check_counts=not args.no_count_check,
                             check_images=not args.no_images, progress=sys.stderr.isatty(), **options)
    for split, info in summary.items():
        print(f"{args.name} {split}: {info['images']:,} images, {info['classes']:,} classes")
    print(f"{args.name}: OK")
    return 0


def data_main(argv: Sequence[str] | None = None) -> int:
    """``python -m mslib data {list,download,verify,glyphs}``: list, download and verify the datasets, generate
    the embedded glyphs; returns the exit status."""
    args = _data_parser().parse_args(argv)
    actions = {"list": _data_list, "glyphs": _data_glyphs}
    try:
        return actions.get(args.command, _data_download_verify)(args)
    except (DatasetError, ValueError, TypeError) as err:  # TypeError: an option the dataset does not take
        print(f"error: {err}", file=sys.stderr)
        return 1


# ----------------------------------------------------------------------------------------------- records
def records_main(argv: Sequence[str] | None = None) -> int:
    """``python -m mslib records {list,pack}``: the committed record sets (``results/sets/``) a fresh clone reuses.

    ``list`` prints each set a store reads (``MSLIB_RECORD_SETS`` chooses) with its runs and how many of them the
    current code can still reuse; ``pack NAME`` copies the up-to-date records of ``results/`` that no set holds
    into the set ``NAME`` (:func:`mslib.run.records.pack_record_set`), with the checkpoints ``--checkpoint`` names."""
    parser = argparse.ArgumentParser(prog="python -m mslib records", description=records_main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the record sets read, their runs and how many the current code reuses")
    pack = sub.add_parser("pack", help="copy the up-to-date records of results/ into a committed record set")
    pack.add_argument("name")
    pack.add_argument("--description", required=True, help="what made the runs (chapters, profile, machine)")
    pack.add_argument("--checkpoint", action="append", default=[], metavar="RUN_ID",
                      help="also keep this run's final checkpoint (a chapter that shows the trained network)")
    parser.add_argument("--results-dir", default=None, help="the results folder (default results/)")
    args = parser.parse_args(argv)
    try:
        store, code = RunStore(args.results_dir), run_code_hash()
        if args.command == "pack":
            folder = pack_record_set(store, args.name, code, description=args.description,
                                     checkpoints=args.checkpoint)
            store = RunStore(args.results_dir, sets=[folder])
        for folder in store.sets:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
            current = manifest["code_hashes"].get(code, 0)
            kept = f", {len(manifest['checkpoints'])} checkpoints" if manifest.get("checkpoints") else ""
            print(f"{folder.name}: {manifest['runs']} runs{kept}, {current} on the current code {code} "
                  f"({manifest['run_minutes']} run-minutes; {', '.join(manifest['machines'])}): "
                  f"{manifest['description']}")
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not store.sets:
        print(f"no record set in {store.results_dir / 'sets'} (or MSLIB_RECORD_SETS=none)")
    return 0


# ----------------------------------------------------------------------------------------------- env, dispatch
def env_main(argv: Sequence[str] | None = None) -> int:
    """Print the versions and hardware a run record would store."""
    print(json.dumps({"git_commit": git_commit(), "versions": versions(), "hardware": hardware()}, indent=2))
    return 0


COMMANDS: dict[str, Callable[[Sequence[str] | None], int]] = {
    "notebooks": notebooks.main,
    "train": train_main,
    "data": data_main,
    "records": records_main,
    "env": env_main,
}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mslib <command> ...``: run one of :data:`COMMANDS`; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]](argv[1:])
    if argv and argv[0] not in ("-h", "--help"):
        print(f"error: unknown command {argv[0]!r}", file=sys.stderr)
    print("usage: python -m mslib {" + ",".join(COMMANDS) + "} ...", file=sys.stderr)
    return 0 if argv and argv[0] in ("-h", "--help") else 2
