"""QDQ models made elsewhere (ONNX Runtime's quantizer, NNCF, a QAT export): check their
quantization parameters, say what they quantize, and strip them back to a float graph.

    found = describe_qdq(model)           # QdqSummary: pairs, weights, bits, quantized ops
    found.quantized, found.left_float     # compute ops reading integer inputs, and the others
    stripped = strip_qdq(model)           # StripResult: the float graph, weights dequantized
    stripped.model, stripped.relus        # ... and the Relus a folded activation needed back
    take_float_weights(stripped, f32)     # FloatWeights: the float original's weights back

Stripping follows what the QDQ graph computes, not names: an activation's
``DequantizeLinear(QuantizeLinear(x))`` becomes ``x``; a DequantizeLinear of a constant
(a weight, an int32 bias, a quantized constant operand) becomes the float initializer it
dequantizes to, under the DequantizeLinear's output name. A quantizer that folded a Relu
into its producer's range (ONNX Runtime's and lowbit's own rewrites do: the Conv then
writes the Relu's output, and the QuantizeLinear's zero point at the bottom of its
range clips at zero) leaves a graph whose float form lacks the Relu: where such a
QuantizeLinear follows an op that can produce negative values, a Relu is put back and
takes the tensor's name (the producer's output gets a fresh one), so a calibration
table or a compare of the float original finds the tensor it knows. Where the range also
ends at 6 (within one quantization step), the folded activation was a ReLU6 and comes
back as Clip(0, 6): a plain Relu would let the float graph's activations grow past 6
(ONNX Runtime's EfficientNet-Lite0 stripped with Relus: output cosine 0.59 to the
original; with Clip(0, 6): 0.99), and every step that runs the float graph on data (bias
correction, AdaRound, a float fallback) would see them. QOperator models (QLinearConv, ...) are refused: their float form is
not a rewrite away.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_ir as ir
from onnx import numpy_helper
from onnx_ir.passes.common import RemoveUnusedNodesPass, TopologicalSortPass

from lowbit.errors import ModelError
from lowbit.graph import QDQ_OPS, FreshNames, constant_arrays
from lowbit.quantize.int8.params import QMIN_QMAX

log = logging.getLogger(__name__)

COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})
# Ops whose output is never negative, and ops that only move their input's values.
_NONNEGATIVE = frozenset({"Relu", "Sigmoid", "Softmax", "HardSigmoid", "Abs", "Exp"})
_MOVES_VALUES = frozenset({"MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze",
                           "Unsqueeze", "Identity", "Concat", "Resize", "Pad", "Slice",
                           "Gather", "Split", "AveragePool", "GlobalAveragePool",
                           "GlobalMaxPool", "DequantizeLinear", "QuantizeLinear"})
_INTEGER_DTYPES = {onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.INT8: "int8"}


@dataclass(frozen=True)
class ComputeOp:
    """A Conv/ConvTranspose/MatMul/Gemm of the QDQ model and whether its data and weight
    inputs are dequantized integers (``reason`` says what is float when not)."""

    name: str
    op_type: str
    quantized: bool
    reason: str = ""


@dataclass(frozen=True)
class QdqSummary:
    """What an already-quantized QDQ model quantizes."""

    activation_pairs: int  # QuantizeLinear → DequantizeLinear on run-time tensors
    activation_types: tuple[str, ...]  # "uint8", "int8"
    weights: int  # DequantizeLinear of constant weights (2-D and more)
    per_channel_weights: int
    weight_bits: tuple[int, ...]  # the widest code of each weight: 4, 7 or 8 bits
    ops: tuple[ComputeOp, ...] = ()

    @property
    def quantized(self) -> tuple[ComputeOp, ...]:
        return tuple(op for op in self.ops if op.quantized)

    @property
    def left_float(self) -> tuple[ComputeOp, ...]:
        return tuple(op for op in self.ops if not op.quantized)

    def note(self) -> str:
        bits = "/".join(str(b) for b in self.weight_bits) or "no"
        kinds = "/".join(self.activation_types) or "no"
        return (f"arrived quantized (QDQ): {len(self.quantized)} of {len(self.ops)} "
                f"conv/matmul/gemm read integer inputs; {self.activation_pairs} {kinds} "
                f"activation Q/DQ pairs, {self.weights} weights at {bits} bits "
                f"({self.per_channel_weights} per channel); its scales are kept as they are")


@dataclass(frozen=True)
class StripResult:
    """The float graph of a QDQ model and what stripping did."""

    model: onnx.ModelProto
    pairs: int  # activation Q/DQ pairs removed
    constants: int  # dequantized weights, biases and constants
    relus: tuple[str, ...] = field(default=())  # tensors given their folded Relu back
    dequantized: tuple[str, ...] = field(default=())  # initializers made from a constant's DQ


def describe_qdq(model: onnx.ModelProto) -> QdqSummary:
    """Counts of what a QDQ model quantizes, and each compute op's inputs."""
    graph = model.graph
    constants = constant_arrays(graph)
    producers = {out: node for node in graph.node for out in node.output}
    pairs, types = 0, set()
    weights, per_channel, bits = 0, 0, set()
    for node in graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        data = node.input[0]
        source = producers.get(data)
        if source is not None and source.op_type == "QuantizeLinear":
            pairs += 1
            zero = constants.get(source.input[2]) if len(source.input) > 2 else None
            types.add(str(zero.dtype) if zero is not None else "uint8")
        elif data in constants and constants[data].ndim >= 2:
            weights += 1
            scale = constants.get(node.input[1])
            per_channel += int(scale is not None and scale.size > 1)
            codes = np.abs(constants[data].astype(np.int64))
            widest = int(codes.max(initial=0))
            bits.add(4 if widest <= 7 else 7 if widest <= 63 else 8)
    ops = tuple(_compute_op(node, producers, constants) for node in graph.node
                if node.op_type in COMPUTE_OPS and node.domain in ("", "ai.onnx"))
    return QdqSummary(pairs, tuple(sorted(types)), weights, per_channel, tuple(sorted(bits)),
                      ops)


