"""mslib.paper: the published numbers are the ones shared/paper_facts.md gives, with their tags, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mslib.paper import PAPER_RESULTS, REALITY_CHECK, paper_row, paper_table

FACTS = Path(__file__).resolve().parent.parent.parent / "shared" / "paper_facts.md"
FACTS_ALT = Path("/work/shared/paper_facts.md")


def _facts() -> str:
    for path in (FACTS, FACTS_ALT):
        if path.is_file():
            return path.read_text()
    pytest.skip("shared/paper_facts.md is not available in this checkout")


def test_headline_rows() -> None:
    cub = paper_row("cub200", 512)
    assert cub is not None and cub.metrics["R@1"] == 65.7 and cub.tag == "[P]"
    cars = paper_row("cars196", 512)
    assert cars is not None and cars.metrics["R@1"] == 84.1 and cars.tag == "[S2]"
    assert "R@16" not in cars.metrics, "Cars R@16 is '?' in the facts file: it must stay absent"
    assert paper_row("cars196", 64) is None, "MS^64 on Cars is unconfirmed: no row"
    assert paper_row("glyphs", 64) is None


def _first_cell(line: str) -> str:
    cell = line.split("|")[1].replace("*", "").strip()
    return re.sub(r"\^\d+.*$|\s*\(.*\)$", "", cell).replace("-", "").lower()


def test_every_value_appears_in_the_facts_file_rows_of_its_method() -> None:
    lines = [ln for ln in _facts().splitlines() if ln.startswith("| ")]
    for row in PAPER_RESULTS:
        mine = [ln for ln in lines if _first_cell(ln) == row.method.replace("-", "").lower()]
        assert mine, f"no facts-file row for {row.method}"
        numbers = {float(x) for ln in mine for x in re.findall(r"(?<![\d.])\d+\.\d+", ln.replace("*", ""))}
        for key, value in row.metrics.items():
            assert value in numbers, f"{row.method} {row.dataset} {key}={value} is not in its facts-file rows"


def test_reality_check_values_appear_in_the_facts_file() -> None:
    text = _facts()
    for row in REALITY_CHECK:
        line = next(ln for ln in text.splitlines() if re.match(rf"\| \**{re.escape(row.method)}\**\s*\|", ln))
        for value in row.metrics.values():
            assert f"{value:.2f}" in line, f"{row.method} {row.dataset}/{row.dim}: {value} not in {line}"


def test_paper_table_shape_and_labels() -> None:
    df = paper_table("cub200", 512)
    assert list(df.index)[0] == "MS^512"
    assert list(df.columns[-2:]) == ["tag", "source"] and set(df["tag"]) <= {"[P]", "[S]", "[S2]", "[UNCONFIRMED]"}
    assert paper_table("glyphs").empty
