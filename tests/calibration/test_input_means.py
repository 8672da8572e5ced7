"""Mean input taps: measured while calibrating, stored in the table, exact for bias correction."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from lowbit.calibration.collect import collect_ranges
from lowbit.calibration.input_means import MeanInputOp, mean_input_ops, patch_means
from lowbit.calibration.observers import CalibrationSettings
from lowbit.calibration.table import format_table, parse_table
from lowbit.errors import CalibrationError
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.quantize.prepare.bias_correction import correct_biases, correct_biases_from_means
from tests.models import init, make_model


def _brute_force(x: np.ndarray, kernel: tuple[int, int], pads: tuple[int, int, int, int],
                 strides: tuple[int, int], dilations: tuple[int, int]) -> np.ndarray:
    """M[c, i, j]: mean over samples and output positions of the padded input tap (i, j)."""
    padded = np.pad(x, [(0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])])
    out_h = (padded.shape[2] - dilations[0] * (kernel[0] - 1) - 1) // strides[0] + 1
    out_w = (padded.shape[3] - dilations[1] * (kernel[1] - 1) - 1) // strides[1] + 1
    means = np.zeros((x.shape[1], *kernel))
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            taps = [padded[:, :, oh * strides[0] + i * dilations[0],
                           ow * strides[1] + j * dilations[1]]
                    for oh in range(out_h) for ow in range(out_w)]
            means[:, i, j] = np.mean(taps, axis=(0, 1))
    return means


@pytest.mark.parametrize(("kernel", "pads", "strides", "dilations"), [
    ((3, 3), (1, 1, 1, 1), (1, 1), (1, 1)),
    ((5, 3), (2, 0, 1, 1), (2, 1), (1, 1)),   # asymmetric pads (TF "SAME"), stride 2
    ((3, 3), (2, 2, 2, 2), (1, 2), (2, 2)),   # dilation
])
def test_patch_means_match_the_taps_counted_one_by_one(kernel, pads, strides, dilations) -> None:
    x = np.random.default_rng(0).normal(1.0, 1.0, size=(5, 3, 9, 8))
    op = MeanInputOp("conv", "Conv", "x", kernel, pads, strides, dilations)
    np.testing.assert_allclose(patch_means(op, x.mean(axis=0)),
                               _brute_force(x, kernel, pads, strides, dilations), rtol=1e-12)


def _one_conv(kernel: tuple[int, ...], pads: tuple[int, ...], strides: tuple[int, ...],
              dilations: tuple[int, ...], group: int = 1) -> onnx.ModelProto:
    rank = len(kernel)
    weight = np.random.default_rng(2).normal(size=(4, 4 // group, *kernel)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=list(pads), strides=list(strides),
                            dilations=list(dilations), group=group, name="conv")
    dims = ["N", 4, *(["H", "W"][:rank] if rank == 2 else ["L"])]
    return make_model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                      [init("w", weight)], check=False)


@pytest.mark.parametrize(("kernel", "pads", "strides", "dilations", "group"), [
    ((1, 1), (0, 0, 0, 0), (1, 1), (1, 1), 1),   # one sum per channel
    ((1, 1), (0, 0, 0, 0), (2, 2), (1, 1), 1),   # strided shortcut
    ((3, 3), (1, 1, 1, 1), (1, 1), (1, 1), 4),   # depthwise
    ((5, 3), (2, 0, 1, 1), (2, 1), (1, 1), 1),   # asymmetric pads, stride 2
    ((3, 3), (2, 2, 2, 2), (1, 2), (2, 2), 2),   # dilation
    ((3, 3), (0, 0, 0, 0), (3, 3), (1, 1), 1),   # taps past the last row read nothing
])
def test_tap_sums_inside_the_run_match_the_taps_counted_one_by_one(
        kernel, pads, strides, dilations, group) -> None:
    """The calibration run sums what each tap reads (strided slices of the batch sum)
    for any input size; the table's means equal the brute-force count."""
    model = _one_conv(kernel, pads, strides, dilations, group)
    rng = np.random.default_rng(0)
    for height, width in ((9, 8), (17, 11)):
        x = rng.normal(1.0, 1.0, size=(6, 4, height, width)).astype(np.float32)
        table = collect_ranges(model, [{"x": x[i:i + 1]} for i in range(6)],
                               CalibrationSettings(), progress=False, input_means=True,
                               max_batch=4)
        np.testing.assert_allclose(table.input_means["conv"],
                                   _brute_force(x.astype(np.float64), kernel, pads, strides,
                                                dilations), rtol=1e-5, atol=1e-6)


def test_tap_sums_of_a_1d_conv() -> None:
    model = _one_conv((3,), (1, 2), (2,), (1,))
    x = np.random.default_rng(0).normal(size=(5, 4, 13)).astype(np.float32)
    table = collect_ranges(model, [{"x": x[i:i + 1]} for i in range(5)], CalibrationSettings(),
                           progress=False, input_means=True)
    expected = _brute_force(x[:, :, None, :].astype(np.float64), (1, 3), (0, 1, 0, 2), (1, 2),
                            (1, 1))[:, 0]
    np.testing.assert_allclose(table.input_means["conv"], expected, rtol=1e-5, atol=1e-6)


