"""The book's experiment designs: the loss comparison, cost estimates, provenance lines and the paper-runs table.

:data:`LOSS_SETTINGS` is the loss comparison of the *Results* chapters (``notebooks/06_recall_tables.ipynb``,
``09_beyond_pairs.ipynb``): :func:`loss_configs` builds it from a base setting, :func:`tuning_configs` adds the
proxy losses and each loss's search space (``10_tuning.ipynb``), :func:`on_datasets` repeats that setting on other
datasets (:func:`with_data` moves any variant there), :func:`paired_family` tests every loss against a baseline on
every dataset as one Holm family. :func:`config_differences` sets a chapter's settings beside the paper's recipe,
:func:`images_processed` estimates what a run costs, :func:`provenance_line` says what is behind a table, and
:func:`paper_runs_table` puts paper-profile runs beside the paper's numbers (``08_reproducing.ipynb``). Training and
sweeps are :mod:`mslib.run.runs` (``run_grid``), the statistics :mod:`mslib.run.stats` and
:mod:`mslib.run.significance`. "Mining only" ablations need nothing here: ``loss_params={"ms_mining": ε, ...}``
restricts any loss with mined pairs (see :func:`mslib.losses.build_loss`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from mslib.data.registry import is_paper_dataset
from mslib.losses import LOSS_SPECS
from mslib.paper import paper_row
from mslib.run.config import TrainConfig
from mslib.run.convergence import still_rising, undecided_comparisons
from mslib.run.protocol import evaluations_on_test
from mslib.run.records import RunRecord
from mslib.run.significance import family_table
from mslib.run.stats import METRICS, paired_differences, percent
from mslib.run.tuning import Param, search_space

# The loss comparison: one identical setting (TrainConfig defaults), only loss and loss_params change. Each loss in
# the form the MS paper compares (book/sources.md#src-table1 for lifted structure), on cosine similarities.
# Hyperparameters: contrastive as the MS paper's similarity form (positive margin 1, negative margin λ = 0.5);
# triplet with FaceNet's margin 0.2 on squared distances of unit vectors (= 0.1 on cosine) and semi-hard triplets;
# binomial deviance with α = 2, λ = 0.5 and β = 50 on negatives; N-pair on cosine logits scaled by NPAIR_SCALE
# (chosen by chapter 06's validation check when the CPU network was twice as wide); MS as TrainConfig runs it (pml).
NPAIR_SCALE = 8.0
LOSS_SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "contrastive": ("contrastive", {"pos_margin": 1.0, "neg_margin": 0.5}),
    "triplet (semi-hard)": ("triplet", {"margin": 0.1, "mode": "semihard"}),
    "lifted structure (generalised)": ("generalized_lifted_structure", {"margin": 1.0}),
    "binomial deviance": ("binomial_deviance", {"alpha": 2.0, "beta": 50.0, "lam": 0.5}),
    "N-pair (scaled cosine)": ("npair", {"scale": NPAIR_SCALE}),
    "MS (weighting only)": ("multi_similarity", {"preset": "pml", "epsilon": None}),
    "MS (mining + weighting)": ("multi_similarity", {"preset": "pml"}),
}


def loss_configs(base: TrainConfig) -> dict[str, TrainConfig]:
    """``base`` once per loss of :data:`LOSS_SETTINGS`, by its label (only ``loss`` and ``loss_params`` change)."""
    return {label: dataclasses.replace(base, loss=name, loss_params=params)
            for label, (name, params) in LOSS_SETTINGS.items()}


PROXY_SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {"Proxy-Anchor": ("proxy_anchor", {}),
                                                          "Proxy-NCA": ("proxy_nca", {})}  # PML's defaults


def tuning_configs(base: TrainConfig) -> dict[str, tuple[TrainConfig, tuple[Param, ...]]]:
    """Every loss the tuning chapter searches (:data:`LOSS_SETTINGS` and :data:`PROXY_SETTINGS` on ``base``), by
    label, with its search space (:func:`mslib.run.tuning.search_space`; MS without mining keeps ``ε`` unset)."""
    proxies = {label: dataclasses.replace(base, loss=name, loss_params=params)
               for label, (name, params) in PROXY_SETTINGS.items()}
    out = {}
    for label, cfg in {**loss_configs(base), **proxies}.items():
        unmined = cfg.loss == "multi_similarity" and cfg.loss_params.get("epsilon") is None
        out[label] = (cfg, search_space(cfg.loss, without=["epsilon"] if unmined else []))
    return out


def on_datasets(base: TrainConfig, also_on: Mapping[str, Mapping[str, Any]]) -> dict[str, TrainConfig]:
    """``base`` on its own dataset and on each dataset of ``also_on`` (``{name: dataset_options}``), by dataset
    name: the same setting, only the data changes (``notebooks/06_recall_tables.ipynb``)."""
    if base.dataset in also_on:
        raise ValueError(f"also_on names {base.dataset!r}, the chapter's own dataset; list other datasets only")
    return {base.dataset: base, **{name: dataclasses.replace(base, dataset=name, data_root=None,
                                                             dataset_options=dict(options))
                                   for name, options in also_on.items()}}


def with_data(cfg: TrainConfig, there: TrainConfig) -> TrainConfig:
    """``cfg`` on ``there``'s data (its ``dataset``, ``data_root`` and ``dataset_options``), nothing else changed:
    a chapter's variants moved to another dataset of :func:`on_datasets`."""
    return dataclasses.replace(cfg, dataset=there.dataset, data_root=there.data_root,
                               dataset_options=dict(there.dataset_options))


