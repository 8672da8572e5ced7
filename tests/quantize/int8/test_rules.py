"""Each INT8 op rule on a tiny model: structure (what is quantized, what ORT fuses)
and numbers (closeness to the float model on the calibration inputs)."""

from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from lowbit.analysis.metrics import cosine
from lowbit.quantize.int8.qdq import quantize_qdq
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.runtime.ort import create_session
from tests.models import init, make_model, minmax_ranges

RNG = np.random.default_rng(0)
X_SHAPE = [2, 4, 8, 8]


def _w(*shape):
    return (RNG.normal(size=shape) * 0.3).astype(np.float32)


def one_op(op_nodes, inits=(), x_shape=X_SHAPE, extra_inputs=()):
    """x → op nodes → t → Neg → y: Neg has no rule, so t is quantized and read back float."""
    nodes = list(op_nodes) + [helper.make_node("Neg", ["t"], ["y"], name="tail")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape), *extra_inputs]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    return make_model(nodes, inputs, outputs, list(inits), check=False)


def run(model, feeds):
    return create_session(model).run(None, feeds)[0]


def quantize(model, feeds, **settings):
    model = onnx.shape_inference.infer_shapes(model)
    ranges = minmax_ranges(model, feeds)
    return quantize_qdq(model, ranges, QuantizeSettings(**settings))


def ort_ops(model, tmp_path) -> Counter:
    path = tmp_path / "optimized.onnx"
    create_session(model, optimized_model_path=path)
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def feeds_for(model):
    x = RNG.normal(size=X_SHAPE).astype(np.float32)
    return {"x": x}


def consumers_read_dq(model, op_type):
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    node = next(n for n in model.graph.node if n.op_type == op_type)
    return [producers.get(i) for i in node.input if i]


def no_dq_q_pairs(model) -> bool:
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    return not any(n.op_type == "QuantizeLinear" and producers.get(n.input[0]) ==
                   "DequantizeLinear" for n in model.graph.node)


def check_close(model, result, feeds, min_cos=0.999):
    ref, got = run(model, feeds), run(result.model, feeds)
    assert cosine(ref, got) > min_cos
    assert no_dq_q_pairs(result.model)


def test_conv_weights_per_channel_bias_int32_and_fused(tmp_path):
    model = one_op([helper.make_node("Conv", ["x", "w", "b"], ["t"], pads=[1, 1, 1, 1])],
                   [init("w", _w(8, 4, 3, 3)), init("b", _w(8))])
    feeds = feeds_for(model)
    result = quantize(model, feeds)
    inits = {i.name: i for i in result.model.graph.initializer}
    w_q = next(i for n, i in inits.items() if n.startswith("w_quantized"))
    b_q = next(i for n, i in inits.items() if n.startswith("b_quantized"))
    assert w_q.data_type == TensorProto.INT8 and b_q.data_type == TensorProto.INT32
    w_scale = next(i for n, i in inits.items() if n.startswith("w_scale"))
    assert list(w_scale.dims) == [8]  # one scale per output channel
    assert consumers_read_dq(result.model, "Conv") == ["DequantizeLinear"] * 3
    check_close(model, result, feeds)
    assert ort_ops(result.model, tmp_path)["QLinearConv"] == 1


def test_conv_transpose_weight_axis_1():
    model = one_op([helper.make_node("ConvTranspose", ["x", "w"], ["t"], strides=[2, 2])],
                   [init("w", _w(4, 6, 2, 2))])
    feeds = feeds_for(model)
    result = quantize(model, feeds)
    dq = [n for n in result.model.graph.node if n.op_type == "DequantizeLinear"
          and n.input[0].startswith("w_quantized")]
    assert dq and helper.get_attribute_value(dq[0].attribute[0]) == 1
    check_close(model, result, feeds)


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_weight_axis_follows_trans_b(trans_b, tmp_path):
    w = _w(6, 16) if trans_b else _w(16, 6)
    model = one_op([helper.make_node("Flatten", ["x"], ["f"]),
                    helper.make_node("Gemm", ["f", "w", "b"], ["t"], transB=trans_b)],
                   [init("w", w), init("b", _w(6))], x_shape=[2, 16])
    feeds = {"x": RNG.normal(size=(2, 16)).astype(np.float32)}
    result = quantize(model, feeds)
    scale = next(i for i in result.model.graph.initializer if i.name.startswith("w_scale"))
    assert list(scale.dims) == [6]
    check_close(model, result, feeds)
    assert ort_ops(result.model, tmp_path)["QGemm"] == 1


