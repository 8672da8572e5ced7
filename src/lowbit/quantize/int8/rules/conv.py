"""Conv and ConvTranspose: int8 weights per output channel, int32 bias.

Conv weights are [C_out, C_in/group, k...] (channel axis 0); ConvTranspose
weights are [C_in, C_out/group, k...] (axis 1; per-channel only with group 1).
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


def _roles(weight_axis_of: int | None):
    def roles(node: ir.Node) -> Mapping[int, InputRole] | None:
        if not is_initializer(node.inputs[1]):
            return None  # weights computed at run time: leave float
        axis = weight_axis_of
        if node.op_type == "ConvTranspose" and node.attributes.get_int("group", 1) != 1:
            axis = None
        result = {0: InputRole(Role.ACTIVATION), 1: InputRole(Role.WEIGHT, axis=axis)}
        if len(node.inputs) > 2 and node.inputs[2] is not None:
            if not is_initializer(node.inputs[2]):
                return None
            result[2] = InputRole(Role.BIAS, input_index=0, weight_index=1)
        return result

    return roles


register(OpRule(("Conv",), _roles(0), OutputMode.OWN, needs_output_q=True))
register(OpRule(("ConvTranspose",), _roles(1), OutputMode.OWN, needs_output_q=True))
