"""Command line: ``python -m mslib <command> ...`` (also installed as ``mslib``).

Commands: ``notebooks`` (run/list/strip the book's notebooks), ``train`` (a training run from a config),
``data`` (list/download/verify datasets, generate the embedded glyphs), ``env`` (print versions and hardware).
Each command is a module with a ``main(argv) -> int``.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Sequence

COMMANDS = {
    "notebooks": "mslib.notebooks",
    "train": "mslib.train",
    "env": "mslib.__main__",
    "data": "mslib.data.cli",
}


def env_main(argv: Sequence[str] | None = None) -> int:
    """Print the versions and hardware a run record would store."""
    from mslib.provenance import git_commit, hardware, versions

    print(json.dumps({"git_commit": git_commit(), "versions": versions(), "hardware": hardware()}, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        if argv and argv[0] not in ("-h", "--help"):
            print(f"error: unknown command {argv[0]!r}", file=sys.stderr)
        print("usage: python -m mslib {" + ",".join(COMMANDS) + "} ...", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    if argv[0] == "env":
        return env_main(argv[1:])
    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
