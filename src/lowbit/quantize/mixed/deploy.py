"""Mixed precision: INT8 everywhere except the ops a qtable names.

    table = read_qtable("model.qtable")               # {"conv5": "F32", "fc": "F16"}
    result = deploy_mixed(model, ranges, QuantizeSettings(), table)
    result.model          # QDQ INT8 graph with float / half-float islands
    result.precisions     # {"conv5": "F32", "relu5": "F32", "fc": "F16"}
    result.notes          # e.g. why a BF16 island will not run on ONNX Runtime's CPU provider

F32 ops are simply left out of INT8: tensors read only by kept ops are not quantized
(see lowbit.quantize.int8.qdq), others reach them through their DequantizeLinear, as any
float op does. F16/BF16 ops run in the low type: every float32 activation input passes
through one Cast to the low type (shared by the island's readers), float weights are
stored in the low type, and each output is cast back to float32 under its own name;
two neighbouring low-precision ops talk in the low type with no Cast pair between them.
A Relu/Clip that is the only reader of a kept op's output joins it (as tpu-mlir fuses
it), so the kept unit's output is quantized once, after the activation.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import ml_dtypes
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lowbit.calibration.observers import TensorRange
from lowbit.graph import FreshNames, onnx_opset
from lowbit.quantize.int8.params import WeightQuant
from lowbit.quantize.int8.qdq import QuantizeResult
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.quantize.int8.static import quantize_int8
from lowbit.quantize.mixed.qtable import QTable, resolve_qtable

log = logging.getLogger(__name__)

_LOW_TYPES = {"F16": TensorProto.FLOAT16, "BF16": TensorProto.BFLOAT16}
_TYPE_STRS = {"F16": "tensor(float16)", "BF16": "tensor(bfloat16)"}
_SUFFIX = {"F16": "f16", "BF16": "bf16"}
BF16_NOTE = ("BF16 islands: ONNX Runtime's CPU provider has no BF16 kernels for most ops "
             "(Conv, Add, Relu, …), so this model may not run there; use an engine with BF16 "
             "support (OpenVINO on AVX512-BF16/AMX CPUs, CUDA)")


@dataclass
class MixedResult(QuantizeResult):
    """A QuantizeResult plus the precision each kept node runs at, and notes for the user."""

    precisions: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def deploy_mixed(
    model: onnx.ModelProto,
    ranges: Mapping[str, TensorRange],
    settings: QuantizeSettings,
    qtable: QTable | Mapping[str, str],
    *,
    skipped: Mapping[str, str] | None = None,
    weights: Mapping[str, WeightQuant] | None = None,
) -> MixedResult:
    """Quantize ``model`` (canonical) to INT8 except the qtable's ops (F32, F16 or BF16)."""
    notes: list[str] = []
    keep = _demote_unsupported(model, resolve_qtable(qtable, model), notes)
    keep = _with_activations(model, keep)
    # A transformer keeps its scope (LayerNorm, Softmax, residual Adds float) around the
    # qtable's islands: quantize_int8 merges the two.
    result, scope_notes = quantize_int8(model, ranges, settings, skipped=skipped,
                                        weights=weights, keep=keep)
    notes.extend(scope_notes)
    out = result.model
    low = {name: p for name, p in keep.items() if p in _LOW_TYPES}
    if low:
        out = cast_islands(out, low)
    if "BF16" in low.values():
        notes.append(BF16_NOTE)
    return MixedResult(out, result.quantized, result.left_float, result.removed,
                       result.float_tensors, dict(keep), notes)


