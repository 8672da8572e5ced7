"""Put a float model in F16 or BF16.

    result = convert_float(model, FloatSettings("F16", method="full"))
    result.model        # onnx.ModelProto that computes in float16, F32 in and out
    result.converted    # ["conv1", "relu1", ...]: nodes that now compute in float16
    result.kept_float   # [KeptFloat("softmax", "Softmax", "kept float by --keep-float")]
    result.clamped      # [Clamped("w_big", 3)]: F16 weights clamped to ±65504

Two methods. ``cast`` keeps every weight F32 in the file and puts a Cast to the
low type after it; ``full`` stores float initializers in the low type, so the file's
weights really halve. Either way compute runs in the low type, ops in
``keep_float`` (Softmax, normalisations, reductions, Exp/Log/Pow, TopK by default;
op types or node names) run in F32 between Casts, and so do float nodes that
compute shapes (a Cast of a Shape to float and the arithmetic after it: float16
holds integers exactly only up to 2048). With ``keep_io_types`` (the default) the
model still takes and returns F32, through Casts at the boundary; graph outputs
keep their names.

Casts the model already has: a Cast whose ``to`` is FLOAT is an op like any
other, so when it is converted its ``to`` becomes the low type (a Cast to F32
followed by a Cast back would only cost time); when it is kept float, its ``to``
stays FLOAT. A ConstantOfShape with a float ``value`` gets a low-type value.
Which inputs follow the data type and which keep a fixed type is read from the
op's schema (see :mod:`lowbit.quantize.floats.slots`); an op whose schema has no
low-type form (Range; anything with subgraphs) stays F32 and is listed in
``kept_float`` with the reason. BF16 first upgrades models below opset 22, the
first opset where Conv, pooling and HardSwish accept bfloat16. Values that
subgraphs read from the outer graph stay F32 for them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import onnx
import onnx_ir as ir
from onnx import version_converter

from lowbit.errors import ArgumentError, ModelError, UsageError
from lowbit.graph import onnx_opset
from lowbit.quantize.floats.rewrite import FloatRewriter

log = logging.getLogger(__name__)

PRECISIONS = ("F16", "BF16")
METHODS = ("cast", "full")
DEFAULT_KEEP_FLOAT: tuple[str, ...] = (
    "Softmax", "LogSoftmax", "LayerNormalization", "ReduceMean", "ReduceSum",
    "ReduceSumSquare", "Exp", "Log", "Pow", "TopK")
BF16_OPSET = 22
LOW_TYPES = {"F16": ir.DataType.FLOAT16, "BF16": ir.DataType.BFLOAT16}


@dataclass(frozen=True)
class FloatSettings:
    """How to convert.

    precision: "F16" or "BF16". method: "cast" (F32 weights, Casts in the graph) or
    "full" (low-type weights). keep_io_types: graph inputs/outputs stay F32.
    keep_float: op types or node names that run in F32; pass
    ``DEFAULT_KEEP_FLOAT + ("Conv",)`` to add to the defaults, ``()`` to keep none.
    """

    precision: str
    method: str = "cast"
    keep_io_types: bool = True
    keep_float: tuple[str, ...] = DEFAULT_KEEP_FLOAT

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UsageError(f"unknown float precision '{self.precision}'; "
                             f"choose one of {', '.join(PRECISIONS)}")
        if self.method not in METHODS:
            raise UsageError(f"unknown float conversion method '{self.method}'; "
                             f"choose one of {', '.join(METHODS)}")
        if isinstance(self.keep_float, str):
            raise UsageError("keep_float must be a tuple of op types or node names, "
                             f"got the string '{self.keep_float}'")
        object.__setattr__(self, "keep_float", tuple(self.keep_float))
        for entry in self.keep_float:
            if not isinstance(entry, str) or not entry.strip():
                raise UsageError(f"keep_float entries must be op types or node names, "
                                 f"got {entry!r}")

    @property
    def low_type(self) -> ir.DataType:
        return LOW_TYPES[self.precision]


@dataclass(frozen=True)
class KeptFloat:
    name: str
    op_type: str
    reason: str


@dataclass(frozen=True)
class Clamped:
    tensor: str
    count: int


@dataclass
class FloatResult:
    model: onnx.ModelProto
    converted: list[str] = field(default_factory=list)
    kept_float: list[KeptFloat] = field(default_factory=list)
    clamped: list[Clamped] = field(default_factory=list)


def convert_float(model: onnx.ModelProto, settings: FloatSettings) -> FloatResult:
    """Convert ``model`` (canonical: opset ≥ 13, shapes inferred) to ``settings.precision``."""
    if settings.precision == "BF16":
        model = _upgrade_for_bf16(model)
    ir_model = ir.from_proto(_infer(model, "the model"))
    _check_keep_float(ir_model.graph, settings.keep_float)
    rewriter = FloatRewriter(ir_model.graph, onnx_opset(model), settings.low_type,
                             method=settings.method, keep_io_types=settings.keep_io_types,
                             keep_float=frozenset(settings.keep_float))
    rewriter.run()
    ir_model.graph.sort()
    out = ir.to_proto(ir_model)
    out.ir_version = max(min(out.ir_version, 10), 7)
    out = _infer(out, f"the {settings.precision} model (a lowbit bug)")
    kept = [KeptFloat(n, op, why) for n, op, why in rewriter.kept]
    clamped = [Clamped(name, count) for name, count in rewriter.clamped]
    log.info("%s (%s): %d nodes converted, %d kept F32, %d casts added", settings.precision,
             settings.method, len(rewriter.converted), len(kept), rewriter.casts_added)
    return FloatResult(out, list(rewriter.converted), kept, clamped)


def _infer(model: onnx.ModelProto, what: str) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as err:  # onnx raises InferenceError, ValidationError, RuntimeError
        raise ModelError(f"type inference failed on {what}: "
                         f"{str(err).strip().splitlines()[0]}") from err


def _upgrade_for_bf16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Conv, pooling and HardSwish accept bfloat16 only from opset 22."""
    opset = onnx_opset(model)
    if opset >= BF16_OPSET:
        return model
    try:
        upgraded = version_converter.convert_version(model, BF16_OPSET)
    except Exception as err:  # noqa: BLE001 (the converter raises bare RuntimeErrors)
        log.warning("BF16: could not upgrade opset %d to %d (%s); ops without a bfloat16 "
                    "form in opset %d stay F32", opset, BF16_OPSET,
                    str(err).strip().splitlines()[0], opset)
        return model
    log.info("BF16: upgraded the model from opset %d to %d", opset, BF16_OPSET)
    upgraded.ir_version = max(upgraded.ir_version, 10)
    return upgraded


def _check_keep_float(graph: ir.Graph, keep_float: Sequence[str]) -> None:
    names = {node.name for node in graph}
    unknown = [entry for entry in keep_float
               if entry not in names and not onnx.defs.has(entry)]
    if unknown:
        raise ArgumentError(f"{{keep_float}} names {', '.join(repr(u) for u in unknown)}: "
                            "neither an "
                         "ONNX op type nor a node of this model (op types are case-sensitive, "
                         "e.g. Softmax)")
