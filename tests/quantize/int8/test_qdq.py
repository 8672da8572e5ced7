"""The QDQ rewriter as a whole: what stays float and why, formats, and real-model forms."""

from collections import Counter

import numpy as np
import onnx
from onnx import TensorProto, helper

from lowbit.calibration.observers import TensorRange
from lowbit.passes import canonicalize
from lowbit.quantize.int8.qdq import quantize_qdq
from lowbit.quantize.int8.qoperator import to_qoperator
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.runtime.ort import create_session
from tests.models import init, make_model, minmax_ranges, small_resnet
from tests.quantize.int8.test_rules import check_close, no_dq_q_pairs, ort_ops

RNG = np.random.default_rng(1)


def _resnet_and_ranges():
    model, _ = canonicalize(small_resnet())
    feeds = {"input": RNG.normal(size=(16, 3, 16, 16)).astype(np.float32)}
    return model, feeds, minmax_ranges(model, feeds)


def test_small_resnet_every_compute_op_runs_as_integer_kernel(tmp_path):
    model, feeds, ranges = _resnet_and_ranges()
    result = quantize_qdq(model, ranges, QuantizeSettings())
    onnx.checker.check_model(result.model, full_check=True)
    assert not result.left_float
    assert Counter(d.op_type for d in result.removed) == {"Relu": 3}
    assert no_dq_q_pairs(result.model)
    ops = ort_ops(result.model, tmp_path)
    assert ops["QLinearConv"] == 3 and ops["QGemm"] == 1 and ops["QLinearAdd"] == 1
    assert ops["Conv"] == ops["FusedConv"] == ops["Gemm"] == 0
    check_close(model, result, feeds, min_cos=0.999)


def test_qoperator_format_runs_and_matches_qdq():
    model, feeds, ranges = _resnet_and_ranges()
    qdq = quantize_qdq(model, ranges, QuantizeSettings()).model
    qop = to_qoperator(qdq)
    onnx.checker.check_model(qop, full_check=True)
    ops = Counter(n.op_type for n in qop.graph.node)
    assert ops["QLinearConv"] == 3 and ops["Conv"] == 0
    a = create_session(qdq).run(None, feeds)[0]
    b = create_session(qop).run(None, feeds)[0]
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_int8_symmetric_and_per_tensor_options():
    model, feeds, ranges = _resnet_and_ranges()
    sym = quantize_qdq(model, ranges, QuantizeSettings(activation="int8"))
    zps = [onnx.numpy_helper.to_array(i) for i in sym.model.graph.initializer
           if "zero_point" in i.name]
    assert zps and all(z.dtype != np.uint8 and np.all(z == 0) for z in zps)
    check_close(model, sym, feeds, min_cos=0.995)
    per_tensor = quantize_qdq(model, ranges, QuantizeSettings(per_channel=False))
    int8_weights = {i.name for i in per_tensor.model.graph.initializer
                    if i.data_type == TensorProto.INT8 and len(i.dims) > 1}
    weight_dq = [n for n in per_tensor.model.graph.node if n.op_type == "DequantizeLinear"
                 and n.input[0] in int8_weights]
    assert weight_dq and all(not n.attribute for n in weight_dq)
    check_close(model, per_tensor, feeds, min_cos=0.99)


def _conv_model():
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                            [1, 2, 4, 4])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])],
                      [init("w", RNG.normal(size=(2, 2, 1, 1)).astype(np.float32))])


def test_degenerate_and_masked_ranges_stay_float_with_reason():
    model = _conv_model()
    for bad, expect in ((TensorRange(0.0, 0.0, 0.0), "too narrow"),
                        (TensorRange(1e4, -1e4, 3.0), "masking constant")):
        result = quantize_qdq(model, {"x": bad, "c": TensorRange(1, -1, 1),
                                      "y": TensorRange(1, 0, 1)}, QuantizeSettings())
        assert [d.op_type for d in result.left_float][:1] == ["Conv"]
        assert expect in result.left_float[0].reason and "'x'" in result.left_float[0].reason
        assert expect in result.float_tensors["x"]
        scales = [onnx.numpy_helper.to_array(i) for i in result.model.graph.initializer
                  if "scale" in i.name]
        assert all(np.all(np.isfinite(s)) and np.all(s > 0) for s in scales)


def test_skipped_tensor_from_table_stays_float():
    result = quantize_qdq(_conv_model(), {"c": TensorRange(1, -1, 1)}, QuantizeSettings(),
                          skipped={"x": "range not finite"})
    assert "range not finite" in result.left_float[0].reason


def test_if_subgraph_ops_are_reported_as_left_float():
    then_graph = helper.make_graph([helper.make_node("Relu", ["x"], ["a"])], "then", [],
                                   [helper.make_tensor_value_info("a", TensorProto.FLOAT, None)])
    else_graph = helper.make_graph([helper.make_node("Neg", ["x"], ["b"])], "else", [],
                                   [helper.make_tensor_value_info("b", TensorProto.FLOAT, None)])
    nodes = [helper.make_node("If", ["cond"], ["y"], then_branch=then_graph,
                              else_branch=else_graph, name="branch")]
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
                               helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [],
                       check=False)
    result = quantize_qdq(model, {"x": TensorRange(1, -1, 1)}, QuantizeSettings())
    assert result.left_float[0].op_type == "If"
    assert "2 subgraph op(s) stay float" in result.left_float[0].reason


def test_tensors_calibration_skips_take_the_standing_in_range():
    """Calibration leaves out tensors read only by Relu and outputs of data-movement ops;
    the rewriter must produce the same model from the lean table as from the full one."""
    from lowbit.calibration.derived import derived_ranges

    model, feeds, ranges = _resnet_and_ranges()
    derived = derived_ranges(model)
    assert derived  # small_resnet has conv→Relu pairs and a MaxPool
    lean = {name: r for name, r in ranges.items() if name not in derived}
    for settings in (QuantizeSettings(), QuantizeSettings(activation="int8")):
        full_model = quantize_qdq(model, ranges, settings).model
        lean_result = quantize_qdq(model, lean, settings)
        assert not lean_result.left_float
        a = create_session(full_model).run(None, feeds)[0]
        b = create_session(lean_result.model).run(None, feeds)[0]
        assert np.abs(a - b).max() < 0.05 * np.abs(a).max()
