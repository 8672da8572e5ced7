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


def test_layer_normalization_matches_onnx_runtime():
    hidden = RNG.normal(size=(2, 5, 8)).astype(np.float32)
    gamma = RNG.normal(size=8).astype(np.float32)
    beta = RNG.normal(size=8).astype(np.float32)
    model = _one_node("LayerNormalization", {"x": hidden}, {"g": gamma, "b": beta},
                      ["x", "g", "b"], epsilon=1e-12)
    got, expected = _both(model, {"x": hidden})
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def _shape_path_model() -> onnx.ModelProto:
    """A transformer's reshape to heads: Shape → Gather → Unsqueeze → Concat → Reshape, a
    Slice of positions, an int64 → float Cast and a Gather of rows (an embedding)."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
        helper.make_node("Unsqueeze", ["batch", "axes0"], ["batch1"]),
        helper.make_node("Concat", ["batch1", "heads"], ["to"], axis=0),
        helper.make_node("Reshape", ["x", "to"], ["split"]),
        helper.make_node("Slice", ["positions", "start", "end"], ["used"]),
        helper.make_node("Gather", ["table", "used"], ["rows"], axis=0),
        helper.make_node("Cast", ["used"], ["used_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["used_f", "axes1"], ["weight"]),
        helper.make_node("Mul", ["rows", "weight"], ["scaled"]),
        helper.make_node("Reshape", ["scaled", "flat"], ["scaled_flat"]),
        helper.make_node("Concat", ["split_flat", "scaled_flat"], ["y"], axis=1),
        helper.make_node("Reshape", ["split", "keep"], ["split_flat"]),
    ]
    constants = {"zero": np.array(0, np.int64), "axes0": np.array([0], np.int64),
                 "heads": np.array([2, -1], np.int64),
                 "positions": np.arange(10, dtype=np.int64), "start": np.array([2], np.int64),
                 "end": np.array([7], np.int64), "table": RNG.normal(size=(10, 4)).astype(
                     np.float32), "axes1": np.array([1], np.int64),
                 "flat": np.array([1, -1], np.int64), "keep": np.array([1, -1], np.int64)}
    order = [nodes[i] for i in (0, 1, 2, 3, 4, 12, 5, 6, 7, 8, 9, 10, 11)]
    graph = helper.make_graph(
        order, "shapes", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in constants.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_shapes_computed_at_run_time_gathers_slices_and_casts_match_onnx_runtime():
    x = RNG.normal(size=(1, 6)).astype(np.float32)
    got, expected = _both(_shape_path_model(), {"x": x})
    assert got.shape == expected.shape == (1, 26)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_a_gathered_quantized_table_dequantizes_per_column_as_onnx_runtime_does():
    """deploy quantizes an embedding table per hidden unit and gathers its integers:
    Gather(codes, ids) → DequantizeLinear(axis −1). The student dequantizes the rows with
    the model's own scales (not learned)."""
    codes = RNG.integers(-127, 128, size=(10, 4)).astype(np.int8)
    scale = np.array([0.1, 0.2, 0.05, 0.3], np.float32)
    zero = np.zeros(4, np.int8)
    nodes = [helper.make_node("Gather", ["codes", "ids"], ["picked"], axis=0),
             helper.make_node("DequantizeLinear", ["picked", "scale", "zero"], ["y"],
                              axis=-1, name="table_dq")]
    graph = helper.make_graph(
        nodes, "table", [helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in
         {"codes": codes, "scale": scale, "zero": zero}.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    ids = np.array([[0, 3, 9], [2, 2, -1]], np.int64)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"ids": ids})[0]
    student = lq.from_deployed(model)
    got = student({"ids": torch.from_numpy(ids)})[0].detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert not list(student.parameters())  # the table's scales are the model's own


def test_opset_10_resize_reads_its_scales_from_the_second_input():
    model = _one_node("Resize", {"x": X}, {"scales": np.array([1, 1, 2, 2], np.float32)},
                      ["x", "scales"], mode="nearest")
    model.opset_import[0].version = 10
    got, expected = _both(model, {"x": X})
    np.testing.assert_allclose(got, expected)
