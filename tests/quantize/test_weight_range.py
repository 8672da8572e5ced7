"""INT8 weight range: full (±127), reduced (±63, for x86 CPUs without VNNI) and auto."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from lowbit.errors import UsageError
from lowbit.quantize.qdq import quantize_qdq
from lowbit.quantize.settings import QuantizeSettings
from lowbit.runtime.ort import create_session, int8_saturates
from tests.models import init, make_model, minmax_ranges


def _saturating_conv():
    """1x1 Conv over 16 channels whose inputs sit at the top of their range and whose
    weights all reach the channel maximum: the worst case for int16 pair sums. A second
    Conv reads it, so the first has a quantized output and ORT fuses it."""
    w = np.full((1, 16, 1, 1), 0.5, np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv"),
             helper.make_node("Conv", ["y", "w2"], ["z"], name="conv2")]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                            ["N", 16, 1, 1])],
                      [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 1, 1, 1])],
                      [init("w", w), init("w2", np.ones((1, 1, 1, 1), np.float32))])


def _weights(model):
    return next(numpy_helper.to_array(i) for i in model.graph.initializer
                if i.name == "w_quantized")


@pytest.mark.parametrize(("weight_range", "qmax"), [("full", 127), ("reduced", 63)])
def test_weights_span_the_chosen_range(weight_range, qmax):
    model = _saturating_conv()
    x = np.ones((1, 16, 1, 1), np.float32)
    settings = QuantizeSettings(weight_range=weight_range)
    assert settings.weight_qmax == qmax
    quantized = quantize_qdq(model, minmax_ranges(model, {"x": x}), settings).model
    assert np.abs(_weights(quantized)).max() == qmax


def test_reduced_range_is_exact_where_full_range_saturates():
    model = _saturating_conv()
    x = np.ones((1, 16, 1, 1), np.float32)
    ranges = minmax_ranges(model, {"x": np.concatenate([x, 0 * x])})
    outputs = {}
    for weight_range in ("full", "reduced"):
        quantized = quantize_qdq(model, ranges, QuantizeSettings(weight_range=weight_range))
        outputs[weight_range] = create_session(quantized.model).run(None, {"x": x})[0].item()
    exact = 8.0  # 16 · 1.0 · 0.5
    assert outputs["reduced"] == pytest.approx(exact, rel=0.02)
    # The probe predicts what this machine's kernels do with full-range weights.
    assert (abs(outputs["full"] - exact) > 0.5) == int8_saturates()


def test_auto_follows_the_probe():
    assert QuantizeSettings().reduced_range == int8_saturates()
    assert QuantizeSettings(weight_range="full").reduced_range is False


def test_unknown_weight_range_is_a_usage_error():
    with pytest.raises(UsageError, match="weight range 'seven'"):
        QuantizeSettings(weight_range="seven")
