"""Dynamic INT8: weights quantized offline, activations at run time, no calibration table.

    result = quantize_dynamic(model, QuantizeSettings())
    result.model        # DynamicQuantizeLinear → MatMulInteger → Cast → Mul, per linear layer
    result.quantized    # the MatMul/Gemm nodes rewritten
    result.left_float   # every other node, with its reason

Each MatMul/Gemm with a constant 2-D weight becomes ONNX Runtime's dynamic pattern
(the one its own ``quantize_dynamic`` writes, which its CPU provider fuses into
MatMulIntegerToFloat / DynamicQuantizeMatMul):

    X ─ DynamicQuantizeLinear ─ X_q (uint8), x_scale, x_zero_point   (one per tensor X)
    MatMulInteger(X_q, W_q, x_zero_point, w_zero_point) ─ Cast(float) ─ Mul(x_scale·w_scale)

W_q is symmetric int8 per output column (``settings.per_channel``) in
on the grid ``settings.weight_grid("MatMul")`` gives: 8 bits, or 8 bits with int16-safe
pairs of K rows where ORT's uint8×int8 kernels saturate on this CPU (x86 without VNNI),
as for static INT8. A Gemm's bias C is added
in float after the Mul. In a transformer graph (lowbit.quantize.int8.scope) the same
scope applies as for static INT8: with ``settings.quantize_attention`` the attention
MatMuls get both operands quantized at run time (uint8 × uint8), large embedding tables
are stored int8 (``quantize_embeddings``), and every other op stays float. Nothing is
calibrated: DynamicQuantizeLinear takes each tensor's min/max per run.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lowbit.errors import ArgumentError
from lowbit.graph import FreshNames
from lowbit.quantize.int8.embeddings import quantize_embeddings
from lowbit.quantize.int8.params import quantize_weight_on, weight_kind
from lowbit.quantize.int8.qdq import NodeDecision, QuantizeResult
from lowbit.quantize.int8.scope import transformer_scope
from lowbit.quantize.int8.settings import QuantizeSettings

log = logging.getLogger(__name__)

NOTE = ("dynamic INT8: activations quantized at run time (DynamicQuantizeLinear, uint8, "
        "one range per tensor per run), weights int8 per output column; no calibration table")
_NOT_LINEAR = "dynamic INT8 quantizes MatMul/Gemm only"


def quantize_dynamic(model: onnx.ModelProto, settings: QuantizeSettings) -> QuantizeResult:
    """Rewrite the constant-weight MatMul/Gemm nodes of ``model`` (canonical) to dynamic
    INT8; with ``settings.quantize_attention`` in a transformer, the attention MatMuls too."""
    if settings.weight_bits != 8:
        raise ArgumentError("{dynamic} takes 8-bit weights (MatMulInteger has no int4 form)")
    scope = transformer_scope(model, quantize_attention=settings.quantize_attention)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    rewriter = _DynamicRewriter(out, settings)
    quantized: list[NodeDecision] = []
    left: list[NodeDecision] = []
    attention = set(scope.attention) if scope is not None and settings.quantize_attention \
        else set()
    for index, node in enumerate(list(out.graph.node)):
        label = node.name or node.output[0]
        reason = ""
        if rewriter.has_weight(node):
            reason = rewriter.rewrite_linear(node, index)
        elif node.name in attention:
            reason = rewriter.rewrite_attention(node, index)
        else:
            reason = scope.keep_float.get(node.name, _NOT_LINEAR) if scope else _NOT_LINEAR
        if reason:
            left.append(NodeDecision(label, node.op_type, reason))
        else:
            quantized.append(NodeDecision(label, node.op_type))
    rewriter.finish()
    if scope is not None:
        embeddings = set(quantize_embeddings(out))
        left = [d for d in left if d.name not in embeddings]
        quantized += [NodeDecision(n, "Gather") for n in sorted(embeddings)]
    out.ir_version = max(min(out.ir_version, 10), 7)
    return QuantizeResult(out, quantized, left)


class _DynamicRewriter:
    def __init__(self, model: onnx.ModelProto, settings: QuantizeSettings) -> None:
        self.model = model
        self.graph = model.graph
        self.settings = settings
        self.init = {i.name: i for i in self.graph.initializer}
        self.names = FreshNames.of(model)
        self.dynamic: dict[str, tuple[str, str, str]] = {}  # X → (X_q, scale, zero point)
        # Keyed by node position: protobuf hands out a new wrapper object per access.
        self.replacements: dict[int, list[onnx.NodeProto]] = {}  # position → new nodes
        self.before: dict[int, list[onnx.NodeProto]] = {}  # position → nodes to put first
        self.weights: dict[tuple[str, bool], tuple[str, str, str]] = {}

    def has_weight(self, node: onnx.NodeProto) -> bool:
        if node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2:
            return False
        weight = self.init.get(node.input[1])
        return weight is not None and len(weight.dims) == 2 and \
            weight.data_type == TensorProto.FLOAT and node.input[0] not in self.init

    def rewrite_linear(self, node: onnx.NodeProto, index: int) -> str:
        """'' when rewritten, else why the node stays float."""
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        bias = ""
        transposed = False
        if node.op_type == "Gemm":
            if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 \
                    or attrs.get("beta", 1.0) != 1.0:
                return "Gemm with transA/alpha/beta has no dynamic INT8 form here"
            transposed = bool(attrs.get("transB", 0))
            bias = node.input[2] if len(node.input) > 2 else ""
        x_q, x_scale, x_zero = self._dynamic_input(node.input[0], index)
        w_q, w_scale, w_zero = self._weight(node.input[1], transposed)
        nodes = self._integer_matmul(node, x_q, x_zero, x_scale, w_q, w_zero, w_scale,
                                     node.output[0] if not bias else None)
        if bias:
            nodes.append(helper.make_node("Add", [nodes[-1].output[0], bias], [node.output[0]],
                                          name=self.names.make(f"{node.name}_bias_add")))
        self.replacements[index] = nodes
        return ""

    def rewrite_attention(self, node: onnx.NodeProto, index: int) -> str:
        a_q, a_scale, a_zero = self._dynamic_input(node.input[0], index)
        b_q, b_scale, b_zero = self._dynamic_input(node.input[1], index)
        self.replacements[index] = self._integer_matmul(
            node, a_q, a_zero, a_scale, b_q, b_zero, b_scale, node.output[0])
        return ""

    def _integer_matmul(self, node: onnx.NodeProto, a_q: str, a_zero: str, a_scale: str,
                        b_q: str, b_zero: str, b_scale: str, output: str | None
                        ) -> list[onnx.NodeProto]:
        """ORT's MatMulIntegerToFloat pattern: MatMulInteger → Cast → Mul(a_scale·b_scale)."""
        base = node.name or node.output[0]
        scales = self.names.make(f"{base}_scales")
        integer = self.names.make(f"{base}_int32")
        as_float = self.names.make(f"{base}_int32_float")
        result = output or self.names.make(f"{base}_output")
        return [
            helper.make_node("Mul", [a_scale, b_scale], [scales],
                             name=self.names.make(f"{base}_scales_mul")),
            helper.make_node("MatMulInteger", [a_q, b_q, a_zero, b_zero], [integer],
                             name=self.names.make(f"{base}_quant")),
            helper.make_node("Cast", [integer], [as_float], to=TensorProto.FLOAT,
                             name=self.names.make(f"{base}_cast")),
            helper.make_node("Mul", [as_float, scales], [result],
                             name=self.names.make(f"{base}_output_scale_mul")),
        ]

    def _dynamic_input(self, tensor: str, reader: int) -> tuple[str, str, str]:
        if tensor not in self.dynamic:
            names = (self.names.make(f"{tensor}_quantized"), self.names.make(f"{tensor}_scale"),
                     self.names.make(f"{tensor}_zero_point"))
            node = helper.make_node("DynamicQuantizeLinear", [tensor], list(names),
                                    name=self.names.make(f"{tensor}_DynamicQuantizeLinear"))
            # Placed before the first reader: the reader's replacement follows it.
            self.before.setdefault(reader, []).append(node)
            self.dynamic[tensor] = names
        return self.dynamic[tensor]

    def _weight(self, name: str, transposed: bool) -> tuple[str, str, str]:
        key = (name, transposed)
        if key not in self.weights:
            array = numpy_helper.to_array(self.init[name]).astype(np.float32)
            if transposed:
                array = array.T  # MatMulInteger needs B as [K, N]
            axis = 1 if self.settings.per_channel else None
            kind, layout = weight_kind("MatMul", array.shape, axis)  # runs as MatMulInteger
            wq = quantize_weight_on(self.settings.weight_grid(kind), array, axis, layout)
            scale = wq.scale if axis is not None else wq.scale.reshape(())
            zero = np.zeros(scale.shape, np.int8)
            names = (self.names.make(f"{name}_quantized"), self.names.make(f"{name}_scale"),
                     self.names.make(f"{name}_zero_point"))
            arrays: tuple[np.ndarray, ...] = (wq.q, scale.astype(np.float32), zero)
            for tensor_name, value in zip(names, arrays, strict=True):
                self.graph.initializer.append(numpy_helper.from_array(value, tensor_name))
            self.weights[key] = names
        return self.weights[key]

    def finish(self) -> None:
        """Swap each rewritten node for its replacement (in place, keeping the order) and
        drop the float weights nothing reads any more."""
        nodes: list[onnx.NodeProto] = []
        for index, node in enumerate(self.graph.node):
            nodes.extend(self.before.get(index, []))
            nodes.extend(self.replacements.get(index) or [node])
        del self.graph.node[:]
        self.graph.node.extend(nodes)
        used = {name for node in self.graph.node for name in node.input}
        keep = [i for i in self.graph.initializer if i.name in used]
        del self.graph.initializer[:]
        self.graph.initializer.extend(keep)
        if not any(o.domain in ("", "ai.onnx") and o.version >= 11
                   for o in self.model.opset_import):
            log.warning("DynamicQuantizeLinear needs opset 11 or later")

