"""The INT8 speed advisor: which conv/matmul/gemm ORT runs as integer kernels, and why not.

    advice = explain_int8("model.int8.onnx", threads=2)
    advice.summary()     # "18/20 conv/matmul/gemm run as integer kernels; 9.5% of time in ..."
    for op in advice.float_ops:
        print(op.name, op.op_type, op.kernel, op.reason)
    print(advice.table())

A QDQ model only says what *should* be integer. ORT's optimised graph (saved
with SessionOptions ``optimized_model_filepath``, as lowbit.analysis.kernels
does) says what *is*: each Conv / MatMul / Gemm / ConvTranspose of the QDQ model
is found there and judged by the kernel ORT chose for it (integer kernels
already in the model, as in QOperator format, are listed too).

Finding a node in ORT's graph (what ORT 1.31 does to names):

- a node ORT leaves alone, or replaces with one kernel of its own
  (QGemm, QLinearMatMul, MatMulIntegerToFloat), keeps its name: ``fc``;
- ORT's QDQ fusion to QLinearConv (and its NHWC layout pass) names the new node
  after the old one with ``_token_<n>`` suffixes: ``conv1_token_5``; other
  fusions append ``/<FusionName>`` (``mm/MatMulAddFusion``);
- a float Conv moved to the NCHWc layout is named after its output tensor
  (after any activation or Add fused into it) plus ``_nchwc``: ``b2_nchwc``.

Names are matched in that order, then by the weight initializer an optimised
node still reads; what is left is paired by position among the remaining
compute kernels when the counts agree (the advice says so), else reported as
not found.

Why an op stayed float is read off the QDQ pattern around it, naming only
causes that were seen to stop ORT's CPU provider: a float activation input (no
DequantizeLinear), an unquantized or non-constant weight, int8 activations
(S8S8: ORT converts int8 activations to uint8 only where a QuantizeLinear feeds a
single DequantizeLinear, and keeps the rest of such convs in float), a Conv
output with no QuantizeLinear after it, and ConvTranspose (no integer kernel, per
tensor or per channel). Grouped and dilated convs, per-channel MatMul weights,
float biases and MatMul/Gemm without an output QuantizeLinear were all seen to
fuse, so they are not named as causes.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx

from lowbit import arguments
from lowbit.analysis.kernels import FLOAT_COMPUTE_OPS, INTEGER_COMPUTE_OPS, _save_optimized
from lowbit.analysis.profile import OpProfile, profile_model
from lowbit.errors import ModelError
from lowbit.graph import check_qdq_params
from lowbit.io.model import load_model

log = logging.getLogger(__name__)

COMPUTE_OPS = ("Conv", "MatMul", "Gemm", "ConvTranspose")
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
# Ops ORT fuses into a preceding float Conv before it is renamed "<output>_nchwc".
_FUSABLE_AFTER = frozenset({"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "Tanh",
                            "Add", "Sum"})
_TOKEN_SUFFIX = re.compile(r"(_token_\d+)+$")
_INT8 = onnx.TensorProto.INT8


@dataclass(frozen=True)
class OpAdvice:
    """One compute op of the QDQ model: the kernel ORT runs for it and, if float, why.

    ``ort_node`` is the matched node's name in ORT's graph ("" if not found);
    ``time_ms`` its profiled time per run (None without a profile).
    """

    name: str
    op_type: str
    integer: bool
    kernel: str
    reason: str = ""
    ort_node: str = ""
    time_ms: float | None = None


@dataclass(frozen=True)
class SpeedAdvice:
    """Advice for every conv/matmul/gemm, plus the share of profiled time in float fallbacks."""

    ops: tuple[OpAdvice, ...]
    float_time_share: float | None = None
    qdq_time_share: float | None = None
    # custom ops (a domain of their own, e.g. Python code through onnxruntime-extensions):
    # node name -> (op type, ms per run); their kernels run outside ONNX Runtime's own
    custom_ops: tuple[tuple[str, str, float], ...] = ()
    custom_time_share: float | None = None

    @property
    def float_ops(self) -> tuple[OpAdvice, ...]:
        return tuple(op for op in self.ops if not op.integer)

    def summary(self) -> str:
        integer = sum(op.integer for op in self.ops)
        text = f"{integer}/{len(self.ops)} conv/matmul/gemm run as integer kernels"
        if self.float_time_share is not None:
            text += f"; {self.float_time_share:.1%} of time in float fallbacks"
        if self.qdq_time_share is not None:
            text += f", {self.qdq_time_share:.1%} in QuantizeLinear/DequantizeLinear"
        if self.custom_ops and self.custom_time_share is not None:
            slowest = max(self.custom_ops, key=lambda op: op[2])
            text += (f"; {self.custom_time_share:.1%} in {len(self.custom_ops)} custom op(s) "
                     f"(slowest {slowest[0]} {slowest[1]}: {slowest[2]:.3f} ms per run)")
        return text

    def table(self) -> str:
        """One line per op: name, op type, ORT kernel, INT8/float, time, reason."""
        lines = [f"{'op':<32} {'type':<14} {'ORT kernel':<22} {'runs as':<8} {'ms':>8}  reason"]
        for op in self.ops:
            ms = f"{op.time_ms:8.3f}" if op.time_ms is not None else f"{'-':>8}"
            lines.append(f"{op.name:<32} {op.op_type:<14} {op.kernel or '?':<22} "
                         f"{'INT8' if op.integer else 'float':<8} {ms}  {op.reason}")
        lines.append(self.summary())
        return "\n".join(lines)


def explain_int8(
    model: str | Path, *, threads: int | None = None, profile: bool = True
) -> SpeedAdvice:
    """Judge every Conv/MatMul/Gemm/ConvTranspose of ``model`` by the kernel ORT runs for it."""
    model = arguments.path(model, "model")
    threads = arguments.threads(threads)
    arguments.flag(profile, "profile")
    loaded = load_model(model, check=False)
    check_qdq_params(loaded, str(model))  # a QDQ model made elsewhere may hold any scale
    original = loaded.graph
    optimized = optimized_graph(model, threads=threads)
    timing = profile_model(model, threads=threads) if profile else None
    ops = advise(original, optimized, timing)
    if timing is None:
        return SpeedAdvice(ops=ops)
    custom = _custom_times(optimized, timing)
    total = timing.total_ms
    return SpeedAdvice(ops=ops, float_time_share=timing.share_of(FLOAT_COMPUTE_OPS),
                       qdq_time_share=timing.share_of(QDQ_OPS), custom_ops=custom,
                       custom_time_share=(sum(op[2] for op in custom) / total
                                          if custom and total > 0 else None))


def _custom_times(optimized: onnx.GraphProto, timing: OpProfile
                  ) -> tuple[tuple[str, str, float], ...]:
    """Nodes of a custom domain (not ONNX, not ONNX Runtime's own contrib ops) in the graph
    ORT runs, with their profiled time per run."""
    standard = {"", "ai.onnx", "com.microsoft", "com.microsoft.nchwc", "ai.onnx.ml"}
    return tuple((node.name, node.op_type, timing.node_times.get(node.name, 0.0))
                 for node in optimized.node if node.domain not in standard)


def optimized_graph(model: str | Path, *, threads: int | None = None) -> onnx.GraphProto:
    """The graph ORT runs for ``model`` after its optimisations (CPU provider)."""
    model = Path(model)
    with tempfile.TemporaryDirectory(prefix="lowbit-explain-") as tmp:
        path = Path(tmp) / f"{model.stem}.optimized.onnx"
        _save_optimized(model, path, threads)
        try:
            return onnx.load(str(path), load_external_data=False).graph
        except Exception as err:
            raise ModelError(f"cannot read the graph ORT optimised from {model}: {err}") from err


def advise(original: onnx.GraphProto, optimized: onnx.GraphProto,
           timing: OpProfile | None = None) -> tuple[OpAdvice, ...]:
    """Advice for each compute op of ``original`` given ORT's ``optimized`` graph."""
    qdq = _Graph(original)
    compute = [n for n in original.node if _is_compute(n)]
    matches, by_position = _match(compute, qdq, optimized)
    advice = []
    for node in compute:
        key = _key(node)
        advice.append(_advise_one(node, matches.get(key), qdq, timing, key in by_position))
    return tuple(advice)


def _advise_one(node: onnx.NodeProto, found: onnx.NodeProto | None, qdq: _Graph,
                timing: OpProfile | None, by_position: bool) -> OpAdvice:
    name = _key(node)
    if found is None:
        return OpAdvice(name=name, op_type=node.op_type, integer=False, kernel="",
                        reason="not found among the conv/matmul/gemm kernels of ORT's optimised "
                               "graph (renamed or removed by ORT)")
    integer = found.op_type in INTEGER_COMPUTE_OPS
    reasons = [] if integer else float_reasons(node, qdq)
    if by_position:
        reasons.append("matched to ORT's node by position (ORT renamed it)")
    time_ms = timing.node_times.get(found.name) if timing is not None else None
    return OpAdvice(name=name, op_type=node.op_type, integer=integer, kernel=found.op_type,
                    reason="; ".join(reasons), ort_node=found.name, time_ms=time_ms)


def float_reasons(node: onnx.NodeProto, qdq: _Graph) -> list[str]:
    """Why ORT's CPU provider keeps ``node`` (of the QDQ model) in float, as far as can be told."""
    weights = set(_weight_inputs(node, qdq))
    reasons = []
    for tensor in _data_inputs(node):
        if tensor in weights:
            reasons += _weight_reasons(tensor, qdq)
        elif qdq.producer_op(tensor) != "DequantizeLinear":
            reasons.append(f"input '{tensor}' is float (left float by deploy or no "
                           f"calibration range)")
        elif qdq.zero_point_type(tensor) == _INT8 and node.op_type != "ConvTranspose":
            reasons.append("S8S8 (int8 activations): ORT's CPU provider keeps this conv in "
                           "float; use uint8 activations (lowbit deploy's default)")
    if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2] and \
            qdq.producer_op(node.input[2]) != "DequantizeLinear":
        # ORT quantizes a Conv's float bias itself, not a Gemm's: every input it has
        # must come from a DequantizeLinear
        reasons.append(f"bias '{node.input[2]}' is float (ORT fuses a quantized Gemm only "
                       "when its bias, too, comes from an int32 DequantizeLinear)")
    if node.op_type == "Conv" and not any(c.op_type == "QuantizeLinear"
                                          for c in qdq.consumers(node.output[0])):
        reasons.append(f"output '{node.output[0]}' is not quantized (no QuantizeLinear after "
                       f"it; ORT's QLinearConv needs one)")
    elif node.op_type == "Conv":
        reasons += _output_reasons(node, qdq)
    if node.op_type == "ConvTranspose":
        reasons.append("no integer kernel for ConvTranspose in ORT's CPU provider")
    if not reasons:
        reasons.append("ORT did not fuse it; no known cause found in the QDQ pattern around it")
    return list(dict.fromkeys(reasons))


