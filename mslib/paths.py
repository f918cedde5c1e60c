"""Where the book's artifacts live: one place, so notebooks, runner and CLI agree.

The project root is found by walking up from the current directory to the folder holding ``_toc.yml``
(notebooks run with cwd ``notebooks/``, the CLI from the root); ``MSLIB_ROOT`` overrides it.
"""

from __future__ import annotations

import os
from pathlib import Path

from mslib.files import atomic_write_text  # re-exported: its home is mslib.files

__all__ = ["atomic_write_text", "data_dir", "figures_dir", "project_root", "results_dir"]


def project_root(start: Path | None = None) -> Path:
    """The mslib-book root (the folder with ``_toc.yml``), or ``MSLIB_ROOT`` when set."""
    env = os.environ.get("MSLIB_ROOT")
    if env:
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file() and (folder / "mslib").is_dir():
            return folder
    # Installed elsewhere (pip install mslib): fall back to the checkout this file lives in, else cwd.
    package_parent = Path(__file__).resolve().parent.parent
    if (package_parent / "_toc.yml").is_file():
        return package_parent
    return here


def figures_dir() -> Path:
    """``figures/``: every saved figure (PDF + PNG) and ``MANIFEST.json``."""
    return Path(os.environ.get("MSLIB_FIGURES_DIR", project_root() / "figures"))


def results_dir() -> Path:
    """``results/``: one JSON record per run, and ``results/tables/`` for the book's tables."""
    return Path(os.environ.get("MSLIB_RESULTS_DIR", project_root() / "results"))


def data_dir() -> Path:
    """``data/``: datasets and generated caches (git-ignored except its README)."""
    return Path(os.environ.get("MSLIB_DATA_DIR", project_root() / "data"))
