"""The CPU facts lowbit's choices depend on, with an override that forces them (tests).

    forced = forced_isa()       # read from LOWBIT_FORCE_ISA each call, e.g. "vnni=0,bf16=1"
    forced.vnni                 # False: behave as a CPU without VNNI; None: probe this one
    forced.pairs                # the paired-weight layouts to assume, or None: probe

Three facts choose a branch: whether ONNX Runtime's uint8×int8 kernels are exact with
full-range weights (``vnni``: VNNI or AMX-INT8; without them x86 kernels add pairs of
products in a saturating int16), which of those kernels the paired 8-bit weights fit
(``pairs``) and whether OpenVINO computes BF16 natively (``bf16``: AVX512-BF16 or
AMX-BF16). lowbit.runtime.ort's ``int8_saturates`` / ``u8s8_layouts`` and
lowbit.runtime.openvino's ``bf16_native`` return the forced value where one is given
and the real probe's otherwise, so both sides of each branch run on any machine:

======================  =====================================================
LOWBIT_FORCE_ISA        effect
======================  =====================================================
``vnni=1``              exact kernels: full-range (±127) weights everywhere
``vnni=0``              saturating kernels with the AVX2 / AVX-512 layouts: paired
                        8-bit MatMul, Gemm and Conv weights, full-range depthwise
``vnni=0,pairs=none``   saturating kernels, no layout confirmed: 7-bit (±63) weights
``pairs=MatMul+Conv``   those layouts ('+'-separated kinds of PAIRED_KINDS, or none)
``bf16=0`` / ``bf16=1`` OpenVINO's BF16 kernels absent / present
======================  =====================================================

A forced value changes what lowbit *chooses*, not what the hardware does: weights made
for a forced ``vnni=1`` still saturate on a CPU without VNNI, and a forced ``bf16=1``
does not give OpenVINO BF16 kernels where the CPU has none. Provenance records the
override beside the CPU it ran on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from lowbit.errors import UsageError

ENV_VAR = "LOWBIT_FORCE_ISA"
#: the kinds of weights (lowbit.quantize.int8.params.weight_kind) a layout probe covers
PAIRED_KINDS = frozenset({"MatMul", "Gemm", "Conv", "DepthwiseConv"})
_FLAGS = ("vnni", "bf16")


@dataclass(frozen=True)
class ForcedIsa:
    """Forced CPU facts; None where the real probe decides."""

    vnni: bool | None = None
    bf16: bool | None = None
    pairs: frozenset[str] | None = None

    @property
    def empty(self) -> bool:
        return self.vnni is None and self.bf16 is None and self.pairs is None


def forced_isa() -> ForcedIsa:
    """The override in LOWBIT_FORCE_ISA (read at every call, so a test may set it)."""
    return parse_forced_isa(os.environ.get(ENV_VAR, ""))


def parse_forced_isa(text: str) -> ForcedIsa:
    """``"vnni=0,bf16=1,pairs=MatMul+Gemm"`` → ForcedIsa; a bad item is a UsageError."""
    values: dict[str, object] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = (s.strip() for s in item.partition("="))
        if not sep or key not in (*_FLAGS, "pairs"):
            raise UsageError(f"{ENV_VAR}: '{item}' is not KEY=VALUE with KEY one of vnni, "
                             f"bf16, pairs (e.g. {ENV_VAR}=vnni=0,bf16=1)")
        if key in values:
            raise UsageError(f"{ENV_VAR}: {key} is given twice")
        if key == "pairs":
            kinds = frozenset() if value == "none" else frozenset(value.split("+"))
            unknown = sorted(kinds - PAIRED_KINDS)
            if unknown or not value:
                raise UsageError(f"{ENV_VAR}: pairs takes none or '+'-separated kinds of "
                                 f"{', '.join(sorted(PAIRED_KINDS))}; found '{value}'")
            values[key] = kinds
        elif value in ("0", "1"):
            values[key] = value == "1"
        else:
            raise UsageError(f"{ENV_VAR}: {key} must be 0 or 1, found '{value}'")
    return ForcedIsa(**values)  # type: ignore[arg-type]
