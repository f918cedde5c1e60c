"""mslib.train: the official LR schedule, strict configs, exact resume, and record reuse/staleness."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mslib.train import TrainConfig, fit, lr_factor, train_or_load


def tiny(**overrides: object) -> TrainConfig:
    """A seconds-long run on the embedded glyph dataset."""
    base = dict(dataset_options={"classes": 40, "images_per_class": 12}, iterations=12, p=4, k=3, embedding_dim=16,
                val_fraction=0.25, eval_every=6, log_every=3, checkpoint_every=4, ks=[1, 2], lr=1e-3)
    return TrainConfig(**{**base, **overrides})


@pytest.mark.parametrize(
    ("iteration", "expected"),
    # warm-up 10 iterations from factor 0.01 (official WarmupMultiStepLR: f = w(1-a) + a, a = it/10),
    # then ×0.1 at 20 and again at 30
    [(0, 0.01), (5, 0.01 * 0.5 + 0.5), (10, 1.0), (19, 1.0), (20, 0.1), (29, 0.1), (30, 0.01), (99, 0.01)],
)
def test_lr_factor_is_the_official_warmup_multistep(iteration: int, expected: float) -> None:
    cfg = TrainConfig(warmup_iterations=10, warmup_factor=0.01, milestones=[20, 30], gamma=0.1)
    assert lr_factor(iteration, cfg) == pytest.approx(expected, rel=1e-12)


def test_config_rejects_unknown_and_invalid_settings() -> None:
    with pytest.raises(ValueError, match="unknown training setting.*iteratons"):
        TrainConfig.from_dict({"iteratons": 10})
    with pytest.raises(ValueError, match="unknown backbone"):
        TrainConfig(backbone="vgg")
    with pytest.raises(ValueError, match="amp"):
        TrainConfig(amp="fp8")
    with pytest.raises(ValueError, match="p ≥ 2"):
        TrainConfig(p=1)


def test_shipped_paper_configs_are_valid() -> None:
    for path in sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml")):
        cfg = TrainConfig.from_yaml(path)
        assert cfg.embedding_dim == 512 and cfg.backbone == "bninception", path.name


def test_cuda_request_without_cuda_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        fit(tiny(device="cuda"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return fit(tiny(), run_dir=tmp_path_factory.mktemp("full"), progress=False)


def test_interrupted_then_resumed_run_equals_uninterrupted(uninterrupted: dict, tmp_path: Path) -> None:
    cfg = tiny()
    partial = fit(cfg, run_dir=tmp_path, progress=False, stop_after=7)  # killed between checkpoints 4 and 8
    assert not partial["completed"] and partial["iteration"] == 7
    resumed = fit(cfg, run_dir=tmp_path, progress=False)
    assert resumed["completed"]
    assert resumed["history"] == uninterrupted["history"]
    assert resumed["metrics"] == uninterrupted["metrics"]
    for (name, a), b in zip(resumed["model"].state_dict().items(), uninterrupted["model"].state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), f"parameter {name} differs after resume"


def test_result_reports_selection_and_final(uninterrupted: dict) -> None:
    metrics = uninterrupted["metrics"]
    assert metrics["final"]["iteration"] == 12
    assert metrics["selected"]["selected_by"] == "validation R@1"
    assert metrics["selected"]["iteration"] in (0, 6, 12)
    best_val = max(e["val"]["R@1"] for e in uninterrupted["evals"])
    assert metrics["selected"]["val"]["R@1"] == best_val
    assert 0.0 <= metrics["final"]["test"]["R@1"] <= 1.0
    assert "official_best_test" not in metrics  # only when asked for, and then labelled


def test_official_protocol_is_labelled_and_is_the_max_over_test_evals(tmp_path: Path) -> None:
    result = fit(tiny(val_fraction=0.0, official_test_selection=True, iterations=8, eval_every=4,
                      checkpoint_every=0), progress=False)
    best = result["metrics"]["official_best_test"]
    assert "optimistic" in best["note"]
    tested = [e["test"]["R@1"] for e in result["evals"] if "test" in e] + [result["metrics"]["final"]["test"]["R@1"]]
    assert best["test"]["R@1"] == max(tested)


def test_train_or_load_reuses_fresh_records_and_recomputes_stale_ones(tmp_path: Path, monkeypatch) -> None:
    cfg = tiny(iterations=4, eval_every=0, val_fraction=0.0, checkpoint_every=0)
    marker = tmp_path / "notebook.py"
    marker.write_text("version = 1\n")
    record, _ = train_or_load(cfg, code_paths=[marker], results_dir=tmp_path)
    saved = json.loads((tmp_path / f"{record['run_id']}.json").read_text())
    assert saved["metrics"] == record["metrics"] and saved["params"]["iterations"] == 4

    import mslib.train as train_module

    def no_training(*args: object, **kwargs: object) -> dict:
        raise AssertionError("an up-to-date record must be reused, not retrained")

    monkeypatch.setattr(train_module, "fit", no_training)
    again, _ = train_or_load(cfg, code_paths=[marker], results_dir=tmp_path)
    assert again["run_id"] == record["run_id"]

    marker.write_text("version = 2\n")  # the code changed: the old record is stale
    with pytest.raises(AssertionError, match="must be reused"):
        train_or_load(cfg, code_paths=[marker], results_dir=tmp_path)


def _cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mslib", "train", "--results-dir", str(tmp_path), *args],
                          capture_output=True, text=True, timeout=300)


def test_cli_names_a_misspelt_setting_and_a_missing_dataset(tmp_path: Path) -> None:
    proc = _cli("--set", "iteratons=5", tmp_path=tmp_path)
    assert proc.returncode == 2 and "iteratons" in proc.stderr
    proc = _cli("--set", "dataset=cub200", "--set", f"data_root={tmp_path / 'nowhere'}", tmp_path=tmp_path)
    assert proc.returncode == 1
    assert "python -m mslib data download cub200" in proc.stderr
    assert not list(tmp_path.glob("*.json")), "a failed run must not leave a record"


def test_paper_profile_of_training_chapter_is_the_cub_config() -> None:
    """params/paper/05_training.yaml (papermill) and configs/cub200_ms512.yaml (CLI) must be the same run."""
    import yaml

    root = Path(__file__).resolve().parent.parent
    profile = yaml.safe_load((root / "params" / "paper" / "05_training.yaml").read_text())
    config = TrainConfig.from_yaml(root / "configs" / "cub200_ms512.yaml").to_dict()
    assert {k: config[k] for k in profile} == profile
