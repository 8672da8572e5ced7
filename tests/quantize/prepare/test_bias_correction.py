"""Bias correction removes the systematic shift that biased weight rounding causes."""

import numpy as np
import onnx
from onnx import TensorProto, helper

from lowbit.quantize.int8.params import GRID_QMAX
from lowbit.quantize.int8.qdq import quantize_qdq
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.quantize.prepare.bias_correction import correct_biases
from lowbit.runtime.ort import create_session
from tests.models import init, make_model, minmax_ranges


def biased_rounding_model(qmax: int, seed: int = 0) -> onnx.ModelProto:
    """Conv whose weights all sit just below a rounding midpoint of the [−qmax, qmax]
    grid: int8 rounds every one down by ~0.49 steps, so with positive inputs each
    channel's output drops by a systematic amount."""
    rng = np.random.default_rng(seed)
    scale = 0.01
    steps = rng.integers(0, qmax - 7, size=(6, 4, 3, 3)).astype(np.float32) + 0.49
    steps[:, 0, 0, 0] = qmax  # pins each channel's max, so its scale is exactly 0.01
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], name="conv")]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                            ["N", 4, 8, 8])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6, 8, 8])],
                      [init("w", steps * scale), init("b", np.zeros(6, np.float32))])


def _channel_mean_error(model, quantized, x):
    ref = create_session(model).run(None, {"x": x})[0]
    got = create_session(quantized).run(None, {"x": x})[0]
    return np.abs((got - ref).mean(axis=(0, 2, 3)))


def test_bias_correction_removes_the_mean_shift():
    # 7-bit weights on every CPU: the planted rounding bias is made for that grid (the
    # paired 8-bit grid would move its overflowing pairs of K rows).
    settings = QuantizeSettings(weight_range="reduced")
    model = biased_rounding_model(GRID_QMAX[settings.weight_grid("Conv")])
    rng = np.random.default_rng(1)
    x = np.abs(rng.normal(size=(16, 4, 8, 8))).astype(np.float32)
    samples = [{"x": x[i:i + 1]} for i in range(len(x))]
    plain = quantize_qdq(model, minmax_ranges(model, {"x": x}), settings).model
    corrected_float, report = correct_biases(model, samples, settings)
    assert report.ops == 1 and report.mean_abs_shift > 0.05
    ranges = minmax_ranges(corrected_float, {"x": x})
    corrected = quantize_qdq(corrected_float, ranges, settings).model
    held_out = np.abs(rng.normal(size=(16, 4, 8, 8))).astype(np.float32)
    before = _channel_mean_error(model, plain, held_out)
    after = _channel_mean_error(model, corrected, held_out)
    assert after.mean() < before.mean() / 5
