"""count_kernels: ORT fuses a QDQ Conv into QLinearConv; a float Conv stays float."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lowbit.analysis.kernels import KernelCount, count_kernels


def _save(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], path: Path) -> Path:
    graph = helper.make_graph(
        nodes, "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _qdq_conv(path: Path) -> Path:
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8), "w_q"),
        numpy_helper.from_array(np.linspace(0.01, 0.02, 4, dtype=np.float32), "w_s"),
        numpy_helper.from_array(np.zeros(4, np.int8), "w_z"),
        numpy_helper.from_array(np.array(0.02, np.float32), "x_s"),
        numpy_helper.from_array(np.array(128, np.uint8), "x_z"),
        numpy_helper.from_array(np.array(0.05, np.float32), "y_s"),
        numpy_helper.from_array(np.array(128, np.uint8), "y_z"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_s", "x_z"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "x_s", "x_z"], ["x_dq"]),
        helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w_dq"], axis=0),
        helper.make_node("Conv", ["x_dq", "w_dq"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["c", "y_s", "y_z"], ["c_q"]),
        helper.make_node("DequantizeLinear", ["c_q", "y_s", "y_z"], ["y"]),
    ]
    return _save(nodes, inits, path)


def _float_conv(path: Path) -> Path:
    weight = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])]
    return _save(nodes, [numpy_helper.from_array(weight, "w")], path)


def test_qdq_conv_runs_as_one_integer_conv(tmp_path: Path) -> None:
    counts = count_kernels(_qdq_conv(tmp_path / "q.onnx"), threads=1)
    assert counts.integer.get("QLinearConv") == 1
    assert counts.integer_compute == 1
    assert counts.float_compute == 0
    assert counts.summary().startswith("1/1 conv/matmul/gemm")


def test_float_conv_stays_float(tmp_path: Path) -> None:
    counts = count_kernels(_float_conv(tmp_path / "f.onnx"), threads=1)
    assert counts.integer_compute == 0
    assert counts.float_compute == 1
    assert counts.summary().startswith("0/1 conv/matmul/gemm")


def test_summary_counts_other_integer_kernels_apart() -> None:
    counts = KernelCount(integer={"QLinearConv": 18, "QGemm": 1, "QLinearAdd": 8},
                         float={"Conv": 1})
    assert counts.integer_compute == 19
    assert counts.integer_other == 8
    assert counts.summary() == ("19/20 conv/matmul/gemm run as integer kernels "
                                "(+8 other integer kernels)")
