"""Tables of run records for the book: one record's metrics (:func:`metrics_table`) and the CSV files behind the
numbered ``{csv-table}`` directives (:func:`write_table`, ``results/tables/<table_id>.csv``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from mslib.files import atomic_write_text
from mslib.paths import results_dir as default_results_dir
from mslib.run.records import RunRecord

METRIC_ORDER = ("R@", "MAP@R", "RP", "NMI")


def metrics_table(record: RunRecord, split: str = "test") -> Any:
    """One row per metric group of a record (final, selected, official_best_test): metrics ×100 and the iteration."""
    rows = {}
    for group, values in record.metrics.items():
        scores = values.get(split, {})
        row: dict[str, Any] = {"iteration": values.get("iteration")}
        for prefix in METRIC_ORDER:
            row.update({k: 100 * float(v) for k, v in scores.items() if k.startswith(prefix) and v is not None})
        rows[group] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")


def write_table(df: Any, table_id: str, tables_dir: str | os.PathLike | None = None) -> None:
    """Write ``results/tables/<table_id>.csv`` (``tab-<chapter>-<slug>``) for a numbered ``{csv-table}``.

    Returns None, so a notebook cell ending in this call shows nothing (no machine path on the page)."""
    if not table_id.startswith("tab-"):
        raise ValueError(f"table id {table_id!r} must look like 'tab-<chapter>-<slug>'")
    out = Path(tables_dir) if tables_dir is not None else default_results_dir() / "tables"
    atomic_write_text(out / f"{table_id}.csv", df.to_csv(float_format="%.2f"))
