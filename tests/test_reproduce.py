"""mslib.reproduce: a chapter's config from a file plus overrides, and chapter 08's commands, plan and notes.

References are hand-computed small cases and the published split sizes (CUB-200-2011: 5,924 test images,
In-Shop: 14,218 query + 12,612 gallery images).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from mslib.notebooks import parse_cli_value
from mslib.reproduce import (
    chapter_config,
    evaluation_images,
    evaluation_share,
    paper_commands,
    plan_row,
    records_note,
    schedule_in_words,
    setting_values,
)
from mslib.run.config import TrainConfig
from mslib.run.records import RunRecord, run_record

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def test_no_config_is_the_defaults_and_overrides_apply_on_top() -> None:
    assert chapter_config() == TrainConfig()
    cfg = chapter_config(None, {"iterations": 7, "p": 4})
    assert (cfg.iterations, cfg.p, cfg.k) == (7, 4, 5)


def test_a_config_file_is_read_from_the_repository_root(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "tiny.yaml").write_text("iterations: 9\nembedding_dim: 8\n")
    cfg = chapter_config("configs/tiny.yaml", {"embedding_dim": 16}, root=tmp_path)
    assert (cfg.iterations, cfg.embedding_dim, cfg.lr) == (9, 16, TrainConfig().lr)  # override wins, rest default
    assert chapter_config(tmp_path / "configs" / "tiny.yaml").iterations == 9  # absolute paths as they are


def test_a_missing_file_or_an_unknown_setting_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="configs/nope.yaml"):
        chapter_config("configs/nope.yaml", root=tmp_path)
    with pytest.raises(ValueError, match="unknown training setting.*iteratons"):
        chapter_config(None, {"iteratons": 5})


def test_schedule_in_words_reads_every_number_from_the_config() -> None:
    assert schedule_in_words(TrainConfig(lr=0.001, iterations=600)) == (
        "starts at 0.001, has no warm-up and stays constant for all 600 iterations (no milestones)")
    cfg = TrainConfig(lr=3e-5, iterations=3000, milestones=[1200, 2400], gamma=0.1, warmup_iterations=50,
                      warmup_factor=0.01)
    assert schedule_in_words(cfg) == ("starts at 3e-05, warms up linearly from 0.01× over 50 iterations and is "
                                      "multiplied by 0.1 at iteration(s) 1200, 2400 of 3000")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_the_notebook_command_runs_exactly_the_config(path: Path) -> None:
    rel = path.relative_to(ROOT).as_posix()
    text = paper_commands(rel)
    assert max(len(line) for line in text.splitlines()) <= 88, "a command line is wider than the book's column"
    header, cli, notebook = text.replace(" \\\n", " ").splitlines()  # a shell joins lines ending in " \"
    assert header == f"# {path.stem}" and cli == f"python -m mslib train --config {rel}"
    words = shlex.split(notebook)
    assert words[:5] == ["python", "-m", "mslib.notebooks", "run", "05_training"]
    params = {words[i + 1]: parse_cli_value(words[i + 2]) for i in range(5, len(words), 3) if words[i] == "-p"}
    assert set(params) == {"config", "overrides"}
    assert chapter_config(params["config"], params["overrides"], root=ROOT) == TrainConfig.from_file(path)


def test_evaluation_images_are_every_split_but_train() -> None:
    assert evaluation_images("cub200") == 5924
    assert evaluation_images("inshop") == 14218 + 12612
    with pytest.raises(ValueError, match="mnist"):
        evaluation_images("mnist")


def test_plan_row_and_evaluation_share_by_hand() -> None:
    # 10 iterations of 2×2 images; evaluations before update 0, at 4 and 8, and the final one: 4 × 5,924 images
    cfg = TrainConfig(dataset="cub200", iterations=10, p=2, k=2, official_test_selection=True, eval_every=4)
    images = 10 * 2 * 2 + 4 * 5924
    assert plan_row(cfg, 100.0) == {
        "dataset": "cub200", "backbone": "smallcnn", "dim": 64, "P×K": "2×2", "iterations": 10,
        "test evals": 4, "images": images, "GPU min (est.)": 4}  # 23,736 / 100 / 60 = 3.96
    assert evaluation_share(cfg) == pytest.approx(100 * 4 * 5924 / images)
    single = TrainConfig(dataset="cub200", iterations=10, p=2, k=2)  # the final evaluation only
    assert plan_row(single, 100.0)["test evals"] == 1
    with pytest.raises(ValueError, match="positive"):
        plan_row(cfg, 0.0)


def test_setting_values_are_distinct_sorted_and_yaml_spelled() -> None:
    cfgs = [TrainConfig(freeze_bn=True, amp=None), TrainConfig(freeze_bn=True, amp="bf16")]
    assert setting_values(cfgs, "freeze_bn") == "true"
    assert setting_values(cfgs, "amp") == "None / bf16"


def _record(dataset: str, code_hash: str) -> RunRecord:
    return run_record({"dataset": dataset}, {"final": {"iteration": 1, "test": {"R@1": 0.5}}}, seed=0, started=0.0,
                      finished=1.0, code=code_hash)


def test_records_note_counts_current_and_older_paper_runs() -> None:
    cpu_only = [_record("glyphs", "a"), _record("omniglot", "a")]  # the CPU datasets are not the paper's
    assert records_note(cpu_only, {"a"}, show_stale=False) == (
        "Paper-profile run records made by the current code (a): none, so the table says **not run yet**.")
    mixed = [_record("cub200", "a"), _record("cars196", "old"), _record("sop", "old"), _record("glyphs", "old"),
             _record("omniglot", "old")]
    assert records_note(mixed, {"b", "a"}, show_stale=False) == (
        "Paper-profile run records made by the current code (a, b): 1; made by older code: 2, not shown.")
    assert records_note(mixed, {"a"}, show_stale=True).endswith("; made by older code: 2, shown, marked stale.")
