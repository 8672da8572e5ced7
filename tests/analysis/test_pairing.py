"""pair_tensors across BN folding, Relu folding, Identity removal and QDQ rewriting."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from lowbit.analysis.pairing import TensorPair, pair_model_tensors, pair_tensors
from lowbit.passes import canonicalize
from lowbit.quantize.int8.qdq import quantize_qdq
from lowbit.quantize.int8.settings import QuantizeSettings
from tests.models import init, make_model, minmax_ranges, small_resnet


@pytest.fixture(scope="module")
def models() -> dict[str, onnx.ModelProto]:
    original = small_resnet()
    canonical, _ = canonicalize(original)
    feeds = {"input": np.random.default_rng(0).normal(size=(1, 3, 16, 16)).astype(np.float32)}
    quantized = quantize_qdq(canonical, minmax_ranges(canonical, feeds), QuantizeSettings()).model
    return {"original": original, "canonical": canonical, "quantized": quantized}


def _by_name(pairs: list[TensorPair]) -> dict[str, TensorPair]:
    return {pair.name: pair for pair in pairs}


def _producer(model: onnx.ModelProto, tensor: str) -> onnx.NodeProto:
    return next(node for node in model.graph.node if tensor in node.output)


def _assert_dequantized_of(model: onnx.ModelProto, test_tensor: str, float_name: str) -> None:
    """test_tensor is a DequantizeLinear output whose QuantizeLinear reads float_name."""
    dq = _producer(model, test_tensor)
    assert dq.op_type == "DequantizeLinear"
    q = _producer(model, dq.input[0])
    assert q.op_type == "QuantizeLinear"
    assert q.input[0] == float_name


def test_quantized_pairs_follow_q_dq_chains(models: dict[str, onnx.ModelProto]) -> None:
    original, quantized = models["original"], models["quantized"]
    pairing = pair_model_tensors(original, quantized)
    pairs = _by_name(list(pairing.pairs))

    # stem: Conv → BN → Relu became one Conv whose output carries the Relu's name
    assert _producer(quantized, "r0").op_type == "Conv"
    assert pairs["r0"].op_type == "Relu"
    _assert_dequantized_of(quantized, pairs["r0"].test_tensor, "r0")
    # the pre-BN conv output and the pre-Relu BN output no longer exist: not compared
    assert {"c0", "b0", "c1", "b1", "c2"} <= set(pairing.unpaired)
    assert "c0" not in pairs and "b0" not in pairs

    # residual: Add → Relu became one Add named after the Relu; the pre-Relu sum is gone
    assert _producer(quantized, "r2").op_type == "Add"
    assert pairs["r2"].op_type == "Relu"
    _assert_dequantized_of(quantized, pairs["r2"].test_tensor, "r2")
    assert "a" in pairing.unpaired
    # the BN output entering the Add is a quantized conv output
    _assert_dequantized_of(quantized, pairs["b2"].test_tensor, "b2")

    _assert_dequantized_of(quantized, pairs["gap"].test_tensor, "gap")
    assert pairs["gap"].op_type == "GlobalAveragePool"
    _assert_dequantized_of(quantized, pairs["input"].test_tensor, "input")
    assert pairs["input"].op_type == "input"
    # the final output is float in both: paired by name
    assert pairs["logits"].test_tensor == "logits"
    assert pairs["logits"].op_type == "Gemm"


def test_canonical_pairs_bn_output_with_folded_conv(models: dict[str, onnx.ModelProto]) -> None:
    original, canonical = models["original"], models["canonical"]
    pairing = pair_model_tensors(original, canonical)
    pairs = _by_name(list(pairing.pairs))
    assert _producer(canonical, "b0").op_type == "Conv"
    assert pairs["b0"] == TensorPair("b0", "b0", "BatchNormalization", pairs["b0"].order)
    assert pairs["r0"].test_tensor == "r0"
    assert pairs["a"].op_type == "Add"
    assert set(pairing.unpaired) == {"c0", "c1", "c2"}


def test_pairs_keep_reference_graph_order(models: dict[str, onnx.ModelProto]) -> None:
    pairs = pair_tensors(models["original"], models["quantized"])
    orders = [pair.order for pair in pairs]
    assert orders == sorted(orders)
    assert pairs[0].name == "input"
    assert pairs[-1].name == "logits"
    ref_outputs = [o for node in models["original"].graph.node for o in node.output]
    positions = [ref_outputs.index(p.name) for p in pairs[1:]]
    assert positions == sorted(positions)


def test_initializers_and_constants_are_not_paired() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    nodes = [helper.make_node("Constant", [], ["k"],
                              value=helper.make_tensor("kv", TensorProto.FLOAT, [1], [2.0])),
             helper.make_node("Mul", ["x", "k"], ["m"]),
             helper.make_node("Add", ["m", "bias"], ["y"])]
    model = make_model(nodes, [x], [y], [init("bias", np.ones(4, np.float32))])
    names = [pair.name for pair in pair_tensors(model, model)]
    assert names == ["x", "m", "y"]


def test_identity_removed_pairs_surviving_name() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4])
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Identity", ["r"], ["i"]),
             helper.make_node("Sigmoid", ["i"], ["out"])]
    original = make_model(nodes, [x], [out], [])
    canonical, _ = canonicalize(original)
    assert not any(node.op_type == "Identity" for node in canonical.graph.node)
    pairing = pair_model_tensors(original, canonical)
    names = {pair.name for pair in pairing.pairs}
    assert {"x", "out"} <= names
    assert len(names) + len(pairing.unpaired) == 4  # x, r, i, out: one of r/i survives
    assert len(pairing.unpaired) == 1


def test_non_float_tensors_are_skipped() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, [2])
    model = make_model([helper.make_node("Shape", ["x"], ["y"])], [x], [y], [])
    assert [pair.name for pair in pair_tensors(model, model)] == ["x"]