def test_matmul_constant_and_activation_operands(tmp_path):
    model = one_op([helper.make_node("MatMul", ["x", "w"], ["m"]),
                    helper.make_node("MatMul", ["m", "x2"], ["t"])],
                   [init("w", _w(8, 8))],
                   extra_inputs=[helper.make_tensor_value_info("x2", TensorProto.FLOAT,
                                                               [2, 4, 8, 8])])
    feeds = feeds_for(model) | {"x2": RNG.normal(size=X_SHAPE).astype(np.float32)}
    result = quantize(model, feeds)
    assert all(p == "DequantizeLinear" for p in consumers_read_dq(result.model, "MatMul"))
    check_close(model, result, feeds)
    ops = ort_ops(result.model, tmp_path)
    assert ops["QLinearMatMul"] + ops["MatMulIntegerToFloat"] + ops["MatMulInteger"] >= 1


@pytest.mark.parametrize("op", ["Add", "Mul"])
def test_add_mul_both_operands_quantized(op, tmp_path):
    model = one_op([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                    helper.make_node(op, ["c", "x"], ["t"])], [init("w", _w(4, 4, 3, 3))])
    feeds = feeds_for(model)
    result = quantize(model, feeds)
    assert consumers_read_dq(result.model, op) == ["DequantizeLinear"] * 2
    check_close(model, result, feeds)
    assert ort_ops(result.model, tmp_path)[f"QLinear{op}"] == 1


def test_add_constant_operand_is_quantized_per_tensor():
    model = one_op([helper.make_node("Add", ["x", "k"], ["t"])], [init("k", _w(1, 4, 1, 1))])
    feeds = feeds_for(model)
    result = quantize(model, feeds)
    assert consumers_read_dq(result.model, "Add") == ["DequantizeLinear"] * 2
    check_close(model, result, feeds)


@pytest.mark.parametrize("act", ["Relu", "Clip"])
def test_relu_and_relu6_after_conv_are_folded(act, tmp_path):
    extra = ["lo", "hi"] if act == "Clip" else []
    inits = [init("w", _w(8, 4, 3, 3))]
    if act == "Clip":
        inits += [init("lo", np.array(0.0, np.float32)), init("hi", np.array(6.0, np.float32))]
    model = one_op([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                    helper.make_node(act, ["c", *extra], ["t"])], inits)
    feeds = feeds_for(model)
    result = quantize(model, feeds)
    ops = Counter(n.op_type for n in result.model.graph.node)
    assert ops[act] == 0 and [d.op_type for d in result.removed] == [act]
    conv = next(n for n in result.model.graph.node if n.op_type == "Conv")
    assert conv.output == ["t"]  # the producer now writes the activation's tensor
    check_close(model, result, feeds)
    # with symmetric int8 the zero point is mid-range, so the op must stay
    kept = quantize(model, feeds, activation="int8")
    assert Counter(n.op_type for n in kept.model.graph.node)[act] == 1
    check_close(model, kept, feeds, min_cos=0.99)


def test_relu_with_a_second_consumer_of_its_input_is_kept():
    model = one_op([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                    helper.make_node("Relu", ["c"], ["r"]),
                    helper.make_node("Add", ["r", "c"], ["t"])], [init("w", _w(4, 4, 3, 3))])
    feeds = feeds_for(model)
    result = quantize(model, feeds)
    assert Counter(n.op_type for n in result.model.graph.node)["Relu"] == 1
    check_close(model, result, feeds)


@pytest.mark.parametrize("op", ["LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish"])
def test_unary_activations_quantized_in_and_out(op):
    model = one_op([helper.make_node(op, ["x"], ["t"])])
    feeds = feeds_for(model)
    result = quantize(model, feeds)
    assert consumers_read_dq(result.model, op) == ["DequantizeLinear"]
    assert op in {d.op_type for d in result.quantized}
    check_close(model, result, feeds, min_cos=0.995)


def _scale_of(model, tensor_prefix):
    values = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    return [v for n, v in values.items() if n.startswith(tensor_prefix) and "_scale" in n]


def test_maxpool_keeps_input_parameters_avgpool_gets_its_own(tmp_path):
    model = one_op([helper.make_node("MaxPool", ["x"], ["m"], kernel_shape=[2, 2]),
                    helper.make_node("AveragePool", ["m"], ["t"], kernel_shape=[2, 2])])
    feeds = feeds_for(model)
    result = quantize(model, feeds)
    q_nodes = {n.input[0]: n.input[1] for n in result.model.graph.node
               if n.op_type == "QuantizeLinear"}
    assert q_nodes["m"] == q_nodes["x"]            # MaxPool: same scale initializer
    assert q_nodes["t"] != q_nodes["x"]            # AveragePool: its own
    check_close(model, result, feeds)


