"""mslib.run.codehash: the code hash covers the code a run executes (the trainer's import closure) and notebooks'
code cells; editing a plot helper leaves records valid, editing a loss makes them stale."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import mslib
from mslib.run import codehash as C
from mslib.run.records import run_id

PACKAGE = Path(mslib.__file__).resolve().parent
PARAMS = {"dataset": "glyphs", "loss": "multi_similarity", "iterations": 4}


def test_code_hash_tracks_sources_not_notebook_outputs(tmp_path: Path) -> None:
    mod = tmp_path / "a.py"
    mod.write_text("x = 1\n")
    nb = tmp_path / "nb.ipynb"
    cells = [{"cell_type": "code", "source": ["print(1)\n"], "outputs": [], "execution_count": None, "metadata": {}}]
    nb.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    h = C.code_hash([mod, nb])
    assert h == C.code_hash([nb, mod]) and len(h) == 16  # order-independent
    assert C.code_hash([tmp_path]) != h  # a folder holds only its *.py files
    executed = {"cells": [{**cells[0], "outputs": [{"output_type": "stream", "text": "1"}], "execution_count": 1}],
                "metadata": {"kernelspec": {"name": "python3"}}, "nbformat": 4, "nbformat_minor": 5}
    nb.write_text(json.dumps(executed))
    assert C.code_hash([mod, nb]) == h  # executing the notebook does not make records stale
    nb.write_text(json.dumps({**executed, "cells": [{**executed["cells"][0], "source": ["print(2)\n"]}]}))
    assert C.code_hash([mod, nb]) != h
    prose = {"cell_type": "markdown", "source": ["Some *prose*.\n"], "metadata": {}}
    nb.write_text(json.dumps({**executed, "cells": [prose, *executed["cells"]]}))
    assert C.code_hash([mod, nb]) == h  # prose does not make records stale
    nb.write_text(json.dumps({**executed, "cells": [{**prose, "cell_type": "code"}, *executed["cells"]]}))
    assert C.code_hash([mod, nb]) != h  # the same text as code does
    nb.write_text(json.dumps(executed))
    mod.write_text("x = 2\n")
    assert C.code_hash([mod, nb]) != h
    with pytest.raises(ValueError, match="does not exist"):
        C.code_hash([tmp_path / "nope.py"])


def test_a_module_counts_by_its_code_not_its_docstrings_comments_or_layout(tmp_path: Path) -> None:
    mod = tmp_path / "m.py"
    mod.write_text('"""Module doc."""\nimport math\n\n\ndef f(x):\n    """Doc."""\n    return math.exp(x)  # e^x\n')
    h = C.code_hash([mod])
    mod.write_text('"""Another module doc,\nover two lines."""\nimport math\n# a comment\n\ndef f(x):\n'
                   '    """Other doc."""\n\n    return math.exp(\n        x)\n')
    assert C.code_hash([mod]) == h  # docstrings, comments, blank lines, line breaks
    mod.write_text('import math\n\n\ndef f(x):\n    return math.exp(x)\n')
    assert C.code_hash([mod]) == h  # the docstrings removed
    mod.write_text('import math\n\n\ndef f(x):\n    return math.exp(-x)\n')
    assert C.code_hash([mod]) != h  # one sign of code
    mod.write_text('import math\n\n\ndef f(x):\n    "not first"\n    return math.exp(x)\n    "a string after"\n')
    assert C.code_hash([mod]) != h  # only the first statement is a docstring
    only_doc = tmp_path / "d.py"
    only_doc.write_text('class A:\n    """Doc only."""\n')
    assert C.code_hash([only_doc]) != C.code_hash([tmp_path / "m.py"]) and len(C.code_hash([only_doc])) == 16


def _function_hashes(tmp_path: Path, source: str) -> tuple[str, str]:
    """function_code_hash of ``f`` and of ``g`` in a module ``probe_mod`` with ``source``, imported afresh."""
    import importlib
    import linecache
    import sys

    (tmp_path / "probe_mod.py").write_text(source)
    linecache.clearcache()
    sys.modules.pop("probe_mod", None)
    sys.path.insert(0, str(tmp_path))
    try:
        mod = importlib.import_module("probe_mod")
        return C.function_code_hash(mod.f), C.function_code_hash(mod.g)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("probe_mod", None)


def test_a_function_counts_by_its_own_code_not_its_neighbours(tmp_path: Path) -> None:
    f, g = "def f(x):\n    \"\"\"Doc.\"\"\"\n    return x + 1\n", "def g(x):\n    return 2 * x\n"
    f0, g0 = _function_hashes(tmp_path, f + "\n\n" + g)
    f1, g1 = _function_hashes(tmp_path, f + "\n\n" + g.replace("2 * x", "3 * x"))
    assert f1 == f0 and g1 != g0  # editing g leaves f's hash alone
    f2, _ = _function_hashes(tmp_path, "# moved down\n\n\n" + f.replace("Doc.", "Other doc.") + "\n\n" + g)
    assert f2 == f0  # its docstring, comments and place in the file do not count
    f3, _ = _function_hashes(tmp_path, f.replace("x + 1", "x - 1") + "\n\n" + g)
    assert f3 != f0 and len(f3) == 16
    assert C.function_code_hash(C.code_hash, C.package_root) != C.function_code_hash(C.package_root, C.code_hash)


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_the_import_closure_follows_every_kind_of_import_within_the_package(tmp_path: Path) -> None:
    """A toy package: absolute, ``from pkg import module``, relative and function-level imports all count;
    modules nobody imports and imports from outside the package do not."""
    pkg = _write(tmp_path / "pkg", {
        "__init__.py": "",
        "run/__init__.py": "",
        "run/trainer.py": "import os\nfrom pkg import losses\nfrom .config import X\n\n"
                          "def fit():\n    import pkg.data.sampler\n",
        "run/config.py": "from ..models import M\n",
        "run/records.py": "import json\n",
        "losses.py": "import numpy\n",
        "models.py": "M = 1\n",
        "data/__init__.py": "from pkg.data.datasets import D\n",
        "data/datasets.py": "D = 1\n",
        "data/sampler.py": "",
        "data/plots.py": "from pkg import viz\n",
        "viz.py": "",
    })
    assert C.imported_modules("pkg.run.trainer", root=pkg) == [
        "pkg", "pkg.data", "pkg.data.datasets", "pkg.data.sampler", "pkg.losses", "pkg.models", "pkg.run",
        "pkg.run.config", "pkg.run.trainer"]
    assert C.imported_modules("pkg.data.plots", root=pkg) == ["pkg", "pkg.data", "pkg.data.datasets",
                                                               "pkg.data.plots", "pkg.viz"]
    with pytest.raises(ValueError, match="no module 'pkg.nope'"):
        C.imported_modules("pkg.nope", root=pkg)


def test_the_run_code_is_the_trainers_not_the_plotting_or_prose() -> None:
    names = {p.relative_to(PACKAGE).as_posix() for p in C.run_code_paths()}
    assert {"run/trainer.py", "run/config.py", "run/protocol.py", "losses.py", "mining.py", "models.py",
            "evaluate.py", "data/datasets.py", "data/sampler.py", "data/transforms.py", "__init__.py",
            "run/__init__.py"} <= names
    assert not names & {"viz.py", "data/plots.py", "paper.py", "reproduce.py", "experiments.py", "cli.py",
                        "notebooks.py", "run/records.py", "run/runs.py", "run/stats.py", "run/codehash.py"}
    assert C.run_code_hash() == C.code_hash(C.run_code_paths())


@pytest.fixture()
def package_copy(tmp_path: Path) -> Path:
    """A copy of the mslib package to edit (the tests never touch the real one)."""
    root = tmp_path / "checkout" / "mslib"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_a_plot_helper_edit_keeps_records_valid_a_loss_edit_makes_them_stale(package_copy: Path) -> None:
    before = C.run_code_hash(root=package_copy)
    assert before == C.run_code_hash(), "the copy has the same code: the same hash (paths relative to the checkout)"
    record_id = run_id(PARAMS, before)
    for helper in ("viz.py", "data/plots.py", "paper.py", "reproduce.py"):
        with open(package_copy / helper, "a") as fh:
            fh.write("\nPLOT_EXTRA = 1  # a plotting or prose change\n")
    assert C.run_code_hash(root=package_copy) == before and run_id(PARAMS, before) == record_id
    with open(package_copy / "losses.py", "a") as fh:
        fh.write("\nMS_EXTRA = 1\n")
    after = C.run_code_hash(root=package_copy)
    assert after != before and run_id(PARAMS, after) != record_id


def test_a_module_the_trainer_starts_to_import_joins_the_hash(package_copy: Path) -> None:
    before = C.run_code_hash(root=package_copy)
    trainer = package_copy / "run" / "trainer.py"
    trainer.write_text(trainer.read_text() + "\n\ndef _plot():\n    from mslib import viz  # noqa: F401\n")
    changed = C.run_code_hash(root=package_copy)
    assert changed != before  # the trainer's own source changed
    with open(package_copy / "viz.py", "a") as fh:
        fh.write("\nNOW_PART_OF_THE_RUNS_CODE = 1\n")
    assert C.run_code_hash(root=package_copy) != changed


def test_the_callers_notebook_joins_the_hash(tmp_path: Path) -> None:
    nb = tmp_path / "chapter.ipynb"
    nb.write_text(json.dumps({"cells": [{"cell_type": "code", "source": "x = 1", "metadata": {}, "outputs": []}],
                              "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    assert C.run_code_hash([nb]) == C.code_hash([*C.run_code_paths(), nb]) != C.run_code_hash()
    assert C.run_code_hash([]) == C.run_code_hash()
