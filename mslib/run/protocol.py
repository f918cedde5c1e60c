"""The evaluation protocol of a training run: when it evaluates, which model it selects, what it reports.

:func:`eval_iterations` is the official loop's schedule (before update 0, then every ``eval_every`` updates, never
after the last one); :func:`evaluations_on_test` counts the test-set embeddings a run computes (the basis of
:func:`mslib.experiments.images_processed`). Model selection (:func:`improves_selection`) keeps the model of the
best validation R@1 on held-out training classes (Reality-Check style, ``book/sources.md#src-deviations``);
:func:`official_best_test` is the official protocol's optimistic number, the best test R@1 over the periodic test
evaluations (``book/sources.md#src-official-recipe``), reported beside ours for comparison with the paper only.
:mod:`mslib.run.trainer` calls these; chapter ``notebooks/05_training.ipynb`` explains them.
"""

from __future__ import annotations

from typing import Any

from mslib.run.config import TrainConfig

SELECTED_BY = "validation R@1"  # the model-selection rule, as a record names it (metrics["selected"])


def eval_iterations(cfg: TrainConfig) -> list[int]:
    """The periodic evaluations of a run, as updates done: the official loop's schedule, before update 0 and every
    ``eval_every`` updates, never after the last one; none without validation or ``official_test_selection``."""
    if not (cfg.official_test_selection or cfg.val_fraction > 0):
        return []
    return [0, *(range(cfg.eval_every, cfg.iterations, cfg.eval_every) if cfg.eval_every else [])]


def evaluations_on_test(cfg: TrainConfig) -> int:
    """How many times a run embeds the test set: the final model, the selected one (with validation) and, with
    ``official_test_selection``, every periodic evaluation (:func:`eval_iterations`)."""
    selected = 1 if cfg.val_fraction > 0 else 0
    return 1 + selected + (len(eval_iterations(cfg)) if cfg.official_test_selection else 0)


def improves_selection(best: dict[str, Any] | None, entry: dict[str, Any]) -> bool:
    """Whether the evaluation ``entry`` replaces ``best`` (the selected one so far, None before the first) as the
    selected model: a strictly higher validation R@1, so ties keep the earlier model."""
    return best is None or entry["val"]["R@1"] > best["val"]["R@1"]


def official_best_test(evals: list[dict[str, Any]]) -> dict[str, Any]:
    """The official protocol's number: the best test R@1 over the periodic test evaluations (test-set selection).

    Those evaluations follow the official loop: before update 0 and after every ``eval_every`` updates, never after
    the last one (the official ``iteration == max_iter`` branch is unreachable), so the final model is not a
    candidate. Ties keep the earliest, as the official strict ``>`` does. Optimistic: the test set picks the model.
    """
    tested = [e for e in evals if "test" in e]
    if not tested:
        raise ValueError("no periodic test evaluation to select from (official_test_selection needs them)")
    best = max(tested, key=lambda e: e["test"]["R@1"])  # the first maximum
    return {"iteration": best["iteration"], "test": best["test"],
            "evaluated_at": [e["iteration"] for e in tested],
            "note": ("best test R@1 over the official schedule's test evaluations (before update 0 and every "
                     "eval_every updates; the final model is not evaluated, as in the official loop): "
                     "test-set model selection, optimistic")}
