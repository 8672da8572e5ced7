"""input_specs reads a model's inputs as ONNX Runtime does: a negative dim_value is
dynamic, a zero one is a fixed size 0, a rank-0 input is a scalar, and an input with an
initializer of its name is a default no data set must give. Each is checked against
what onnxruntime itself accepts."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from lowbit.errors import ModelError
from lowbit.io.model import input_specs
from lowbit.spec import TensorSpec
from tests.feed_models import default_input_model, paddle_classifier, scalar_input_model


def ort_runs(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> bool:
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    try:
        session.run(None, feeds)
    except Exception:  # noqa: BLE001 - any refusal means "no"
        return False
    return True


def relu_model(dims: list[int | str]) -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_minus_one_dims_are_dynamic_as_ort_reads_them() -> None:
    model = paddle_classifier()
    (spec,) = input_specs(model)
    assert spec.shape == (None, 3, None, None) and spec.shape_text() == "[?,3,?,?]"
    assert spec.matches((1, 3, 48, 192)) and not spec.matches((1, 4, 48, 192))
    x = np.zeros((1, 3, 48, 192), np.float32)
    assert ort_runs(model, {"x": x})
    assert not ort_runs(model, {"x": np.zeros((1, 4, 48, 192), np.float32)})


def test_a_zero_dim_is_a_fixed_size_as_ort_holds_it() -> None:
    model = relu_model([0, 3])
    (spec,) = input_specs(model)
    assert spec.shape == (0, 3)
    assert not ort_runs(model, {"x": np.zeros((2, 3), np.float32)})  # ORT: "Expected: 0"
    assert ort_runs(model, {"x": np.zeros((0, 3), np.float32)})
    assert spec.feed_shape((2, 3)) is None and spec.feed_shape((0, 3)) == (0, 3)


def test_tensor_spec_reads_negative_dims_as_dynamic() -> None:
    spec = TensorSpec("x", (-1, 3, "H", None), np.dtype("float32"))
    assert spec.shape == (None, 3, "H", None)


def test_scalar_input_and_what_ort_takes_for_it() -> None:
    model = scalar_input_model()
    specs = {spec.name: spec for spec in input_specs(model)}
    assert specs["sr"].shape == () and specs["x"].shape == ("N", 8)
    x = np.ones((1, 8), np.float32)
    for sr in (np.float32(2), np.array([2], np.float32), np.array([[2]], np.float32)):
        assert ort_runs(model, {"x": x, "sr": np.asarray(sr)})
    # ORT checks no shape for a declared scalar; lowbit reshapes only a 1-element array.
    assert ort_runs(model, {"x": x, "sr": np.array([2, 3, 4, 5, 6, 7, 8, 9], np.float32)})
    assert specs["sr"].feed_shape((1,)) == () and specs["sr"].feed_shape((1, 1)) == ()
    assert specs["sr"].feed_shape((8,)) == (8,)


def test_an_input_with_a_default_is_not_a_required_input() -> None:
    model = default_input_model()
    assert [spec.name for spec in input_specs(model)] == ["x"]
    x = np.ones((2, 8), np.float32)
    assert ort_runs(model, {"x": x})                                            # the default
    assert ort_runs(model, {"x": x, "scale": np.full(8, 3.0, np.float32)})      # overridden


@pytest.mark.parametrize("declared", [TensorProto.INT32, TensorProto.FLOAT])
def test_ort_refuses_every_other_dtype(declared: int) -> None:
    graph = helper.make_graph([helper.make_node("Neg", ["x"], ["y"])], "neg",
                              [helper.make_tensor_value_info("x", declared, [2])],
                              [helper.make_tensor_value_info("y", declared, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    (spec,) = input_specs(model)
    wider = np.int64 if declared == TensorProto.INT32 else np.float64
    assert not ort_runs(model, {"x": np.array([1, 2], wider)})
    assert ort_runs(model, {"x": np.array([1, 2], spec.dtype)})


def test_a_sequence_input_is_one_line() -> None:
    """ORT takes a list of arrays there; no lowbit data set holds one, so it is refused
    by name rather than with a KeyError."""
    sequence = helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node("SequenceLength", ["s"], ["n"])], "seq",
                              [sequence],
                              [helper.make_tensor_value_info("n", TensorProto.INT64, [])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    with pytest.raises(ModelError, match=r"^input 's' is a sequence, not a tensor; lowbit feeds "
                                         r"tensor inputs only$"):
        input_specs(model)
