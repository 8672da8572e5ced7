"""W4A8: 4-bit weights on the [−7, 7] grid (least-squares clipped per channel; depthwise
Conv weights keep 8 bits) with 8-bit activations; int4 storage at opset 21, int8 storage
below; precomputed integer weights are stored as given."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from lowbit.analysis.metrics import cosine
from lowbit.errors import UsageError
from lowbit.quantize.int8.params import WeightQuant, quantize_weight, quantize_weight_clipped
from lowbit.quantize.int8.qdq import quantize_qdq
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.runtime.ort import create_session
from tests.models import init, make_model, minmax_ranges


def conv_net(opset: int, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1],
                              name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["y"], name="conv2")]
    inits = [init("w1", rng.normal(0, 0.3, (16, 4, 3, 3)).astype(np.float32)),
             init("b1", rng.normal(0, 0.1, 16).astype(np.float32)),
             init("w2", rng.normal(0, 0.3, (8, 16, 1, 1)).astype(np.float32))]
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                             ["N", 4, 8, 8])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 8, 8])],
                       inits, opset=opset, check=False)
    model.ir_version = 10 if opset >= 21 else 8
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(8, 4, 8, 8)).astype(np.float32)


def _weight_init(model: onnx.ModelProto, name: str) -> onnx.TensorProto:
    return next(i for i in model.graph.initializer if i.name == f"{name}_quantized")


def test_weight_bits_are_validated_and_set_qmax():
    assert QuantizeSettings(weight_bits=4).weight_qmax == 7
    assert not QuantizeSettings(weight_bits=4, weight_range="reduced").reduced_range
    assert QuantizeSettings(weight_bits=8, weight_range="full").weight_qmax == 127
    with pytest.raises(UsageError, match="4 or 8"):
        QuantizeSettings(weight_bits=3)


def test_opset_21_stores_int4_and_runs_close_to_float(x):
    model = conv_net(21)
    settings = QuantizeSettings(weight_bits=4)
    quantized = quantize_qdq(model, minmax_ranges(model, {"x": x}), settings).model
    onnx.checker.check_model(quantized)
    w1 = _weight_init(quantized, "w1")
    assert w1.data_type == TensorProto.INT4
    assert len(w1.raw_data) == 16 * 4 * 9 // 2  # two weights a byte
    values = numpy_helper.to_array(w1).astype(np.int8)
    assert values.min() >= -7 and values.max() <= 7 and np.abs(values).max() == 7
    zero = next(i for i in quantized.graph.initializer if i.name == "w1_zero_point")
    assert zero.data_type == TensorProto.INT4
    want = create_session(model).run(None, {"x": x})[0]
    got = create_session(quantized).run(None, {"x": x})[0]
    assert cosine(want, got) > 0.98


def test_below_opset_21_the_4bit_grid_is_stored_as_int8(x):
    model = conv_net(17)
    quantized = quantize_qdq(model, minmax_ranges(model, {"x": x}),
                             QuantizeSettings(weight_bits=4)).model
    w1 = _weight_init(quantized, "w1")
    assert w1.data_type == TensorProto.INT8
    values = numpy_helper.to_array(w1)
    assert np.abs(values).max() == 7 and len(np.unique(values)) <= 15
    got = create_session(quantized).run(None, {"x": x})[0]
    assert cosine(create_session(model).run(None, {"x": x})[0], got) > 0.98


def test_qoperator_format_keeps_int8_storage(x):
    model = conv_net(21)
    quantized = quantize_qdq(model, minmax_ranges(model, {"x": x}),
                             QuantizeSettings(weight_bits=4, format="qoperator")).model
    assert _weight_init(quantized, "w1").data_type == TensorProto.INT8


def test_given_integer_weights_are_stored_instead_of_nearest(x):
    model = conv_net(17)
    weight = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "w1"))
    nearest = quantize_weight(weight, 0, qmax=7)
    flipped = nearest.q.copy()
    flipped[0, 0, 0, 0] = np.clip(flipped[0, 0, 0, 0] + 1, -7, 7) if flipped[0, 0, 0, 0] < 7 \
        else 6
    given = {"w1": WeightQuant(flipped, nearest.scale, 0)}
    ranges = minmax_ranges(model, {"x": x})
    settings = QuantizeSettings(weight_bits=4)
    out = quantize_qdq(model, ranges, settings, weights=given).model
    np.testing.assert_array_equal(numpy_helper.to_array(_weight_init(out, "w1")), flipped)
    np.testing.assert_array_equal(
        numpy_helper.to_array(_weight_init(quantize_qdq(model, ranges, settings).model, "w1")),
        quantize_weight_clipped(weight, 0, qmax=7).q)


def test_given_weights_with_another_axis_fall_back_to_nearest(x):
    model = conv_net(17)
    weight = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "w1"))
    per_tensor = quantize_weight(weight, None, qmax=7)
    out = quantize_qdq(model, minmax_ranges(model, {"x": x}), QuantizeSettings(weight_bits=4),
                       weights={"w1": per_tensor}).model  # per-channel settings: axis 0
    np.testing.assert_array_equal(numpy_helper.to_array(_weight_init(out, "w1")),
                                  quantize_weight_clipped(weight, 0, qmax=7).q)


def test_given_weights_keep_their_integers_where_the_bias_fits(x):
    """A channel of near-zero weights with a large bias needs a raised scale for its int32
    bias: only that channel is re-rounded, the others keep the given integers."""
    model = conv_net(17)
    inits = {i.name: i for i in model.graph.initializer}
    weight = numpy_helper.to_array(inits["w1"]).copy()
    weight[2] *= 1e-6
    bias = numpy_helper.to_array(inits["b1"]).copy()
    bias[2] = 50.0
    inits["w1"].CopyFrom(numpy_helper.from_array(weight, "w1"))
    inits["b1"].CopyFrom(numpy_helper.from_array(bias, "b1"))
    nearest = quantize_weight(weight, 0, qmax=7)
    flipped = np.where(nearest.q > -7, nearest.q - 1, nearest.q).astype(np.int8)
    out = quantize_qdq(model, minmax_ranges(model, {"x": x}), QuantizeSettings(weight_bits=4),
                       weights={"w1": WeightQuant(flipped, nearest.scale, 0)}).model
    stored = numpy_helper.to_array(_weight_init(out, "w1"))
    scale = numpy_helper.to_array(next(i for i in out.graph.initializer
                                       if i.name == "w1_scale"))
    others = np.arange(16) != 2
    np.testing.assert_array_equal(stored[others], flipped[others])
    assert scale[2] > 5 * nearest.scale[2]
    np.testing.assert_array_equal(scale[others], nearest.scale[others])


def test_clipped_4bit_scales_never_lose_to_max_abs_and_respect_the_floor():
    rng = np.random.default_rng(3)
    weight = rng.standard_t(3, size=(32, 16, 3, 3)).astype(np.float32)  # heavy tails

    def error(quant: WeightQuant) -> np.ndarray:
        rows = (quant.q * quant.scale.reshape(-1, 1, 1, 1) - weight).reshape(32, -1)
        return np.square(rows).sum(axis=1)

    clipped, max_abs = quantize_weight_clipped(weight, 0), quantize_weight(weight, 0, qmax=7)
    assert np.all(error(clipped) <= error(max_abs) + 1e-6)
    assert error(clipped).sum() < 0.9 * error(max_abs).sum()  # heavy tails: clipping pays
    assert np.abs(clipped.q).max() == 7 and np.all(clipped.scale < max_abs.scale + 1e-9)
    floor = np.full(32, 2 * max_abs.scale.max(), np.float32)
    assert np.all(quantize_weight_clipped(weight, 0, floor).scale >= floor)
    whole = quantize_weight_clipped(weight, None)
    assert whole.scale.shape == () and np.abs(whole.q).max() == 7


def depthwise_net(opset: int) -> onnx.ModelProto:
    rng = np.random.default_rng(4)
    nodes = [helper.make_node("Conv", ["x", "dw"], ["d"], pads=[1, 1, 1, 1], group=4,
                              name="depthwise"),
             helper.make_node("Relu", ["d"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "pw"], ["y"], name="pointwise")]
    inits = [init("dw", rng.normal(0, 0.5, (4, 1, 3, 3)).astype(np.float32)),
             init("pw", rng.normal(0, 0.3, (8, 4, 1, 1)).astype(np.float32))]
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                             ["N", 4, 8, 8])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 8, 8])],
                       inits, opset=opset, check=False)
    model.ir_version = 10 if opset >= 21 else 8
    return model


@pytest.mark.parametrize("opset", [17, 21])
def test_depthwise_weights_keep_8_bits_in_w4a8(x, opset):
    model = depthwise_net(opset)
    settings = QuantizeSettings(weight_bits=4)
    assert settings.weight_grid("DepthwiseConv") != "int4" and settings.weight_grid("Conv") == "int4"
    quantized = quantize_qdq(model, minmax_ranges(model, {"x": x}), settings).model
    onnx.checker.check_model(quantized)
    depthwise, pointwise = _weight_init(quantized, "dw"), _weight_init(quantized, "pw")
    assert depthwise.data_type == TensorProto.INT8
    assert np.abs(numpy_helper.to_array(depthwise)).max() > 7
    assert pointwise.data_type == (TensorProto.INT4 if opset >= 21 else TensorProto.INT8)
    assert np.abs(numpy_helper.to_array(pointwise).astype(np.int8)).max() == 7
    want = create_session(model).run(None, {"x": x})[0]
    assert cosine(want, create_session(quantized).run(None, {"x": x})[0]) > 0.98


@pytest.mark.parametrize(("per_channel", "kept"), [(True, True), (False, False)])
def test_the_w4a8_note_counts_the_depthwise_weights_that_keep_8_bits(per_channel, kept):
    """Per channel, a depthwise Conv weight keeps 8 bits and the note says so; per tensor
    its kind is a plain Conv, it gets 4 bits, and the note must not claim otherwise."""
    from lowbit.recipe.steps.int8 import w4a8_note

    note = w4a8_note(depthwise_net(17), QuantizeSettings(weight_bits=4, per_channel=per_channel))
    assert ("1 depthwise Conv weight(s) keep 8 bits" in note) == kept
    assert f"clipped per {'channel' if per_channel else 'tensor'}" in note
