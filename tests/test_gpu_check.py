"""``make gpu-check`` on a machine without CUDA: the same script at toy sizes, so CI proves every section runs."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from mslib.data import DATASETS, load_dataset
from mslib.data.fixtures import _per_class, synthetic_cub

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_synthetic_cub_has_cub_layout_and_counts(tmp_path) -> None:
    """The synthetic tree loads through the CUB reader: classes 1.. train, 101.. test, real-size JPEGs; the default
    per-class counts add up to CUB's published split sizes."""
    synthetic_cub(tmp_path, classes_per_split=3, images_per_class=2, image_size=(64, 48))
    train, test = (load_dataset("cub200", s, root=tmp_path, check_counts=False) for s in ("train", "test"))
    assert (len(train), train.num_classes, len(test), test.num_classes) == (6, 3, 6, 3)
    assert train.load_image(0).size == (64, 48)
    assert all(p.split(".")[0] in ("001", "002", "003") for p in train.paths)
    assert all(p.split(".")[0] in ("101", "102", "103") for p in test.paths)
    expected = DATASETS["cub200"].expected
    assert (sum(_per_class(5864, 100)), sum(_per_class(5924, 100))) == (expected["train"][0], expected["test"][0])
    assert max(_per_class(5864, 100)) - min(_per_class(5864, 100)) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA, make gpu-check runs the full-size version")
def test_gpu_check_runs_every_section_at_toy_sizes(tmp_path) -> None:
    sys.path.insert(0, str(BENCHMARKS))
    import gpu_check

    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["tiny"] and report["device"] == "cpu"
    assert all(report[s]["ok"] for s in gpu_check.SECTIONS), {s: report[s].get("error") for s in gpu_check.SECTIONS}
    tests = report["cuda_tests"]
    assert tests["tests"] > 0 and tests["skipped"] == tests["tests"]  # collected, and skipped for want of CUDA
    runs = report["recipe"]["runs"]
    assert set(runs) == {"fp32", "bf16", "fp16"}
    assert all(r["finite"] and len(r["losses"]) == report["sizes"]["iterations"] for r in runs.values())
    assert set(report["recipe"]["agreement"]) == {"bf16", "fp16"}
    assert report["recipe"]["loader_one_worker"]["images_per_second"] > 0
    assert math.isfinite(report["recipe"]["paper_schedule_minutes"])
    assert report["losses"]["ratio_to_floor"]["matmul floor"] == 1.0
    assert 0 <= report["retrieval"]["metrics"]["R@1"] <= 1
