"""INT8 weight range: full (±127), reduced (±63, for x86 CPUs without VNNI), paired and auto."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from lowbit.errors import UsageError
from lowbit.quantize.int8.dynamic import quantize_dynamic
from lowbit.quantize.int8.qdq import quantize_qdq
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.runtime.ort import (
    create_session,
    int8_saturates,
    probe_int8_saturates,
    u8s8_layouts,
)
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
    # The real probe predicts what this machine's kernels do with full-range weights
    # (tests/runtime/test_isa.py runs both halves, naming the one a CPU cannot).
    assert (abs(outputs["full"] - exact) > 0.5) == probe_int8_saturates()


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
        elif probe_int8_saturates():  # the real kernel, whatever LOWBIT_FORCE_ISA says
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


def test_auto_pairs_weights_where_the_probes_confirm_the_layout():
    layouts = u8s8_layouts()
    assert not (layouts - {"DepthwiseConv"}) or int8_saturates()  # pairs saturate only if int16 does
    auto = QuantizeSettings()
    for kind in ("MatMul", "Gemm", "Conv"):
        want = "full" if not int8_saturates() else "paired" if kind in layouts else "reduced"
        assert auto.weight_grid(kind) == want, kind
    paired = QuantizeSettings(weight_range="paired")
    assert [paired.weight_grid(k) for k in ("MatMul", "Gemm", "Conv", "DepthwiseConv",
                                            "ConvTranspose")] == \
        ["paired", "paired", "paired", "full", "reduced"]
    assert paired.weight_qmax == 63  # the grid of everything else
    assert QuantizeSettings(weight_range="reduced").weight_grid("MatMul") == "reduced"
    assert QuantizeSettings(weight_range="full").weight_grid("Conv") == "full"
    assert QuantizeSettings(weight_range="paired", weight_bits=4).weight_grid("Conv") == "int4"


def _conv(w, group=1):
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", group=group,
                              pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["y", "w2"], ["z"], name="conv2")]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                            ["N", w.shape[1] * group, 6, 6])],
                      [helper.make_tensor_value_info("z", TensorProto.FLOAT,
                                                     ["N", 1, 6, 6])],
                      [init("w", w), init("w2", np.ones((1, w.shape[0], 1, 1), np.float32))])


@pytest.mark.parametrize("group", [1, 8])
def test_paired_conv_and_full_depthwise_weights_are_exact_on_worst_case_inputs(group):
    """A 3×3 Conv (K over kernel taps and channels) and a depthwise one, all weights
    positive and inputs at the top of their uint8 range: ORT's kernels give the exact
    answer of the dequantized weights (full range would saturate the regular Conv)."""
    rng = np.random.default_rng(2)
    w = np.abs(rng.standard_normal((8, 8 // group, 3, 3))).astype(np.float32)
    model = _conv(w, group)
    x = np.ones((1, 8, 6, 6), np.float32)
    ranges = minmax_ranges(model, {"x": np.concatenate([x, 0 * x])})
    quantized = quantize_qdq(model, ranges, QuantizeSettings(weight_range="paired")).model
    arrays = {i.name: numpy_helper.to_array(i) for i in quantized.graph.initializer}
    q = arrays["w_quantized"].astype(np.int64)
    if group == 1:
        flat = q.transpose(2, 3, 1, 0).reshape(-1, 8)  # K order: kh, kw, channel
        same = np.sign(flat[0::2]) * np.sign(flat[1::2]) > 0
        assert np.abs(np.where(same, flat[0::2] + flat[1::2], 0)).max() <= 128
    assert np.abs(q).max() > 63
    outputs = {}
    for weight_range in ("paired", "full"):
        built = quantize_qdq(model, ranges, QuantizeSettings(weight_range=weight_range)).model
        outputs[weight_range] = (create_session(built).run(None, {"x": x})[0],
                                 _unfused(built, x))
    fused, exact = outputs["paired"]
    np.testing.assert_allclose(fused, exact, rtol=1e-5, atol=1e-5 * np.abs(exact).max())
    np.testing.assert_allclose(exact, _float_conv(w, x, group), rtol=0.05)
    fused, exact = outputs["full"]
    saturates = group == 1 and probe_int8_saturates()
    assert (np.abs(fused - exact).max() > 0.02 * np.abs(exact).max()) == saturates


def _unfused(model, x):
    """The QDQ graph computed as written (float math on the dequantized values)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _float_conv(w, x, group):
    return create_session(_conv(w, group)).run(None, {"x": x})[0]


def test_paired_gemm_with_transposed_weight_is_exact():
    rng = np.random.default_rng(4)
    w = np.abs(rng.standard_normal((16, 64))).astype(np.float32)  # [N, K], transB
    nodes = [helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=1)]
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])],
                       [init("w", w)])
    x = np.ones((1, 64), np.float32)
    ranges = minmax_ranges(model, {"x": np.concatenate([x, 0 * x])})
    quantized = quantize_qdq(model, ranges, QuantizeSettings(weight_range="paired")).model
    arrays = {i.name: numpy_helper.to_array(i) for i in quantized.graph.initializer}
    q = arrays["w_quantized"].astype(np.int64)
    assert np.abs(q[:, 0::2] + q[:, 1::2]).max() <= 128 and np.abs(q).max() > 63
    exact = x @ (q * arrays["w_scale"].reshape(-1, 1)).T
    np.testing.assert_allclose(create_session(quantized).run(None, {"x": x})[0], exact,
                               rtol=1e-3)