def _compute_op(node: onnx.NodeProto, producers: dict[str, onnx.NodeProto],
                constants: dict[str, np.ndarray]) -> ComputeOp:
    label = node.name or node.output[0]
    data = node.input[0]
    weight = node.input[1] if len(node.input) > 1 else ""
    data_dq = producers.get(data)
    weight_dq = producers.get(weight)
    if data_dq is None or data_dq.op_type != "DequantizeLinear":
        return ComputeOp(label, node.op_type, False, f"input '{data}' is float")
    if weight in constants:
        return ComputeOp(label, node.op_type, False, f"weight '{weight}' is float")
    if weight_dq is None or weight_dq.op_type != "DequantizeLinear":
        return ComputeOp(label, node.op_type, False, f"operand '{weight}' is float")
    return ComputeOp(label, node.op_type, True)


def strip_qdq(model: onnx.ModelProto) -> StripResult:
    """The float graph of a QDQ model (see the module docstring); ModelError for a
    QOperator model or a QuantizeLinear read by anything but a DequantizeLinear."""
    ir_model = ir.from_proto(model)
    graph = ir_model.graph
    names = FreshNames.of_ir(graph)
    dequantized = []
    for node in list(graph):
        if node.op_type == "DequantizeLinear" and _is_constant(node.inputs[0]):
            dequantized.append(_dequantize_constant(graph, node))
    constants = len(dequantized)
    pairs, relus = 0, []
    for node in list(graph):
        if node.op_type != "QuantizeLinear":
            continue
        readers = [user for user, _ in node.outputs[0].uses()]
        odd = [user for user in readers if user.op_type != "DequantizeLinear"]
        if odd or node.outputs[0].is_graph_output():
            what = odd[0].op_type if odd else "a graph output"
            raise ModelError(f"QuantizeLinear '{node.name}' feeds {what}: only QDQ models "
                             "(each QuantizeLinear read by DequantizeLinear) strip back to "
                             "float; QOperator models do not")
        data = node.inputs[0]
        assert data is not None
        source = _with_relu(graph, node, data, names, _relu6_top(node)) \
            if _clips_at_zero(node, data) else data
        if source is not data:
            relus.append(source.name or "")
        for dq in readers:
            _replace_output(graph, dq.outputs[0], source, names)
            graph.remove(dq, safe=True)
            pairs += 1
        graph.remove(node, safe=True)
    left = sorted({n.op_type for n in graph
                   if n.op_type in QDQ_OPS or n.op_type.startswith("QLinear")})
    if left:
        raise ModelError(f"the model keeps {', '.join(left)} after its Q/DQ pairs were "
                         "stripped: only QDQ models strip back to float")
    RemoveUnusedNodesPass()(ir_model)
    TopologicalSortPass()(ir_model)
    out = ir.to_proto(ir_model)
    log.info("stripped %d Q/DQ pairs and %d dequantized constants; Relu restored on %s",
             pairs, constants, ", ".join(relus) or "none")
    return StripResult(out, pairs, constants, tuple(relus), tuple(dequantized))


# A weight whose float original differs from its dequantized form by more than this
# (relative L2) is not that weight's original: int8 rounding moves a weight by about
# 0.5 %, int4 by about 10 %.
FLOAT_WEIGHT_TOLERANCE = 0.25


