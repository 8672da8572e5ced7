"""Concat: the output's range covers every input; inputs used by Concat alone take
the output's parameters, so the join needs no requantization."""

from lowbit.quantize.int8.rules.registry import OpRule, OutputMode, activations, register

register(OpRule(("Concat",), activations(), OutputMode.SHARED, needs_output_q=True))
