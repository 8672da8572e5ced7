"""Ops that move or repeat values without changing them: the output keeps input 0's
scale and zero point, so ORT drops the DQ/Q pair around them. Only the data input
is quantized; shape, axes, pads and sizes operands are left as they are."""

from lowbit.quantize.int8.rules.registry import OpRule, OutputMode, activations, register

register(OpRule(
    ("Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Resize", "Pad"),
    activations(0), OutputMode.SAME_AS_INPUT,
))
