"""eliminate_common_subexpressions alone."""

from __future__ import annotations

import numpy as np
from onnx import helper

from tests.models import init, make_model
from tests.passes.checks import assert_invariants, assert_same_outputs, ops, run_pass
from tests.passes.zoo import vi

X = {"x": np.random.default_rng(4).normal(size=(2, 4)).astype(np.float32)}


def test_a_duplicated_chain_is_computed_once() -> None:
    model = make_model([helper.make_node("Relu", ["x"], ["r1"]),
                        helper.make_node("Mul", ["r1", "k"], ["m1"]),
                        helper.make_node("Relu", ["x"], ["r2"]),
                        helper.make_node("Mul", ["r2", "k"], ["m2"]),
                        helper.make_node("Sub", ["m1", "m2"], ["y"])],
                       [vi("x", ["N", 4])], [vi("y", ["N", 4])],
                       [init("k", np.full(4, 3.0, np.float32))])
    out, count = run_pass(model, "eliminate_common_subexpressions")
    assert count == 2 and ops(out) == ["Relu", "Mul", "Sub"]
    assert list(out.graph.node[-1].input) == ["m1", "m1"]
    assert_invariants(out)
    assert_same_outputs(model, out, X)


def test_different_attributes_or_weights_are_not_merged() -> None:
    model = make_model([helper.make_node("LeakyRelu", ["x"], ["a"], alpha=0.1),
                        helper.make_node("LeakyRelu", ["x"], ["b"], alpha=0.2),
                        helper.make_node("Add", ["x", "k1"], ["c"]),
                        helper.make_node("Add", ["x", "k2"], ["d"]),  # equal values, own weight
                        helper.make_node("Sum", ["a", "b", "c", "d"], ["y"])],
                       [vi("x", ["N", 4])], [vi("y", ["N", 4])],
                       [init("k1", np.ones(4, np.float32)), init("k2", np.ones(4, np.float32))])
    out, count = run_pass(model, "eliminate_common_subexpressions")
    assert count == 0 and len(out.graph.node) == 5


def test_duplicates_that_are_both_graph_outputs_keep_both_names() -> None:
    model = make_model([helper.make_node("Relu", ["x"], ["y1"]),
                        helper.make_node("Relu", ["x"], ["y2"])],
                       [vi("x", ["N", 4])], [vi("y1", ["N", 4]), vi("y2", ["N", 4])], [])
    out, _ = run_pass(model, "eliminate_common_subexpressions")
    assert [o.name for o in out.graph.output] == ["y1", "y2"]
    assert_same_outputs(model, out, X)
