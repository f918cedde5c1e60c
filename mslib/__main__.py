"""``python -m mslib <command> ...``: the command line lives in :mod:`mslib.cli`."""

from __future__ import annotations

from mslib.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
