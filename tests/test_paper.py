"""mslib.paper holds exactly the published numbers of the book's *Sources* page (book/sources.md), with their tags.

The page is part of the repository, so this test never skips: a missing page, section, table or row fails it.
Tables are parsed from the Markdown itself (one table per ``###`` heading inside a ``(src-...)=`` section).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from mslib.paper import (
    DEVIATIONS,
    PAPER_RESULTS,
    PAPER_TABLE1,
    PAPER_TABLE1_TAG,
    REALITY_CHECK,
    TAGS,
    XBM_RESULTS,
    Deviation,
    PaperResult,
    deviations_table,
    paper_row,
    paper_table,
)

SOURCES = Path(__file__).resolve().parent.parent / "book" / "sources.md"
RESULT_HEADINGS = {"cub200": "CUB-200-2011 (paper)", "cars196": "Cars-196 (paper)",
                   "sop": "Stanford Online Products (paper)", "inshop": "In-Shop (paper)"}
RC_HEADINGS = {"cub200": "CUB-200-2011 (Reality Check)", "cars196": "Cars-196 (Reality Check)"}
RC_COLUMNS = {"R@1": "P@1", "RP": "RP", "MAP@R": "MAP@R"}


def _page() -> str:
    assert SOURCES.is_file(), "book/sources.md is missing: the published numbers have no source"
    return SOURCES.read_text(encoding="utf-8")


def _section(label: str) -> str:
    """The text of one ``(label)=`` section, up to the next label."""
    parts = re.split(r"^\((src-[a-z0-9-]+)\)=\s*$", _page(), flags=re.M)
    sections = dict(zip(parts[1::2], parts[2::2], strict=True))
    assert label in sections, f"book/sources.md has no ({label})= section; it has {sorted(sections)}"
    return sections[label]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _tables(text: str) -> dict[str, list[dict[str, str]]]:
    """Markdown tables keyed by the nearest ``###`` heading above them ('' before any heading)."""
    tables: dict[str, list[dict[str, str]]] = {}
    heading, lines = "", text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("### "):
            heading = lines[i][4:].strip()
        if lines[i].startswith("|") and i + 1 < len(lines) and re.match(r"^\|[-| ]+\|$", lines[i + 1].strip()):
            header = _cells(lines[i])
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(dict(zip(header, _cells(lines[i]), strict=True)))
                i += 1
            assert heading not in tables, f"two tables under the heading {heading!r}"
            tables[heading] = rows
            continue
        i += 1
    return tables


def _table(label: str, heading: str) -> list[dict[str, str]]:
    tables = _tables(_section(label))
    assert heading in tables, f"section {label} has no table under '### {heading}' (has {sorted(tables)})"
    return tables[heading]


def _dim(row: PaperResult) -> str:
    return "–" if row.dim is None else str(row.dim)


def _number(cell: str) -> float:
    return float(cell.replace("−", "-"))


@pytest.mark.parametrize("row", PAPER_RESULTS, ids=lambda r: f"{r.method}-{r.dataset}-{r.dim}")
def test_every_published_value_is_in_its_row_with_its_tag(row: PaperResult) -> None:
    label = "src-results-cub-cars" if row.dataset in ("cub200", "cars196") else "src-results-sop-inshop"
    table = _table(label, RESULT_HEADINGS[row.dataset])
    matches = [r for r in table if r["Method"] == row.method and r["Dim"] == _dim(row)]
    assert len(matches) == 1, f"{row.method} (dim {_dim(row)}) has {len(matches)} rows in {row.dataset}'s table"
    page_row = matches[0]
    assert page_row["Tag"] == row.tag, f"{row.method}/{row.dataset}: tag {row.tag} here, {page_row['Tag']} on the page"
    for key, value in row.metrics.items():
        assert key in page_row, f"{row.dataset}'s table has no column {key}"
        assert _number(page_row[key]) == value, f"{row.method}/{row.dataset} {key}: {value} != {page_row[key]}"


@pytest.mark.parametrize("row", REALITY_CHECK, ids=lambda r: f"{r.method}-{r.dataset}-{r.dim}")
def test_every_reality_check_value_is_in_its_row_with_its_tag(row: PaperResult) -> None:
    table = _table("src-reality-check", RC_HEADINGS[row.dataset])
    matches = [r for r in table if r["Method"] == row.method]
    assert len(matches) == 1, f"{row.method} has {len(matches)} rows in the Reality Check's {row.dataset} table"
    assert matches[0]["Tag"] == row.tag
    for key, value in row.metrics.items():
        cell = matches[0][f"{row.dim}-d {RC_COLUMNS[key]}"]
        assert math.isclose(_number(cell), value), f"{row.method}/{row.dataset}/{row.dim} {key}: {value} != {cell}"


def test_table1_matches_the_page() -> None:
    table = {r["mslib name"].strip("`"): r for r in _table("src-table1", "")}
    assert set(table) == set(PAPER_TABLE1), f"page rows {sorted(table)} != PAPER_TABLE1 {sorted(PAPER_TABLE1)}"
    for loss, marks in PAPER_TABLE1.items():
        assert table[loss]["Tag"] == PAPER_TABLE1_TAG, loss
        for column, value in marks.items():
            assert table[loss][column] in ("yes", "no"), f"{loss} {column}: {table[loss][column]!r}"
            assert (table[loss][column] == "yes") == value, f"{loss} {column}: {value} here, {table[loss][column]}"


def test_tags_are_the_pages_tags() -> None:
    legend = _tables(_page().split("(src-paper)=")[0])[""]
    assert {r["Tag"].strip("*") for r in legend} == set(TAGS)