def paired_family(records_by_dataset: Mapping[str, Sequence[RunRecord]], baseline: str, *,
                  metric: str = "R@1", convergence: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Every label − ``baseline`` on every dataset (``"<dataset>: <label>"``), paired by seed, as one
    :func:`mslib.run.significance.family_table` (Holm over all of them; one seed: marked, not tested).

    With ``convergence`` (a chapter's criterion, :func:`mslib.run.convergence.criterion`), a row either of whose
    labels still rises on its dataset (:func:`mslib.run.convergence.still_rising`) is ``"not decided"``."""
    diffs: dict[str, Any] = {}
    undecided: dict[str, str] = {}
    for dataset, records in records_by_dataset.items():
        paired = paired_differences(records, baseline, metric=metric)
        names = {f"{dataset}: {label}": (label, baseline) for label in paired["per seed"].index}
        diffs.update({name: paired.loc[label, "per seed"] for name, (label, _) in names.items()})
        if convergence is not None:
            undecided |= undecided_comparisons(names, still_rising(records, convergence))
    return family_table(diffs, untestable="mark", undecided=undecided)


def ms_config(base: TrainConfig, **changes: Any) -> TrainConfig:
    """``base`` with the MS loss at the ``pml`` preset (the :class:`TrainConfig` default), ``changes`` (α, β, λ, ε
    by their names ``alpha``, ``beta``, ``lam``, ``epsilon``) on top: the ablations' base point and its sweeps
    (``notebooks/07_ablations.ipynb``)."""
    return dataclasses.replace(base, loss="multi_similarity", loss_params={"preset": "pml", **changes})


def proxy_defaults(name: str) -> str:
    """The hyperparameters of proxy loss ``name`` as its function's defaults, ``"name=value, ..."`` (the PML
    defaults, ``notebooks/09_beyond_pairs.ipynb``)."""
    spec = LOSS_SPECS[name]
    if spec.proxy is None:
        raise KeyError(f"{name!r} is a {spec.kind} loss, not a proxy or classification loss")
    return ", ".join(f"{k}={v}" for k, v in spec.defaults.items())


def config_differences(cfg: TrainConfig, reference: Mapping[str, Any], keys: Sequence[str]) -> list[str]:
    """Human-readable ``key: ours vs reference`` for each of ``keys`` where ``cfg`` differs from ``reference``."""
    ours = cfg.to_dict()
    return [f"{k}: {ours[k]} here vs {reference[k]}" for k in keys if str(ours[k]) != str(reference[k])]


def provenance_line(records: Sequence[RunRecord]) -> str:
    """One line behind a table: runs, seeds, code hash, commit, torch, machines, training time, reuse (and from
    which committed record sets, :mod:`mslib.run.records`)."""
    if not records:
        return "no run records"
    seeds = sorted({int(r.seed) for r in records})
    codes = sorted({str(r.code_hash) for r in records})
    commits = sorted({str(r.git_commit or "unknown")[:12] for r in records})
    torch_v = sorted({str(r.versions.get("torch")) for r in records})
    threads = sorted({str(r.params.get("threads", r.hardware.get("torch_threads", "?"))) for r in records})
    machines = sorted({str(r.hardware.get("gpu") or r.hardware.get("cpu_model") or r.hardware.get("processor", "?"))
                       for r in records})
    where = f"{', '.join(machines)}, torch threads per run: {'/'.join(threads)}"
    wall = math.fsum(float(r.wall_time_s or 0.0) for r in records)
    reused = sum(bool(r.reused) for r in records)
    sets = sorted({str(r.record_set) for r in records if r.record_set})
    from_sets = sum(bool(r.record_set) for r in records)
    noun = "record set" if len(sets) == 1 else "record sets"
    committed = f" ({from_sets} from the committed {noun} {', '.join(sets)})" if sets else ""
    # code spans: Markdown would read a bare <set> as an HTML tag and drop it
    paths = "`results/<run_id>.json`" + (", `results/sets/<set>/<run_id>.json`" if sets else "")
    return (f"{len(records)} runs (seeds {', '.join(map(str, seeds))}; {reused} loaded from records{committed}, "
            f"{len(records) - reused} trained now) · code {', '.join(codes)} · commit {', '.join(commits)} · "
            f"torch {', '.join(torch_v)} · {where} · {wall / 60:.1f} min of run time in total · records: {paths}")


def images_processed(cfg: TrainConfig, test_images: int) -> tuple[int, int]:
    """``(test evaluations, images processed)`` by a run of ``cfg``: training batches plus test evaluations.

    The evaluations are :func:`mslib.run.trainer.fit`'s own count (:func:`mslib.run.protocol.evaluations_on_test`:
    the final model, the validation-selected one, the official schedule's periodic ones). A basis for time
    estimates, not a measurement.
    """
    evaluations = evaluations_on_test(cfg)
    return evaluations, cfg.iterations * cfg.p * cfg.k + evaluations * test_images


def _paper_run_row(r: RunRecord, fresh: bool) -> dict[str, Any]:
    """One row of :func:`paper_runs_table`: our final test metrics, the official protocol's, the paper's R@1."""
    params = r.params
    final = {m: percent(r, m, "test", "final") for m in METRICS}
    best = percent(r, "R@1", "test", "official_best_test")
    # the paper's MS rows are BN-Inception runs: another backbone has no published number to stand beside
    row = paper_row(params["dataset"], params["embedding_dim"]) if params.get("backbone") == "bninception" else None
    return {
        "dataset": params["dataset"], "dim": params["embedding_dim"], "iterations": params["iterations"],
        **{f"{m} (final)": round(v, 1) for m, v in final.items() if v is not None},
        "R@1 (official protocol: best on test)": round(best, 1) if best is not None else "–",
        "paper R@1": f"{row.metrics['R@1']} {row.tag}" if row else "not published",
        "status": "current code" if fresh else "stale (older code)",
        "commit": str(r.git_commit or "unknown")[:12],
        "wall (min)": round(float(r.wall_time_s or 0.0) / 60, 1),
    }


def paper_runs_table(records: Sequence[RunRecord], current: Iterable[str], *, show_stale: bool = False) -> Any:
    """Paper-profile runs (a dataset of the paper: :func:`mslib.data.registry.is_paper_dataset`) of ``records``
    beside the paper's R@1 for the same dataset, dimension and backbone (BN-Inception); only records whose code
    hash is in ``current`` unless ``show_stale``. One "not run yet" row if none."""
    current = set(current)
    out = {}
    for r in records:
        fresh = r.code_hash in current
        if is_paper_dataset(r.params.get("dataset")) and (fresh or show_stale):
            out[r.run_id] = _paper_run_row(r, fresh)
    if not out:
        return pd.DataFrame({"status": ["not run yet"]}, index=pd.Index(["–"], name="run id"))
    return pd.DataFrame.from_dict(out, orient="index").rename_axis("run id")
