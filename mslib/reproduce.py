"""A run's settings from a config file plus overrides, in words, as commands, and what a run costs.

The training chapters (``notebooks/05_training.ipynb``, ``06_recall_tables``, ``07_ablations``) build their
:class:`~mslib.run.config.TrainConfig` with :func:`chapter_config`; the chapter on reproducing the paper
(``notebooks/08_reproducing.ipynb``) turns each file of ``configs/`` into commands (:func:`paper_commands`) and a
time estimate (:func:`plan_row`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mslib.data.registry import is_paper_dataset, published_counts
from mslib.experiments import images_processed
from mslib.paths import project_root
from mslib.run.config import TrainConfig
from mslib.run.records import RunRecord

TRAINING_NOTEBOOK = "05_training"


def config_path(config: str | Path, root: Path | None = None) -> Path:
    """``config`` as a path: relative paths are read from the repository root (notebooks run in ``notebooks/``)."""
    path = Path(config)
    if not path.is_absolute():
        path = (root or project_root()) / path
    if not path.is_file():
        raise FileNotFoundError(f"no config file {config!r} (looked for {path}); name a file of configs/")
    return path


def chapter_config(
    config: str | Path | None = None, overrides: Mapping[str, Any] | None = None, *, root: Path | None = None
) -> TrainConfig:
    """The settings of a chapter: :meth:`TrainConfig.from_file` of the YAML file ``config`` (None: the CPU
    defaults; a relative path is read from the repository root, :func:`config_path`) with ``overrides`` on top.
    Unknown setting names, in the file or the overrides, are errors."""
    return TrainConfig.from_file(None if config is None else config_path(config, root), overrides)


def schedule_in_words(cfg: TrainConfig) -> str:
    """The learning-rate schedule of ``cfg`` in words (every number read from the config)."""
    words = [f"starts at {cfg.lr:g}"]
    if cfg.warmup_iterations:
        words.append(f"warms up linearly from {cfg.warmup_factor:g}× over {cfg.warmup_iterations} iterations")
    else:
        words.append("has no warm-up")
    if cfg.milestones:
        steps = ", ".join(str(m) for m in cfg.milestones)
        words.append(f"is multiplied by {cfg.gamma:g} at iteration(s) {steps} of {cfg.iterations}")
    else:
        words.append(f"stays constant for all {cfg.iterations} iterations (no milestones)")
    return ", ".join(words[:-1]) + " and " + words[-1]


def paper_commands(config: str) -> str:
    """The two ways to run the config file ``config`` (a path relative to the repository root): the CLI, and the
    training chapter with the file as its ``config`` and no overrides (its CPU overrides would apply otherwise).

    The notebook command is broken over lines with `` \\`` so that no line is wider than the book's column."""
    stem = Path(config).stem
    return "\n".join([
        f"# {stem}",
        f"python -m mslib train --config {config}",
        f"python -m mslib.notebooks run {TRAINING_NOTEBOOK} \\",
        f"    -p config {config} \\",
        f"    -p overrides '{json.dumps({})}'",
    ])


def evaluation_images(dataset: str) -> int:
    """Images a test evaluation embeds: every published split of ``dataset`` except ``train``."""
    published = published_counts()
    if dataset not in published:
        raise ValueError(f"no published split sizes for dataset {dataset!r}; known: {', '.join(sorted(published))}")
    return sum(n for split, (n, _) in published[dataset].items() if split != "train")


def plan_row(cfg: TrainConfig, images_per_second: float) -> dict[str, Any]:
    """One row of the plan of paper runs: settings, images processed (training batches plus test evaluations)
    and the minutes they take at an assumed throughput (an estimate, not a measurement). Short column names: the
    table must fit the book's column."""
    if images_per_second <= 0:
        raise ValueError(f"images_per_second must be positive, not {images_per_second}")
    evaluations, images = images_processed(cfg, evaluation_images(cfg.dataset))
    return {"dataset": cfg.dataset, "backbone": cfg.backbone, "dim": cfg.embedding_dim,
            "P×K": f"{cfg.p}×{cfg.k}", "iterations": cfg.iterations,
            "test evals": evaluations, "images": images,
            "GPU min (est.)": round(images / images_per_second / 60)}


def evaluation_share(cfg: TrainConfig) -> float:
    """Percentage of the images a run of ``cfg`` processes that are test-evaluation images, not training ones."""
    _, images = images_processed(cfg, evaluation_images(cfg.dataset))
    return 100 * (1 - cfg.iterations * cfg.p * cfg.k / images)


def setting_values(configs: Iterable[TrainConfig], name: str) -> str:
    """The distinct values of setting ``name`` over ``configs``, sorted and joined by " / " (booleans lowercase,
    as YAML writes them)."""
    values = set()
    for cfg in configs:
        value = getattr(cfg, name)
        values.add(str(value).lower() if isinstance(value, bool) else str(value))
    return " / ".join(sorted(values))


def records_note(records: Sequence[RunRecord], current: Iterable[str], *, show_stale: bool) -> str:
    """One sentence on the paper-profile records (dataset one of the paper's benchmarks, ``paper`` in its registry
    row): how many the current code made, and how many older code made (shown or not)."""
    current = set(current)
    paper = [r for r in records if is_paper_dataset(r.params.get("dataset"))]
    fresh = [r for r in paper if r.code_hash in current]
    hidden = len(paper) - len(fresh)
    note = f"Paper-profile run records made by the current code ({', '.join(sorted(current))}): {len(fresh) or 'none'}"
    if hidden:
        note += f"; made by older code: {hidden}, {'shown, marked stale' if show_stale else 'not shown'}"
    return note + ("." if paper else ", so the table says **not run yet**.")
