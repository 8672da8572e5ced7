"""Remove nodes that compute nothing at inference time.

    removed = remove_identity(ir_model)   # Identity nodes
    removed = remove_dropout(ir_model)    # Dropout in inference (mask output unused)
"""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes.common import IdentityEliminationPass


def remove_identity(model: ir.Model) -> int:
    """Remove Identity nodes (onnx-ir's pass); returns how many went."""
    before = _count(model, "Identity")
    IdentityEliminationPass()(model)
    return before - _count(model, "Identity")


def remove_dropout(model: ir.Model) -> int:
    """Replace inference-mode Dropout (no mask consumer) by its input; returns the count."""
    graph = model.graph
    removed = 0
    for node in list(graph):
        if node.op_type != "Dropout" or node.domain not in ("", "ai.onnx"):
            continue
        if len(node.outputs) > 1 and (node.outputs[1].uses() or node.outputs[1].is_graph_output()):
            continue
        data, output = node.inputs[0], node.outputs[0]
        if data is None:
            continue
        if output.is_graph_output():
            if data.is_graph_input() or data.is_initializer() or data.is_graph_output():
                node.op_type = "Identity"  # keep a node so both names survive
                node.resize_inputs(1)
                node.resize_outputs(1)
                continue
            # The graph output keeps its name: Dropout's input takes it over.
            name = output.name
            ir.convenience.replace_all_uses_with(output, data, replace_graph_outputs=True)
            graph.remove(node, safe=True)
            output.name = None
            data.name = name
        else:
            ir.convenience.replace_all_uses_with(output, data)
            graph.remove(node, safe=True)
        removed += 1
    return removed


def _count(model: ir.Model, op_type: str) -> int:
    return sum(1 for node in model.graph if node.op_type == op_type)
