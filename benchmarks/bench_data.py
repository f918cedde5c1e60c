"""Image pipeline throughput per CPU core: JPEG decoding plus the paper recipe's augmentation, projected to a GPU box.

One process, one thread: the training transform of BN-Inception (decode, Resize 256, RandomResizedCrop 227, flip,
BGR 0–255 minus mean) and the test transform (decode, Resize 256, CenterCrop 227) on real-size JPEGs of
:func:`mslib.data.fixtures.synthetic_cub` (500×375, like CUB's photos), and the decode alone. The projection
assumes the loader's workers scale linearly over ``cores - 1`` cores (one is left to the training loop); the
paper's CUB schedule on one H100 within 5 minutes needs about 1,100 training images/s (issue #14), which
``make gpu-check`` measures on the GPU machine itself (``recipe.loader_all_workers``).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, machine_line, parser, print_table, write_json

from mslib.data import load_dataset
from mslib.data.fixtures import synthetic_cub
from mslib.data.transforms import build_transform

NEEDED = 1100  # training images/s for the CUB schedule in 5 minutes on one H100 (issue #14)
GPU_BOX_CORES = 16


def per_image_rate(dataset, n: int, repeats: int) -> float:
    """Images/s of ``dataset[i]`` over its first ``n`` items (median of ``repeats`` passes)."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(n):
            dataset[i]
        rates.append(n / (time.perf_counter() - start))
    return sorted(rates)[len(rates) // 2]


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    torch.set_num_threads(1)
    info = machine()
    print("machine:", machine_line(info))
    per_class = 10 if args.quick else 40
    repeats = args.repeats or 3
    rows, record = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        synthetic_cub(tmp, classes_per_split=4, images_per_class=per_class)
        for name, train in (("train (decode + augment)", True), ("test (decode + centre crop)", False),
                            ("decode only", None)):
            tf = None if train is None else build_transform("bninception", train, 227)
            ds = load_dataset("cub200", "train", root=tmp, transform=tf, check_counts=False)  # None: decoded PIL
            rate = per_image_rate(ds, len(ds), repeats)
            projected = rate * (GPU_BOX_CORES - 1)
            record[name] = {"images_per_second_per_core": rate, "projected_16_cores": projected}
            rows.append([name, f"{rate:.0f}", f"{projected:.0f}"])
    table = print_table(f"bench_data: BN-Inception pipeline on 500×375 JPEGs, one thread, median of {repeats}; "
                        f"projection: {GPU_BOX_CORES - 1} workers", ["pipeline", "img/s per core",
                                                                      "img/s projected (15 workers)"], rows)
    train_rate = record["train (decode + augment)"]["projected_16_cores"]
    goal = {"needed": NEEDED, "projected": train_rate, "met": train_rate >= NEEDED}
    print(f"goal: {train_rate:.0f} img/s projected for training vs {NEEDED} needed: "
          + ("met" if goal["met"] else "NOT met"))
    write_json("bench_data", {"benchmark": "bench_data", "quick": args.quick, "machine": info, "repeats": repeats,
                              "records": record, "goal": goal, "table": table})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
