"""Cross-layer equalization: a planted outlier channel is equalized, float outputs stay,
per-tensor INT8 gets much better; ReLU6 pairs are bounded by the data or replaced."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from lowbit.analysis.metrics import sqnr_db
from lowbit.calibration.observers import TensorRange
from lowbit.calibration.table import CalibrationTable
from lowbit.errors import UsageError
from lowbit.quantize.int8.qdq import quantize_qdq
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.quantize.prepare.equalize import (
    EqualizeSettings,
    equalize_layers,
    find_pairs,
    measure_channel_max,
    remeasure_ranges,
)
from lowbit.runtime.ort import create_session
from tests.models import init, make_model, minmax_ranges

OUTLIER = 3


def chain_model(activation: str = "Relu", seed: int = 0) -> onnx.ModelProto:
    """Conv(3→16) → act → depthwise Conv(16) → act → Conv(16→8), as in a MobileNet block.
    Output channel 3 of the first Conv is 40x the others (an outlier a folded BN leaves)."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.3, (16, 3, 3, 3)).astype(np.float32)
    b1 = rng.normal(0, 0.1, 16).astype(np.float32)
    w1[OUTLIER] *= 40
    b1[OUTLIER] *= 40
    wd = rng.normal(0, 0.3, (16, 1, 3, 3)).astype(np.float32)
    wd[7] *= 10
    w2 = rng.normal(0, 0.3, (8, 16, 1, 1)).astype(np.float32)

    def act(src: str, dst: str, name: str) -> onnx.NodeProto:
        if activation == "Clip":
            return helper.make_node("Clip", [src, "lo", "hi"], [dst], name=name)
        return helper.make_node(activation, [src], [dst], name=name)

    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1],
                              name="conv1"),
             act("c1", "a1", "act1"),
             helper.make_node("Conv", ["a1", "wd"], ["c2"], pads=[1, 1, 1, 1], group=16,
                              name="dw"),
             act("c2", "a2", "act2"),
             helper.make_node("Conv", ["a2", "w2"], ["y"], name="conv2")]
    inits = [init("w1", w1), init("b1", b1), init("wd", wd), init("w2", w2),
             init("lo", np.array(0, np.float32)), init("hi", np.array(6, np.float32))]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                            ["N", 3, 8, 8])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 8, 8])],
                      inits)


def _weights(model: onnx.ModelProto, node_name: str) -> np.ndarray:
    node = next(n for n in model.graph.node if n.name == node_name)
    return next(numpy_helper.to_array(i) for i in model.graph.initializer
                if i.name == node.input[1])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return create_session(model).run(None, {"x": x})[0]


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(16, 3, 8, 8)).astype(np.float32)


def test_finds_the_chain_through_the_depthwise_conv():
    pairs = find_pairs(chain_model())
    nodes = chain_model().graph.node
    assert [(nodes[p.first].name, nodes[p.second].name) for p in pairs] == [
        ("conv1", "dw"), ("dw", "conv2")]
    assert not any(p.relu6 for p in pairs)


def test_planted_outlier_is_equalized_and_float_outputs_stay(data):
    model = chain_model()
    equalized, report = equalize_layers(model)
    onnx.checker.check_model(equalized)
    assert report.pairs == 2 and not report.function_changed
    assert report.ratio_before > 1.5 and report.ratio_after < 1.01  # r1_i / r2_i → 1
    # The outlier channel of conv1 is no longer 40x its neighbours: along the chain
    # conv1 → dw → conv2 each channel's ranges meet at their geometric mean.
    ranges = np.abs(_weights(equalized, "conv1")).reshape(16, -1).max(axis=1)
    before = np.abs(_weights(model, "conv1")).reshape(16, -1).max(axis=1)
    assert before[OUTLIER] / np.median(before) > 20
    assert ranges[OUTLIER] / np.median(ranges) < 5
    np.testing.assert_allclose(_run(equalized, data), _run(model, data), rtol=1e-4, atol=1e-4)
    assert set(report.changed) == {"c1", "a1", "c2", "a2"}


