"""INT8 weight range: full (±127), reduced (±63, for x86 CPUs without VNNI), paired and auto."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from lowbit.errors import UsageError
from lowbit.quantize.dynamic import quantize_dynamic
from lowbit.quantize.qdq import quantize_qdq
from lowbit.quantize.settings import QuantizeSettings
from lowbit.runtime.ort import create_session, int8_saturates, matmul_pairs_saturate
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


def _matmul(w):
    """x [N, 1, K] · w, read by a second MatMul so that the first has a float output."""
    k, n = w.shape
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                            ["N", 1, k])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, n])],
                      [init("w", w)])


def test_paired_matmul_weights_are_exact_on_worst_case_inputs():
    """Weights whose same-sign pairs overflow int16 at full range, inputs at the top of
    their uint8 range: paired weights give ORT's kernels the exact integer answer."""
    rng = np.random.default_rng(0)
    w = np.abs(rng.standard_normal((64, 16))).astype(np.float32)  # every pair same-sign
    model = _matmul(w)
    x = np.ones((1, 1, 64), np.float32)
    ranges = minmax_ranges(model, {"x": np.concatenate([x, 0 * x])})
    outputs, weights = {}, {}
    for weight_range in ("full", "paired"):
        settings = QuantizeSettings(weight_range=weight_range)
        quantized = quantize_qdq(model, ranges, settings).model
        q = next(numpy_helper.to_array(i) for i in quantized.graph.initializer
                 if i.name == "w_quantized").astype(np.int64)
        scale = next(numpy_helper.to_array(i) for i in quantized.graph.initializer
                     if i.name == "w_scale")
        weights[weight_range] = q
        outputs[weight_range] = create_session(quantized).run(None, {"x": x})[0].ravel()
        exact = (x.reshape(1, 64) @ (q * scale)).ravel()  # the dequantized model's answer
        if weight_range == "paired":
            np.testing.assert_allclose(outputs["paired"], exact, rtol=1e-3)
        elif int8_saturates():
            assert np.abs(outputs["full"] - exact).max() > 0.02 * np.abs(exact).max()
    pairs = weights["paired"][0::2] + weights["paired"][1::2]
    assert np.abs(pairs).max() <= 128 and np.abs(weights["paired"]).max() > 63  # past 7 bits
    np.testing.assert_allclose(outputs["paired"], (x.reshape(1, 64) @ w).ravel(), rtol=0.02)


def test_dynamic_matmul_uses_paired_weights_too():
    rng = np.random.default_rng(1)
    w = np.abs(rng.standard_normal((64, 16))).astype(np.float32)
    x = np.ones((1, 1, 64), np.float32)
    x[0, 0, 0] = 0.0  # DynamicQuantizeLinear maps 1.0 to 255
    quantized = quantize_dynamic(_matmul(w), QuantizeSettings(weight_range="paired")).model
    q = next(numpy_helper.to_array(i) for i in quantized.graph.initializer
             if i.name.startswith("w_quantized")).astype(np.int64)
    assert np.abs(q[0::2] + q[1::2]).max() <= 128 and np.abs(q).max() > 63
    actual = create_session(quantized).run(None, {"x": x})[0].ravel()
    np.testing.assert_allclose(actual, (x.reshape(1, 64) @ w).ravel(), rtol=0.02)


def test_auto_pairs_matmul_weights_where_the_probe_confirms_the_layout():
    auto = QuantizeSettings()
    assert auto.paired_matmul_weights == (int8_saturates() and matmul_pairs_saturate())
    assert not matmul_pairs_saturate() or int8_saturates()  # pairs only saturate if int16 does
    paired = QuantizeSettings(weight_range="paired")
    assert paired.paired_matmul_weights and paired.weight_qmax == 63  # Conv/Gemm: 7 bits
    assert not QuantizeSettings(weight_range="reduced").paired_matmul_weights
    assert not QuantizeSettings(weight_range="paired", weight_bits=4).paired_matmul_weights
