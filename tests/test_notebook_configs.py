"""The training chapters build the same ``TrainConfig`` from ``config`` + ``overrides`` as they did from one
parameter per setting: field by field, for the default, smoke and paper profiles.

The expected configs are written out below with the values the chapters' parameter cells and profile files held
before they took a config file (an independent record, not derived from the notebooks); the actual ones are built
from the notebooks' parameter cells (read with ``ast``) and ``params/<profile>/*.yaml``, as the runner merges them.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import yaml

from mslib.reproduce import chapter_config
from mslib.run.config import TrainConfig

ROOT = Path(__file__).resolve().parent.parent

_CPU_05 = dict(dataset="glyphs", data_root=None, dataset_options={}, backbone="smallcnn", pretrained=None,
               pooling="avg", embedding_dim=64, image_size=227, loss="multi_similarity",
               loss_params={"alpha": 2.0, "beta": 50.0, "lam": 0.5, "epsilon": 0.1}, p=16, k=5, iterations=600,
               optimizer="adam", lr=0.001, weight_decay=1e-05, milestones=[], freeze_bn=False, val_fraction=0.2,
               eval_every=100, official_test_selection=False, ks=[1, 2, 4, 8], device="cpu", amp=None,
               channels_last=True, num_workers=0, seed=0)
_SMOKE_05 = dict(dataset_options={"classes": 40, "images_per_class": 20}, embedding_dim=32, p=8, k=4, iterations=40,
                 eval_every=20)
_PAPER_05 = dict(dataset="cub200", backbone="bninception", pretrained="bninception-imagenet", pooling="max",
                 embedding_dim=512, image_size=227, loss="multi_similarity",
                 loss_params={"alpha": 2.0, "beta": 40.0, "lam": 0.5, "epsilon": 0.1}, p=16, k=5, iterations=3000,
                 optimizer="adam", lr=3.0e-5, weight_decay=5.0e-4, milestones=[1200, 2400], freeze_bn=True,
                 val_fraction=0.0, eval_every=200, official_test_selection=True, ks=[1, 2, 4, 8, 16, 32],
                 device="cuda", amp="bf16", channels_last=True, num_workers=8)
_CPU_0607 = dict(dataset="glyphs", data_root=None, dataset_options={}, backbone="smallcnn", pretrained=None,
                 embedding_dim=64, p=16, k=5, ks=[1, 2, 4, 8], device="cpu")
_SMOKE_06 = dict(dataset_options={"classes": 40, "images_per_class": 12}, embedding_dim=16, p=8, k=3, iterations=20,
                 milestones=[15], val_fraction=0.25, eval_every=10)

EXPECTED = {
    ("05_training", "default"): TrainConfig(**_CPU_05, threads=2),  # its one run uses both cores
    ("05_training", "smoke"): TrainConfig(**{**_CPU_05, **_SMOKE_05}),
    # the one deliberate change: the profile is now the config file itself, which checkpoints every 500 iterations
    # (the profile's own list of settings left checkpoint_every at 0; checkpoints do not change the numbers)
    ("05_training", "paper"): TrainConfig(**{**_CPU_05, **_PAPER_05}, checkpoint_every=500),
    # chapters 06 and 09: converged runs (1500 iterations, lr ×0.1 at 1000) with validation curves every 100
    ("06_recall_tables", "default"): TrainConfig(**_CPU_0607, iterations=1500, milestones=[1000], val_fraction=0.25,
                                                 eval_every=100),
    ("06_recall_tables", "smoke"): TrainConfig(**{**_CPU_0607, **_SMOKE_06}),
    # chapter 07 runs every variant, its sweeps included, in chapter 06's setting (one change each)
    ("07_ablations", "default"): TrainConfig(**_CPU_0607, iterations=1500, milestones=[1000], val_fraction=0.25,
                                             eval_every=100),
    ("07_ablations", "smoke"): TrainConfig(**{**_CPU_0607, **_SMOKE_06}),
    # chapter 09 trains in chapter 06's setting (its pair-loss rows are chapter 06's runs)
    ("09_beyond_pairs", "default"): TrainConfig(**_CPU_0607, iterations=1500, milestones=[1000], val_fraction=0.25,
                                                eval_every=100),
    ("09_beyond_pairs", "smoke"): TrainConfig(**{**_CPU_0607, **_SMOKE_06}),
    # chapter 10 searches around chapter 06's setting (trial 0 is chapter 06's run)
    ("10_tuning", "default"): TrainConfig(**_CPU_0607, iterations=1500, milestones=[1000], val_fraction=0.25,
                                          eval_every=100),
    ("10_tuning", "smoke"): TrainConfig(**{**_CPU_0607, **_SMOKE_06}),
}


def notebook_parameters(name: str, profile: str) -> dict:
    """The notebook's parameter-cell defaults updated by ``params/<profile>/<name>.yaml`` (the runner's order)."""
    cells = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())["cells"]
    cell = next(c for c in cells if "parameters" in c["metadata"].get("tags", []))
    values = {}
    for node in ast.parse("".join(cell["source"])).body:
        target = node.target if isinstance(node, ast.AnnAssign) else node.targets[0]
        values[target.id] = ast.literal_eval(node.value)
    profile_file = ROOT / "params" / profile / f"{name}.yaml"
    if profile != "default":
        assert profile_file.is_file(), f"{profile_file.relative_to(ROOT)} is missing"
        values.update(yaml.safe_load(profile_file.read_text()))
    return values


@pytest.mark.parametrize(("name", "profile"), sorted(EXPECTED), ids=lambda v: str(v))
def test_chapter_builds_the_same_config_as_before(name: str, profile: str) -> None:
    params = notebook_parameters(name, profile)
    built = chapter_config(params["config"], params["overrides"], root=ROOT)
    expected = EXPECTED[(name, profile)].to_dict()
    differing = {k: (v, expected[k]) for k, v in built.to_dict().items() if v != expected[k]}
    assert not differing, f"{name} ({profile}): settings (built, expected) differ: {differing}"


@pytest.mark.parametrize("name", ["05_training", "06_recall_tables", "07_ablations", "09_beyond_pairs", "10_tuning"])
def test_chapters_take_a_config_and_overrides_not_one_parameter_per_setting(name: str) -> None:
    settings = {f for f in TrainConfig().to_dict()}
    repeated = settings & set(notebook_parameters(name, "default"))
    assert not repeated, f"{name} repeats training settings as parameters: {sorted(repeated)}"


def test_paper_profile_of_training_chapter_is_the_cub_config() -> None:
    """params/paper/05_training.yaml (papermill) and configs/cub200_ms512.yaml (CLI) are the same run."""
    params = notebook_parameters("05_training", "paper")
    assert params["config"] == "configs/cub200_ms512.yaml"
    config = TrainConfig.from_file(ROOT / "configs" / "cub200_ms512.yaml")
    assert chapter_config(params["config"], params["overrides"], root=ROOT) == config


@pytest.mark.parametrize("chapter", ["09_beyond_pairs", "10_tuning"])
@pytest.mark.parametrize("profile", ["default", "smoke"])
def test_results_chapters_share_the_recall_chapters_runs(chapter: str, profile: str) -> None:
    """Chapters 09 and 10 load chapter 06's runs only if they build the same base config with the same seeds."""
    ours, theirs = notebook_parameters(chapter, profile), notebook_parameters("06_recall_tables", profile)
    assert ours["seeds"] == theirs["seeds"], f"{profile}: {chapter} must run chapter 06's seeds"
    built = [chapter_config(p["config"], p["overrides"], root=ROOT) for p in (ours, theirs)]
    assert built[0] == built[1], f"{profile}: {chapter} and 06 train different base configs"


@pytest.mark.parametrize("chapter", ["07_ablations", "09_beyond_pairs"])
def test_results_chapters_compare_on_the_recall_chapters_datasets(chapter: str) -> None:
    """07 and 09 load chapter 06's runs on its other datasets only if they name the same ones (also_on)."""
    assert notebook_parameters(chapter, "default")["also_on"] == notebook_parameters("06_recall_tables", "default")[
        "also_on"]
    recall = notebook_parameters("06_recall_tables", "default")
    own = chapter_config(recall["config"], recall["overrides"], root=ROOT).dataset
    tuned = notebook_parameters("10_tuning", "default")["datasets"]
    assert set(tuned) <= {own, *recall["also_on"]}, "chapter 10's trial 0 must be chapter 06's run"