def _output_reasons(node: onnx.NodeProto, qdq: _Graph) -> list[str]:
    """A quantized Conv output that ORT still cannot fuse: read by more than its
    QuantizeLinear, or quantized to another type than its input."""
    out = node.output[0]
    readers = qdq.consumers(out)
    quantizes = [c for c in readers if c.op_type == "QuantizeLinear"]
    reasons = []
    if len(readers) > len(quantizes):
        others = sorted({c.op_type for c in readers if c.op_type != "QuantizeLinear"})
        reasons.append(f"output '{out}' is also read unquantized (by {', '.join(others)}); "
                       "ORT fuses a conv whose output only its QuantizeLinear reads")
    elif len(quantizes) > 1:
        reasons.append(f"output '{out}' is read by {len(quantizes)} QuantizeLinear nodes; "
                       "ORT fuses a conv with one")
    activation = node.input[0] if node.input else ""
    kind_in = qdq.zero_point_type(activation)
    kind_out = qdq.quantized_type(quantizes[0]) if quantizes else None
    if kind_in is not None and kind_out is not None and kind_in != kind_out:
        reasons.append(f"input and output are quantized to different types "
                       f"({onnx.TensorProto.DataType.Name(kind_in)} in, "
                       f"{onnx.TensorProto.DataType.Name(kind_out)} out); QLinearConv "
                       "needs one")
    return reasons


