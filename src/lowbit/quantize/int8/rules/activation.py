"""Activations.

Relu and Clip(0, x) right after a quantized producer are removed: with uint8
activations the producer's output range starts at 0, so the QuantizeLinear
clips exactly as they would. Elsewhere they, and LeakyRelu, Sigmoid,
HardSigmoid and HardSwish, take quantized input and give quantized output
(ORT fuses LeakyRelu and Sigmoid into QLinear kernels).
"""

from lowbit.quantize.int8.rules.registry import OpRule, OutputMode, activations, register

register(OpRule(("Relu", "Clip"), activations(0), OutputMode.OWN, removable_after_producer=True))
register(OpRule(("LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish"), activations(0),
                OutputMode.OWN, needs_output_q=True))