def test_the_parser_notices_a_changed_value() -> None:
    """The checks above could fail: a row whose value differs from the page is caught."""
    table = _table("src-results-cub-cars", RESULT_HEADINGS["cub200"])
    ms = next(r for r in table if r["Method"] == "MS" and r["Dim"] == "512")
    assert _number(ms["R@1"]) == 65.7
    assert _number(ms["R@1"]) != 65.8


def test_headline_rows() -> None:
    cub = paper_row("cub200", 512)
    assert cub is not None and cub.metrics["R@1"] == 65.7 and cub.tag == "[P]"
    cars = paper_row("cars196", 512)
    assert cars is not None and cars.metrics["R@1"] == 84.1 and cars.tag == "[S2]"
    assert "R@16" not in cars.metrics, "Cars R@16 is unconfirmed: it must stay absent"
    assert paper_row("cars196", 64) is None, "MS^64 on Cars is unconfirmed: no row"
    assert paper_row("glyphs", 64) is None


def test_paper_table_shape_and_labels() -> None:
    df = paper_table("cub200", 512)
    assert list(df.index)[0] == "MS^512"
    assert list(df.columns[-2:]) == ["tag", "source"] and set(df["tag"]) <= set(TAGS)
    assert paper_table("glyphs").empty


def test_bad_tag_is_rejected() -> None:
    with pytest.raises(ValueError, match="tag"):
        PaperResult("MS", "cub200", 512, {"R@1": 1.0}, "[X]", "nowhere")


SETTINGS = {"freeze_bn": True, "amp": "bf16", "channels_last": True}


@pytest.mark.parametrize("row", DEVIATIONS, ids=lambda r: r.topic)
def test_every_number_of_a_deviation_is_in_its_sources(row: Deviation) -> None:
    official = deviations_table(SETTINGS, (row,)).loc[row.topic, "official code"]
    assert "{" not in official and row.sources
    cited = " ".join(_section(label) for label in row.sources)
    page_numbers = set(re.findall(r"\d+(?:\.\d+)?", cited))
    for number in re.findall(r"\d+(?:\.\d+)?", official):
        assert number in page_numbers, f"{row.topic}: {number} is in no section of {row.sources}"


def test_deviations_table_fills_settings_and_names_a_missing_one() -> None:
    df = deviations_table(SETTINGS)
    assert list(df.columns) == ["official code", "this book", "sources"] and len(df) == len(DEVIATIONS)
    assert "amp: bf16" in df.loc["Numerical precision", "this book"]
    assert "beta = 40" in df.loc["Hyperparameters", "official code"]
    assert "beta = 50" in df.loc["Hyperparameters", "official code"]
    assert not df.map(lambda v: "{" in v and "{ref}" not in v).any().any()
    with pytest.raises(KeyError, match="amp"):
        deviations_table({"freeze_bn": True, "channels_last": True})


def test_datasets_beside_a_run() -> None:
    from mslib.paper import datasets_beside

    assert datasets_beside("sop") == ["sop"] and datasets_beside("cub200") == ["cub200"]
    assert datasets_beside("glyphs") == ["cub200", "cars196"]


def test_published_recall_formats_the_chosen_rows_and_ks() -> None:
    from mslib.paper import published_recall

    table = published_recall(["cub200", "cars196"], [1, 4, 16])
    assert list(table.columns) == ["dataset", "R@1", "R@4", "R@16", "tag", "source"]
    expected = [(f"{r.method}^{r.dim}" if r.dim else r.method, r.dataset) for d in ("cub200", "cars196")
                for r in PAPER_RESULTS if r.dataset == d and r.method.startswith(("MS", "HTL", "A-BIER"))]
    assert list(zip(table.index, table["dataset"], strict=True)) == expected  # every row, dataset by dataset
    ms = paper_row("cub200", 512)
    row = table[(table.index == "MS^512") & (table["dataset"] == "cub200")].iloc[0]
    for k in (1, 4, 16):
        value = ms.metrics.get(f"R@{k}")
        assert row[f"R@{k}"] == ("–" if value is None else f"{value:.1f}")
    assert row["tag"] == ms.tag


def test_reality_check_r1_reads_the_row_or_names_what_exists() -> None:
    from mslib.paper import reality_check_r1

    assert reality_check_r1("MS+Miner", "cub200", 512) == 67.73  # book/sources.md#src-reality-check
    with pytest.raises(KeyError, match="no Reality Check row for MS/sop/512"):
        reality_check_r1("MS", "sop", 512)


_XBM_COLUMNS = {"cub200": "CUB R@1/2/4", "cars196": "Cars R@1/2/4", "sop": "SOP R@1/10/100",
                "inshop": "In-Shop R@1/10/20"}


@pytest.mark.parametrize("row", XBM_RESULTS, ids=lambda r: f"{r.dataset}-{r.dim}")
def test_every_xbm_value_is_in_the_sources_page_with_its_tag(row: PaperResult) -> None:
    tables = _tables(_section("src-xbm"))
    assert len(tables) == 1, f"src-xbm should hold one table, has {sorted(tables)}"
    (table,) = tables.values()
    backbone = "BN-Inception" if row.note == "BN-Inception" else "ResNet-50"
    matches = [r for r in table if r["Setting"].startswith(f"Contrastive + memory, {backbone}, {row.dim}-d")]
    assert len(matches) == 1, f"{row.method} {backbone} {row.dim}-d: {len(matches)} rows on the page"
    assert matches[0]["Tag"] == row.tag
    page = [_number(v) for v in matches[0][_XBM_COLUMNS[row.dataset]].split(" / ")]
    assert page == list(row.metrics.values()), f"{row.dataset}: {row.metrics} != {page}"
    assert all(k.startswith("R@") for k in row.metrics)
