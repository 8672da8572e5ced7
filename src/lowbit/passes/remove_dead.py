"""Dead-node and unused-initializer removal (onnx-ir's pass).

    removed = get_pass("remove_dead_nodes").run(ir_model)

A node none of whose outputs reach a graph output goes, and so does an
initializer nothing reads (unless it is also a graph input). The count is nodes
plus initializers removed.
"""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass

from lowbit.passes.registry import GraphPass, register


def remove_dead_nodes(model: ir.Model) -> int:
    """Remove dead nodes and unused initializers in place; returns how many went."""
    before = len(model.graph) + len(model.graph.initializers)
    RemoveUnusedNodesPass()(model)
    return before - len(model.graph) - len(model.graph.initializers)


register(GraphPass("remove_dead_nodes", "nodes nothing reads and unused initializers removed",
                   remove_dead_nodes))
