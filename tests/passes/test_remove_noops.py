"""remove_identity, remove_dropout, remove_noop_casts, each alone."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from tests.models import init, make_model
from tests.passes.checks import assert_invariants, assert_same_outputs, ops, run_pass
from tests.passes.zoo import vi

X = {"x": np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)}


def _model(nodes, inits=(), outputs=("y",)):  # type: ignore[no-untyped-def]
    return make_model(nodes, [vi("x", ["N", 5])], [vi(o, ["N", 5]) for o in outputs], list(inits))


def test_identity_chain_is_removed() -> None:
    model = _model([helper.make_node("Identity", ["x"], ["a"]),
                    helper.make_node("Relu", ["a"], ["b"]),
                    helper.make_node("Identity", ["b"], ["c"]),
                    helper.make_node("Identity", ["c"], ["y"])])
    out, count = run_pass(model, "remove_identity")
    assert count == 3 and ops(out) == ["Relu"]
    assert out.graph.output[0].name == "y"
    assert_invariants(out)
    assert_same_outputs(model, out, X)


def test_identity_between_graph_input_and_output_stays() -> None:
    model = _model([helper.make_node("Identity", ["x"], ["y"])])
    out, count = run_pass(model, "remove_identity")
    assert count == 0 and ops(out) == ["Identity"]


@pytest.mark.parametrize("training", [None, False])
def test_inference_dropout_is_removed(training: bool | None) -> None:
    inputs = ["r"] + ([] if training is None else ["ratio", "training"])
    inits = [] if training is None else [init("ratio", np.array(0.5, np.float32)),
                                         init("training", np.array(training))]
    model = _model([helper.make_node("Relu", ["x"], ["r"]),
                    helper.make_node("Dropout", inputs, ["d"]),
                    helper.make_node("Neg", ["d"], ["y"])], inits)
    out, count = run_pass(model, "remove_dropout")
    assert count == 1 and ops(out) == ["Relu", "Neg"]
    assert_invariants(out)
    assert_same_outputs(model, out, X)


def test_dropout_in_training_mode_stays() -> None:
    model = _model([helper.make_node("Dropout", ["x", "ratio", "training"], ["y"])],
                   [init("ratio", np.array(0.0, np.float32)), init("training", np.array(True))])
    out, count = run_pass(model, "remove_dropout")
    assert count == 0 and ops(out) == ["Dropout"]


def test_dropout_between_graph_input_and_output_becomes_identity() -> None:
    model = _model([helper.make_node("Dropout", ["x"], ["y"])])
    out, count = run_pass(model, "remove_dropout")
    assert count == 1 and ops(out) == ["Identity"]
    assert_same_outputs(model, out, X)


def test_cast_to_the_same_type_is_removed_and_a_real_cast_stays() -> None:
    model = make_model([helper.make_node("Cast", ["x"], ["same"], to=TensorProto.FLOAT),
                        helper.make_node("Relu", ["same"], ["r"]),
                        helper.make_node("Cast", ["r"], ["half"], to=TensorProto.FLOAT16),
                        helper.make_node("Cast", ["half"], ["y"], to=TensorProto.FLOAT)],
                       [vi("x", ["N", 5])], [vi("y", ["N", 5])], [])
    out, count = run_pass(model, "remove_noop_casts")
    assert count == 1 and ops(out) == ["Relu", "Cast", "Cast"]
    assert_invariants(out)
    assert_same_outputs(model, out, X)