def test_per_tensor_int8_error_drops_a_lot(data):
    model = chain_model()
    equalized, _ = equalize_layers(model)
    settings = QuantizeSettings(per_channel=False)
    reference = _run(model, data)
    plain = quantize_qdq(model, minmax_ranges(model, {"x": data}), settings).model
    cle = quantize_qdq(equalized, minmax_ranges(equalized, {"x": data}), settings).model
    before, after = sqnr_db(reference, _run(plain, data)), sqnr_db(reference, _run(cle, data))
    assert after > before + 8, (before, after)


def test_relu6_pairs_are_skipped_without_data_and_bounded_with_it(data):
    model = chain_model("Clip")
    assert all(p.relu6 for p in find_pairs(model))
    _, skipped = equalize_layers(model)
    assert skipped.pairs == 0 and skipped.relu6_skipped == 2
    samples = [{"x": data[i:i + 1]} for i in range(len(data))]
    maxima = measure_channel_max(model, samples)
    np.testing.assert_allclose(maxima["c1"], _channel_max(model, "c1", data), rtol=1e-5)
    clipping = maxima["c1"] > 6
    assert clipping[OUTLIER] and not clipping.all()
    equalized, report = equalize_layers(model, channel_max=maxima)
    assert report.relu6_bounded == 2 and not report.function_changed
    # A channel that reaches 6 keeps its weights; the function is kept on the data.
    w_before, w_after = _weights(model, "conv1"), _weights(equalized, "conv1")
    np.testing.assert_array_equal(w_after[clipping], w_before[clipping])
    assert not np.allclose(w_after[~clipping], w_before[~clipping])
    assert _channel_max(equalized, "c1", data)[~clipping].max() <= 6 * (1 + 1e-5)
    np.testing.assert_allclose(_run(equalized, data), _run(model, data), rtol=1e-4, atol=1e-4)


def test_relu6_replaced_by_relu_changes_the_function_and_says_so(data):
    model = chain_model("Clip")
    equalized, report = equalize_layers(model, EqualizeSettings(relu6="relu"))
    assert report.relu6_replaced == 2 and report.function_changed
    assert [n.op_type for n in equalized.graph.node].count("Clip") == 0
    assert "changed" in report.summary()
    assert set(report.changed) >= {"c1", "a1", "c2", "a2", "y"}  # everything downstream
    assert not np.allclose(_run(equalized, data), _run(model, data), atol=1e-3)


def test_remeasure_replaces_only_the_changed_ranges(data):
    model = chain_model()
    equalized, report = equalize_layers(model)
    stale = TensorRange(123.0, -123.0, 123.0)
    table = CalibrationTable({"x": stale, "a1": stale, "a2": stale, "y": stale}, "minmax", 16)
    samples = [{"x": data[i:i + 1]} for i in range(len(data))]
    fresh, report = remeasure_ranges(equalized, table, samples, report, progress=False)
    assert fresh.ranges["x"] == stale and fresh.ranges["y"] == stale  # unchanged by CLE
    truth = minmax_ranges(equalized, {"x": data})
    for name in ("a1", "a2"):
        assert fresh.ranges[name].max == pytest.approx(truth[name].max, rel=1e-5)
    assert report.remeasured == 2 and report.samples == 16
    assert "2 ranges re-measured on 16 samples" in report.summary()


def test_settings_refuse_unknown_relu6_handling():
    with pytest.raises(UsageError, match="bound, relu"):
        EqualizeSettings(relu6="clip")


def _channel_max(model: onnx.ModelProto, tensor: str, x: np.ndarray) -> np.ndarray:
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.append(helper.make_tensor_value_info(tensor, TensorProto.FLOAT, None))
    value = create_session(probe).run([tensor], {"x": x})[0]
    return value.max(axis=(0, 2, 3))
