"""Nothing a reader or a test follows points outside the repository; every source link lands on the Sources page.

The facts the book relies on live in ``book/sources.md``. A notebook, book page, config, parameter file, README or
any Python file under ``mslib/``, ``tests/`` or ``benchmarks/`` that names a file outside the repository (a
machine path, a sibling folder, a design note that is not committed) fails here with the file and line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
THIS = Path(__file__).resolve()
SOURCES = ROOT / "book" / "sources.md"
LABELS = (
    "src-paper", "src-results-cub-cars", "src-results-sop-inshop", "src-table1", "src-ablations", "src-official-loss",
    "src-official-recipe", "src-official-eval", "src-reality-check", "src-xbm", "src-pml", "src-datasets",
    "src-deviations", "src-glyphs", "src-omniglot", "src-statistics",
)
SKIP_DIRS = {".git", ".venv", "_build", "executed", "results", "figures", "__pycache__", ".pytest_cache",
             ".ruff_cache", ".ipynb_checkpoints", "node_modules"}
# Names of things that are not in the repository. Built from pieces so this file does not match itself.
OUTSIDE = tuple(re.compile(p) for p in (
    r"(?<![\w.-])" + "shared" + r"/",  # the design-notes folder next to a checkout
    "paper" + "_facts",
    "embedded" + "_dataset" + r"\.md",
    r"(?<![\w.~-])/(?:work|home|Users|root|mnt)/",  # absolute machine paths
))
PARENT = re.compile(r"(?<![\w.])((?:\.\./)+)")
SOURCE_LINK = re.compile(r"sources(?:\.md)?#(src-[a-z0-9-]+)|\{ref\}`(src-[a-z0-9-]+)`")


def _walk(*patterns: str) -> list[Path]:
    found = set()
    for pattern in patterns:
        for path in ROOT.glob(pattern):
            rel = path.relative_to(ROOT)
            if path.is_file() and not SKIP_DIRS.intersection(rel.parts[:-1]) and path.resolve() != THIS:
                found.add(path)
    return sorted(found)


def checked_files() -> list[Path]:
    """The files a reader or a test follows: notebooks, book pages, configs, parameters, READMEs, Python sources."""
    return _walk(
        "notebooks/*.ipynb", "book/**/*.md", "index.md", "CONTRIBUTING.md", "configs/**/*.yaml", "params/**/*.yaml",
        "_config.yml", "_toc.yml",
        "pyproject.toml", "environment.yml", "CITATION.cff", "Makefile", "**/README.md", "mslib/**/*.py",
        "tests/**/*.py", "benchmarks/**/*.py",
    )


def lines_of(path: Path) -> list[tuple[str, str]]:
    """``(where, text)`` per line; for a notebook, ``cell N line M`` of every cell's source."""
    if path.suffix != ".ipynb":
        return [(f"line {i}", line) for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)]
    out = []
    for c, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"]):
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        out += [(f"cell {c} line {i}", line) for i, line in enumerate(source.splitlines(), 1)]
    return out


def outside_mentions(path: Path, rel: Path | None = None) -> list[str]:
    """Every place in ``path`` (at ``rel`` in the repository) naming something outside it, as ``file:where: text``."""
    rel = path.relative_to(ROOT) if rel is None else rel
    depth = len(rel.parts) - 1  # how many '../' stay inside the repository (notebooks render from executed/)
    problems = []
    for where, line in lines_of(path):
        hits = [m.group(0) for pattern in OUTSIDE for m in pattern.finditer(line)]
        hits += [m.group(1) for m in PARENT.finditer(line) if m.group(1).count("../") > depth]
        if hits:
            problems.append(f"{rel.as_posix()}:{where}: names {', '.join(sorted(set(hits)))} -> {line.strip()[:100]}")
    return problems


def test_the_checked_files_are_found() -> None:
    files = {p.relative_to(ROOT).as_posix() for p in checked_files()}
    for expected in ("README.md", "book/sources.md", "_config.yml", "mslib/paper.py", "tests/test_paper.py"):
        assert expected in files, f"{expected} is not scanned"
    assert any(f.startswith("notebooks/") for f in files) and any(f.startswith("configs/") for f in files)
    assert "tests/test_sources.py" not in files


def test_the_check_catches_each_kind(tmp_path: Path) -> None:
    """Each pattern could fire: a file with one outside mention per line is reported line by line."""
    bad = "\n".join(["see the shared" + "/notes", "from paper" + "_facts", "per embedded" + "_dataset.md",
                     "at /" + "work/x", "in /" + "home/me", "up ../../out", "fine ../results/x.csv"])
    probe = tmp_path / "probe.md"
    probe.write_text(bad + "\n", encoding="utf-8")
    found = outside_mentions(probe, Path("book/probe.md"))
    assert [p.split(":")[1] for p in found] == [f"line {i}" for i in range(1, 7)], found


@pytest.mark.parametrize("path", checked_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_nothing_outside_the_repository_is_named(path: Path) -> None:
    problems = outside_mentions(path)
    assert not problems, "names a path outside the repository (cite book/sources.md#src-... instead):\n" + "\n".join(
        problems)


def test_the_sources_page_has_exactly_the_labels() -> None:
    text = SOURCES.read_text(encoding="utf-8")
    labels = re.findall(r"^\((src-[a-z0-9-]+)\)=\s*$", text, flags=re.M)
    assert labels == list(LABELS), f"book/sources.md labels {labels} != {list(LABELS)}"
    for label in labels:
        following = text.split(f"({label})=", 1)[1].lstrip("\n")
        assert following.startswith("## "), f"({label})= must stand right before its section heading"


def test_every_source_link_names_a_label() -> None:
    bad = []
    for path in checked_files():
        for where, line in lines_of(path):
            for m in SOURCE_LINK.finditer(line):
                label = m.group(1) or m.group(2)
                if label not in LABELS:
                    bad.append(f"{path.relative_to(ROOT).as_posix()}:{where}: {label}")
    assert not bad, "links to a Sources label that does not exist:\n" + "\n".join(bad)


def test_the_glyph_recipe_on_the_page_is_the_one_in_code() -> None:
    """The Sources page's class list and font packages are mslib.data.glyphs' frozen ones, in the same order."""
    from mslib.data import glyphs

    section = SOURCES.read_text(encoding="utf-8").split("(src-glyphs)=", 1)[1]
    assert "Latin capitals A–Z (26)" in section and glyphs._GROUPS[0] == "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    positions = [section.find(f"`{group}`") for group in glyphs._GROUPS[1:]]
    assert -1 not in positions, [g for g, p in zip(glyphs._GROUPS[1:], positions, strict=True) if p == -1]
    assert positions == sorted(positions), "the page lists the classes in another order than the code"
    assert "**Images per class:** 50" in section and f"seed {glyphs.SPLIT_SEED}" in section
    assert all(f"`{package}`" in section for package in glyphs.EXTENDED_PACKAGES)
    assert f"({len(glyphs.MATPLOTLIB_FACES)} faces)" in section
