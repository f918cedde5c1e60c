"""``python -m mslib data ...``: the command lives in :mod:`mslib.cli` (``data_main``); this name stays importable."""

from __future__ import annotations

from mslib.cli import data_main as main

__all__ = ["main"]
