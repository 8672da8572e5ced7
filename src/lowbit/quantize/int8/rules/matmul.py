"""Gemm and MatMul.

A constant right-hand side is a weight quantized per output column; a run-time
right-hand side (attention's Q·Kᵀ) is a second activation. Gemm's bias C becomes
int32 only when it is a 1-D initializer and alpha = beta = 1; otherwise it stays
a float operand.
"""

from __future__ import annotations

from collections.abc import Mapping

import onnx_ir as ir

from lowbit.quantize.int8.rules.registry import (
    InputRole,
    OpRule,
    OutputMode,
    Role,
    is_initializer,
    register,
)


def _gemm_roles(node: ir.Node) -> Mapping[int, InputRole] | None:
    if node.attributes.get_int("transA", 0):
        return None
    result = {0: InputRole(Role.ACTIVATION)}
    b = node.inputs[1]
    if is_initializer(b) and b is not None and len(b.shape or ()) == 2:
        axis = 0 if node.attributes.get_int("transB", 0) else 1
        result[1] = InputRole(Role.WEIGHT, axis=axis)
        c = node.inputs[2] if len(node.inputs) > 2 else None
        plain = (node.attributes.get_float("alpha", 1.0) == 1.0
                 and node.attributes.get_float("beta", 1.0) == 1.0)
        if c is not None:
            if not (is_initializer(c) and plain and len(c.shape or ()) == 1):
                return None  # a broadcast or scaled C is left to float Gemm
            result[2] = InputRole(Role.BIAS, input_index=0, weight_index=1)
    else:
        result[1] = InputRole(Role.ACTIVATION)
    return result


def _matmul_roles(node: ir.Node) -> Mapping[int, InputRole] | None:
    result = {0: InputRole(Role.ACTIVATION)}
    b = node.inputs[1]
    if is_initializer(b) and b is not None:
        if len(b.shape or ()) != 2:
            result[1] = InputRole(Role.WEIGHT, axis=None)
        else:
            result[1] = InputRole(Role.WEIGHT, axis=1)
    else:
        result[1] = InputRole(Role.ACTIVATION)
    return result


register(OpRule(("Gemm",), _gemm_roles, OutputMode.OWN))
register(OpRule(("MatMul",), _matmul_roles, OutputMode.OWN))
