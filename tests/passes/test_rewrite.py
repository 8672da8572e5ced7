"""The rewrite driver: matching, replacement order and names, dead-node clean-up, settling."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from onnx import helper

from lowbit.errors import ModelError
from lowbit.passes.finish import finish
from lowbit.passes.rewrite import Match, Op, Replacement, Rule, apply_rules, constant
from tests.models import init, make_model
from tests.passes.checks import assert_invariants, assert_same_outputs, ops
from tests.passes.zoo import vi


def _chain(*op_types: str, graph_output_inner: bool = False) -> ir.Model:
    nodes, prev = [], "x"
    for i, op in enumerate(op_types):
        nodes.append(helper.make_node(op, [prev], [f"v{i}"], name=f"n{i}"))
        prev = f"v{i}"
    outputs = [vi(prev, ["N", 4])] + ([vi("v0", ["N", 4])] if graph_output_inner else [])
    return ir.from_proto(make_model(nodes, [vi("x", ["N", 4])], outputs, []))


def _neg_neg(m: Match) -> Replacement | None:
    inner = m["inner"].inputs[0]
    return None if inner is None else Replacement(((m.root.outputs[0], inner),))


NEG_NEG = Rule(Op("Neg", inputs={0: Op("Neg", name="inner")}), _neg_neg)


def test_pattern_matches_op_types_and_producers() -> None:
    model = _chain("Relu", "Neg", "Neg")
    relu, neg1, neg2 = list(model.graph)
    assert Op("Neg").match(relu) is None
    match = NEG_NEG.pattern.match(neg2)
    assert match is not None and match["inner"] is neg1 and match.root is neg2
    assert NEG_NEG.pattern.match(neg1) is None  # its producer is a Relu
    assert Op("Relu", "Sigmoid").match(relu) is not None


def test_exclusive_sub_pattern_needs_a_single_reader() -> None:
    model = _chain("Neg", "Neg", graph_output_inner=True)  # v0 is also a graph output
    neg2 = list(model.graph)[1]
    assert NEG_NEG.pattern.match(neg2) is None
    shared = Op("Neg", inputs={0: Op("Neg", name="inner", exclusive=False)})
    assert shared.match(neg2) is not None


def test_rules_apply_until_nothing_changes_and_names_are_kept() -> None:
    proto = make_model([helper.make_node("Relu", ["x"], ["r"], name="relu")]
                       + [helper.make_node("Neg", [a], [b], name=f"neg{i}")
                          for i, (a, b) in enumerate([("r", "a"), ("a", "b"), ("b", "c"),
                                                      ("c", "y")])],
                       [vi("x", ["N", 4])], [vi("y", ["N", 4])], [])
    model = ir.from_proto(proto)
    assert apply_rules(model, [NEG_NEG]) == 2
    out = finish(model)
    assert ops(out) == ["Relu"]
    assert [o.name for o in out.graph.output] == ["y"]  # the Relu's output took the name
    assert_same_outputs(proto, out, {"x": np.arange(8, dtype=np.float32).reshape(2, 4) - 4})


def test_a_rule_returning_none_leaves_the_graph_alone() -> None:
    model = _chain("Neg", "Neg")
    assert apply_rules(model, [Rule(NEG_NEG.pattern, lambda m: None)]) == 0
    assert [n.op_type for n in model.graph] == ["Neg", "Neg"]


def test_a_replacement_that_would_rename_a_graph_input_is_refused() -> None:
    model = _chain("Neg", "Neg")  # y = Neg(Neg(x)): x cannot become "v1"
    assert apply_rules(model, [NEG_NEG]) == 0
    assert len(model.graph) == 2


def test_created_nodes_go_before_the_replaced_node_and_take_its_output_name() -> None:
    def relu_to_max(m: Match) -> Replacement:
        graph = m.graph
        zero = ir.Value(name="zero", shape=ir.Shape([]), type=ir.TensorType(ir.DataType.FLOAT),
                        const_value=ir.tensor(np.float32(0), name="zero"))
        graph.register_initializer(zero)
        node = ir.Node("", "Max", [m.root.inputs[0], zero], name="max")
        return Replacement.outputs(m.root, node.outputs, [node])

    proto = make_model([helper.make_node("Neg", ["x"], ["n"], name="neg"),
                        helper.make_node("Relu", ["n"], ["r"], name="relu"),
                        helper.make_node("Sigmoid", ["r"], ["y"], name="sigmoid")],
                       [vi("x", ["N", 4])], [vi("y", ["N", 4])], [])
    model = ir.from_proto(proto)
    assert apply_rules(model, [Rule(Op("Relu"), relu_to_max)]) == 1
    out = finish(model)
    assert ops(out) == ["Neg", "Max", "Sigmoid"]
    assert out.graph.node[1].output[0] == "r"
    assert_invariants(out)
    assert_same_outputs(proto, out, {"x": np.linspace(-2, 2, 8, dtype=np.float32).reshape(2, 4)})


def test_initializers_only_removed_nodes_read_are_dropped() -> None:
    proto = make_model([helper.make_node("Add", ["x", "c"], ["a"], name="add"),
                        helper.make_node("Identity", ["a"], ["y"], name="id")],
                       [vi("x", ["N", 4])], [vi("y", ["N", 4])],
                       [init("c", np.ones(4, np.float32)), init("unused", np.ones(1))])

    def drop_add(m: Match) -> Replacement | None:
        return Replacement(((m.root.outputs[0], m.root.inputs[0]),))  # type: ignore[arg-type]

    model = ir.from_proto(proto)
    apply_rules(model, [Rule(Op("Add"), drop_add)])
    assert "c" not in model.graph.initializers
    assert "unused" in model.graph.initializers  # not the rewrite's to remove


def test_rules_that_undo_each_other_raise_a_model_error() -> None:
    def swap(to: str) -> Rule:
        def rewrite(m: Match) -> Replacement:
            node = ir.Node("", to, [m.root.inputs[0]], name=m.root.name)
            return Replacement.outputs(m.root, node.outputs, [node])
        return Rule(Op("Relu" if to == "Neg" else "Neg"), rewrite)

    model = _chain("Relu", "Sigmoid")
    with pytest.raises(ModelError, match="did not settle"):
        apply_rules(model, [swap("Neg"), swap("Relu")], max_rounds=5)


def test_constant_reads_initializers_and_constant_nodes() -> None:
    proto = make_model([helper.make_node("Constant", [], ["k"], name="k",
                                         value=helper.make_tensor("k", 1, [2], [1.0, 2.0])),
                        helper.make_node("Add", ["x", "k"], ["a"], name="add"),
                        helper.make_node("Mul", ["a", "w"], ["y"], name="mul")],
                       [vi("x", ["N", 2])], [vi("y", ["N", 2])],
                       [init("w", np.array([3.0, 4.0], np.float32))])
    model = ir.from_proto(proto)
    add, mul = list(model.graph)[1:]
    np.testing.assert_array_equal(constant(add.inputs[1]), [1.0, 2.0])
    np.testing.assert_array_equal(constant(mul.inputs[1]), [3.0, 4.0])
    assert constant(add.inputs[0]) is None
