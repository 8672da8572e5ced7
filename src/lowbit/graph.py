"""Small graph helpers every layer shares: the opset, fresh names, exposing inner
tensors, and which precision a model is in.

    onnx_opset(model)                         # 17: the default domain's version (0: none)
    names = FreshNames.of(model)              # every name the graph already uses
    names.make("conv1_scale")                 # "conv1_scale", then "conv1_scale_2", ...
    probe = with_outputs(model, ["relu1"])    # a copy whose outputs include inner tensors
    precision_of(model)                       # "F32", "F16", "BF16", "INT8", "MIXED", "W4"

One module, so that a fresh name, an opset or a precision means the same thing in
calibrate, the quantizers, compare and report.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import onnx
from onnx import TensorProto, helper

DEFAULT_DOMAINS = ("", "ai.onnx")
_QUANTIZED_OPS = frozenset({"QuantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulInteger",
                            "ConvInteger", "QGemm", "DynamicQuantizeLinear"})
_WEIGHTED_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")
_FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16)


def onnx_opset(model: onnx.ModelProto) -> int:
    """The version of the default (ai.onnx) domain the model imports; 0 when it imports
    none (a graph of custom-domain ops only)."""
    return next((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), 0)


class FreshNames:
    """Names no tensor or node of a graph has yet; each one made is taken at once."""

    def __init__(self, taken: Iterable[str] = ()) -> None:
        self.taken: set[str] = set(taken)

    @classmethod
    def of(cls, model: onnx.ModelProto | onnx.GraphProto) -> FreshNames:
        """Every value, initializer and node name of the graph (subgraphs included)."""
        graph = model.graph if isinstance(model, onnx.ModelProto) else model
        return cls(_graph_names(graph))

    def make(self, base: str) -> str:
        """``base`` if free, else ``base_2``, ``base_3``, ..."""
        name, n = base, 1
        while name in self.taken:
            n += 1
            name = f"{base}_{n}"
        self.taken.add(name)
        return name

    def __contains__(self, name: object) -> bool:
        return name in self.taken


def _graph_names(graph: onnx.GraphProto) -> set[str]:
    names = {v.name for v in (*graph.input, *graph.output, *graph.value_info)}
    names |= {i.name for i in graph.initializer}
    for node in graph.node:
        names.update(node.input)
        names.update(node.output)
        if node.name:
            names.add(node.name)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                names |= _graph_names(attr.g)
            for sub in attr.graphs:
                names |= _graph_names(sub)
    names.discard("")
    return names


def with_outputs(model: onnx.ModelProto, names: Sequence[str], *,
                 elem_type: int = TensorProto.UNDEFINED) -> onnx.ModelProto:
    """A copy of ``model`` whose graph outputs also include ``names`` (inner tensors to
    read back from a run); names already outputs are not repeated. ``elem_type`` declares
    their type (UNDEFINED: left for the engine to infer)."""
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    present = {o.name for o in exposed.graph.output}
    for name in names:
        if name and name not in present:
            present.add(name)
            exposed.graph.output.append(
                helper.make_tensor_value_info(name, elem_type, None)
                if elem_type != TensorProto.UNDEFINED else onnx.ValueInfoProto(name=name))
    return exposed


def precision_of(model: onnx.ModelProto) -> str:
    """W4 for MatMulNBits; INT8 when the graph quantizes (MIXED when a conv/matmul keeps
    float weights, a qtable's float islands); F16/BF16 when its weights are half floats
    or Cast to them (the cast method keeps F32 weights); else F32."""
    ops = {node.op_type for node in model.graph.node}
    if "MatMulNBits" in ops:
        return "W4"
    if ops & _QUANTIZED_OPS:
        floats = {i.name for i in model.graph.initializer
                  if i.data_type in _FLOAT_TYPES and len(i.dims) >= 2}
        casts = {node.input[0] for node in model.graph.node if node.op_type == "Cast"}
        mixed = any(node.op_type in _WEIGHTED_OPS and len(node.input) > 1
                    and (node.input[1] in floats or node.input[1] in casts)
                    for node in model.graph.node)
        return "MIXED" if mixed else "INT8"
    types = {init.data_type for init in model.graph.initializer}
    types |= {attr.i for node in model.graph.node if node.op_type == "Cast"
              for attr in node.attribute if attr.name == "to"}
    if TensorProto.FLOAT16 in types:
        return "F16"
    if TensorProto.BFLOAT16 in types:
        return "BF16"
    return "F32"
