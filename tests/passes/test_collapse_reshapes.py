"""collapse_reshapes alone: chains, same-shape Reshapes, and what must stay."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from tests.models import init, make_model
from tests.passes.checks import assert_invariants, assert_same_outputs, ops, run_pass
from tests.passes.zoo import vi

X = {"x": np.random.default_rng(1).normal(size=(2, 3, 4)).astype(np.float32)}


def _reshapes(*shapes: list[int], x_shape: list[int | str] | None = None,
              out_shape: list[int | str] | None = None):  # type: ignore[no-untyped-def]
    nodes, inits, prev = [], [], "x"
    for i, shape in enumerate(shapes):
        inits.append(init(f"s{i}", np.asarray(shape, np.int64)))
        out = "y" if i == len(shapes) - 1 else f"r{i}"
        nodes.append(helper.make_node("Reshape", [prev, f"s{i}"], [out], name=f"reshape{i}"))
        prev = out
    return make_model(nodes, [vi("x", x_shape or [2, 3, 4])], [vi("y", out_shape or [6, 4])],
                      inits)


def test_a_chain_becomes_one_reshape() -> None:
    model = _reshapes([6, 4], [2, 12], [24], [6, 4])
    out, count = run_pass(model, "collapse_reshapes")
    assert count == 3 and ops(out) == ["Reshape"]
    assert_invariants(out)
    assert_same_outputs(model, out, X)


def test_a_zero_in_the_outer_shape_keeps_the_chain() -> None:
    # the outer 0 copies the inner result's dim 0 (6), not x's (2)
    model = _reshapes([6, 4], [0, 2, -1], out_shape=[6, 2, 2])
    out, count = run_pass(model, "collapse_reshapes")
    assert count == 0 and ops(out) == ["Reshape", "Reshape"]
    assert_same_outputs(model, out, X)


@pytest.mark.parametrize("shape", [[2, 3, 4], [0, 3, -1], [0, 0, 0], [-1, 3, 4]])
def test_reshape_to_the_inputs_own_shape_is_removed(shape: list[int]) -> None:
    model = make_model([helper.make_node("Reshape", ["x", "s"], ["r"]),
                        helper.make_node("Relu", ["r"], ["y"])],
                       [vi("x", [2, 3, 4])], [vi("y", [2, 3, 4])],
                       [init("s", np.asarray(shape, np.int64))])
    out, count = run_pass(model, "collapse_reshapes")
    assert count == 1 and ops(out) == ["Relu"]
    assert_same_outputs(model, out, X)


def test_reshape_of_a_dynamic_dim_copied_by_zero_is_removed_but_not_a_real_one() -> None:
    model = make_model([helper.make_node("Reshape", ["x", "same"], ["r"]),
                        helper.make_node("Reshape", ["r", "other"], ["y"])],
                       [vi("x", ["N", 3, 4])], [vi("y", ["N", 12])],
                       [init("same", np.asarray([0, 3, 4], np.int64)),
                        init("other", np.asarray([0, 12], np.int64))])
    out, count = run_pass(model, "collapse_reshapes")
    assert count == 1 and ops(out) == ["Reshape"]
    assert_same_outputs(model, out, X)
