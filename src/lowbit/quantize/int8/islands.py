"""INT8 islands: the connected runs of quantized ops, and what each costs at its edges.

    islands = find_islands(model, quantized={"conv1", "relu1", "conv2"}, removed={"relu1"})
    islands[0].nodes          # ("conv1", "conv2"): ops that pass int8 tensors to each other
    islands[0].edge_elements  # elements quantized on the way in plus dequantized on the way out
    islands[0].macs           # multiply-accumulates of its Conv/MatMul/Gemm ops
    islands[0].overhead       # edge elements per MAC: high means Q/DQ may cost more than it saves

Inside an island ONNX Runtime runs integer kernels back to back; every tensor that
enters from a float op (or the graph input) is quantized and every tensor that leaves
to one is dequantized, and on x86 the integer convolutions also change layout at those
edges. A small island of tiny convolutions between float ops (PReLU, HardSwish, a
squeeze-excite gate) can run slower in INT8 than in float. The costs here rank islands
for lowbit.recipe.steps.speed, which measures; they are not a timing model.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import onnx

from lowbit.quantize.mixed.sensitivity import node_costs

_WEIGHTED = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})
#: ops ONNX Runtime's CPU provider runs on int8 tensors when they sit between
#: DequantizeLinear and QuantizeLinear (its QDQ fusions: QLinearConv, QGemm, QLinearAdd,
#: QLinearMul, QLinearConcat, QLinearSigmoid, ... and the data-movement ops it runs on
#: the quantized tensor). A quantized op outside this set (HardSigmoid, PRelu, Div, ...)
#: still runs in float between a DequantizeLinear and a QuantizeLinear: an island edge.
INTEGER_OPS = frozenset({
    "Conv", "MatMul", "Gemm", "Add", "Mul", "Concat", "AveragePool", "GlobalAveragePool",
    "LeakyRelu", "Sigmoid", "Softmax", "Relu", "Clip", "MaxPool", "Reshape", "Transpose",
    "Squeeze", "Unsqueeze", "Flatten", "Resize", "Slice", "Split", "Gather", "Expand",
    "Identity", "DepthToSpace", "SpaceToDepth", "Pad", "Where", "ArgMax"})


@dataclass(frozen=True)
class Island:
    nodes: tuple[str, ...]
    edge_elements: float
    macs: float

    @property
    def overhead(self) -> float:
        return self.edge_elements / max(self.macs, 1.0)


def find_islands(model: onnx.ModelProto, quantized: Collection[str],
                 removed: Collection[str] = ()) -> list[Island]:
    """The islands of ``model`` (the float graph) when the ``quantized`` nodes run in INT8;
    ``removed`` nodes (an activation folded into its producer's range) join their
    neighbours, and quantized ops ONNX Runtime runs in float anyway (not INTEGER_OPS)
    separate them. Islands come in graph order of their first node."""
    inside = set(quantized) | set(removed)
    nodes = [n for n in model.graph.node if n.name in inside and n.op_type in INTEGER_OPS]
    producer = {out: n.name for n in nodes for out in n.output}
    parent = {n.name: n.name for n in nodes}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for node in nodes:
        for tensor in node.input:
            if tensor in producer:
                parent[root(node.name)] = root(producer[tensor])
    groups: dict[str, list[str]] = {}
    for node in nodes:
        groups.setdefault(root(node.name), []).append(node.name)
    costs = node_costs(model)
    sizes = _tensor_elements(model)
    readers: dict[str, list[str]] = {}
    for node in model.graph.node:
        for tensor in node.input:
            readers.setdefault(tensor, []).append(node.name)
    outputs = {o.name for o in model.graph.output}
    by_name = {n.name: n for n in nodes}
    islands = []
    for members in groups.values():
        member_set = set(members)
        edges = 0.0
        for name in members:
            node = by_name[name]
            for tensor in node.input[:1] if node.op_type in _WEIGHTED else node.input:
                if tensor and producer.get(tensor) not in member_set and tensor in sizes:
                    edges += sizes[tensor]
            for tensor in node.output:
                leaves = tensor in outputs or any(r not in member_set
                                                  for r in readers.get(tensor, ()))
                if leaves:
                    edges += sizes.get(tensor, 0.0)
        macs = sum(costs.get(name, 0.0) for name in members
                   if by_name[name].op_type in _WEIGHTED)
        islands.append(Island(tuple(members), edges, macs))
    return islands


def _tensor_elements(model: onnx.ModelProto) -> dict[str, float]:
    """Elements of every activation tensor whose shape inference knows (dynamic dims as 1);
    initializers are left out (they are weights, quantized offline)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    weights = {i.name for i in model.graph.initializer}
    sizes = {}
    for info in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        if info.name in weights or not info.type.tensor_type.HasField("shape"):
            continue
        elements = 1.0
        for dim in info.type.tensor_type.shape.dim:
            elements *= dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else 1
        sizes[info.name] = elements
    return sizes


def float_ops_for(model: onnx.ModelProto, float_islands: Collection[Island],
                  islands: Collection[Island], quantized: Collection[str]) -> set[str]:
    """The ops to keep float so that ``float_islands`` run in float: their own ops, and
    the quantized ops ONNX Runtime runs in float anyway (not INTEGER_OPS) that no longer
    touch an INT8 island, whose Q/DQ pairs would otherwise stay for nothing."""
    keep = {name for island in float_islands for name in island.nodes}
    staying = {name for island in islands for name in island.nodes} - keep
    touched: set[str] = set()
    for node in model.graph.node:
        if node.name in staying:
            touched.update(node.input)
            touched.update(node.output)
    for node in model.graph.node:
        if node.name in quantized and node.op_type not in INTEGER_OPS \
                and not touched.intersection([*node.input, *node.output]):
            keep.add(node.name)
    return keep
