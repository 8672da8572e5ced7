"""The per-op INT8 rule registry.

    from lowbit.quantize.int8.rules import rule_for
    rule = rule_for("Conv")          # OpRule or None (None: the op stays float)
    roles = rule.roles(node)         # {input index: InputRole}

A rule is data: which inputs are activations, weights (with their channel
axis), biases or constants, and how the output is quantized. One op family per
module; each module calls ``register`` at import time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

import onnx_ir as ir

from lowbit.errors import LowbitError


class Role(Enum):
    ACTIVATION = "activation"  # calibrated tensor, per-tensor uint8/int8
    WEIGHT = "weight"          # initializer, symmetric int8 (per channel along `axis`)
    BIAS = "bias"              # initializer, int32 with scale = s_input · s_weight
    CONSTANT = "constant"      # other initializer operand, per-tensor from its own range


@dataclass(frozen=True)
class InputRole:
    role: Role
    axis: int | None = None          # WEIGHT: channel axis for per-channel scales
    input_index: int = 0             # BIAS: which input's scale it pairs with
    weight_index: int = 1            # BIAS: which weight's scale it pairs with


class OutputMode(Enum):
    OWN = "own"                  # output gets its own calibrated parameters
    SAME_AS_INPUT = "same"       # shape/ordering op: output reuses input 0's parameters
    SHARED = "shared"            # Concat: inputs take the output's parameters where they can
    FLOAT = "float"              # output is not quantized


@dataclass(frozen=True)
class OpRule:
    op_types: tuple[str, ...]
    roles: Callable[[ir.Node], Mapping[int, InputRole] | None]
    output: OutputMode = OutputMode.OWN
    # Relu / Clip(0, x): with uint8 activations and zero point 0 the Q after the
    # producer already clips at zero, so the op can be removed (as ORT does).
    removable_after_producer: bool = False
    # An op lowbit deliberately keeps float (e.g. Softmax), with the reason.
    keep_float: str | None = None
    # ORT fuses DQ→op→Q into an integer kernel only when the output is quantized.
    needs_output_q: bool = False


_RULES: dict[str, OpRule] = {}


def register(rule: OpRule) -> OpRule:
    for op_type in rule.op_types:
        if op_type in _RULES:
            raise LowbitError(f"an INT8 rule for {op_type} is already registered")
        _RULES[op_type] = rule
    return rule


def rule_for(node: ir.Node) -> OpRule | None:
    if node.domain not in ("", "ai.onnx"):
        return None
    return _RULES.get(node.op_type)


def supported_ops() -> list[str]:
    return sorted(op for op, rule in _RULES.items() if rule.keep_float is None)


def is_initializer(value: ir.Value | None) -> bool:
    return value is not None and value.const_value is not None


def activations(*indices: int) -> Callable[[ir.Node], Mapping[int, InputRole]]:
    """Roles for ops whose listed inputs (those present) are all activations."""

    def roles(node: ir.Node) -> Mapping[int, InputRole]:
        result = {}
        for i in indices if indices else range(len(node.inputs)):
            value = node.inputs[i] if i < len(node.inputs) else None
            if value is None:
                continue
            is_const = is_initializer(value)
            result[i] = InputRole(Role.CONSTANT if is_const else Role.ACTIVATION)
        return result

    return roles
