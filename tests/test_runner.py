"""The notebook runner (mslib.notebooks): parameter checks, failures that name the cell, atomic outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from mslib.notebooks import NotebookError, check_parameters, parse_cli_value, run_notebook

ROOT = Path(__file__).resolve().parent.parent


def _write_notebook(root: Path, name: str, body: list[str], params: str = "x: int = 1\ny: float = 0.5") -> Path:
    (root / "notebooks").mkdir(parents=True, exist_ok=True)
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells.append(new_markdown_cell(f"# {name}"))
    cell = new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells.append(cell)
    nb.cells.extend(new_code_cell(src) for src in body)
    path = root / "notebooks" / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    (tmp_path / "figures").mkdir()
    return tmp_path


def test_successful_run_hides_injected_cell_and_records_parameters(project: Path) -> None:
    _write_notebook(project, "ok", ["z = x * y", "print('result', z)"])
    (project / "params" / "smoke").mkdir(parents=True)
    (project / "params" / "smoke" / "ok.yaml").write_text("x: 4\n")
    out = run_notebook("ok", "smoke", {"y": 2.5}, root=project, progress=False)
    assert out == project / "executed" / "ok.ipynb"
    nb = nbformat.read(out, as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "hide-input" in injected[0].metadata["tags"]
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "result 10.0" in printed
    assert nb.metadata["mslib"]["parameters"] == {"x": 4, "y": 2.5}
    assert nb.metadata["mslib"]["params_file"] == "params/smoke/ok.yaml"
    assert not list((project / "executed").glob(".*partial*"))


def test_failing_cell_names_notebook_and_cell_and_leaves_no_valid_output(project: Path) -> None:
    _write_notebook(project, "boom", ["a = 1", "raise RuntimeError('deliberate failure')", "b = 2"])
    stale = project / "executed" / "boom.ipynb"
    stale.parent.mkdir()
    stale.write_text("{}")  # an older successful run must not survive a failed one
    with pytest.raises(NotebookError) as err:
        run_notebook("boom", root=project, progress=False)
    message = str(err.value)
    assert "boom" in message and "cell 3" in message and "deliberate failure" in message
    assert not stale.exists()
    assert (project / "executed" / "boom.failed.ipynb").exists()
    assert not list((project / "executed").glob(".*partial*"))


def test_unknown_parameter_is_an_error_naming_it(project: Path) -> None:
    _write_notebook(project, "nb", ["pass"])
    with pytest.raises(NotebookError, match="no_such_param"):
        run_notebook("nb", overrides={"no_such_param": 1}, root=project, progress=False)
    assert not (project / "executed" / "nb.ipynb").exists()


def test_unknown_parameter_in_profile_file_is_an_error(project: Path) -> None:
    _write_notebook(project, "nb", ["pass"])
    (project / "params" / "smoke").mkdir(parents=True)
    (project / "params" / "smoke" / "nb.yaml").write_text("typo_param: 3\n")
    with pytest.raises(NotebookError, match="typo_param"):
        run_notebook("nb", "smoke", root=project, progress=False)


def test_unknown_notebook_and_profile(project: Path) -> None:
    _write_notebook(project, "nb", ["pass"])
    with pytest.raises(NotebookError, match="no notebook named 'missing'"):
        run_notebook("missing", root=project)
    with pytest.raises(NotebookError, match="unknown profile"):
        run_notebook("nb", "fast", root=project)


@pytest.mark.parametrize(
    ("value", "type_name", "ok"),
    [(3, "int", True), (3.5, "int", False), (True, "int", False), (3, "float", True), ("a", "float", False),
     (None, "float | None", True), (None, "int", False), ([1, 2], "list", True), ("x", "str", True),
     (False, "bool", True), (1, "bool", False), (object(), "SomeClass", True), (None, "Optional[str]", True),
     ("a", "Optional[str]", True), (3, "Optional[str]", False), ("x", "None", True)],
)
def test_type_checks(value: object, type_name: str, ok: bool) -> None:
    declared = {"p": {"name": "p", "inferred_type_name": type_name, "default": "0", "help": ""}}
    if ok:
        check_parameters("nb", {"p": value}, declared)
    else:
        with pytest.raises(NotebookError, match="declared type"):
            check_parameters("nb", {"p": value}, declared)


def test_cli_values() -> None:
    assert parse_cli_value("3") == 3 and parse_cli_value("0.1") == 0.1
    assert parse_cli_value("None") is None and parse_cli_value("true") is True
    assert parse_cli_value("[1, 2]") == [1, 2] and parse_cli_value("cub200") == "cub200"


def test_cli_rejects_unknown_parameter_of_setup_notebook() -> None:
    """The spine's acceptance check, through the real command line on the real notebook."""
    proc = subprocess.run(
        [sys.executable, "-m", "mslib.notebooks", "run", "--profile", "smoke", "00_setup", "-p", "no_such_param", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert "no_such_param" in proc.stderr and "00_setup" in proc.stderr


def test_cli_failing_notebook_exits_nonzero(project: Path) -> None:
    _write_notebook(project, "bad", ["1 / 0"])
    proc = subprocess.run(
        [sys.executable, "-m", "mslib.notebooks", "run", "--no-progress", "bad"],
        cwd=project, capture_output=True, text=True, timeout=120, env={**_env(), "MSLIB_ROOT": str(project)},
    )
    assert proc.returncode == 1
    assert "bad: cell 2" in proc.stderr and "ZeroDivisionError" in proc.stderr


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("MSLIB_")}


def test_manifest_of_real_notebook_run_is_json(project: Path) -> None:
    """A notebook that saves a figure through mslib.viz records the runner's context in the manifest."""
    _write_notebook(project, "fig", [
        "import matplotlib.pyplot as plt\nfrom mslib.viz import save_figure\n"
        "fig, ax = plt.subplots()\nax.plot([0, x])\nsave_figure(fig, 'fig-test-line')",
    ])
    run_notebook("fig", overrides={"x": 7}, root=project, progress=False)
    entries = json.loads((project / "figures" / "MANIFEST.json").read_text())
    assert [e["id"] for e in entries] == ["fig-test-line"]
    assert entries[0]["notebook"] == "fig" and entries[0]["params"] == {"x": 7, "y": 0.5}
    assert (project / "figures" / "fig-test-line.pdf").stat().st_size > 0
