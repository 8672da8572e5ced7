"""deploy and calibrate accept any valid ONNX model, not only transform's output."""

from collections import Counter

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import lowbit
from lowbit.runtime.ort import create_session
from tests.models import make_model, small_resnet

RNG = np.random.default_rng(7)


def _save(model, path):
    onnx.save(model, str(path))
    return path


def _flow(tmp_path, model, x, method="minmax"):
    src = _save(model, tmp_path / "model.onnx")
    np.savez(tmp_path / "calib.npz", **x)
    table = lowbit.calibrate(src, tmp_path / "calib.npz", method=method,
                             output=tmp_path / "model.calib", progress=False)
    result = lowbit.deploy(src, calibration_table=tmp_path / "model.calib",
                           output=tmp_path / "model.int8.onnx", test_input=tmp_path / "calib.npz")
    return table, result


def test_constant_node_weights_in_opset_11_model_are_quantized_as_weights(tmp_path):
    w = RNG.normal(size=(4, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(w, "w")),
             helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["y"])]
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                             ["N", 3, 8, 8])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], [],
                       opset=11)
    x = {"x": RNG.normal(size=(8, 3, 8, 8)).astype(np.float32)}
    _, result = _flow(tmp_path, model, x)
    out = onnx.load(str(result.path))
    assert out.opset_import[0].version >= 13  # per-channel DequantizeLinear is legal
    assert any(i.data_type == TensorProto.INT8 and list(i.dims) == [4, 3, 3, 3]
               for i in out.graph.initializer)
    assert Counter(d.op_type for d in result.quantized)["Conv"] == 1
    assert result.passed and result.validation.checks[0].cosine > 0.999
    create_session(out)  # loads and runs on ORT


def test_dynamic_spatial_dims_calibrate_at_the_data_shape(tmp_path):
    model = small_resnet()
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    model.graph.input[0].type.tensor_type.shape.dim[3].dim_param = "W"
    x = {"input": RNG.normal(size=(6, 3, 24, 20)).astype(np.float32)}
    table, result = _flow(tmp_path, model, x, method="percentile")
    assert table.num_samples == 6 and result.passed


def test_attention_mask_add_stays_float_and_is_reported(tmp_path):
    """scores + mask (−1e4 on masked positions) → Softmax: the Add must not get a huge scale."""
    nodes = [helper.make_node("MatMul", ["q", "w"], ["scores"]),
             helper.make_node("Add", ["scores", "mask"], ["masked"]),
             helper.make_node("Softmax", ["masked"], ["probs"], axis=-1),
             helper.make_node("MatMul", ["probs", "v"], ["y"])]
    model = make_model(nodes, [helper.make_tensor_value_info("q", TensorProto.FLOAT, [1, 4, 8]),
                               helper.make_tensor_value_info("mask", TensorProto.FLOAT,
                                                             [1, 4, 8])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8])],
                       [numpy_helper.from_array(RNG.normal(size=(8, 8)).astype(np.float32), "w"),
                        numpy_helper.from_array(RNG.normal(size=(8, 8)).astype(np.float32),
                                                "v")])
    mask = np.where(RNG.random((10, 1, 4, 8)) < 0.3, -1e4, 0.0).astype(np.float32)
    x = {"q": RNG.normal(size=(10, 1, 4, 8)).astype(np.float32), "mask": mask}
    src = _save(model, tmp_path / "attn.onnx")
    np.savez(tmp_path / "calib.npz", **{k: v.reshape(10, 1, 4, 8) for k, v in x.items()})
    lowbit.calibrate(src, tmp_path / "calib.npz", output=tmp_path / "a.calib", progress=False)
    result = lowbit.deploy(src, calibration_table=tmp_path / "a.calib",
                           output=tmp_path / "a.int8.onnx", test_input=tmp_path / "calib.npz")
    floats = {d.op_type: d.reason for d in result.left_float}
    assert "Add" in floats and "masking constant" in floats["Add"]
    assert result.validation.checks[0].cosine > 0.99


def test_demo_flow_int8_within_half_a_point_of_f32(tmp_path):
    from lowbit.demo import run_demo_flow

    result = run_demo_flow(tmp_path / "demo", repeats=2)
    f32, int8 = result.report.rows
    assert (f32.precision, int8.precision) == ("F32", "INT8")
    assert f32.top1 > 97.0
    assert abs(f32.top1 - int8.top1) <= 0.5
    assert int8.size_mb < f32.size_mb / 3
    assert result.deploy.passed and not result.deploy.left_float
    markdown = result.report.files.markdown.read_text()
    assert f"{int8.top1:.2f}%" in markdown and f"{f32.size_mb:.2f}" in markdown
    assert "data:image/png;base64" in result.report.files.html.read_text()