@dataclass(frozen=True)
class FloatWeights:
    """A stripped model with the float original's weights and biases put back."""

    model: onnx.ModelProto
    taken: tuple[str, ...]  # initializers whose values are now the original's
    unmatched: tuple[str, ...]  # no op of the same name reads a same-shaped float constant
    differing: tuple[str, ...]  # the original's values are not this weight rounded

    def note(self, original: str) -> str:
        total = len(self.taken) + len(self.unmatched) + len(self.differing)
        text = (f"{len(self.taken)} of {total} dequantized weights and biases replaced by "
                f"{original}'s (matched by op name and shape)")
        for label, names in (("no match", self.unmatched),
                             ("not this weight rounded, kept", self.differing)):
            if names:
                shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
                text += f"; {label}: {shown}"
        return text


def take_float_weights(stripped: StripResult, original: onnx.ModelProto) -> FloatWeights:
    """``stripped``'s dequantized constants replaced by the float original's: the op of the
    same name in ``original`` reads, at the same input, a float initializer of the same
    shape, whose values the dequantized ones round (within FLOAT_WEIGHT_TOLERANCE). The
    quantized model's rounding is undone where the original is known; anything else keeps
    its dequantized value and is named."""
    model = onnx.ModelProto()
    model.CopyFrom(stripped.model)
    wanted = set(stripped.dequantized)
    inits = {t.name: t for t in model.graph.initializer}
    source = {t.name: t for t in original.graph.initializer}
    ops = {n.name: n for n in original.graph.node if n.name}
    found: dict[str, onnx.TensorProto] = {}
    for node in model.graph.node:
        twin = ops.get(node.name)
        for index, name in enumerate(node.input):
            if name not in wanted or name in found or twin is None or \
                    index >= len(twin.input) or twin.input[index] not in source:
                continue
            candidate = source[twin.input[index]]
            if list(candidate.dims) == list(inits[name].dims) and \
                    candidate.data_type == onnx.TensorProto.FLOAT:
                found[name] = candidate
    taken, differing = [], []
    for name, candidate in found.items():
        values = numpy_helper.to_array(candidate).astype(np.float64)
        rounded = numpy_helper.to_array(inits[name]).astype(np.float64)
        scale = max(float(np.linalg.norm(values)), 1e-30)
        if float(np.linalg.norm(values - rounded)) / scale > FLOAT_WEIGHT_TOLERANCE:
            differing.append(name)
            continue
        inits[name].CopyFrom(numpy_helper.from_array(
            numpy_helper.to_array(candidate).astype(np.float32), name))
        taken.append(name)
    unmatched = tuple(sorted(wanted - set(found) & set(inits)))
    return FloatWeights(model, tuple(taken), unmatched, tuple(differing))


def _dequantize_constant(graph: ir.Graph, node: ir.Node) -> str:
    """A DequantizeLinear of a constant becomes the float initializer it computes; returns
    the initializer's name."""
    data, scale = node.inputs[0], node.inputs[1]
    zero = node.inputs[2] if len(node.inputs) > 2 else None
    if scale is None or not _is_constant(scale) or (zero is not None and not _is_constant(zero)):
        raise ModelError(f"DequantizeLinear '{node.name}' reads a constant with a scale or "
                         "zero point computed at run time; it cannot be stripped")
    if node.attributes.get_int("block_size", 0):
        raise ModelError(f"DequantizeLinear '{node.name}' is blockwise (block_size); "
                         "lowbit strips per-tensor and per-axis quantization only")
    q = _array(data).astype(np.float64)
    s = _array(scale).astype(np.float64)
    z = _array(zero).astype(np.float64) if zero is not None else np.zeros_like(s)
    if s.size > 1:
        axis = node.attributes.get_int("axis", 1) % max(q.ndim, 1)
        shape = [1] * q.ndim
        shape[axis] = -1
        s, z = s.reshape(shape), z.reshape(shape)
    values = ((q - z) * s).astype(np.float32)
    out = node.outputs[0]
    name = out.name or "dequantized"
    value = ir.Value(name=f"{name}__float", shape=ir.Shape(values.shape),
                     type=ir.TensorType(ir.DataType.FLOAT),
                     const_value=ir.tensor(values, name=f"{name}__float"))
    graph.register_initializer(value)
    if out.is_graph_output():
        identity = ir.Node("", "Identity", [value], name=f"{name}__identity")
        graph.insert_before(node, identity)
        ir.convenience.replace_all_uses_with(out, identity.outputs[0],
                                             replace_graph_outputs=True)
        out.name, identity.outputs[0].name = None, name
        graph.remove(node, safe=True)
        return value.name or ""
    ir.convenience.replace_all_uses_with(out, value)
    graph.remove(node, safe=True)
    value.name = name  # the consumers read it under the name they read before
    return name


