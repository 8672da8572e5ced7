"""Add and Mul (residual joins, scaling): both operands quantized, own output range.

ORT fuses DQ→Add→Q into QLinearAdd (and Mul into QLinearMul); a constant operand
is quantized per tensor from its own range.
"""

from lowbit.quantize.int8.rules.registry import OpRule, OutputMode, activations, register

register(OpRule(("Add", "Mul"), activations(0, 1), OutputMode.OWN, needs_output_q=True))
