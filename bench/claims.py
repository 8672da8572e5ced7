"""Claims a benchmark section makes, checked against the tables of its result file.

    found = tables(Path("bench/results/int8_speed.md").read_text())
    claim = compare_rows("lowbit INT8 is at least as fast as ORT's at batch 32",
                         "b32 throughput img/s", {"precision": "lowbit INT8"},
                         {"precision": "ORT INT8"}, by="model")
    claim.check(found)          # [] when it holds, else what contradicts it

A claim is the sentence BENCHMARKS.md prints and the check that makes it true, so the
prose cannot drift from the numbers (bench/regenerate.py --check, tests/bench).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

Row = dict[str, str]


@dataclass(frozen=True)
class Table:
    """One markdown table of a result file: its column names, rows and the heading above it."""

    heading: str
    columns: tuple[str, ...]
    rows: tuple[Row, ...]

    def select(self, **where: str) -> list[Row]:
        """Rows whose cells equal ``where`` (column names with spaces: pass a dict via **)."""
        return [r for r in self.rows if all(r.get(k, "").strip() == v for k, v in where.items())]


def tables(text: str) -> list[Table]:
    """Every markdown table in ``text``, in order."""
    found: list[Table] = []
    heading, lines = "", text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if line.startswith("|") and i + 1 < len(lines) and \
                re.fullmatch(r"\|[\s:|-]+\|", lines[i + 1].strip()):
            columns = tuple(c.strip() for c in line.strip("|").split("|"))
            rows = []
            i += 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                rows.append(dict(zip(columns, cells, strict=False)))
                i += 1
            found.append(Table(heading, columns, tuple(rows)))
            continue
        i += 1
    return found


def ratio(cell: str) -> float | None:
    """The 'N.NNx' ratio in a cell ('98.37 (1.61x)' -> 1.61), else None."""
    match = re.search(r"(\d+(?:\.\d+)?)x\b", cell)
    return float(match.group(1)) if match else None


def second(cell: str) -> float | None:
    """The number after a '/' ('0.99777 / 27.8' -> 27.8: the SQNR of a 'cos / SQNR' cell)."""
    _, slash, rest = cell.partition("/")
    return number(rest) if slash else None


def number(cell: str) -> float | None:
    """The first number in a cell ('2.78x', '**0.9998**', '23.4 ms', '95.3 % [93, 97]')."""
    match = re.search(r"[-+]?\d+(?:,\d{3})*(?:\.\d+)?(?:[eE][-+]?\d+)?", cell.replace("−", "-"))
    return float(match.group().replace(",", "")) if match else None


@dataclass(frozen=True)
class Claim:
    """A sentence of the document and the check that makes it true of a table.

    ``check`` gets the section's tables and returns what contradicts the sentence
    (empty: the claim holds)."""

    text: str
    check: Callable[[list[Table]], list[str]]


def _pick(found: list[Table], heading: str | None, column: str, table: str | None
          ) -> list[Table]:
    """The tables with ``column`` (and the column ``table``, and ``heading`` in their heading)."""
    return [t for t in found if column in t.columns and (table is None or table in t.columns)
            and (heading is None or heading in t.heading)]


def compare_rows(text: str, column: str, better: dict[str, str], than: dict[str, str], *,
                 by: str | None = None, higher: bool = True, factor: float = 1.0,
                 heading: str | None = None, table: str | None = None,
                 value: Callable[[str], float | None] | None = None) -> Claim:
    """``better``'s ``column`` is at least (``higher``) / at most ``factor`` x ``than``'s, in
    every group of rows sharing the ``by`` column (e.g. each model) of every matching table."""

    def check(found: list[Table]) -> list[str]:
        problems, compared = [], 0
        for chosen in _pick(found, heading, column, table):
            groups = sorted({r.get(by, "") for r in chosen.rows}) if by else [""]
            for group in groups:
                rows = [r for r in chosen.rows if not by or r.get(by, "") == group]
                read = value or number
                a = [read(r[column]) for r in rows
                     if all(r.get(k, "").strip("* ") == v for k, v in better.items())]
                b = [read(r[column]) for r in rows
                     if all(r.get(k, "").strip("* ") == v for k, v in than.items())]
                if not a or not b or a[0] is None or b[0] is None:
                    continue
                compared += 1
                holds = a[0] >= factor * b[0] if higher else a[0] <= factor * b[0]
                if not holds:
                    problems.append(f"{group or 'table'}: {column} {a[0]:g} vs {b[0]:g}")
        if not compared:
            problems.append(f"no table with column {column!r} holds both rows")
        return problems

    return Claim(text, check)


def every_row(text: str, column: str, minimum: float | None = None,
              maximum: float | None = None, *, where: dict[str, str] | None = None,
              heading: str | None = None, table: str | None = None,
              value: Callable[[str], float | None] | None = None) -> Claim:
    """Every row (matching ``where``) of every table with ``column`` lies in [minimum, maximum]."""

    def check(found: list[Table]) -> list[str]:
        problems, seen = [], 0
        for chosen in _pick(found, heading, column, table):
            for row in chosen.rows:
                if where and not all(row.get(k, "").strip("* ") == v for k, v in where.items()):
                    continue
                found_value = (value or number)(row.get(column, ""))
                if found_value is None:
                    continue
                seen += 1
                if (minimum is not None and found_value < minimum) or \
                        (maximum is not None and found_value > maximum):
                    label = " / ".join(row[c] for c in chosen.columns[:2])
                    problems.append(f"{label}: {column} = {found_value:g}")
        if not seen:
            problems.append(f"no row has a number in column {column!r}")
        return problems

    return Claim(text, check)


def best_row(text: str, column: str, label: str, expected: str, *, among: str = "",
             higher: bool = True) -> Claim:
    """Of the rows whose ``label`` cell starts with ``among``, the one with the highest (or
    lowest) ``column`` is ``expected``, in every table that has both columns."""

    def check(found: list[Table]) -> list[str]:
        problems, seen = [], 0
        for chosen in _pick(found, None, column, label):
            rows = [(number(r.get(column, "")), r[label].strip("* ")) for r in chosen.rows
                    if r.get(label, "").strip("* ").startswith(among)]
            rows = [(v, name) for v, name in rows if v is not None]
            if not rows:
                continue
            seen += 1
            value = max(v for v, _ in rows) if higher else min(v for v, _ in rows)
            winners = sorted(n for v, n in rows if v == value)
            if expected not in winners:
                problems.append(f"best {column} is {', '.join(winners)} ({value:g}), "
                                f"not {expected}")
        if not seen:
            problems.append(f"no table with columns {column!r} and {label!r}")
        return problems

    return Claim(text, check)


def every_cell(text: str, column: str, expected: str) -> Claim:
    """Every row of every table with ``column`` says ``expected`` there (bold ignored)."""

    def check(found: list[Table]) -> list[str]:
        chosen = _pick(found, None, column, None)
        problems = [f"{' / '.join(r[c] for c in t.columns[:1])}: {column} = {r[column]}"
                    for t in chosen for r in t.rows
                    if r.get(column, "").strip("* ") != expected]
        if not any(t.rows for t in chosen):
            problems.append(f"no row in a table with column {column!r}")
        return problems

    return Claim(text, check)
