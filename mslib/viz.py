"""One plotting style and one way to save a figure.

A figure's id (``fig-<chapter>-<slug>``) is its public identity: the glue key, the MyST label and the file name
``figures/<id>.{pdf,png}``. :func:`save_figure` writes both files and records their provenance in
``figures/MANIFEST.json`` (one entry per id, replaced when the figure is regenerated).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib.figure
import matplotlib.pyplot as plt

from mslib import __version__
from mslib.paths import figures_dir
from mslib.provenance import git_commit, notebook_context, stable_hash

FIG_ID = re.compile(r"^fig-[a-z0-9]+(-[a-z0-9]+)+$")


def set_style() -> None:
    """The book's plotting style (seaborn ``whitegrid``, colour-blind palette, PDF fonts embedded as Type 42)."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    plt.rcParams.update({"pdf.fonttype": 42, "ps.fonttype": 42, "figure.dpi": 100, "savefig.bbox": "tight"})


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def save_figure(
    fig: matplotlib.figure.Figure,
    fig_id: str,
    *,
    params: dict[str, Any] | None = None,
    out_dir: Path | None = None,
) -> dict[str, Any]:
    """Write ``<out_dir>/<fig_id>.pdf`` and ``.png`` and record them in ``MANIFEST.json``.

    ``fig_id`` must look like ``fig-<chapter>-<slug>`` (lowercase, hyphens). ``params`` defaults to the parameters
    the notebook runner passed to this execution. Returns the manifest entry.
    """
    if not FIG_ID.match(fig_id):
        raise ValueError(f"figure id {fig_id!r} must look like 'fig-<chapter>-<slug>' (lowercase, digits, hyphens)")
    out = Path(out_dir) if out_dir is not None else figures_dir()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{fig_id}.pdf")
    fig.savefig(out / f"{fig_id}.png", dpi=150)
    ctx = notebook_context()
    used = ctx["params"] if params is None else params
    entry = {
        "id": fig_id,
        "files": [f"{fig_id}.pdf", f"{fig_id}.png"],
        "notebook": ctx["notebook"],
        "profile": ctx["profile"],
        "params_file": ctx["params_file"],
        "params": used,
        "params_hash": stable_hash(used),
        "git_commit": git_commit(),
        "mslib_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    manifest = out / "MANIFEST.json"
    entries = json.loads(manifest.read_text()) if manifest.exists() else []
    entries = [e for e in entries if e.get("id") != fig_id] + [entry]
    entries.sort(key=lambda e: e["id"])
    _atomic_write_text(manifest, json.dumps(entries, indent=2) + "\n")
    return entry
