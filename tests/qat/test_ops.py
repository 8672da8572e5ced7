"""lowbit.qat.ops: each torch kernel computes what ONNX Runtime computes for the same node,
on a one-node model built here; an op or mode it cannot compute exactly is refused with
the node and the reason."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from lowbit.errors import UnsupportedOpError

torch = pytest.importorskip("torch")
lq = pytest.importorskip("lowbit.qat")


def _one_node(op_type: str, inputs: dict[str, np.ndarray], constants: dict[str, np.ndarray],
              order: list[str], **attributes) -> onnx.ModelProto:
    """A model of one ``op_type`` node: ``inputs`` are graph inputs, ``constants``
    initializers, ``order`` the node's inputs ("" for an omitted optional one)."""
    node = helper.make_node(op_type, order, ["y"], name=f"the_{op_type.lower()}", **attributes)
    graph = helper.make_graph(
        [node], "one",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape))
         for name, value in inputs.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(value, name) for name, value in constants.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _both(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, inputs)[0]
    graph = lq.teacher_of(model)
    got = graph({name: torch.from_numpy(value) for name, value in inputs.items()})[0]
    return got.numpy(), expected


RNG = np.random.default_rng(0)
X = RNG.normal(size=(2, 3, 5, 6)).astype(np.float32)
POSITIVE = np.abs(X) + 0.1


@pytest.mark.parametrize(("op_type", "x"), [
    ("Neg", X), ("Abs", X), ("Exp", X), ("Log", POSITIVE), ("Sqrt", POSITIVE),
    ("Reciprocal", POSITIVE), ("Softplus", X), ("Elu", X),
])
def test_unary_ops_match_onnx_runtime(op_type, x):
    got, expected = _both(_one_node(op_type, {"x": x}, {}, ["x"]), {"x": x})
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op_type", ["Max", "Min", "Sum", "Mean"])
def test_variadic_ops_take_every_input(op_type):
    inputs = {name: RNG.normal(size=(2, 3, 5, 6)).astype(np.float32) for name in "abc"}
    got, expected = _both(_one_node(op_type, inputs, {}, list(inputs)), inputs)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_pow_and_prelu_broadcast_their_second_input_as_onnx_does():
    exponent = np.array([2.0], np.float32)
    got, expected = _both(_one_node("Pow", {"x": POSITIVE}, {"e": exponent}, ["x", "e"]),
                          {"x": POSITIVE})
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    slope = np.array([0.1, 0.25, -0.5], np.float32).reshape(3, 1, 1)  # MTCNN's (C, 1, 1)
    got, expected = _both(_one_node("PRelu", {"x": X}, {"slope": slope}, ["x", "slope"]),
                          {"x": X})
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert (got < 0).any() and (X < 0).any()


@pytest.mark.parametrize(("attributes", "scales", "sizes"), [
    # nn.Upsample(scale_factor=2) as torch.onnx writes it
    ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
      "nearest_mode": "floor"}, [1, 1, 2, 2], None),
    ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
      "nearest_mode": "floor"}, None, [2, 3, 11, 13]),
    ({"mode": "linear", "coordinate_transformation_mode": "half_pixel"}, [1, 1, 2, 2], None),
    ({"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}, None,
     [2, 3, 7, 9]),
    ({"mode": "linear", "coordinate_transformation_mode": "align_corners"}, None,
     [2, 3, 7, 9]),
])
def test_resize_matches_onnx_runtime(attributes, scales, sizes):
    constants = {"roi": np.zeros(0, np.float32)}
    order = ["x", "roi"]
    if scales is not None:
        constants["scales"] = np.array(scales, np.float32)
        order.append("scales")
    else:
        constants["sizes"] = np.array(sizes, np.int64)
        order += ["", "sizes"]
    model = _one_node("Resize", {"x": X}, {}, order, **attributes)
    model.graph.initializer.extend(
        numpy_helper.from_array(v, k) for k, v in constants.items())
    got, expected = _both(model, {"x": X})
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_a_resize_mode_torch_cannot_compute_exactly_is_refused_by_name():
    model = _one_node("Resize", {"x": X}, {"scales": np.array([1, 1, 2, 2], np.float32)},
                      ["x", "", "scales"], mode="cubic")
    with pytest.raises(UnsupportedOpError, match=r"Resize 'the_resize': mode cubic"):
        lq.teacher_of(model)
    model = _one_node("Resize", {"x": X}, {"scales": np.array([1, 2, 2, 2], np.float32)},
                      ["x", "", "scales"], mode="nearest",
                      coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    with pytest.raises(UnsupportedOpError, match="spatial axes only"):
        lq.teacher_of(model)
