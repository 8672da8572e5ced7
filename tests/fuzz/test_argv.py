"""Every verb, with argument vectors mutated from a valid call (tests/fuzz/argv.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz.argv import MUTATIONS, argv_cases, resolve, verbs
from tests.fuzz.harness import Case


@pytest.mark.parametrize("mutation", list(MUTATIONS))
@pytest.mark.parametrize("verb", verbs())
def test_mutated_arguments_keep_the_contract(verb: str, mutation: str, template: Path,
                                             budget: dict[str, settings]) -> None:
    @settings(budget["argv"], max_examples=budget["argv"].max_examples * MUTATIONS[mutation])
    @given(st.data())
    def run(data: st.DataObject) -> None:
        what, argv = data.draw(argv_cases(verb, mutation), label="argv")
        with Case(template) as case:
            outcome = case.run(resolve(argv, case.inp("").rstrip("/"),
                                       case.out("").rstrip("/")), what)
            case.check(outcome)

    run()
