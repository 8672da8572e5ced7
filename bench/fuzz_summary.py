"""The fuzzing suite's record as a table: how many cases of each kind ran and how they ended.

    python bench/fuzz_summary.py                      # the CI budget (fixed seed, ~5 min)
    python bench/fuzz_summary.py --long               # the soak: fresh seeds, hours
    python bench/fuzz_summary.py --markdown out.md

Runs ``pytest tests/fuzz`` (tests/fuzz: mutated command lines, models, .npz data sets,
calibration tables, qtables and recipes against every verb) in a subprocess and turns
its "lowbit fuzz cases" summary into one row per kind of case: runs, exits 0 (done),
1 (done, but a gate failed), 2 (refused in one line) and any other end. The suite itself
fails a case that prints a traceback, leaves a temporary file or changes an input; the
"pytest" line says whether every property held.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from provenance import header

CASE = re.compile(r"^(?P<kind>[\w ./-]+?): (?P<runs>\d+) \((?P<exits>[^)]*)\)$")


def summarise(output: str) -> tuple[list[tuple[str, int, dict[str, int]]], str]:
    """(kind, runs, {exit code: count}) per kind, and pytest's closing line."""
    rows, closing, inside = [], "", False
    for line in output.splitlines():
        if "lowbit fuzz cases" in line:
            inside = True
            continue
        if inside and line.startswith("total:"):
            inside = False
            continue
        match = CASE.match(line.strip()) if inside else None
        if match:
            exits = {}
            for part in match.group("exits").split(","):
                code, _, count = part.strip().removeprefix("exit ").partition(": ")
                if count:
                    exits[code] = int(count)
            rows.append((match.group("kind"), int(match.group("runs")), exits))
        if re.search(r"\d+ (passed|failed)", line):
            closing = line.strip("= ").strip()
    return rows, closing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--long", action="store_true",
                        help="the soak (pytest --fuzz-long: many examples, fresh seeds)")
    parser.add_argument("--markdown", type=Path, help="write the section to this file")
    args = parser.parse_args()
    command = [sys.executable, "-m", "pytest", "tests/fuzz", "-q", "-p", "no:cacheprovider",
               "-rN"] + (["--fuzz-long"] if args.long else [])
    started = time.monotonic()
    done = subprocess.run(command, cwd=BENCH.parent, capture_output=True, text=True,
                          check=False)
    seconds = time.monotonic() - started
    rows, closing = summarise(done.stdout)
    if not rows:
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
        raise SystemExit("no fuzz summary found in pytest's output")
    total = sum(r[1] for r in rows)
    lines = [header(), "",
             (f"{'Soak (fresh seeds)' if args.long else 'CI budget (fixed seed)'}: {total} "
              f"runs in {seconds / 60:.1f} min; pytest: {closing or 'no summary line'} "
              f"(exit {done.returncode})."), "",
             "| kind of case | runs | exit 0 | exit 1 | exit 2 | other exits |",
             "|---|---|---|---|---|---|"]
    for kind, runs, exits in rows:
        other = sum(n for code, n in exits.items() if code not in ("0", "1", "2"))
        lines.append(f"| {kind} | {runs} | {exits.get('0', 0)} | {exits.get('1', 0)} | "
                     f"{exits.get('2', 0)} | {other} |")
    failed = re.search(r"(\d+) failed", closing)
    lines += ["", "| pytest | properties failed | runs |", "|---|---|---|",
              f"| tests/fuzz | {failed.group(1) if failed else 0} | {total} |"]
    text = "\n".join(lines) + "\n"
    if args.markdown:
        args.markdown.write_text(text, encoding="utf-8")
    print(text)
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
