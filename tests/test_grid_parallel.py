"""mslib.run.runs.run_grid with worker processes: the same records as one by one, and errors that name the run."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mslib.run import runs
from mslib.run.config import TrainConfig
from mslib.run.records import RunRecord, RunStore
from mslib.run.runs import run_grid

TINY = TrainConfig(dataset_options={"classes": 16, "images_per_class": 8}, iterations=4, p=4, k=2,
                   embedding_dim=8, ks=[1, 2], log_every=1)
# "again" equals "ms" after seeding: a run shared by two labels, trained once
GRID = {"ms": TINY, "contrastive": dataclasses.replace(TINY, loss="contrastive", loss_params={}), "again": TINY}


def _numbers(record: RunRecord) -> tuple:
    return (record.label, record.seed, record.run_id, record.params, record.metrics, record.extra["history"],
            record.extra["evals"])


def test_two_jobs_give_the_records_of_one_job(tmp_path: Path) -> None:
    calls: dict[int, list] = {1: [], 2: []}
    records = {jobs: run_grid(GRID, [0, 1], store=RunStore(tmp_path / f"jobs{jobs}"), jobs=jobs,
                              on_run=lambda *call, jobs=jobs: calls[jobs].append(call))
               for jobs in (1, 2)}
    serial, parallel = records[1], records[2]
    assert [_numbers(r) for r in parallel] == [_numbers(r) for r in serial]
    assert [r.label for r in parallel] == ["ms", "ms", "contrastive", "contrastive", "again", "again"]
    # the shared run trains once (its second label reads the record) in both modes
    assert [r.reused for r in parallel] == [r.reused for r in serial] == [False] * 4 + [True] * 2
    assert len(list((tmp_path / "jobs2").glob("*.json"))) == 4
    assert sorted(calls[2]) == sorted(calls[1]) and len(calls[2]) == 6
    assert all(r.params["threads"] == 1 for r in parallel), "the record states the run's thread count"
    assert serial[0].metrics != serial[2].metrics, "the two losses' runs differ: the comparison can fail"


def test_parallel_rerun_loads_every_record_without_workers(tmp_path: Path) -> None:
    first = run_grid({"ms": TINY}, [0], store=RunStore(tmp_path), jobs=1)
    again = run_grid({"ms": TINY, "same": TINY}, [0], store=RunStore(tmp_path), jobs=2)
    assert [r.reused for r in again] == [True, True] and again[0] == first[0]


def test_a_failing_run_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # threads stand in for the worker processes (spawning them is tested above): the parent's error handling
    def pool(max_workers: int, mp_context: object) -> ThreadPoolExecutor:
        assert mp_context.get_start_method() == "spawn" and max_workers == 2
        return ThreadPoolExecutor(max_workers)

    def train_run(cfg: TrainConfig, *args: object) -> RunRecord:
        raise TypeError(f"no dataset for seed {cfg.seed}")

    monkeypatch.setattr(runs, "ProcessPoolExecutor", pool)
    monkeypatch.setattr(runs, "train_run", train_run)
    with pytest.raises(RuntimeError, match=r"run 'broken' with seed ([01]) failed in its worker process: "
                                           r"TypeError: no dataset for seed \1"):
        run_grid({"broken": TINY}, [0, 1], store=RunStore(tmp_path), jobs=4)


@pytest.mark.parametrize("jobs", [0, -1, 1.5, True])
def test_jobs_must_be_a_positive_integer(jobs: object) -> None:
    with pytest.raises(ValueError, match="jobs must be an integer ≥ 1"):
        run_grid({"ms": TINY}, [0], jobs=jobs)
