"""mslib.run.records: run records (provenance, iteration-tagged metrics), atomic writes, stable ids, the store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import torch

from mslib import provenance
from mslib.run import records as R

PARAMS = {"dataset": "glyphs", "backbone": "smallcnn", "loss": "ms", "alpha": 2.0, "beta": 50.0, "batch": [8, 4]}
METRICS = {"final": {"iteration": 300, "R@1": 0.5, "MAP@R": 0.2}, "selected": {"iteration": 200, "R@1": 0.55}}
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def make(params=PARAMS, metrics=METRICS, code="c0de", **kw):
    return R.run_record(params, metrics, seed=7, started=T0, finished=T0 + timedelta(seconds=90.5), code=code, **kw)


def test_run_record_fields_and_provenance():
    rec = make(images_per_second=np.float32(123.5), extra={"gpu_mem": torch.tensor(1.5)})
    assert rec.params == PARAMS and rec.seed == 7 and rec.code_hash == "c0de"
    assert rec.metrics["final"] == {"iteration": 300, "R@1": 0.5, "MAP@R": 0.2}
    assert rec.git_commit == provenance.git_commit()
    assert rec.versions["torch"] in (torch.__version__, torch.__version__.split("+")[0])
    assert {"cpu_count", "cuda_available"} <= set(rec.hardware)
    assert rec.wall_time_s == 90.5 and rec.started == T0.isoformat()
    assert rec.images_per_second == 123.5 and type(rec.images_per_second) is float
    assert rec.extra == {"gpu_mem": 1.5}
    json.dumps(rec.to_dict(), allow_nan=False)  # plain JSON


def test_metrics_must_carry_their_iteration_and_become_plain():
    flat = make(metrics={"iteration": np.int64(50), "R@1": np.float64(0.25), "NMI": float("nan")})
    assert flat.metrics == {"iteration": 50, "R@1": 0.25, "NMI": None}
    assert type(flat.metrics["R@1"]) is float and type(flat.metrics["iteration"]) is int
    with pytest.raises(ValueError, match="iteration"):
        make(metrics={"R@1": 0.5})
    with pytest.raises(ValueError, match="selected must say which iteration"):
        make(metrics={"final": {"iteration": 3, "R@1": 0.1}, "selected": {"R@1": 0.2}})
    with pytest.raises(ValueError, match="before started"):
        R.run_record(PARAMS, METRICS, seed=0, started=T0, finished=T0 - timedelta(seconds=1), code="c0de")
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        make(params={"model": object()})


def test_run_id_is_stable_and_sensitive():
    a = R.run_id(PARAMS, "abc")
    assert a == R.run_id(dict(reversed(list(PARAMS.items()))), "abc")  # key order does not matter
    assert a == R.run_id({**PARAMS, "alpha": np.float64(2.0)}, "abc")  # numpy scalars normalised
    assert a != R.run_id({**PARAMS, "alpha": 2.5}, "abc")
    assert a != R.run_id(PARAMS, "abd")
    assert make().run_id == R.run_id(PARAMS, "c0de")


def test_write_is_atomic_and_find_and_load(tmp_path):
    store = R.RunStore(tmp_path)
    assert store.find(PARAMS, "c0de") is None
    rec = make()
    path = store.write(rec)
    assert path == tmp_path / f"{rec.run_id}.json"
    assert json.loads(path.read_text()) == rec.to_dict()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind
    assert store.find(PARAMS, "c0de") == rec
    assert store.find(PARAMS, "other-code") is None  # stale: the code changed
    assert store.find({**PARAMS, "beta": 40.0}, "c0de") is None
    # Rewriting the same run replaces its record.
    rec2 = make(metrics={"iteration": 1, "R@1": 0.9})
    assert store.write(rec2) == path and store.find(PARAMS, "c0de").metrics["R@1"] == 0.9
    other = make(params={**PARAMS, "dataset": "cub200"}, code="new")
    store.write(other)
    assert len(store.load_all()) == 2
    assert [r.params["dataset"] for r in store.load_all(where={"dataset": "cub200"})] == ["cub200"]
    assert [r.run_id for r in store.load_all(code_hash="new")] == [other.run_id]
    assert R.RunStore(tmp_path / "missing").load_all() == []


def test_default_results_dir_and_bad_files(tmp_path, monkeypatch):
    monkeypatch.setenv("MSLIB_RESULTS_DIR", str(tmp_path / "res"))
    path = R.RunStore().write(make())
    assert path.parent == tmp_path / "res"
    (tmp_path / "res" / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json is not valid JSON"):
        R.RunStore().load_all()
    with pytest.raises(TypeError, match="expects a RunRecord"):
        R.RunStore().write({"params": {}})
    (tmp_path / "res" / "broken.json").write_text('{"params": {}}')
    with pytest.raises(ValueError, match="broken.json is not a run record"):
        R.RunStore().load_all()


# ------------------------------------------------------------------------------------ the typed record
def test_record_round_trip_json_dataclass_json(tmp_path):
    rec = make(images_per_second=10.0, extra={"history": [{"iteration": 3, "loss": 0.5}]})
    path = R.RunStore(tmp_path).write(rec)
    text = path.read_text()
    loaded = R.RunStore(tmp_path).find(PARAMS, "c0de")
    assert loaded == rec and isinstance(loaded, R.RunRecord)
    assert json.dumps(loaded.to_dict(), indent=2, sort_keys=True) + "\n" == text, "JSON -> record -> JSON is exact"
    assert set(json.loads(text)) == {"schema", "run_id", "params", "metrics", "seed", "code_hash", "git_commit",
                                     "mslib_version", "versions", "hardware", "notebook", "started", "finished",
                                     "wall_time_s", "images_per_second", "extra"}


NESTED = {"final": {"iteration": 12, "test": {"R@1": 0.5, "NMI": None}},
          "selected": {"iteration": 6, "selected_by": "validation R@1", "val": {"R@1": 0.4}, "test": {"R@1": 0.45}}}


def test_metric_reads_a_group_split_and_metric():
    rec = make(metrics=NESTED)
    assert rec.metric("R@1") == 0.5 == rec.metric("R@1", split="test", model="final")
    assert rec.metric("R@1", split="val", model="selected") == 0.4
    assert rec.metric("R@1", model="selected") == 0.45
    assert rec.metric("NMI") is None, "a non-finite value is stored as null and read as None"


def test_metric_errors_name_what_is_missing():
    rec = make(metrics=NESTED)
    with pytest.raises(KeyError, match=r"no model group 'official_best_test'; it has \['final', 'selected'\]"):
        rec.metric("R@1", model="official_best_test")
    with pytest.raises(KeyError, match=r"group 'final' has no split 'val'; it has \['test'\]"):
        rec.metric("R@1", split="val")
    with pytest.raises(KeyError, match=r"final/test has no metric 'R@8'; it has \['NMI', 'R@1'\]"):
        rec.metric("R@8")


def test_schema_1_files_on_disk_load_into_the_record(tmp_path):
    """A record file as the previous code wrote it (the same schema 1 JSON) loads; other schemas say so."""
    old = {"schema": 1, "run_id": "abc123", "params": {"dataset": "glyphs", "iterations": 4},
           "metrics": {"final": {"iteration": 4, "test": {"R@1": 0.25}}}, "seed": 0, "code_hash": "0123456789abcdef",
           "git_commit": "deadbeef", "mslib_version": "0.1.0", "versions": {"torch": "2.0"}, "hardware": {},
           "notebook": None, "started": "2024-05-01T12:00:00+00:00", "finished": "2024-05-01T12:01:00+00:00",
           "wall_time_s": 60.0, "images_per_second": 12.5, "extra": {}}
    (tmp_path / "abc123.json").write_text(json.dumps(old))
    (rec,) = R.RunStore(tmp_path).load_all()
    assert rec.metric("R@1") == 0.25 and rec.wall_time_s == 60.0 and rec.to_dict() == old
    (tmp_path / "abc123.json").write_text(json.dumps({**old, "schema": 2}))
    with pytest.raises(ValueError, match="abc123.json has record schema 2; this mslib reads schema 1"):
        R.RunStore(tmp_path).load_all()
    (tmp_path / "abc123.json").write_text(json.dumps({k: v for k, v in old.items() if k != "seed"}))
    with pytest.raises(ValueError, match="abc123.json is an incomplete run record: no seed"):
        R.RunStore(tmp_path).load_all()


def test_an_unreadable_record_is_recomputed_with_a_warning(tmp_path):
    rec = make()
    path = R.RunStore(tmp_path).write(rec)
    path.write_text(json.dumps({**rec.to_dict(), "schema": 0}))
    with pytest.warns(UserWarning, match="record schema 0.*recomputing the run"):
        assert R.RunStore(tmp_path).find(PARAMS, "c0de") is None


def test_store_paths(tmp_path):
    store = R.RunStore(tmp_path)
    assert store.path("abc") == tmp_path / "abc.json"
    assert store.run_dir(PARAMS, "c0de") == tmp_path / "runs" / R.run_id(PARAMS, "c0de")


# ------------------------------------------------------------------------------------ committed record sets
def _set_with(results, name, *records, description="runs of a test"):
    """A record set ``results/sets/<name>/`` packed from ``records`` (all on code ``c0de``), written to a scratch
    results folder first (a record also in ``results/`` would be found there, not in the set)."""
    scratch = R.RunStore(results.parent / f"scratch-{name}", sets=[])
    for rec in records:
        scratch.write(rec)
    packed = R.pack_record_set(scratch, name, "c0de", description=description)
    assert packed == scratch.results_dir / "sets" / name
    (results / "sets").mkdir(parents=True, exist_ok=True)
    return packed.rename(results / "sets" / name)


def test_a_store_reads_its_folder_first_then_the_committed_sets_in_order(tmp_path, monkeypatch):
    monkeypatch.delenv(R.RECORD_SETS_ENV, raising=False)
    results = tmp_path / "results"
    in_a, in_b = make(metrics={"iteration": 1, "R@1": 0.1}), make(metrics={"iteration": 1, "R@1": 0.2})
    other = make(params={**PARAMS, "beta": 40.0})
    _set_with(results, "b-set", in_b, other)
    _set_with(results, "a-set", in_a)
    store = R.RunStore(results)
    assert [p.name for p in store.sets] == ["a-set", "b-set"]
    found = store.find(PARAMS, "c0de")
    assert found.record_set == "a-set" and found.metrics["R@1"] == 0.1  # the first set in name order
    assert store.find({**PARAMS, "beta": 40.0}, "c0de").record_set == "b-set"
    assert store.find(PARAMS, "other-code") is None  # a set's record is stale on other code, like any record
    own = make(metrics={"iteration": 1, "R@1": 0.3})
    store.write(own)
    assert store.find(PARAMS, "c0de").record_set is None and store.find(PARAMS, "c0de").metrics["R@1"] == 0.3
    assert sorted(p.name for p in (results / "sets" / "a-set").iterdir()) == sorted(
        [f"{in_a.run_id}.json", R.MANIFEST]), "writing never touches a set"
    assert store.load_all() == [own], "load_all reads the results folder alone"


def test_record_sets_env_chooses_the_sets_or_none(tmp_path, monkeypatch):
    results = tmp_path / "results"
    _set_with(results, "a-set", make(metrics={"iteration": 1, "R@1": 0.1}))
    _set_with(results, "b-set", make(metrics={"iteration": 1, "R@1": 0.2}))
    (results / "sets" / "no-manifest").mkdir()  # a folder without MANIFEST.json is not a set
    monkeypatch.setenv(R.RECORD_SETS_ENV, "b-set, a-set")
    assert [p.name for p in R.RunStore(results).sets] == ["b-set", "a-set"]
    assert R.RunStore(results).find(PARAMS, "c0de").metrics["R@1"] == 0.2
    monkeypatch.setenv(R.RECORD_SETS_ENV, "none")
    assert R.RunStore(results).sets == [] and R.RunStore(results).find(PARAMS, "c0de") is None
    monkeypatch.setenv(R.RECORD_SETS_ENV, "a-set,no-manifest,typo")
    with pytest.raises(ValueError, match="names record set.s. no-manifest, typo that .* holds: a-set, b-set"):
        R.RunStore(results)
    monkeypatch.delenv(R.RECORD_SETS_ENV)
    assert [p.name for p in R.RunStore(results).sets] == ["a-set", "b-set"]


def test_pack_copies_current_records_no_other_set_holds_and_counts_them(tmp_path, monkeypatch):
    monkeypatch.delenv(R.RECORD_SETS_ENV, raising=False)
    results = tmp_path / "results"
    held = make(params={**PARAMS, "beta": 40.0})
    _set_with(results, "older", held)
    store = R.RunStore(results)
    store.write(held)  # also in the results folder: already in a set, not packed again
    fresh = make()
    stale = make(params={**PARAMS, "beta": 10.0}, code="old-code")
    store.write(fresh)
    store.write(stale)
    with pytest.raises(ValueError, match="letters, digits"):
        R.pack_record_set(store, "../escape", "c0de", description="x")
    with pytest.raises(ValueError, match="no record of code nothing"):
        R.pack_record_set(store, "empty", "nothing", description="x")
    assert not (results / "sets" / "empty").exists()
    folder = R.pack_record_set(store, "new", "c0de", description="chapter 06, default profile")
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"{fresh.run_id}.json", R.MANIFEST])
    assert json.loads((folder / f"{fresh.run_id}.json").read_text()) == fresh.to_dict()
    manifest = json.loads((folder / R.MANIFEST).read_text())
    assert manifest["runs"] == 1 and manifest["code_hashes"] == {"c0de": 1}
    assert manifest["description"] == "chapter 06, default profile" and manifest["run_minutes"] == round(90.5 / 60, 1)
    assert manifest["made_by"] == {"interactive (interactive)": 1}
    assert list(manifest["machines"]) == [f"{fresh.hardware['cpu_model']}, {fresh.hardware['cpu_count']} CPUs"]
    assert [r.run_id for r in R.set_records(folder)] == [fresh.run_id]
    assert R.RunStore(results).find(PARAMS, "c0de") == fresh  # equal: record_set is not compared


def test_a_fresh_results_folder_reuses_a_set_and_trains_only_what_it_lacks(tmp_path, monkeypatch):
    from mslib.run.codehash import run_code_hash
    from mslib.run.config import TrainConfig
    from mslib.run.runs import run_grid
    from tests.test_experiments import CountingFit

    monkeypatch.delenv(R.RECORD_SETS_ENV, raising=False)
    cfg = TrainConfig(iterations=5)
    built = tmp_path / "built"
    run_grid({"ms": cfg}, [0, 1], store=R.RunStore(built, sets=[]), jobs=1, fit=CountingFit())
    R.pack_record_set(R.RunStore(built, sets=[]), "book", run_code_hash(), description="two seeds")
    results = tmp_path / "fresh"
    (results / "sets").mkdir(parents=True)
    (built / "sets" / "book").rename(results / "sets" / "book")
    fit = CountingFit()
    records = run_grid({"ms": cfg}, [0, 1, 2], store=R.RunStore(results), jobs=1, fit=fit)
    assert fit.calls == [("multi_similarity", 2)], "only the seed the set lacks is trained"
    assert [(r.reused, r.record_set) for r in records] == [(True, "book"), (True, "book"), (False, None)]
    assert sorted(p.name for p in results.glob("*.json")) == [f"{records[2].run_id}.json"]
    monkeypatch.setenv(R.RECORD_SETS_ENV, "none")
    fit = CountingFit()
    run_grid({"ms": cfg}, [0, 1], store=R.RunStore(results), jobs=1, fit=fit)
    assert fit.calls == [("multi_similarity", 0), ("multi_similarity", 1)], "MSLIB_RECORD_SETS=none: from scratch"


def test_pack_keeps_the_named_checkpoints_and_a_fresh_store_copies_one_into_its_run_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(R.RECORD_SETS_ENV, raising=False)
    built = R.RunStore(tmp_path / "built", sets=[])
    shown, other = make(), make(params={**PARAMS, "beta": 40.0})
    for rec in (shown, other):
        built.write(rec)
    weights = b"\x80final weights of the shown run"
    built.run_dir(shown.params, "c0de").mkdir(parents=True)
    (built.run_dir(shown.params, "c0de") / "checkpoint.pt").write_bytes(weights)
    with pytest.raises(ValueError, match="checkpoint of run 'f00': the set would not hold its record"):
        R.pack_record_set(built, "book", "c0de", description="x", checkpoints=["f00"])
    with pytest.raises(ValueError, match=f"checkpoint of run '{other.run_id}': no .*runs/{other.run_id}/checkpoint.pt"):
        R.pack_record_set(built, "book", "c0de", description="x", checkpoints=[other.run_id])
    assert not (built.results_dir / "sets" / "book").exists(), "a refused pack writes nothing"
    folder = R.pack_record_set(built, "book", "c0de", description="x", checkpoints=[shown.run_id])
    assert (folder / R.CHECKPOINTS / f"{shown.run_id}.pt").read_bytes() == weights
    assert R.set_checkpoints(folder) == [shown.run_id]
    assert json.loads((folder / R.MANIFEST).read_text())["checkpoints"] == [shown.run_id]

    fresh = R.RunStore(tmp_path / "fresh", sets=[folder])
    assert fresh.checkpoint(other.params, "c0de") is None, "a set keeps only the checkpoints it was given"
    assert fresh.checkpoint(shown.params, "other-code") is None, "a checkpoint of other code is another run's"
    copied = fresh.checkpoint(shown.params, "c0de")
    assert copied == fresh.run_dir(shown.params, "c0de") / "checkpoint.pt" and copied.read_bytes() == weights
    assert R.RunStore(tmp_path / "fresh", sets=[]).checkpoint(shown.params, "c0de") == copied, "now its own"


def test_train_or_load_returns_the_model_from_a_sets_checkpoint_without_training(tmp_path, monkeypatch):
    from mslib.run.codehash import run_code_hash
    from mslib.run.config import TrainConfig
    from mslib.run.runs import train_or_load
    from tests.test_experiments import CountingFit

    monkeypatch.delenv(R.RECORD_SETS_ENV, raising=False)
    cfg, code = TrainConfig(iterations=5), run_code_hash()
    built = R.RunStore(tmp_path / "built", sets=[])
    made, _ = train_or_load(cfg, built, fit=CountingFit())
    built.run_dir(cfg.to_dict(), code).mkdir(parents=True)
    (built.run_dir(cfg.to_dict(), code) / "checkpoint.pt").write_bytes(b"weights")
    bare = R.pack_record_set(built, "records-only", code, description="x")
    kept = R.pack_record_set(R.RunStore(built.results_dir, sets=[]), "with-model", code, description="x",
                             checkpoints=[made.run_id])
    record, _ = train_or_load(cfg, R.RunStore(tmp_path / "a", sets=[bare]), fit=CountingFit(), need_model=True)
    assert not record.reused, "a set without the checkpoint: the model is trained again"
    fit = CountingFit()
    record, result = train_or_load(cfg, R.RunStore(tmp_path / "b", sets=[kept]), fit=fit, need_model=True)
    assert record.reused and record.record_set == "with-model" and result is not None
    assert not list((tmp_path / "b").glob("*.json")), "loaded, not trained: no record written"
    assert (tmp_path / "b" / "runs" / made.run_id / "checkpoint.pt").read_bytes() == b"weights"


def test_every_committed_record_set_is_whole_and_its_manifest_counts_it(repo_root):
    """The sets the repository ships: each file a readable record named by its run id, whose id is the hash of its
    parameters and code hash (an edited record would be a number no run made), and a manifest equal to the one
    its records give (runs, code hashes, machines, notebooks, run time)."""
    sets = sorted(p for p in (repo_root / "results" / "sets").iterdir() if (p / R.MANIFEST).is_file())
    assert sets, "the repository ships at least one record set (results/sets/<name>/MANIFEST.json)"
    for folder in sets:
        records = R.set_records(folder)
        assert records, f"{folder.name} holds no record"
        for rec in records:
            assert R.run_id(rec.params, rec.code_hash) == rec.run_id, f"{folder.name}/{rec.run_id}.json was edited"
            assert (folder / f"{rec.run_id}.json").is_file()
            assert rec.metrics and rec.hardware and rec.git_commit not in ("", "unknown")
        manifest = json.loads((folder / R.MANIFEST).read_text())
        kept = R.set_checkpoints(folder)
        again = R.set_manifest(records, name=folder.name, description=manifest["description"], checkpoints=kept)
        assert manifest == again, f"{folder.name}/{R.MANIFEST} does not count its records"
        assert set(kept) <= {rec.run_id for rec in records}, f"{folder.name}: a checkpoint of a run it does not hold"
        assert not [p.name for p in folder.iterdir() if p.suffix != ".json" and p.name != R.CHECKPOINTS], \
            f"{folder.name}: files not records"
        assert not [p.name for p in folder.glob(f"{R.CHECKPOINTS}/*") if p.suffix != ".pt"], \
            f"{folder.name}/{R.CHECKPOINTS}: files not checkpoints"