def _with_activations(model: onnx.ModelProto, keep: dict[str, str]) -> dict[str, str]:
    """Add a Relu/Clip that alone reads a kept node's output, at that node's precision."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in model.graph.output}
    result = dict(keep)
    for node in model.graph.node:
        if node.name not in result or not node.output or node.output[0] in graph_outputs:
            continue
        readers = consumers.get(node.output[0], [])
        if len(readers) == 1 and readers[0].op_type in ("Relu", "Clip") \
                and readers[0].name and readers[0].name not in result:
            result[readers[0].name] = result[node.name]
            log.debug("%s joins kept %s at %s", readers[0].name, node.name, result[node.name])
    return result


def _demote_unsupported(model: onnx.ModelProto, keep: dict[str, str],
                        notes: list[str]) -> dict[str, str]:
    """An op whose schema (at the model's opset) does not allow the low type stays F32."""
    opset = onnx_opset(model)
    nodes = {node.name: node for node in model.graph.node}
    result = dict(keep)
    for name, precision in keep.items():
        if precision not in _LOW_TYPES:
            continue
        node = nodes[name]
        if not _allows(node, opset, _TYPE_STRS[precision]):
            result[name] = "F32"
            notes.append(f"{name} ({node.op_type}) kept F32, not {precision}: opset {opset} "
                         f"does not allow {_TYPE_STRS[precision]} for {node.op_type}")
    return result


def _schema(node: onnx.NodeProto, opset: int) -> onnx.defs.OpSchema | None:
    try:
        return onnx.defs.get_schema(node.op_type, opset, node.domain or "")
    except onnx.defs.SchemaError:
        return None


def _allows(node: onnx.NodeProto, opset: int, type_str: str) -> bool:
    schema = _schema(node, opset)
    if schema is None or not schema.outputs:
        return False
    param = schema.outputs[0].type_str
    for constraint in schema.type_constraints:
        if constraint.type_param_str == param:
            return type_str in constraint.allowed_type_strs
    return param == type_str


def _low_inputs(node: onnx.NodeProto, opset: int) -> list[int]:
    """Input indices that share the output's type (the ones to run in the low type)."""
    schema = _schema(node, opset)
    if schema is None or not schema.outputs:
        return []
    out_type = schema.outputs[0].type_str
    indices = []
    for index in range(len(node.input)):
        formal = schema.inputs[min(index, len(schema.inputs) - 1)]
        if index >= len(schema.inputs) and \
                formal.option != onnx.defs.OpSchema.FormalParameterOption.Variadic:
            continue
        if formal.type_str == out_type:
            indices.append(index)
    return indices


def cast_islands(model: onnx.ModelProto, low: Mapping[str, str]) -> onnx.ModelProto:
    """Run the nodes named in ``low`` (name → F16/BF16) in that type, with Casts around."""
    model = onnx.shape_inference.infer_shapes(model)
    graph = model.graph
    opset = onnx_opset(model)
    types = _elem_types(model)
    inits = {init.name: init for init in graph.initializer}
    names = FreshNames.of(model)
    low_of: dict[tuple[str, str], str] = {}   # (float32 tensor, precision) → low-type tensor
    new_nodes: list[onnx.NodeProto] = []

    for node in graph.node:
        precision = low.get(node.name)
        if precision is None:
            new_nodes.append(node)
            continue
        elem = _LOW_TYPES[precision]
        for index in _low_inputs(node, opset):
            source = node.input[index]
            if not source or types.get(source) != TensorProto.FLOAT:
                continue
            key = (source, precision)
            if key not in low_of:
                target = names.make(f"{source}_{_SUFFIX[precision]}")
                if source in inits:
                    graph.initializer.append(_low_initializer(inits[source], target, precision))
                else:
                    new_nodes.append(helper.make_node("Cast", [source], [target], to=elem,
                                                      name=names.make(f"{target}_Cast")))
                low_of[key] = target
            node.input[index] = low_of[key]
        new_nodes.append(node)
        for index, output in enumerate(node.output):
            if not output or types.get(output) != TensorProto.FLOAT:
                continue
            low_out = names.make(f"{output}_{_SUFFIX[precision]}")
            node.output[index] = low_out
            new_nodes.append(helper.make_node("Cast", [low_out], [output], to=TensorProto.FLOAT,
                                              name=names.make(f"{output}_Cast")))
            low_of[(output, precision)] = low_out
    del graph.node[:]
    graph.node.extend(_without_unused(new_nodes, {o.name for o in graph.output}))
    _drop_unused_initializers(graph, {source for source, _ in low_of if source in inits})
    return model


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    graph = model.graph
    types = {init.name: init.data_type for init in graph.initializer}
    for info in list(graph.input) + list(graph.value_info) + list(graph.output):
        if info.type.HasField("tensor_type"):
            types[info.name] = info.type.tensor_type.elem_type
    return types


def _low_initializer(init: onnx.TensorProto, name: str, precision: str) -> onnx.TensorProto:
    array = numpy_helper.to_array(init)
    if precision == "F16":
        return numpy_helper.from_array(array.astype(np.float16), name)
    bits = array.astype(ml_dtypes.bfloat16).view(np.uint16)
    tensor = onnx.TensorProto(name=name, data_type=TensorProto.BFLOAT16, dims=array.shape)
    tensor.raw_data = bits.tobytes()
    return tensor


def _without_unused(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """Drop Casts back to float32 that no one reads (low-type neighbours read the low tensor)."""
    read = {name for node in nodes for name in node.input} | outputs
    return [n for n in nodes if not (n.op_type == "Cast" and n.output[0] not in read)]


def _drop_unused_initializers(graph: onnx.GraphProto, converted: set[str]) -> None:
    """Drop float32 weights whose every reader now reads their low-type copy."""
    read = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in read or init.name not in converted]
    if len(kept) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(kept)
