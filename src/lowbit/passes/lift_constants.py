"""Constant nodes holding tensors become initializers (onnx-ir's pass).

    lifted = get_pass("lift_constants").run(ir_model)

Weights exported as ``Constant`` nodes (PyTorch, tf2onnx) are then visible to the
passes and quantizers that look for initializers. Constants given as
``value_ints``/``value_float`` attributes stay nodes (they are small shape inputs).
"""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes.common import LiftConstantsToInitializersPass

from lowbit.passes.registry import GraphPass, register


def lift_constants(model: ir.Model) -> int:
    """Lift Constant nodes' tensors into initializers; returns how many nodes went."""
    before = _constants(model)
    LiftConstantsToInitializersPass(lift_all_constants=False, size_limit=0)(model)
    return before - _constants(model)


def _constants(model: ir.Model) -> int:
    return sum(1 for node in model.graph if node.op_type == "Constant")


register(GraphPass("lift_constants", "Constant nodes holding tensors lifted to initializers",
                   lift_constants))