def _data_inputs(node: onnx.NodeProto) -> list[str]:
    """Inputs that carry activations or weights (not the bias)."""
    count = 2 if node.op_type in COMPUTE_OPS else len(node.input)
    return [t for t in node.input[:count] if t]


def _weight_inputs(node: onnx.NodeProto, qdq: _Graph) -> list[str]:
    """The weight input(s): input 1 of Conv/ConvTranspose/Gemm; constant inputs of MatMul."""
    if node.op_type == "MatMul":
        return [t for t in node.input[:2] if t and qdq.is_constant_weight(t)]
    return [node.input[1]] if len(node.input) > 1 and node.input[1] else []


def _weight_reasons(tensor: str, qdq: _Graph) -> list[str]:
    if qdq.producer_op(tensor) == "DequantizeLinear":
        source = qdq.producer(tensor).input[0]  # type: ignore[union-attr]
        if source in qdq.constants:
            return []
        return [(f"weight '{tensor}' is not a constant (dequantized from '{source}', "
                 f"computed at run time)")]
    if tensor in qdq.constants:
        return [(f"weight '{tensor}' is not quantized (a float constant with no "
                 f"DequantizeLinear)")]
    return [f"weight '{tensor}' is not a constant (computed at run time, not quantized)"]


class _Graph:
    """Producers, consumers and constants of the QDQ model's graph."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.initializers = {t.name: t for t in graph.initializer}
        self._producer: dict[str, onnx.NodeProto] = {}
        self._consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for out in node.output:
                self._producer[out] = node
            for inp in node.input:
                self._consumers.setdefault(inp, []).append(node)
        constant_outputs = {o for n in graph.node if n.op_type == "Constant" for o in n.output}
        self.constants = set(self.initializers) | constant_outputs

    def producer(self, tensor: str) -> onnx.NodeProto | None:
        return self._producer.get(tensor)

    def producer_op(self, tensor: str) -> str:
        node = self._producer.get(tensor)
        return node.op_type if node is not None else ""

    def consumers(self, tensor: str) -> list[onnx.NodeProto]:
        return self._consumers.get(tensor, [])

    def is_constant_weight(self, tensor: str) -> bool:
        """A constant, or a DequantizeLinear of a constant."""
        node = self._producer.get(tensor)
        if node is not None and node.op_type == "DequantizeLinear":
            return node.input[0] in self.constants
        return tensor in self.constants

    def weight_sources(self, node: onnx.NodeProto) -> list[str]:
        """Initializer names an optimised kernel may still read for this node's weights."""
        names = []
        for tensor in _weight_inputs(node, self):
            producer = self._producer.get(tensor)
            names.append(producer.input[0] if producer is not None
                         and producer.op_type == "DequantizeLinear" else tensor)
        return [n for n in names if n in self.initializers]

    def zero_point_type(self, tensor: str) -> int | None:
        """Element type of the zero point of the DequantizeLinear producing ``tensor``."""
        node = self._producer.get(tensor)
        if node is None or node.op_type != "DequantizeLinear":
            return None
        if len(node.input) > 2 and node.input[2] in self.initializers:
            return self.initializers[node.input[2]].data_type
        source = node.input[0]
        if source in self.initializers:
            return self.initializers[source].data_type
        quantize = self._producer.get(source)
        if quantize is not None and len(quantize.input) > 2 and \
                quantize.input[2] in self.initializers:
            return self.initializers[quantize.input[2]].data_type
        return None

    def quantized_type(self, quantize: onnx.NodeProto) -> int | None:
        """Element type a QuantizeLinear writes (its zero point's; uint8 without one)."""
        if len(quantize.input) > 2 and quantize.input[2] in self.initializers:
            return self.initializers[quantize.input[2]].data_type
        return onnx.TensorProto.UINT8 if len(quantize.input) <= 2 else None

    def reach(self, node: onnx.NodeProto) -> set[str]:
        """Output tensor names ORT may use to name ``node`` once fused with what follows it."""
        names = {node.output[0]}
        current = node
        for _ in range(3):
            consumers = self.consumers(current.output[0])
            if len(consumers) != 1 or consumers[0].op_type not in _FUSABLE_AFTER:
                break
            current = consumers[0]
            names.add(current.output[0])
        return names


