"""explain_int8: which conv/matmul/gemm ORT runs as integer kernels, and why the others are float."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from lowbit.analysis.explain import OpAdvice, SpeedAdvice, advise, explain_int8
from lowbit.analysis.kernels import FLOAT_COMPUTE_OPS
from lowbit.passes import canonicalize
from lowbit.quantize.int8.qdq import quantize_qdq
from lowbit.quantize.int8.qoperator import to_qoperator
from lowbit.quantize.int8.settings import QuantizeSettings
from tests.models import init, make_model, minmax_ranges, small_resnet

COMPUTE = {"stem_conv", "conv1", "conv2", "fc"}


@pytest.fixture(scope="module")
def resnet():
    model, _ = canonicalize(small_resnet())
    feeds = {"input": np.random.default_rng(0).normal(size=(4, 3, 16, 16)).astype(np.float32)}
    return model, minmax_ranges(model, feeds)


def _deploy(resnet, path: Path, *, drop: str = "", **settings) -> Path:
    model, ranges = resnet
    ranges = {name: r for name, r in ranges.items() if name != drop}
    onnx.save(quantize_qdq(model, ranges, QuantizeSettings(**settings)).model, str(path))
    return path


def test_uint8_resnet_runs_every_op_as_integer_kernel(resnet, tmp_path: Path) -> None:
    advice = explain_int8(_deploy(resnet, tmp_path / "u8.onnx"), threads=1)
    assert {op.name for op in advice.ops} == COMPUTE
    assert all(op.integer and op.reason == "" for op in advice.ops), advice.table()
    kernels = {op.name: op.kernel for op in advice.ops}
    assert kernels == {"stem_conv": "QLinearConv", "conv1": "QLinearConv",
                       "conv2": "QLinearConv", "fc": "QGemm"}
    assert all(op.ort_node and op.time_ms is not None for op in advice.ops)
    assert advice.float_time_share == 0.0
    assert advice.qdq_time_share is not None and 0.0 < advice.qdq_time_share < 1.0
    assert advice.summary().startswith("4/4 conv/matmul/gemm run as integer kernels; 0.0% ")


def test_int8_activations_leave_a_conv_float_with_s8s8_reason(resnet, tmp_path: Path) -> None:
    advice = explain_int8(_deploy(resnet, tmp_path / "s8.onnx", activation="int8"), threads=1)
    floats = advice.float_ops
    assert floats, advice.table()
    for op in floats:
        assert op.kernel in FLOAT_COMPUTE_OPS
        assert "S8S8 (int8 activations)" in op.reason and "uint8" in op.reason
    assert advice.float_time_share is not None and advice.float_time_share > 0.0
    assert advice.summary().startswith(f"{4 - len(floats)}/4 conv/matmul/gemm")


def test_float_input_is_named(resnet, tmp_path: Path) -> None:
    path = _deploy(resnet, tmp_path / "no_r1.onnx", drop="r1")  # conv2 reads r1
    advice = explain_int8(path, threads=1, profile=False)
    by_name = {op.name: op for op in advice.ops}
    assert not by_name["conv2"].integer
    assert by_name["conv2"].kernel == "Conv"  # ORT's NCHWc conv, named "b2_nchwc"
    assert "input 'r1' is float" in by_name["conv2"].reason
    assert all(by_name[n].integer for n in COMPUTE - {"conv2"})
    assert advice.float_time_share is None and advice.qdq_time_share is None
    assert advice.summary() == "3/4 conv/matmul/gemm run as integer kernels"


def _qdq(x: str, nodes: list, out: str | None = None) -> str:
    out = out or f"{x}_dq"
    nodes += [helper.make_node("QuantizeLinear", [x, "s", "z"], [f"{x}_q"], name=f"{x}_Q"),
              helper.make_node("DequantizeLinear", [f"{x}_q", "s", "z"], [out], name=f"{x}_DQ")]
    return out


def _single_op(path: Path, op: str, weight_shape: tuple[int, ...], *, quantize_output: bool,
               float_bias: bool = False, also_read: bool = False, **attrs) -> Path:
    rng = np.random.default_rng(0)
    nodes: list[onnx.NodeProto] = []
    x = _qdq("x", nodes)
    nodes.append(helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w_dq"],
                                  name="w_DQ"))
    inputs = [x, "w_dq", "b"] if float_bias else [x, "w_dq"]
    nodes.append(helper.make_node(op, inputs, ["c" if quantize_output else "y"],
                                  name="op", **attrs))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if quantize_output:
        _qdq("c", nodes, out="y")
    if also_read:  # the conv's output read unquantized too
        nodes.append(helper.make_node("Sigmoid", ["c"], ["side"], name="side"))
        outputs.append(helper.make_tensor_value_info("side", TensorProto.FLOAT, None))
    inits = [init("s", np.array(0.02, np.float32)), init("z", np.array(128, np.uint8)),
             init("w_q", rng.integers(-127, 128, weight_shape).astype(np.int8)),
             init("w_s", np.array(0.01, np.float32)), init("w_z", np.array(0, np.int8))]
    if float_bias:
        inits.append(init("b", rng.normal(size=weight_shape[0]).astype(np.float32)))
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                             [1, 4, 8, 8])],
                       outputs, inits, check=False)
    onnx.save(model, str(path))
    return path


def test_conv_without_output_quantize_stays_float(tmp_path: Path) -> None:
    path = _single_op(tmp_path / "c.onnx", "Conv", (4, 4, 3, 3), quantize_output=False)
    (op,) = explain_int8(path, threads=1, profile=False).ops
    assert not op.integer and op.kernel in FLOAT_COMPUTE_OPS
    assert "output 'y' is not quantized" in op.reason


def test_a_float_bias_does_not_stop_the_integer_kernel(tmp_path: Path) -> None:
    """Every input quantized but the bias, a float constant (as NNCF writes convs): ORT
    quantizes such a bias itself and still runs QLinearConv, so explain names no bias
    reason."""
    path = _single_op(tmp_path / "b.onnx", "Conv", (4, 4, 3, 3), quantize_output=True,
                      float_bias=True)
    (op,) = explain_int8(path, threads=1, profile=False).ops
    assert op.integer and op.kernel == "QLinearConv" and op.reason == ""


def test_a_gemm_with_a_float_bias_is_named(tmp_path: Path) -> None:
    """A Gemm whose input and weight are quantized but whose bias is a float constant (as
    NNCF writes a classifier): unlike a Conv's, ORT leaves it float, and explain says why."""
    rng = np.random.default_rng(0)
    nodes: list[onnx.NodeProto] = []
    x = _qdq("x", nodes)
    nodes += [helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w_dq"],
                               name="w_DQ"),
              helper.make_node("Gemm", [x, "w_dq", "b"], ["y"], name="fc", transB=1)]
    inits = [init("s", np.array(0.02, np.float32)), init("z", np.array(128, np.uint8)),
             init("w_q", rng.integers(-127, 128, (8, 16)).astype(np.int8)),
             init("w_s", np.array(0.01, np.float32)), init("w_z", np.array(0, np.int8)),
             init("b", rng.normal(size=8).astype(np.float32))]
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits,
                       check=False)
    onnx.save(model, str(tmp_path / "g.onnx"))
    (op,) = explain_int8(tmp_path / "g.onnx", threads=1, profile=False).ops
    assert not op.integer and op.kernel in FLOAT_COMPUTE_OPS
    assert "bias 'b' is float" in op.reason and "no known cause" not in op.reason


