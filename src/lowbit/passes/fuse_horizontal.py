"""Horizontal fusion: Convs or MatMuls reading one input become one wider op and a Split.

    rewrites = get_pass("fuse_horizontal").run(ir_model)

Convs that read the same tensor with the same attributes (kernel, strides, pads,
dilations; group 1) and constant weights are one Conv whose output channels are
theirs stacked, followed by a Split on the channel axis; MatMuls whose right
operands are constant 2-D matrices with the same row count are one MatMul on the
matrices side by side, then a Split on the last axis. Each Split output takes the
name of the output it replaces.

Not in DEFAULT_PASSES: on ONNX Runtime's CPU provider it did not pay in our
measurements (BENCHMARKS.md, issue 5) — run it by name where it does.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from lowbit.passes.registry import register_rules
from lowbit.passes.rewrite import Match, Op, Replacement, Rule, constant, new_initializer


def _attributes(node: ir.Node) -> tuple[tuple[str, object], ...]:
    items = []
    for name, attr in sorted(node.attributes.items()):
        value = attr.value
        items.append((name, tuple(value) if isinstance(value, list | tuple) else value))
    return tuple(items)


def _siblings(node: ir.Node) -> list[ir.Node]:
    """``node`` and the other nodes like it reading its first input, in graph order."""
    data = node.inputs[0]
    if data is None:
        return []
    key = (node.op_type, node.domain, _attributes(node))
    found = []
    for user, index in data.uses():
        if (index == 0 and user.op_type == node.op_type and user.domain == node.domain
                and _attributes(user) == key[2] and user not in found):
            found.append(user)
    if len(found) < 2:
        return found
    graph = node.graph
    order = {n: i for i, n in enumerate(graph)} if isinstance(graph, ir.Graph) else {}
    return sorted(found, key=lambda n: order.get(n, 0))


def _weights(nodes: list[ir.Node]) -> list[np.ndarray] | None:
    weights = [constant(n.inputs[1]) if len(n.inputs) > 1 else None for n in nodes]
    if any(w is None for w in weights):
        return None
    return [w for w in weights if w is not None]


def _fuse_convs(m: Match) -> Replacement | None:
    convs = _siblings(m.root)
    if len(convs) < 2 or convs[0] is not m.root:
        return None
    if m.root.attributes.get_int("group", 1) != 1:
        return None
    weights = _weights(convs)
    if weights is None or len({w.shape[1:] for w in weights}) != 1 or len(
            {w.dtype for w in weights}) != 1:
        return None
    biases = []
    for conv, weight in zip(convs, weights, strict=True):
        if len(conv.inputs) > 2 and conv.inputs[2] is not None:
            bias = constant(conv.inputs[2])
            if bias is None:
                return None
            biases.append(bias)
        else:
            biases.append(np.zeros(weight.shape[0], weight.dtype))
    graph = m.graph
    name = m.root.name or "conv"
    weight_value = new_initializer(graph, np.concatenate(weights), f"{name}_weight_fused")
    bias_value = new_initializer(graph, np.concatenate(biases).astype(weights[0].dtype),
                                 f"{name}_bias_fused")
    fused = ir.Node("", "Conv", [m.root.inputs[0], weight_value, bias_value],
                    attributes=list(m.root.attributes.values()), name=f"{name}_fused",
                    version=m.root.version)
    return _split(graph, fused, convs, [w.shape[0] for w in weights], axis=1)


def _fuse_matmuls(m: Match) -> Replacement | None:
    matmuls = _siblings(m.root)
    if len(matmuls) < 2 or matmuls[0] is not m.root:
        return None
    weights = _weights(matmuls)
    if (weights is None or any(w.ndim != 2 for w in weights)
            or len({w.shape[0] for w in weights}) != 1 or len({w.dtype for w in weights}) != 1):
        return None
    graph = m.graph
    name = m.root.name or "matmul"
    weight = new_initializer(graph, np.concatenate(weights, axis=1), f"{name}_weight_fused")
    fused = ir.Node("", "MatMul", [m.root.inputs[0], weight], name=f"{name}_fused",
                    version=m.root.version)
    return _split(graph, fused, matmuls, [w.shape[1] for w in weights], axis=-1)


def _split(graph: ir.Graph, fused: ir.Node, nodes: list[ir.Node], sizes: list[int],
           axis: int) -> Replacement:
    sizes_value = new_initializer(graph, np.asarray(sizes, np.int64),
                                  f"{fused.name}_split_sizes")
    split = ir.Node("", "Split", [fused.outputs[0], sizes_value], attributes=[
        ir.AttrInt64("axis", axis)], num_outputs=len(nodes), name=f"{fused.name}_split")
    pairs = tuple((node.outputs[0], out) for node, out in zip(nodes, split.outputs, strict=True))
    return Replacement(pairs, (fused, split))


register_rules(
    "fuse_horizontal",
    "Convs/MatMuls reading one input with like attributes fused into one wider op + Split",
    [Rule(Op("Conv"), _fuse_convs), Rule(Op("MatMul"), _fuse_matmuls)])