def _base_name(name: str) -> str:
    """ORT node name without '/<FusionName>' and '_token_<n>' suffixes."""
    return _TOKEN_SUFFIX.sub("", name.split("/", 1)[0])


def _match(compute: Sequence[onnx.NodeProto], qdq: _Graph, optimized: onnx.GraphProto
           ) -> tuple[dict[str, onnx.NodeProto], set[str]]:
    """Original node name -> ORT node, and the names of those paired by position."""
    kernels = [n for n in optimized.node
               if n.op_type in INTEGER_COMPUTE_OPS or n.op_type in FLOAT_COMPUTE_OPS]
    free = list(kernels)
    matches: dict[str, onnx.NodeProto] = {}
    rules = (
        lambda node, k: k.name == node.name,
        lambda node, k: _base_name(k.name) == node.name,
        lambda node, k: k.name.endswith("_nchwc") and _base_name(k.name)[:-6] in qdq.reach(node),
        lambda node, k: bool(set(qdq.weight_sources(node)) & set(k.input)),
    )
    for rule in rules:
        for node in compute:
            key = _key(node)
            if key in matches:
                continue
            hit = next((k for k in free if rule(node, k)), None)
            if hit is not None:
                matches[key] = hit
                free.remove(hit)
    left = [_key(n) for n in compute if _key(n) not in matches]
    if left and len(left) == len(free):
        log.info("ORT renamed %d compute node(s); pairing them by position", len(left))
        matches.update(zip(left, free, strict=True))
        return matches, set(left)
    if left:
        log.info("%d compute node(s) not found in ORT's optimised graph: %s", len(left),
                 ", ".join(left))
    return matches, set()


def _is_compute(node: onnx.NodeProto) -> bool:
    """A float conv/matmul/gemm of the QDQ model, or an integer kernel already in it."""
    if node.op_type in COMPUTE_OPS and node.domain in ("", "ai.onnx"):
        return True
    return node.op_type in INTEGER_COMPUTE_OPS


def _key(node: onnx.NodeProto) -> str:
    """A node's name, or its first output's name when it has none."""
    return node.name or node.output[0]
