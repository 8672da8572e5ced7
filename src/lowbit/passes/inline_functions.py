"""Model-local functions inlined: every call of a custom operator replaced by its body.

    inlined = get_pass("inline_functions").run(ir_model)    # how many calls went

Not a default pass: a function node is kept by default, so deploy quantizes around it
(the node stays float, with the reason) and compare shows it as one layer. Run this
pass (``transform --passes inline_functions,...``) to calibrate and quantize the
standard ops inside it instead. onnx-ir's InlinePass does the work.
"""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes.common import InlinePass

from lowbit.passes.registry import GraphPass, register


def inline_functions(model: ir.Model) -> int:
    """Inline every model-local function call in place; returns how many calls went."""
    keys = {fn.identifier() for fn in model.functions.values()}
    before = sum(1 for node in model.graph.all_nodes()
                 if (node.domain, node.op_type, node.overload) in keys)
    InlinePass()(model)
    model.functions.clear()
    return before


register(GraphPass("inline_functions", "calls of model-local functions (custom operators) "
                   "replaced by their bodies", inline_functions))
