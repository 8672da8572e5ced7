"""Pair each float tensor of a reference model with the tensor of a test model that holds its value.

    pairing = pair_tensors(float_model, int8_model)
    pairing.pairs[0]      # TensorPair(name='r0', test_tensor='r0_dequantized', op_type='Relu', order=3)
    pairing.unpaired      # ['c0', 'b0']: reference tensors with no partner (e.g. pre-BN conv output)

Pairing follows the graph structure lowbit writes, never name suffixes:

* a float tensor that is a graph input or a node output in both graphs pairs by name;
* when, in the test graph, that tensor feeds a QuantizeLinear whose output feeds a
  DequantizeLinear, the pair's test tensor is that DequantizeLinear's output (found by
  walking consumers): that is the quantized value the next layer reads;
* the rewrites keep names on purpose: BatchNormalization folded into Conv leaves the conv
  output with the BN output's name, a Relu removed after a quantized producer leaves the
  producer's output with the Relu's name, removed Identity/Dropout keep the surviving name.
  So the reference BN/Relu outputs pair by name, and what the rewrite removed (the conv's
  pre-BN output) has no partner and is counted in ``unpaired``.

Only the main graph is paired (not If/Loop bodies); initializers and Constant outputs are
skipped; pairs keep the reference graph's topological order.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

import onnx
from onnx import TensorProto

from lowbit.errors import ModelError
from lowbit.graph import infer_shapes_light

log = logging.getLogger(__name__)

FLOAT_TYPES = frozenset({TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16,
                         TensorProto.DOUBLE})
INPUT_OP = "input"


@dataclass(frozen=True)
class TensorPair:
    """A reference float tensor and the test tensor holding its value."""

    name: str          # the reference float tensor
    test_tensor: str   # the tensor in the test model, e.g. 'c_dequantized' or 'c'
    op_type: str       # the reference producer's op type, "input" for graph inputs
    order: int         # position in the reference graph (topological)


@dataclass(frozen=True)
class Pairing:
    """Every pair in reference graph order, and the reference float tensors left without one."""

    pairs: tuple[TensorPair, ...]
    unpaired: tuple[str, ...]


def pair_tensors(reference: onnx.ModelProto, test: onnx.ModelProto) -> list[TensorPair]:
    """The pairs of :func:`pair_model_tensors`, without the unpaired names."""
    return list(pair_model_tensors(reference, test).pairs)


def pair_model_tensors(reference: onnx.ModelProto, test: onnx.ModelProto) -> Pairing:
    """Pair the float tensors of ``reference`` with those of ``test`` (see the module doc)."""
    ref_types = tensor_elem_types(reference)
    test_types = tensor_elem_types(test)
    test_produced = _produced_tensors(test)
    consumers = _consumers(test)
    pairs: list[TensorPair] = []
    unpaired: list[str] = []
    for order, (name, op_type) in enumerate(_float_tensors_in_order(reference, ref_types)):
        if name not in test_produced or test_types.get(name) not in FLOAT_TYPES:
            unpaired.append(name)
            continue
        test_tensor = _dequantized_output(name, consumers) or name
        pairs.append(TensorPair(name, test_tensor, op_type, order))
    log.debug("paired %d reference tensors, %d without a partner", len(pairs), len(unpaired))
    return Pairing(tuple(pairs), tuple(unpaired))


def tensor_elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every typed tensor of the main graph, after ONNX shape inference."""
    try:
        inferred = infer_shapes_light(model)
    except Exception as err:  # noqa: BLE001 - onnx raises several types; untyped still works
        log.debug("shape inference failed, using the model's own value_info: %s", err)
        inferred = model
    graph = inferred.graph
    types: dict[str, int] = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type:
            types[value.name] = value.type.tensor_type.elem_type
    for init in graph.initializer:
        types[init.name] = init.data_type
    return types


def _float_tensors_in_order(model: onnx.ModelProto,
                            types: dict[str, int]) -> list[tuple[str, str]]:
    """(name, producer op type) of every float activation, graph inputs first."""
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    found: list[tuple[str, str]] = [
        (value.name, INPUT_OP) for value in graph.input
        if value.name not in initializers and types.get(value.name) in FLOAT_TYPES]
    seen = {name for name, _ in found}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            continue
        for output in node.output:
            if output and output not in seen and types.get(output) in FLOAT_TYPES:
                found.append((output, node.op_type))
                seen.add(output)
    return found


def _produced_tensors(model: onnx.ModelProto) -> set[str]:
    """Graph inputs (not initializers) and outputs of non-Constant nodes."""
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    produced = {value.name for value in graph.input if value.name not in initializers}
    for node in graph.node:
        if node.op_type != "Constant":
            produced.update(output for output in node.output if output)
    return produced


def _consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in model.graph.node:
        for name in node.input:
            if name:
                consumers[name].append(node)
    return consumers


def _dequantized_output(name: str, consumers: dict[str, list[onnx.NodeProto]]) -> str | None:
    """The output of DequantizeLinear(QuantizeLinear(name)), if the test graph has that chain."""
    for quantize in consumers.get(name, []):
        if quantize.op_type != "QuantizeLinear" or quantize.input[0] != name:
            continue
        for dequantize in consumers.get(quantize.output[0], []):
            if dequantize.op_type == "DequantizeLinear" and dequantize.input[0] == quantize.output[0]:
                return str(dequantize.output[0])
    return None


def check_pairs(pairs: list[TensorPair] | tuple[TensorPair, ...], what: str) -> None:
    """Raise when nothing could be paired: the two models share no float tensor name."""
    if not pairs:
        raise ModelError(f"{what}: no float tensor of the reference model has a partner in the "
                         "test model (expected tensors with the same names, found none)")