def test_global_average_pool_fused(tmp_path):
    model = one_op([helper.make_node("GlobalAveragePool", ["x"], ["t"])])
    feeds = feeds_for(model)
    result = quantize(model, feeds)
    check_close(model, result, feeds)
    assert ort_ops(result.model, tmp_path)["QLinearGlobalAveragePool"] == 1


def test_concat_inputs_share_the_output_scale():
    model = one_op([helper.make_node("Conv", ["x", "w1"], ["a"]),
                    helper.make_node("Conv", ["x", "w2"], ["b"]),
                    helper.make_node("Concat", ["a", "b"], ["t"], axis=1)],
                   [init("w1", _w(4, 4, 1, 1)), init("w2", _w(4, 4, 1, 1) * 5)])
    feeds = feeds_for(model)
    result = quantize(model, feeds)
    q_scale = {n.input[0]: n.input[1] for n in result.model.graph.node
               if n.op_type == "QuantizeLinear"}
    assert q_scale["a"] == q_scale["b"] == q_scale["t"]
    check_close(model, result, feeds)


@pytest.mark.parametrize("op,extra,attrs", [
    ("Reshape", {"shape": np.array([2, -1], np.int64)}, {}),
    ("Flatten", {}, {}),
    ("Transpose", {}, {"perm": [0, 2, 3, 1]}),
    ("Unsqueeze", {"axes": np.array([1], np.int64)}, {}),
    ("Pad", {"pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)}, {}),
    ("Resize", {"roi": np.array([], np.float32), "scales": np.array([1, 1, 2, 2], np.float32)},
     {"mode": "nearest"}),
])
def test_shape_ops_pass_parameters_through(op, extra, attrs):
    inputs = ["x", *extra]
    model = one_op([helper.make_node(op, inputs, ["t"], **attrs)],
                   [init(k, v) for k, v in extra.items()])
    feeds = feeds_for(model)
    result = quantize(model, feeds)
    q_scale = {n.input[0]: n.input[1] for n in result.model.graph.node
               if n.op_type == "QuantizeLinear"}
    assert q_scale["t"] == q_scale["x"]
    node = next(n for n in result.model.graph.node if n.op_type == op)
    assert node.input[1:] == list(extra)  # shape operands untouched
    check_close(model, result, feeds)


def test_squeeze_passes_through():
    model = one_op([helper.make_node("Squeeze", ["x", "axes"], ["t"])],
                   [init("axes", np.array([1], np.int64))], x_shape=[2, 1, 8])
    feeds = {"x": RNG.normal(size=(2, 1, 8)).astype(np.float32)}
    result = quantize(model, feeds)
    assert "Squeeze" in {d.op_type for d in result.quantized}
    check_close(model, result, feeds)


def test_softmax_and_unknown_ops_stay_float_and_are_listed():
    model = one_op([helper.make_node("Conv", ["x", "w"], ["c"]),
                    helper.make_node("Softmax", ["c"], ["s"], axis=1),
                    helper.make_node("Erf", ["s"], ["t"])], [init("w", _w(4, 4, 1, 1))])
    feeds = feeds_for(model)
    result = quantize(model, feeds)
    reasons = {d.op_type: d.reason for d in result.left_float}
    assert reasons["Softmax"] == "kept float for accuracy"
    assert "no INT8 rule" in reasons["Erf"] and "Erf" in reasons["Erf"]
    softmax = next(n for n in result.model.graph.node if n.op_type == "Softmax")
    assert softmax.input[0] != "c"  # reads the DQ of the quantized conv output
    check_close(model, result, feeds)


def test_bias_never_saturates_int32_for_near_zero_weight_channels():
    """A channel of near-zero weights with a real bias: the weight scale is raised so the
    int32 bias holds the bias exactly (as ORT does), instead of clamping it."""
    w = _w(4, 4, 1, 1)
    w[2] = 1e-12
    b = np.array([0.1, -0.2, 1.5, 0.3], np.float32)
    model = one_op([helper.make_node("Conv", ["x", "w", "b"], ["t"])],
                   [init("w", w), init("b", b)])
    feeds = feeds_for(model)
    result = quantize(model, feeds)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in result.model.graph.initializer}
    q_bias = next(v for n, v in inits.items() if n.startswith("b_quantized"))
    assert np.all(np.abs(q_bias.astype(np.int64)) <= np.iinfo(np.int32).max // 2 + 1)
    ref, got = run(model, feeds), run(result.model, feeds)
    np.testing.assert_allclose(got[:, 2], ref[:, 2], atol=0.05)  # the bias survives
