"""Duplicate-subgraph elimination: common subexpressions computed once (onnx-ir's pass).

    merged = get_pass("eliminate_common_subexpressions").run(ir_model)

Two nodes of the same op with the same input values and the same attributes
compute the same thing: the later one goes and its readers read the first.
Repeated to a fixed point, whole duplicated chains collapse. Inputs count as the
same only when they are the same value (two initializers with equal contents are
not merged: quantization and bias correction treat each weight as its node's own).
Random ops and control flow are left alone.
"""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes.common import CommonSubexpressionEliminationPass

from lowbit.passes.registry import GraphPass, register


def eliminate_common_subexpressions(model: ir.Model) -> int:
    """Merge duplicate nodes in place; returns how many nodes went."""
    before = len(model.graph)
    CommonSubexpressionEliminationPass()(model)
    return before - len(model.graph)


register(GraphPass("eliminate_common_subexpressions",
                   "duplicate nodes (same op, inputs, attributes) computed once",
                   eliminate_common_subexpressions))
