"""Pooling: MaxPool keeps its input's parameters (it only selects values);
AveragePool and GlobalAveragePool get their own output range (QLinear kernels in ORT)."""

from lowbit.quantize.int8.rules.registry import OpRule, OutputMode, activations, register

register(OpRule(("MaxPool",), activations(0), OutputMode.SAME_AS_INPUT))
register(OpRule(("AveragePool", "GlobalAveragePool"), activations(0), OutputMode.OWN,
                needs_output_q=True))