def test_an_output_also_read_unquantized_is_named(tmp_path: Path) -> None:
    path = _single_op(tmp_path / "o.onnx", "Conv", (4, 4, 3, 3), quantize_output=True,
                      also_read=True)
    (op,) = explain_int8(path, threads=1, profile=False).ops
    assert not op.integer and op.kernel in FLOAT_COMPUTE_OPS
    assert "also read unquantized (by Sigmoid)" in op.reason
    assert "no known cause" not in op.reason


def test_conv_transpose_has_no_integer_kernel(tmp_path: Path) -> None:
    path = _single_op(tmp_path / "t.onnx", "ConvTranspose", (4, 6, 3, 3), quantize_output=True)
    (op,) = explain_int8(path, threads=1, profile=False).ops
    assert (op.integer, op.kernel) == (False, "ConvTranspose")
    assert "no integer kernel for ConvTranspose" in op.reason


def test_renamed_nodes_are_paired_by_position() -> None:
    original = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["a"], name="first"),
         helper.make_node("Conv", ["a", "w2"], ["y"], name="second")], "g", [], [])
    optimized = helper.make_graph(
        [helper.make_node("QLinearConv", ["x"], ["a"], name="fused_0", domain="com.microsoft"),
         helper.make_node("Conv", ["a"], ["y"], name="fused_1")], "g", [], [])
    first, second = advise(original, optimized)
    assert (first.name, first.integer, first.kernel) == ("first", True, "QLinearConv")
    assert (second.name, second.integer, second.kernel) == ("second", False, "Conv")
    assert "by position" in first.reason and "by position" in second.reason
    assert "input 'a' is float" in second.reason  # no DQ in this made-up graph
    lone = advise(original, helper.make_graph([], "g", [], []))
    assert not any(op.integer for op in lone) and "not found" in lone[0].reason


def test_summary_and_table_text() -> None:
    advice = SpeedAdvice(
        ops=(OpAdvice("a", "Conv", True, "QLinearConv", time_ms=0.5),
             OpAdvice("b", "Conv", False, "Conv", "output 'b' is not quantized")),
        float_time_share=0.095, qdq_time_share=0.041)
    assert advice.summary() == ("1/2 conv/matmul/gemm run as integer kernels; 9.5% of time "
                                "in float fallbacks, 4.1% in QuantizeLinear/DequantizeLinear")
    assert advice.float_ops == (advice.ops[1],)
    assert "output 'b' is not quantized" in advice.table()


def test_qoperator_model_lists_its_integer_kernels(resnet, tmp_path: Path) -> None:
    model, ranges = resnet
    path = tmp_path / "qop.onnx"
    onnx.save(to_qoperator(quantize_qdq(model, ranges, QuantizeSettings()).model), str(path))
    advice = explain_int8(path, threads=1, profile=False)
    assert len(advice.ops) >= 3 and all(op.integer for op in advice.ops), advice.table()
    assert sum(op.kernel == "QLinearConv" for op in advice.ops) == 3