def _net(seed: int = 0) -> onnx.ModelProto:
    """Conv (stride 2, TF-style pads) → Relu → depthwise conv → Relu → pool → Gemm (transB 0)
    → Gemm (transB 1): every shape of op that bias correction handles."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], pads=[0, 0, 1, 1], strides=[2, 2],
                         name="conv0"),
        helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
        helper.make_node("Conv", ["r0", "dw"], ["c1"], pads=[1, 1, 1, 1], group=8,
                         name="dwconv"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("GlobalAveragePool", ["r1"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "fc1", "fb1"], ["h"], name="fc1"),
        helper.make_node("Gemm", ["h", "fc2"], ["y"], transB=1, name="fc2"),
    ]
    inits = [init("w0", rng.normal(0, 0.4, (8, 3, 3, 3)).astype(np.float32)),
             init("b0", rng.normal(0.2, 0.1, 8).astype(np.float32)),
             init("dw", rng.normal(0, 0.5, (8, 1, 3, 3)).astype(np.float32)),
             init("fc1", rng.normal(0, 0.4, (8, 12)).astype(np.float32)),
             init("fb1", rng.normal(0, 0.1, 12).astype(np.float32)),
             init("fc2", rng.normal(0, 0.4, (5, 12)).astype(np.float32))]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                            ["N", 3, 10, 10])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)


def _biases(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return {n.name: inits[n.input[2]] for n in model.graph.node
            if len(n.input) > 2 and n.input[2]}


@pytest.mark.parametrize("per_channel", [True, False])
def test_table_means_give_the_biases_a_pass_over_the_samples_gives(per_channel: bool) -> None:
    model = _net()
    x = np.random.default_rng(1).normal(0.5, 1.0, size=(20, 3, 10, 10)).astype(np.float32)
    samples = [{"x": x[i:i + 1]} for i in range(len(x))]
    table = collect_ranges(model, samples, CalibrationSettings(), progress=False,
                           input_means=True, max_batch=8)
    assert set(table.input_means) == {"conv0", "dwconv", "fc1", "fc2"}
    assert table.input_means["conv0"].shape == (3, 3, 3)
    assert table.input_means["dwconv"].shape == (8, 3, 3)
    assert table.input_means["fc1"].shape == (8,) and table.input_means["fc2"].shape == (12,)
    stored = parse_table(format_table(table))  # through the text file
    settings = QuantizeSettings(per_channel=per_channel)
    measured, by_pass = correct_biases(model, samples, settings)
    from_table, by_means = correct_biases_from_means(model, stored.input_means,
                                                     stored.num_samples, settings)
    assert by_means.ops == by_pass.ops == 4 and by_means.samples == 20
    expected, got = _biases(measured), _biases(from_table)
    assert set(got) == set(expected) == {"conv0", "dwconv", "fc1", "fc2"}
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-4, atol=1e-7)
    assert by_means.mean_abs_shift == pytest.approx(by_pass.mean_abs_shift, rel=1e-4)


def test_excluded_and_unknown_ops_keep_their_biases() -> None:
    model = _net()
    x = np.random.default_rng(1).normal(size=(4, 3, 10, 10)).astype(np.float32)
    table = collect_ranges(model, [{"x": x}], CalibrationSettings(), progress=False,
                           input_means=True)
    means = {k: v for k, v in table.input_means.items() if k != "fc2"}
    corrected, report = correct_biases_from_means(model, means, 4, QuantizeSettings(),
                                                  exclude={"conv0"})
    assert report.ops == 2
    before, after = _biases(model), _biases(corrected)
    np.testing.assert_array_equal(after["conv0"], before["conv0"])
    assert "fc2" not in after  # no means, no bias added
    assert "dwconv" in after and np.abs(after["dwconv"]).max() > 0  # a bias was added


def test_calibration_without_means_and_a_bad_means_line() -> None:
    model = _net()
    x = np.random.default_rng(1).normal(size=(4, 3, 10, 10)).astype(np.float32)
    plain = collect_ranges(model, [{"x": x}], CalibrationSettings(), progress=False)
    assert plain.input_means == {} and "#lowbit_input_means" not in format_table(plain)
    text = format_table(collect_ranges(model, [{"x": x}], CalibrationSettings(),
                                       progress=False, input_means=True))
    assert "\n#lowbit_input_means\n" in text
    broken = text.replace("fc1 8 ", "fc1 9 ")
    with pytest.raises(CalibrationError, match="fc1"):
        parse_table(broken)


def test_ops_with_constant_or_auto_padded_inputs_are_not_listed() -> None:
    model = _net()
    model.graph.node[2].attribute.append(helper.make_attribute("auto_pad", "SAME_UPPER"))
    del model.graph.node[2].attribute[[a.name for a in model.graph.node[2].attribute]
                                      .index("pads")]
    assert set(mean_input_ops(model)) == {"conv0", "fc1", "fc2"}
