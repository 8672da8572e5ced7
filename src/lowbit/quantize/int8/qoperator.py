"""Turn a QDQ model into QOperator form: QLinearConv and QLinearMatMul with the
requantization folded in (as TensorFlow's INT8 graphs carry it).

    qop_model = to_qoperator(qdq_model)

Rewrite rules are data: each entry matches ``DQ(x), DQ(w)[, DQ(b)] → op → Q`` for
one op type and returns the integer node. Ops without a rule keep their QDQ form,
which ORT still fuses, so the result always runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import onnx
import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass, TopologicalSortPass


@dataclass(frozen=True)
class _Match:
    node: ir.Node
    dq_inputs: list[ir.Node]
    q_output: ir.Node


Rewrite = Callable[[_Match], ir.Node | None]


def _match(node: ir.Node, n_quantized_inputs: int) -> _Match | None:
    dqs = []
    for i in range(n_quantized_inputs):
        value = node.inputs[i] if i < len(node.inputs) else None
        producer = value.producer() if value is not None else None
        if producer is None or producer.op_type != "DequantizeLinear":
            return None
        dqs.append(producer)
    output = node.outputs[0]
    uses = list(output.uses())
    if output.is_graph_output() or len(uses) != 1 or uses[0][0].op_type != "QuantizeLinear":
        return None
    return _Match(node, dqs, uses[0][0])


def _conv(match: _Match) -> ir.Node | None:
    node = match.node
    x_dq, w_dq = match.dq_inputs[:2]
    q = match.q_output
    inputs = [*x_dq.inputs[:3], *w_dq.inputs[:3], q.inputs[1], q.inputs[2]]
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        bias = node.inputs[2].producer()
        if bias is None or bias.op_type != "DequantizeLinear":
            return None
        inputs.append(bias.inputs[0])
    return ir.Node("", "QLinearConv", inputs, attributes=list(node.attributes.values()),
                   num_outputs=1, name=f"{node.name}_quant")


def _matmul(match: _Match) -> ir.Node | None:
    a_dq, b_dq = match.dq_inputs[:2]
    q = match.q_output
    if any(dq.attributes.get_int("axis", 1) not in (1, -1) and _rank(dq.inputs[1]) > 0
           for dq in (a_dq,)):
        return None  # per-channel activation: not expressible
    inputs = [*a_dq.inputs[:3], *b_dq.inputs[:3], q.inputs[1], q.inputs[2]]
    return ir.Node("", "QLinearMatMul", inputs, num_outputs=1, name=f"{match.node.name}_quant")


def _rank(value: ir.Value | None) -> int:
    return len(value.shape) if value is not None and value.shape is not None else 0


# (op_type, number of DQ-fed inputs, rewrite)
RULES: tuple[tuple[str, int, Rewrite], ...] = (
    ("Conv", 2, _conv),
    ("MatMul", 2, _matmul),
)


def to_qoperator(model: onnx.ModelProto) -> onnx.ModelProto:
    ir_model = ir.from_proto(model)
    graph = ir_model.graph
    for node in list(graph):
        for op_type, n_inputs, rewrite in RULES:
            if node.op_type != op_type or node.domain not in ("", "ai.onnx"):
                continue
            match = _match(node, n_inputs)
            new = rewrite(match) if match is not None else None
            if new is None or match is None:
                continue
            q_out = match.q_output.outputs[0]
            graph.insert_after(node, new)
            ir.convenience.replace_all_uses_with(q_out, new.outputs[0])
            name = q_out.name
            q_out.name = f"{name}__replaced"
            new.outputs[0].name = name
            graph.remove([match.q_output, node], safe=True)
    RemoveUnusedNodesPass()(ir_model)
    TopologicalSortPass()(ir_model)
    out = ir.to_proto(ir_model)
    out.ir_version = max(min(out.ir_version, 10), 7)
    return out
