"""fold_constants, lift_constants and remove_dead_nodes, each alone."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from tests.models import init, make_model
from tests.passes.checks import assert_invariants, assert_same_outputs, ops, run_pass
from tests.passes.zoo import shape_subgraph, vi

X = {"x": np.random.default_rng(3).normal(size=(2, 4)).astype(np.float32)}


def test_a_static_shape_chain_folds_into_a_constant_reshape() -> None:
    model, feeds = shape_subgraph()
    out, count = run_pass(model, "fold_constants")
    assert count >= 5
    assert not {"Shape", "Gather", "Unsqueeze", "Constant"} & set(ops(out))
    first = out.graph.node[0]
    assert first.op_type == "Reshape"
    assert first.input[1] in {i.name for i in out.graph.initializer}
    assert_invariants(out)
    assert_same_outputs(model, out, feeds)


def test_constant_arithmetic_on_weights_folds() -> None:
    model = make_model([helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0]),
                        helper.make_node("Mul", ["wt", "half"], ["ws"]),
                        helper.make_node("MatMul", ["x", "ws"], ["y"])],
                       [vi("x", ["N", 4])], [vi("y", ["N", 3])],
                       [init("w", np.arange(12, dtype=np.float32).reshape(3, 4)),
                        init("half", np.float32(0.5))])
    out, count = run_pass(model, "fold_constants")
    assert count == 2 and ops(out) == ["MatMul"]
    assert_same_outputs(model, out, X)


def test_a_dynamic_batch_is_not_folded() -> None:
    model = make_model([helper.make_node("Shape", ["x"], ["s"]),
                        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
                        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
                        helper.make_node("Concat", ["n1", "rest"], ["shape"], axis=0),
                        helper.make_node("Reshape", ["x", "shape"], ["y"])],
                       [vi("x", ["N", 4])], [vi("y", ["N", 2, 2])],
                       [init("zero", np.array(0, np.int64)), init("axes", np.array([0])),
                        init("rest", np.array([2, 2]))])
    out, _ = run_pass(model, "fold_constants")
    assert "Shape" in ops(out) and "Reshape" in ops(out)
    assert_same_outputs(model, out, X)


def test_quantize_dequantize_pairs_are_kept() -> None:
    model = make_model([helper.make_node("QuantizeLinear", ["w", "s", "z"], ["wq"]),
                        helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["wd"]),
                        helper.make_node("MatMul", ["x", "wd"], ["y"])],
                       [vi("x", ["N", 4])], [vi("y", ["N", 2])],
                       [init("w", np.ones((4, 2), np.float32)), init("s", np.float32(0.1)),
                        init("z", np.int8(0))])
    out, _ = run_pass(model, "fold_constants")
    assert ops(out) == ["QuantizeLinear", "DequantizeLinear", "MatMul"]


def test_constant_nodes_are_lifted_to_initializers() -> None:
    model = make_model([helper.make_node("Constant", [], ["k"],
                                         value=helper.make_tensor("k", TensorProto.FLOAT, [4],
                                                                  [1, 2, 3, 4])),
                        helper.make_node("Add", ["x", "k"], ["y"])],
                       [vi("x", ["N", 4])], [vi("y", ["N", 4])], [])
    out, count = run_pass(model, "lift_constants")
    assert count == 1 and ops(out) == ["Add"]
    assert [i.name for i in out.graph.initializer] == ["k"]
    assert_same_outputs(model, out, X)


def test_dead_nodes_and_unused_initializers_are_removed() -> None:
    model = make_model([helper.make_node("Relu", ["x"], ["y"]),
                        helper.make_node("Neg", ["x"], ["dead1"]),
                        helper.make_node("Add", ["dead1", "c"], ["dead2"])],
                       [vi("x", ["N", 4])], [vi("y", ["N", 4])],
                       [init("c", np.ones(4, np.float32)), init("orphan", np.ones(2))])
    out, count = run_pass(model, "remove_dead_nodes")
    assert count == 4 and ops(out) == ["Relu"]  # two nodes, two initializers
    assert not out.graph.initializer
    assert_same_outputs(model, out, X)


def test_a_small_constant_of_shape_folds_but_a_dynamic_one_stays() -> None:
    # torch's F.pad: ConstantOfShape → Concat builds the pads vector
    fill = helper.make_tensor("fill", TensorProto.INT64, [1], [0])
    model = make_model([helper.make_node("ConstantOfShape", ["four"], ["zeros"], value=fill),
                        helper.make_node("Concat", ["zeros", "hw"], ["pads"], axis=0),
                        helper.make_node("Pad", ["x", "pads"], ["p"]),
                        helper.make_node("Shape", ["p"], ["s"]),
                        helper.make_node("ConstantOfShape", ["s"], ["ones"],
                                         value=helper.make_tensor("one", TensorProto.FLOAT, [1],
                                                                  [1.0])),
                        helper.make_node("Add", ["p", "ones"], ["y"])],
                       [vi("x", ["N", 4])], [vi("y", ["N", 6])],
                       [init("four", np.array([2], np.int64)),
                        init("hw", np.array([1, 1], np.int64))])
    out, _ = run_pass(model, "fold_constants")
    assert ops(out).count("ConstantOfShape") == 1  # the one of the dynamic shape
    assert "Concat" not in ops(out)
    assert_same_outputs(model, out, X)
