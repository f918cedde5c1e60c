"""mslib.cli: one command line for ``python -m mslib train|data|records|env|notebooks``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mslib.cli import main
from mslib.run.records import RunStore


def test_train_writes_a_record_and_prints_its_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = ["iterations=2", "p=4", "k=2", "embedding_dim=8", "ks=[1]", "log_every=1",
                "dataset_options={classes: 16, images_per_class: 6}"]
    argv = ["train", "--results-dir", str(tmp_path), "--no-progress"]
    assert main([*argv, *(arg for s in settings for arg in ("--set", s))]) == 0
    out = capsys.readouterr().out
    (record,) = RunStore(tmp_path).load_all()
    assert record.params["iterations"] == 2 and record.params["dataset_options"] == {"classes": 16,
                                                                                     "images_per_class": 6}
    shown = re.search(r"^final\s+\(iteration 2\): R@1 ([0-9.]+)", out, re.MULTILINE)
    assert shown and float(shown.group(1)) == pytest.approx(100 * record.metric("R@1"), abs=0.005)
    assert f"record: {record.run_id}.json in {tmp_path}" in out


def test_train_rejects_a_set_without_value(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--set", "iterations"])
    assert "--set needs KEY=VALUE" in capsys.readouterr().err


def test_train_reads_the_config_file_then_the_sets_and_names_bad_input(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text("iterations: 50\np: 4\nk: 2\nembedding_dim: 8\nks: [1]\n"
                      "dataset_options: {classes: 16, images_per_class: 6}\n")
    argv = ["train", "--config", str(config), "--results-dir", str(tmp_path / "res"), "--no-progress"]
    assert main([*argv, "--set", "iterations=2", "--set", "seed=3"]) == 0
    (record,) = RunStore(tmp_path / "res").load_all()
    assert (record.params["iterations"], record.params["seed"], record.params["p"]) == (2, 3, 4)
    capsys.readouterr()
    assert main(["train", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert f"no config file {tmp_path / 'nope.yaml'}" in capsys.readouterr().err
    config.write_text("iteratons: 5\n")
    assert main(["train", "--config", str(config)]) == 2
    assert f"unknown training setting(s) iteratons in {config}" in capsys.readouterr().err


def test_data_and_env_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "list"]) == 0
    assert re.search(r"^glyphs\s+embedded", capsys.readouterr().out, re.MULTILINE)
    assert main(["data", "verify", "mnist"]) == 1
    assert "unknown dataset 'mnist'" in capsys.readouterr().err
    assert main(["env"]) == 0
    assert {"git_commit", "versions", "hardware"} == set(json.loads(capsys.readouterr().out))


def test_unknown_or_missing_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bogus"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'bogus'" in err and "{notebooks,train,data,records,env}" in err
    assert main([]) == 2 and main(["--help"]) == 0


def test_records_pack_then_list_then_reuse(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MSLIB_RECORD_SETS", raising=False)
    built = tmp_path / "built"
    settings = ["iterations=2", "p=4", "k=2", "embedding_dim=8", "ks=[1]",
                "dataset_options={classes: 16, images_per_class: 6}"]
    train = ["train", "--no-progress", *(arg for s in settings for arg in ("--set", s))]
    assert main([*train, "--results-dir", str(built)]) == 0
    (record,) = RunStore(built).load_all()
    assert main(["records", "--results-dir", str(built), "list"]) == 0
    assert "no record set in" in capsys.readouterr().out
    assert main(["records", "--results-dir", str(built), "pack", "tiny", "--description", "one CLI run",
                 "--checkpoint", record.run_id]) == 0
    shown = capsys.readouterr().out
    assert re.search(r"^tiny: 1 runs, 1 checkpoints, 1 on the current code \w+ \(.*\): one CLI run$", shown,
                     re.MULTILINE), shown
    assert (built / "sets" / "tiny" / f"{record.run_id}.json").is_file()
    assert (built / "sets" / "tiny" / "checkpoints" / f"{record.run_id}.pt").read_bytes() == (
        built / "runs" / record.run_id / "checkpoint.pt").read_bytes()
    assert main(["records", "--results-dir", str(built), "pack", "again", "--description", "nothing new"]) == 1
    assert "no record of code" in capsys.readouterr().err
    fresh = tmp_path / "fresh"
    (fresh / "sets").mkdir(parents=True)
    (built / "sets" / "tiny").rename(fresh / "sets" / "tiny")
    assert main([*train, "--results-dir", str(fresh)]) == 0  # loaded from the set: nothing written
    assert not list(fresh.glob("*.json"))
