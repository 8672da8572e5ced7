"""Stripping a QDQ model back to float, and describing one made elsewhere."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import lowbit
from lowbit.errors import ModelError
from lowbit.graph import check_qdq_params, is_qdq
from lowbit.quantize.int8.imported import describe_qdq, strip_qdq
from lowbit.quantize.int8.qoperator import to_qoperator
from tests.models import small_resnet


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, onnx.ModelProto]:
    root = tmp_path_factory.mktemp("imported")
    onnx.save(small_resnet(batch=1), root / "model.onnx")
    f32 = lowbit.transform(root / "model.onnx", root / "f32.onnx").path
    np.savez(root / "x.npz", input=np.random.default_rng(0).normal(
        size=(8, 3, 16, 16)).astype(np.float32))
    lowbit.calibrate(f32, root / "x.npz", output=root / "m.calib", method="minmax",
                     progress=False)
    lowbit.deploy(f32, calibration_table=root / "m.calib", output=root / "int8.onnx",
                  speed="off", bias_correction=False)
    return {"f32": onnx.load(f32), "int8": onnx.load(root / "int8.onnx")}


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def test_strip_gives_back_the_float_graph_with_its_names_and_relus(models):
    stripped = strip_qdq(models["int8"])
    ops = Counter(node.op_type for node in stripped.model.graph.node)
    assert not is_qdq(stripped.model)
    assert ops == Counter(node.op_type for node in models["f32"].graph.node)  # Relus back
    # the folded Relus come back under the names the float graph gives them
    assert set(stripped.relus) == {"r0", "r1", "r2"}
    # every float tensor but the producers' outputs before a folded Relu (the rewrite gave
    # their names away) keeps its name
    before_relu = {n.input[0] for n in models["f32"].graph.node if n.op_type == "Relu"}
    floats = {o for n in models["f32"].graph.node for o in n.output} - before_relu
    assert floats <= {o for n in stripped.model.graph.node for o in n.output}
    onnx.checker.check_model(stripped.model)
    x = np.random.default_rng(1).normal(size=(1, 3, 16, 16)).astype(np.float32)
    reference, again = _run(models["f32"], x), _run(stripped.model, x)
    # weights dequantized: per-channel 8-bit rounding only
    assert np.abs(again - reference).max() < 0.05 * np.abs(reference).max()


def test_describe_counts_what_is_quantized(models):
    summary = describe_qdq(models["int8"])
    assert len(summary.ops) == 4 and len(summary.quantized) == 4
    assert summary.activation_types == ("uint8",) and summary.weight_bits == (8,)
    assert summary.weights == summary.per_channel_weights == 4
    assert "4 of 4 conv/matmul/gemm" in summary.note()


def test_a_qoperator_model_is_refused(models):
    with pytest.raises(ModelError, match="QOperator"):
        strip_qdq(to_qoperator(models["int8"]))


def test_check_names_the_bad_scale(models):
    model = onnx.ModelProto()
    model.CopyFrom(models["int8"])
    check_qdq_params(model)
    name = next(n for n in model.graph.node if n.op_type == "DequantizeLinear").input[1]
    for tensor in model.graph.initializer:
        if tensor.name == name:
            tensor.CopyFrom(onnx.numpy_helper.from_array(
                -np.abs(onnx.numpy_helper.to_array(tensor)), name))
    with pytest.raises(ModelError, match=f"the scale '{name}' .* is negative"):
        check_qdq_params(model, "m.onnx")


def test_a_folded_relu6_comes_back_as_clip_0_6(tmp_path) -> None:
    """ONNX Runtime folds Conv → Clip(0, 6) into the Conv's output range; data that reaches
    6 makes that range end at 6. Stripped, the graph gets Clip(0, 6) back (a Relu would let
    activations grow past 6 that the original clipped)."""
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.normal(size=(8, 3, 3, 3)) * 2).astype(np.float32), "w")
    w2 = numpy_helper.from_array(rng.normal(size=(4, 8, 1, 1)).astype(np.float32), "w2")
    bounds = [numpy_helper.from_array(np.array(v, np.float32), n)
              for n, v in (("lo", 0.0), ("hi", 6.0))]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
         helper.make_node("Clip", ["c", "lo", "hi"], ["r"], name="relu6"),
         helper.make_node("Conv", ["r", "w2"], ["y"], name="conv2")],
        "relu6", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [w, w2, *bounds])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "f32.onnx")
    samples = [{"input": (rng.normal(size=(1, 3, 8, 8)) * 3).astype(np.float32)}
               for _ in range(8)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = iter(samples)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.left, None)

    quantize_static(str(tmp_path / "f32.onnx"), str(tmp_path / "int8.onnx"), Reader(),
                    quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    quantized = onnx.load(tmp_path / "int8.onnx")
    assert "Clip" not in {n.op_type for n in quantized.graph.node}  # folded by ORT
    stripped = strip_qdq(quantized).model
    clips = [n for n in stripped.graph.node if n.op_type == "Clip"]
    assert len(clips) == 1 and "Relu" not in {n.op_type for n in stripped.graph.node}
    x = (rng.normal(size=(1, 3, 8, 8)) * 10).astype(np.float32)  # far past 6 before the clip
    reference, again = _run(model, x), _run(stripped, x)
    assert np.abs(again - reference).max() < 0.05 * np.abs(reference).max()
