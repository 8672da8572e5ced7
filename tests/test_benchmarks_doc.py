"""BENCHMARKS.md is what bench/regenerate.py writes, and every claim in it holds.

No benchmark runs here: the result files in bench/results/ are read as they are. A prose
claim that a table contradicts, a hand edit of BENCHMARKS.md, a result file without its
provenance or with a command other than its section's, or a stray result file fails.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import claims
import regenerate
from sections import SECTIONS, TOPICS

TABLE = """### speed

| model | precision | b1 median ms | b32 throughput img/s |
|---|---|---|---|
| resnet18 | lowbit INT8 | 23.4 | 171.4 |
| resnet18 | ORT INT8 | 21.7 | 171.4 |
| mobilenet_v2 | lowbit INT8 | **7.65** | 285.7 |
| mobilenet_v2 | ORT INT8 | 8.53 | 276.4 |
"""


def test_every_claim_holds_against_its_sections_tables():
    assert regenerate.check(SECTIONS) == []


def test_the_document_is_the_regenerated_one_not_an_edited_one():
    written = (BENCH.parent / "BENCHMARKS.md").read_text(encoding="utf-8")
    assert written == regenerate.document(SECTIONS), \
        "BENCHMARKS.md differs from bench/results/: run python bench/regenerate.py --assemble"


def test_every_result_file_states_its_provenance_and_its_sections_command():
    for section in SECTIONS:
        facts = regenerate._provenance(section.result.read_text(encoding="utf-8"))
        assert {"command", "commit", "date"} <= set(facts), section.id
        if "legacy" not in facts["commit"]:
            assert shlex.split(facts["command"])[1:len(section.command) + 1] == \
                list(section.command), section.id


def test_every_result_file_belongs_to_a_section_and_every_section_to_a_topic():
    files = {p.stem for p in (BENCH / "results").glob("*.md")}
    assert files == {s.id for s in SECTIONS}
    assert {s.topic for s in SECTIONS} <= set(TOPICS)
    assert len({s.id for s in SECTIONS}) == len(SECTIONS)


def test_tables_and_numbers_are_read_as_written():
    (table,) = claims.tables(TABLE)
    assert table.heading == "speed" and len(table.rows) == 4
    assert table.select(model="mobilenet_v2", precision="ORT INT8")[0]["b1 median ms"] == "8.53"
    assert [claims.number(c) for c in ("**7.65**", "2.78x", "95.3 % [93, 97]", "1,024 MB",
                                       "−0.5 dB", "1e-05", "-")] == \
        [7.65, 2.78, 95.3, 1024.0, -0.5, 1e-05, None]


def test_a_claim_the_table_contradicts_fails_and_names_the_rows():
    found = claims.tables(TABLE)
    equal_or_above = claims.compare_rows(
        "lowbit's INT8 is as fast as ORT's at batch 1", "b1 median ms",
        {"precision": "lowbit INT8"}, {"precision": "ORT INT8"}, by="model", higher=False)
    problems = equal_or_above.check(found)
    assert len(problems) == 1 and "resnet18" in problems[0] and "23.4" in problems[0]
    within = claims.compare_rows(
        "within 10 %", "b1 median ms", {"precision": "lowbit INT8"},
        {"precision": "ORT INT8"}, by="model", higher=False, factor=1.1)
    assert within.check(found) == []
    assert claims.every_row("b32 at least 200", "b32 throughput img/s", minimum=200
                            ).check(found) == [
        "resnet18 / lowbit INT8: b32 throughput img/s = 171.4",
        "resnet18 / ORT INT8: b32 throughput img/s = 171.4"]


@pytest.mark.parametrize("column", ["no such column"])
def test_a_claim_on_a_missing_column_fails_rather_than_holding_vacuously(column):
    found = claims.tables(TABLE)
    assert claims.every_row("x", column, maximum=1).check(found)
    assert claims.compare_rows("x", column, {"precision": "lowbit INT8"},
                               {"precision": "ORT INT8"}).check(found)


def test_best_row_names_the_row_that_really_is_best():
    found = claims.tables("| variant | cos |\n|---|---|\n| float | 1.0 |\n| smooth-0.7 | 0.9980 |\n"
                          "| smooth-0.8 | 0.9982 |\n| smooth-0.9 | 0.9981 |\n")
    assert claims.best_row("0.8 is best", "cos", "variant", "smooth-0.8", among="smooth-"
                           ).check(found) == []
    assert claims.best_row("0.9 is best", "cos", "variant", "smooth-0.9", among="smooth-"
                           ).check(found) == ["best cos is smooth-0.8 (0.9982), not smooth-0.9"]
    assert claims.best_row("float is best overall", "cos", "variant", "float").check(found) == []


def test_every_cell_fails_on_a_row_that_says_otherwise():
    found = claims.tables("| mutant | result |\n|---|---|\n| a | **killed** |\n| b | survived |\n")
    assert claims.every_cell("all killed", "result", "killed").check(found) == \
        ["b: result = survived"]
    assert claims.every_cell("all killed", "result", "killed").check(found[:0])
