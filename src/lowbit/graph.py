"""Small graph helpers every layer shares: the opset, fresh names, exposing inner
tensors, and which precision a model is in.

    onnx_opset(model)                         # 17: the default domain's version (0: none)
    names = FreshNames.of(model)              # every name the graph already uses
    names = FreshNames.of_ir(ir_graph)        # the same for an onnx-ir graph
    names.make("conv1_scale")                 # "conv1_scale", then "conv1_scale_2", ...
    probe = with_outputs(model, ["relu1"])    # a copy whose outputs include inner tensors
    add_outputs(probe.graph, ["max_0"])       # the same, in place (a probe adding nodes)
    add_reduce(probe.graph, "ReduceMax", "relu1", "max_0", [0, 2, 3], opset=17)
    schedule_probes(probe.graph, first=len(model.graph.node))  # probes run as soon as they can
    inferred = infer_shapes_light(model, {"input": (1, 3, 640, 640)})  # shapes, no weights
    precision_of(model)                       # "F32", "F16", "BF16", "INT8", "MIXED", "W4"
    str(declared_precision(model))            # "INT8 (QDQ)", "W4 (MatMulNBits)", "F16", ...
    is_qdq(model)                             # a QuantizeLinear/DequantizeLinear in the graph
    check_qdq_params(model, "qdq.onnx")       # ModelError naming a zero/negative/NaN scale
    constant_arrays(model.graph)              # initializers and Constant outputs, as arrays

One module, so that a fresh name, an opset or a precision means the same thing in
calibrate, the quantizers, compare and report.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper

from lowbit.errors import ModelError

DEFAULT_DOMAINS = ("", "ai.onnx")
AXES_INPUT_OPSET = 18  # ReduceMax/Min/Mean take their axes as an input from this opset
# Ops that compute in integers themselves (QOperator form, dynamic INT8).
_QOPERATOR_OPS = frozenset({"QLinearConv", "QLinearMatMul", "QLinearAdd", "MatMulInteger",
                            "ConvInteger", "QGemm", "DynamicQuantizeLinear"})
_WEIGHTED_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
_FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16)
# Shape inference reads the values of small initializers (Reshape's shape, Slice's starts)
# and only the type and shape of the others (weights).
_KEEP_VALUES_UP_TO = 1024


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

    @classmethod
    def of_ir(cls, graph: ir.Graph) -> FreshNames:
        """Every value and node name of an onnx-ir graph (subgraph nodes included)."""
        nodes = list(graph.all_nodes())
        values = [*graph.inputs, *graph.outputs, *graph.initializers.values()]
        values += [v for node in nodes for v in (*node.inputs, *node.outputs) if v is not None]
        names = {node.name for node in nodes} | {value.name for value in values}
        return cls(name for name in names if name)

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
    add_outputs(exposed.graph, names, elem_type=elem_type)
    return exposed


def add_outputs(graph: onnx.GraphProto, names: Sequence[str], *,
                elem_type: int = TensorProto.UNDEFINED) -> None:
    """:func:`with_outputs` in place, for a probe that adds its own nodes to its copy."""
    present = {o.name for o in graph.output}
    for name in names:
        if name and name not in present:
            present.add(name)
            graph.output.append(
                helper.make_tensor_value_info(name, elem_type, None)
                if elem_type != TensorProto.UNDEFINED else onnx.ValueInfoProto(name=name))


def add_reduce(graph: onnx.GraphProto, op: str, data: str, output: str, axes: Sequence[int],
               *, opset: int, keepdims: bool = False) -> None:
    """Append ``op`` (ReduceMax, ReduceMin, ReduceMean) of ``data`` over ``axes`` to
    ``graph``: ``axes`` is an attribute below opset 18 (0, no default domain, included)
    and an input from 18 on, an initializer named ``{output}_axes``."""
    if opset >= AXES_INPUT_OPSET:
        axes_name = f"{output}_axes"
        graph.initializer.append(numpy_helper.from_array(np.array(axes, np.int64), axes_name))
        graph.node.append(helper.make_node(op, [data, axes_name], [output],
                                           keepdims=int(keepdims)))
    else:
        graph.node.append(helper.make_node(op, [data], [output], axes=list(axes),
                                           keepdims=int(keepdims)))


def schedule_probes(graph: onnx.GraphProto, first: int) -> None:
    """Order the probe nodes ``graph.node[first:]`` (reductions a probe appended after the
    model's own nodes) so that ONNX Runtime runs each as soon as what it reads exists.

    ONNX Runtime orders a graph by a depth-first walk back from its leaf nodes, the last
    leaf in the node list first; probes appended in graph order would make it run the whole
    model before the first probe, keeping every probed tensor alive until the end (memory:
    all activations at once). Listed latest-producer first, each probe runs right after
    its input, and a tensor is freed as in plain inference."""
    nodes = list(graph.node)
    position = {name: index for index, node in enumerate(nodes[:first]) for name in node.output}
    rank: list[tuple[int, int]] = []
    for order, node in enumerate(nodes[first:]):
        reads = [position.get(name, -1) for name in node.input]
        latest = max(reads, default=-1)
        for name in node.output:
            position[name] = latest  # a probe chain ranks with the tensor it starts from
        rank.append((-latest, order))
    probes = [nodes[first + order] for _, order in sorted(rank)]
    del graph.node[first:]
    graph.node.extend(probes)


def infer_shapes_light(model: onnx.ModelProto,
                       input_shapes: Mapping[str, Sequence[int | str | None]] | None = None, *,
                       data_prop: bool = False) -> onnx.ModelProto:
    """``onnx.shape_inference.infer_shapes`` on :func:`weightless` ``model``, so a 100 MB
    model is not serialized for it; ``input_shapes`` sets the graph inputs' shapes first
    (the data's shape, for a model with dynamic dimensions). The result has the model's
    nodes and the inferred ``value_info``, and initializers without their values; onnx's
    errors propagate (several exception types)."""
    light = weightless(model)
    for value in light.graph.input:
        shape = (input_shapes or {}).get(value.name)
        if shape is not None and value.type.HasField("tensor_type"):
            dims = value.type.tensor_type.shape
            dims.ClearField("dim")
            for size in shape:
                dim = dims.dim.add()
                if isinstance(size, int) and size >= 0:
                    dim.dim_value = size
                elif isinstance(size, str):
                    dim.dim_param = size
    return onnx.shape_inference.infer_shapes(light, data_prop=data_prop)


def weightless(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose large initializers keep their name, type and shape but
    not their values (what shape inference and a memory estimate need); small ones
    (Reshape's shape, Slice's starts) keep their values. The weights are never copied."""
    out = onnx.ModelProto(ir_version=model.ir_version)
    out.opset_import.extend(model.opset_import)
    out.functions.extend(model.functions)
    source, graph = model.graph, out.graph
    graph.name = source.name
    graph.node.extend(source.node)
    graph.input.extend(source.input)
    graph.output.extend(source.output)
    graph.value_info.extend(source.value_info)
    graph.sparse_initializer.extend(source.sparse_initializer)
    for init in source.initializer:
        if _elements(init) <= _KEEP_VALUES_UP_TO:
            graph.initializer.append(init)
        else:
            graph.initializer.append(onnx.TensorProto(name=init.name, data_type=init.data_type,
                                                      dims=init.dims))
    return out


def _elements(init: onnx.TensorProto) -> int:
    return int(np.prod(init.dims, dtype=np.int64)) if init.dims else 1


@dataclass(frozen=True)
class Precision:
    """The precision a graph declares: ``name`` "W4", "INT8", "F16", "BF16" or "F32", and
    for a quantized graph the ``form`` its integers take ("MatMulNBits", "QOperator",
    "QDQ"); ``str()`` shows both, "INT8 (QDQ)"."""

    name: str
    form: str = ""

    def __str__(self) -> str:
        return f"{self.name} ({self.form})" if self.form else self.name


def declared_precision(model: onnx.ModelProto) -> Precision:
    """W4 for MatMulNBits; INT8 for integer ops (QOperator, dynamic) or QuantizeLinear
    (QDQ); F16/BF16 when the weights or graph inputs/outputs are half floats or a Cast
    makes them (the cast method keeps F32 weights); else F32."""
    ops = {node.op_type for node in model.graph.node}
    if "MatMulNBits" in ops:
        return Precision("W4", "MatMulNBits")
    if ops & _QOPERATOR_OPS:
        return Precision("INT8", "QOperator")
    if "QuantizeLinear" in ops:
        return Precision("INT8", "QDQ")
    graph = model.graph
    types = {init.data_type for init in graph.initializer}
    types |= {v.type.tensor_type.elem_type for v in (*graph.input, *graph.output)}
    types |= {attr.i for node in graph.node if node.op_type == "Cast"
              for attr in node.attribute if attr.name == "to"}
    if TensorProto.FLOAT16 in types:
        return Precision("F16")
    if TensorProto.BFLOAT16 in types:
        return Precision("BF16")
    return Precision("F32")


def precision_of(model: onnx.ModelProto) -> str:
    """:func:`declared_precision`'s name, with MIXED for an INT8 graph in which a
    conv/matmul keeps float weights (a qtable's float islands)."""
    precision = declared_precision(model).name
    if precision == "INT8" and _keeps_float_weights(model.graph):
        return "MIXED"
    return precision


def _keeps_float_weights(graph: onnx.GraphProto) -> bool:
    floats = {i.name for i in graph.initializer
              if i.data_type in _FLOAT_TYPES and len(i.dims) >= 2}
    casts = {node.input[0] for node in graph.node if node.op_type == "Cast"}
    return any(node.op_type in _WEIGHTED_OPS and len(node.input) > 1
               and (node.input[1] in floats or node.input[1] in casts)
               for node in graph.node)


def is_qdq(model: onnx.ModelProto) -> bool:
    """Whether the main graph holds a QuantizeLinear or DequantizeLinear."""
    return any(node.op_type in QDQ_OPS and node.domain in DEFAULT_DOMAINS
               for node in model.graph.node)


def constant_arrays(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """The graph's initializers and its Constant nodes' outputs (``value`` attribute), by
    name, as numpy arrays."""
    found = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for attribute in node.attribute:
                if attribute.name == "value":
                    found[node.output[0]] = numpy_helper.to_array(attribute.t)
    return found


def check_qdq_params(model: onnx.ModelProto, where: str = "the model") -> None:
    """Every constant scale of a QuantizeLinear/DequantizeLinear is positive and finite
    (a model made elsewhere may hold anything); else ModelError naming the scale tensor,
    the node and the value found."""
    graph = model.graph
    wanted = {node.input[1] for node in graph.node
              if node.op_type in QDQ_OPS and len(node.input) > 1}
    scales = {init.name: numpy_helper.to_array(init) for init in graph.initializer
              if init.name in wanted}
    scales.update({node.output[0]: numpy_helper.to_array(attr.t) for node in graph.node
                   if node.op_type == "Constant" and node.output and node.output[0] in wanted
                   for attr in node.attribute if attr.name == "value"})
    for node in graph.node:
        if node.op_type not in QDQ_OPS or len(node.input) < 2 or node.input[1] not in scales:
            continue
        values = scales[node.input[1]].astype(np.float64).reshape(-1)
        bad = ~np.isfinite(values) | (values <= 0)
        if np.any(bad):
            value = values[int(np.argmax(bad))]
            what = "zero" if value == 0 else "negative" if value < 0 else "not finite"
            raise ModelError(f"{where}: the scale '{node.input[1]}' of {node.op_type} "
                             f"'{node.name or node.output[0]}' is {what} ({value:g}); a "
                             "quantization scale must be positive and finite")