def _clips_at_zero(quantize: ir.Node, data: ir.Value) -> bool:
    """Whether the QuantizeLinear's range starts at exactly zero (zero point at the bottom of
    its type) while its input can be negative: a Relu folded into the producer."""
    zero = quantize.inputs[2] if len(quantize.inputs) > 2 else None
    if zero is None or not _is_constant(zero):
        return False
    points = _array(zero)
    dtype = str(points.dtype)
    if dtype not in QMIN_QMAX or points.size != 1 or int(points.reshape(-1)[0]) != \
            QMIN_QMAX[dtype][0]:
        return False
    return _can_be_negative(data, set())


def _relu6_top(quantize: ir.Node) -> float | None:
    """6.0 where the QuantizeLinear's range (which starts at zero) ends at 6 within one
    step: a folded ReLU6, to be restored as Clip(0, 6); else None (a plain Relu)."""
    scale = quantize.inputs[1] if len(quantize.inputs) > 1 else None
    zero = quantize.inputs[2] if len(quantize.inputs) > 2 else None
    if not (_is_constant(scale) and _is_constant(zero)):
        return None
    step, points = _array(scale).reshape(-1), _array(zero)
    if step.size != 1:
        return None
    top = float(step[0]) * (QMIN_QMAX[str(points.dtype)][1] - int(points.reshape(-1)[0]))
    return 6.0 if abs(top - 6.0) <= float(step[0]) else None


def _can_be_negative(value: ir.Value, seen: set[int]) -> bool:
    producer = value.producer()
    if producer is None or id(value) in seen:
        return False  # a graph input's range is the caller's; outside it, it saturates
    seen.add(id(value))
    if producer.op_type in _NONNEGATIVE:
        return False
    if producer.op_type == "Clip":
        low = producer.inputs[1] if len(producer.inputs) > 1 else None
        return not (low is not None and _is_constant(low) and float(_array(low)) >= 0)
    if producer.op_type in _MOVES_VALUES:
        sources = [v for v in producer.inputs[:1 if producer.op_type != "Concat" else None]
                   if v is not None]
        return any(_can_be_negative(v, seen) for v in sources)
    return True


def _with_relu(graph: ir.Graph, quantize: ir.Node, data: ir.Value, names: FreshNames,
               top: float | None = None) -> ir.Value:
    """A Relu (with a ``top``: Clip(0, top)) of ``data`` right after its producer; its
    output takes ``data``'s name where it can (the producer's output gets a fresh one), as
    the float original had."""
    label = names.make(f"{data.name or 'tensor'}_relu")
    if top is None:
        relu = ir.Node("", "Relu", [data], name=label)
    else:
        bounds = [ir.Value(name=names.make(f"{label}_{end}"), shape=ir.Shape([]),
                           type=ir.TensorType(ir.DataType.FLOAT),
                           const_value=ir.tensor(np.array(value, np.float32),
                                                 name=f"{label}_{end}"))
                  for end, value in (("min", 0.0), ("max", top))]
        for bound in bounds:
            bound.const_value.name = bound.name  # type: ignore[union-attr]
            graph.register_initializer(bound)
        relu = ir.Node("", "Clip", [data, *bounds], name=label)
    graph.insert_before(quantize, relu)
    out = relu.outputs[0]
    original = data.name or "tensor"
    if data.is_graph_output() or data.is_graph_input():
        out.name = names.make(f"{original}_relu")
        return out
    data.name = names.make(f"{original}_before_relu")
    out.name = original
    return out


def _replace_output(graph: ir.Graph, old: ir.Value, new: ir.Value, names: FreshNames) -> None:
    """Every reader of ``old`` reads ``new``; a graph output keeps its name (``new`` takes
    it over where it can, else through an Identity)."""
    if not old.is_graph_output():
        ir.convenience.replace_all_uses_with(old, new)
        return
    name = old.name
    if not (new.is_graph_input() or new.is_graph_output() or new.is_initializer()):
        ir.convenience.replace_all_uses_with(old, new, replace_graph_outputs=True)
        old.name = names.make(f"{name}__stripped")
        new.name = name
        return
    identity = ir.Node("", "Identity", [new], name=names.make(f"{name}_identity"))
    graph.append(identity)
    ir.convenience.replace_all_uses_with(old, identity.outputs[0], replace_graph_outputs=True)
    old.name = names.make(f"{name}__stripped")
    identity.outputs[0].name = name


def _is_constant(value: ir.Value | None) -> bool:
    if value is None:
        return False
    if value.const_value is not None:
        return True
    producer = value.producer()
    return producer is not None and producer.op_type == "Constant"


def _array(value: ir.Value | None) -> np.ndarray:
    assert value is not None
    if value.const_value is not None:
        return np.asarray(value.const_value.numpy())
    producer = value.producer()
    assert producer is not None
    attribute = producer.attributes["value"]
    return np.asarray(attribute.as_tensor().numpy())

