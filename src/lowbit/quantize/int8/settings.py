"""Settings of an INT8 rewrite.

    settings = QuantizeSettings(activation="uint8", per_channel=True, format="qdq")
"""

from __future__ import annotations

from dataclasses import dataclass

from lowbit.errors import UsageError

ACTIVATION_TYPES = ("uint8", "int8")
FORMATS = ("qdq", "qoperator")
WEIGHT_RANGES = ("auto", "full", "reduced", "paired")
WEIGHT_BITS = (4, 8)
FULL_WEIGHT_QMAX = 127    # symmetric int8 weights use [-127, 127] so that -w is representable
REDUCED_WEIGHT_QMAX = 63  # 7 bits: 2·255·63 fits the int16 pair sums of x86 U8S8 kernels
INT4_WEIGHT_QMAX = 7      # symmetric int4 weights use [-7, 7]: -w representable, zero point 0


@dataclass(frozen=True)
class QuantizeSettings:
    """How to quantize.

    activation: "uint8" (asymmetric, the default: ORT's fast U8S8 path) or
    "int8" (symmetric). Weights are always symmetric int8, per output channel
    unless ``per_channel`` is False. ``max_abs_range``: a tensor whose calibrated
    range reaches this magnitude (an attention mask of −1e4 or −inf) stays float.

    weight_range: "full" uses int8 weights in [−127, 127]; "reduced" uses [−63, 63]
    (ORT's reduce_range), which x86 CPUs without VNNI need: their U8S8 kernels add
    pairs of uint8·int8 products in saturating int16, and 2·255·127 overflows it.
    "paired" keeps 8-bit weights for MatMul, Gemm and Conv, with every pair of K rows
    (2i, 2i+1) limited to |q0 + q1| ≤ 128 so that those int16 sums cannot overflow
    (lowbit.quantize.int8.params.quantize_weight_paired), full-range depthwise Conv weights
    (summed in int32) and 7 bits elsewhere. "auto" (the default) asks ONNX Runtime on this
    machine: full where its kernels are exact (``int8_saturates``), else, per kind, paired
    (or full for depthwise) where a probe confirms the layout (``u8s8_layouts``), else
    reduced. ``weight_grid`` tells the grid of each kind.

    weight_bits: 8 (the default) or 4 (W4A8: weights symmetric in [−7, 7], activations
    still 8-bit; −8 is left unused so that −w is representable, as −128 is for int8).
    Per channel, depthwise Conv weights keep their 8-bit grid: a channel of 9 or 25 weights on 15
    levels loses most (EfficientNet-Lite0, 200 DEV crops: 44 % agreement with F32 with
    4-bit depthwise weights, 53 % with 8-bit ones), and they are a few percent of the
    weights. The 7-bit reduced range concerns 8-bit weights only.

    quantize_attention: in a transformer graph (lowbit.quantize.int8.scope), also
    quantize the run-time × run-time MatMuls Q·Kᵀ and P·V (float by default).
    """

    activation: str = "uint8"
    per_channel: bool = True
    format: str = "qdq"
    fold_activations: bool = True
    max_abs_range: float = 1e4
    weight_range: str = "auto"
    weight_bits: int = 8
    quantize_attention: bool = False

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATION_TYPES:
            raise UsageError(f"unknown activation type '{self.activation}'; "
                             f"choose one of {', '.join(ACTIVATION_TYPES)}")
        if self.format not in FORMATS:
            raise UsageError(f"unknown format '{self.format}'; choose one of {', '.join(FORMATS)}")
        if self.weight_range not in WEIGHT_RANGES:
            raise UsageError(f"unknown weight range '{self.weight_range}'; choose one of "
                             f"{', '.join(WEIGHT_RANGES)}")
        if self.weight_bits not in WEIGHT_BITS:
            raise UsageError(f"weight bits must be 4 or 8, got {self.weight_bits}")
        if not self.max_abs_range > 0:
            raise UsageError("max_abs_range must be positive")

    @property
    def symmetric(self) -> bool:
        return self.activation == "int8"

    @property
    def reduced_range(self) -> bool:
        """Whether weights use 7 bits (see ``weight_range``); never for 4-bit weights."""
        return self.weight_bits != 4 and self._eight_bits_reduced()

    def _eight_bits_reduced(self) -> bool:
        if self.weight_range == "auto":
            from lowbit.runtime.ort import int8_saturates  # an ORT probe, run once

            return int8_saturates()
        return self.weight_range in ("reduced", "paired")

    def weight_grid(self, kind: str) -> str:
        """The grid of a weight of ``kind`` (lowbit.quantize.int8.params.weight_kind: "MatMul",
        "Gemm", "Conv", "DepthwiseConv" or another op type): "full" (±127), "paired"
        (±127 with int16-safe pairs of K rows), "reduced" (±63) or "int4" (±7)."""
        if self.weight_bits == 4 and kind != "DepthwiseConv":
            return "int4"
        if self.weight_range in ("full", "reduced"):
            return self.weight_range
        if not self._eight_bits_reduced():
            return "full"  # auto, on a CPU whose kernels are exact
        from lowbit.runtime.ort import PAIRED_KINDS, u8s8_layouts

        layouts = PAIRED_KINDS if self.weight_range == "paired" else u8s8_layouts()
        if kind == "DepthwiseConv":
            return "full" if kind in layouts else "reduced"
        return "paired" if kind in layouts else "reduced"

    @property
    def weight_qmax(self) -> int:
        if self.weight_bits == 4:
            return INT4_WEIGHT_QMAX
        return REDUCED_WEIGHT_QMAX if self.reduced_range else FULL_WEIGHT_QMAX
