"""Settings of an INT8 rewrite.

    settings = QuantizeSettings(activation="uint8", per_channel=True, format="qdq")
"""

from __future__ import annotations

from dataclasses import dataclass

from lowbit.errors import UsageError

ACTIVATION_TYPES = ("uint8", "int8")
FORMATS = ("qdq", "qoperator")


@dataclass(frozen=True)
class QuantizeSettings:
    """How to quantize.

    activation: "uint8" (asymmetric, the default: ORT's fast U8S8 path) or
    "int8" (symmetric). Weights are always symmetric int8, per output channel
    unless ``per_channel`` is False. ``max_abs_range``: a tensor whose calibrated
    range reaches this magnitude (an attention mask of −1e4 or −inf) stays float.
    """

    activation: str = "uint8"
    per_channel: bool = True
    format: str = "qdq"
    fold_activations: bool = True
    max_abs_range: float = 1e4

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATION_TYPES:
            raise UsageError(f"unknown activation type '{self.activation}'; "
                             f"choose one of {', '.join(ACTIVATION_TYPES)}")
        if self.format not in FORMATS:
            raise UsageError(f"unknown format '{self.format}'; choose one of {', '.join(FORMATS)}")
        if not self.max_abs_range > 0:
            raise UsageError("max_abs_range must be positive")

    @property
    def symmetric(self) -> bool:
        return self.activation == "int8"
