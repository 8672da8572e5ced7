"""The fuzzing suite's budget and shared files.

CI runs a fixed seed and a small example budget (derandomized hypothesis, a few cases per
property: under two minutes on two cores); ``pytest tests/fuzz --fuzz-long`` soaks with
many examples and a fresh seed each run. The template (a tiny model and every stage's
file, tests/fuzz/harness.py) is built once per session and copied for each case.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.fuzz.harness import TRIED, build_template

CI_EXAMPLES = {"argv": 2, "onnx": 50, "npz": 36, "table": 36}
LONG_EXAMPLES = 100  # per property (an argv mutation: times its weight): hours


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield build_template(tmp_path_factory.mktemp("fuzz-template"))


@pytest.fixture(scope="session")
def budget(request: pytest.FixtureRequest) -> dict[str, settings]:
    """Hypothesis settings per kind of fuzz case."""
    long = bool(request.config.getoption("--fuzz-long"))
    common = {"deadline": None, "database": None, "derandomize": not long,
              "suppress_health_check": list(HealthCheck), "print_blob": True}
    return {kind: settings(max_examples=LONG_EXAMPLES if long else count, **common)
            for kind, count in CI_EXAMPLES.items()}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TRIED:
        return
    kinds = sorted(k for k in TRIED if " exit " not in k)
    terminalreporter.section("lowbit fuzz cases")
    for kind in kinds:
        exits = ", ".join(f"exit {k.rsplit(' ', 1)[1]}: {n}" for k, n in sorted(TRIED.items())
                          if k.startswith(f"{kind} exit "))
        terminalreporter.write_line(f"{kind}: {TRIED[kind]} ({exits})")
    terminalreporter.write_line(f"total: {sum(TRIED[k] for k in kinds)} runs")
