"""Every registered pass on every zoo model: same outputs, invariants hold.

A pass registered later is covered here automatically.
"""

from __future__ import annotations

import pytest

from lowbit.passes import DEFAULT_PASSES, list_passes, optimize
from tests.passes.checks import assert_invariants, assert_same_outputs, run_pass
from tests.passes.zoo import ZOO

PASSES = [p.name for p in list_passes()]


@pytest.mark.parametrize("model_name", sorted(ZOO))
def test_zoo_models_are_valid(model_name: str) -> None:
    model, _ = ZOO[model_name]()
    assert_invariants(model)


@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("model_name", sorted(ZOO))
def test_pass_keeps_the_function(pass_name: str, model_name: str) -> None:
    model, feeds = ZOO[model_name]()
    rewritten, count = run_pass(model, pass_name)
    assert count >= 0
    assert_invariants(rewritten)
    assert_same_outputs(model, rewritten, feeds)


@pytest.mark.parametrize("passes", [None, PASSES], ids=["default", "all"])
@pytest.mark.parametrize("model_name", sorted(ZOO))
def test_optimize_keeps_the_function_and_never_adds_nodes(passes: list[str] | None,
                                                          model_name: str) -> None:
    model, feeds = ZOO[model_name]()
    result = optimize(model, passes)
    assert [s.name for s in result.steps] == list(passes or DEFAULT_PASSES)
    assert result.nodes_after <= len(model.graph.node)
    for before, after in zip(result.steps, result.steps[1:], strict=False):
        assert after.nodes_before == before.nodes_after
    assert_invariants(result.model)
    assert_same_outputs(model, result.model, feeds)
