"""Rewrite a float model to INT8 QDQ form that ONNX Runtime fuses into integer kernels.

    result = quantize_qdq(model, table, QuantizeSettings())
    result.model            # onnx.ModelProto with QuantizeLinear/DequantizeLinear
    result.quantized        # [NodeDecision(name, op_type, reason="")]
    result.left_float       # [NodeDecision(name, op_type, reason="no INT8 rule for Erf")]

With ``keep={"conv5": "F32"}`` (node name → precision, from a qtable) the named nodes
stay float (reason "kept F32 by the qtable"); a tensor read only by kept nodes is not
quantized at all, so a kept op reads its input in float when nothing else needs it in
INT8 (its producer then keeps a float output, as in ORT's nodes_to_exclude).

Each quantized activation tensor gets exactly one Q→DQ pair right after its
producer and every consumer reads the DQ output, so two int8 neighbours never
see a redundant DQ→Q pair. Weights are stored as int8 initializers behind a
per-channel DequantizeLinear; biases as int32 with scale s_input·s_weight.

``weights={"conv1_w": WeightQuant(q, scale, axis)}`` (initializer name → integers and
scales, e.g. from AdaRound) are stored as given instead of rounding to nearest. With
``settings.weight_bits == 4`` weights lie on the [−7, 7] grid (depthwise Conv weights
keep 8 bits: QuantizeSettings.weight_grid); they are stored as int4 where the model's
opset has an int4 DequantizeLinear (21 and later, QDQ format), else as int8 holding the
4-bit values.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import ml_dtypes
import numpy as np
import onnx
import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass, TopologicalSortPass

from lowbit.calibration.derived import derived_ranges
from lowbit.calibration.observers import TensorRange
from lowbit.graph import FreshNames, onnx_opset
from lowbit.quantize.int8.params import (
    QuantParams,
    WeightQuant,
    activation_params,
    bias_safe_weight_scale,
    bias_scale,
    quantize_bias,
    quantize_weight_on,
    weight_kind,
)
from lowbit.quantize.int8.rules import InputRole, OpRule, OutputMode, Role, rule_for
from lowbit.quantize.int8.settings import QuantizeSettings

log = logging.getLogger(__name__)

_NP_TO_IR = {np.dtype("uint8"): ir.DataType.UINT8, np.dtype("int8"): ir.DataType.INT8,
             np.dtype("int32"): ir.DataType.INT32, np.dtype("float32"): ir.DataType.FLOAT,
             np.dtype(ml_dtypes.int4): ir.DataType.INT4}
INT4_OPSET = 21  # the first opset whose QuantizeLinear/DequantizeLinear take int4


@dataclass(frozen=True)
class NodeDecision:
    name: str
    op_type: str
    reason: str = ""


@dataclass
class QuantizeResult:
    model: onnx.ModelProto
    quantized: list[NodeDecision] = field(default_factory=list)
    left_float: list[NodeDecision] = field(default_factory=list)
    removed: list[NodeDecision] = field(default_factory=list)
    float_tensors: dict[str, str] = field(default_factory=dict)


def quantize_qdq(
    model: onnx.ModelProto,
    ranges: Mapping[str, TensorRange],
    settings: QuantizeSettings,
    *,
    skipped: Mapping[str, str] | None = None,
    keep: Mapping[str, str] | None = None,
    weights: Mapping[str, WeightQuant] | None = None,
) -> QuantizeResult:
    """Quantize ``model`` (canonical, shapes inferred) with calibrated ``ranges``;
    nodes named in ``keep`` (name → precision) are left out of INT8; ``weights``
    (initializer name → WeightQuant) replace round-to-nearest for those weights."""
    ir_model = ir.from_proto(model)
    # Tensors calibration did not observe take the range of the tensor that stands for them.
    full_ranges = dict(ranges)
    for name, source in derived_ranges(model).items():
        if name not in full_ranges and source in ranges:
            full_ranges[name] = ranges[source]
    rewriter = _QdqRewriter(ir_model.graph, full_ranges, settings, dict(skipped or {}),
                            dict(keep or {}), dict(weights or {}),
                            int4=stores_int4(model, settings))
    rewriter.decide()
    rewriter.insert()
    RemoveUnusedNodesPass()(ir_model)
    TopologicalSortPass()(ir_model)
    out = ir.to_proto(ir_model)
    out.ir_version = max(min(out.ir_version, 10), 7)
    return QuantizeResult(out, rewriter.quantized, rewriter.left_float, rewriter.removed,
                          rewriter.float_tensors)


def stores_int4(model: onnx.ModelProto, settings: QuantizeSettings) -> bool:
    """Whether 4-bit weights are stored as int4 (opset 21+, QDQ) rather than int8."""
    return settings.weight_bits == 4 and settings.format == "qdq" \
        and onnx_opset(model) >= INT4_OPSET


class _QdqRewriter:
    def __init__(self, graph: ir.Graph, ranges: Mapping[str, TensorRange],
                 settings: QuantizeSettings, skipped: dict[str, str],
                 keep: dict[str, str] | None = None,
                 weights: dict[str, WeightQuant] | None = None, *, int4: bool = False) -> None:
        self.graph = graph
        self.given_weights = weights or {}
        self.int4 = int4
        self.keep = keep or {}
        self._kept_readers = _kept_readers(graph, self.keep)
        self.ranges = ranges
        self.settings = settings
        self.skipped = skipped
        self.params: dict[ir.Value, QuantParams] = {}
        self.node_roles: list[tuple[ir.Node, Mapping[int, InputRole]]] = []
        self.quantized: list[NodeDecision] = []
        self.left_float: list[NodeDecision] = []
        self.removed: list[NodeDecision] = []
        self.float_tensors: dict[str, str] = {}
        self._quantized_nodes: set[ir.Node] = set()
        self._weight_cache: dict[tuple[str, int | None, bytes | None, str], ir.Value] = {}
        self._param_values: dict[QuantParams, tuple[ir.Value, ir.Value]] = {}
        self._names = FreshNames.of_ir(graph)

    # -- decisions ---------------------------------------------------------------------

    def decide(self) -> None:
        for node in list(self.graph):
            rule = rule_for(node)
            label = node.name or (node.outputs[0].name if node.outputs else None) or node.op_type
            if node.name in self.keep:
                self._float(node, label, f"kept {self.keep[node.name]} by the qtable")
                continue
            if node.name in self._kept_readers:
                self._float(node, label, "feeds only ops the qtable keeps float")
                continue
            if rule is None:
                self._float(node, label, _no_rule_reason(node))
                continue
            if rule.keep_float:
                self._float(node, label, rule.keep_float)
                continue
            if rule.removable_after_producer and self._try_remove(node, rule, label):
                continue
            roles = rule.roles(node)
            if roles is None:
                self._float(node, label, "operands not supported (weights not constant, or "
                                         "attributes without an integer kernel)")
                continue
            missing = self._activation_inputs_without_params(node, roles)
            if missing:
                self._float(node, label, missing)
                continue
            self._set_output_params(node, rule)
            self.node_roles.append((node, roles))
            self._quantized_nodes.add(node)
            self.quantized.append(NodeDecision(label, node.op_type))

    def _float(self, node: ir.Node, label: str, reason: str) -> None:
        self.left_float.append(NodeDecision(label, node.op_type, reason))

    def _activation_inputs_without_params(self, node: ir.Node,
                                          roles: Mapping[int, InputRole]) -> str:
        for index, role in roles.items():
            if role.role is not Role.ACTIVATION:
                continue
            value = node.inputs[index]
            assert value is not None
            if value not in self.params:
                params, reason = self._table_params(value)
                if params is None:
                    return f"input '{value.name}' stays float: {reason}"
                self.params[value] = params
        return ""

    def _table_params(self, value: ir.Value) -> tuple[QuantParams | None, str]:
        name = value.name or ""
        if value.dtype is not None and value.dtype != ir.DataType.FLOAT:
            return None, f"type {value.dtype.name} is not float32"
        if name in self.skipped:
            return self._note_float(name, self.skipped[name])
        rng = self.ranges.get(name)
        if rng is None:
            return self._note_float(name, "no calibration range")
        lo, hi = max(rng.min, -rng.threshold), min(rng.max, rng.threshold)
        limit = self.settings.max_abs_range
        if max(abs(lo), abs(hi)) >= limit:
            return self._note_float(name, f"range [{lo:.3g}, {hi:.3g}] reaches |x| ≥ {limit:g} "
                                          "(a masking constant?)")
        try:
            params = activation_params(lo, hi, self.settings.activation,
                                       symmetric=self.settings.symmetric)
        except ValueError as err:
            return self._note_float(name, str(err))
        return params, ""

    def _note_float(self, name: str, reason: str) -> tuple[None, str]:
        self.float_tensors[name] = reason
        return None, reason

    def _set_output_params(self, node: ir.Node, rule: OpRule) -> None:
        output = node.outputs[0]
        if rule.output is OutputMode.FLOAT or output.is_graph_output():
            return
        if self.keep and output.uses() and all(user.name in self._kept_readers
                                               for user, _ in output.uses()):
            return  # read only by ops the qtable keeps float: they get it in float
        if rule.output is OutputMode.SAME_AS_INPUT:
            source = node.inputs[0]
            if source is not None and source in self.params:
                self.params[output] = self.params[source]
            return
        params, _ = self._table_params(output)
        if params is None:
            return
        self.params[output] = params
        if rule.output is OutputMode.SHARED:
            for value in node.inputs:
                if value is None or value.is_graph_output() or len(value.uses()) != 1:
                    continue
                producer = value.producer()
                producer_rule = rule_for(producer) if producer is not None else None
                if producer_rule is not None and producer_rule.output is OutputMode.SAME_AS_INPUT:
                    continue  # its parameters are tied to its own input
                self.params[value] = params

    def _try_remove(self, node: ir.Node, rule: OpRule, label: str) -> bool:
        """Remove Relu/Clip(0, ·) when the producer's uint8 output already clips at 0."""
        if not self.settings.fold_activations or self.settings.symmetric:
            return False
        data, output = node.inputs[0], node.outputs[0]
        producer = data.producer() if data is not None else None
        if data is None or producer is None or producer not in self._quantized_nodes:
            return False
        producer_rule = rule_for(producer)
        if producer_rule is None or producer_rule.output is not OutputMode.OWN:
            return False
        if len(data.uses()) != 1 or data.is_graph_output() or output.is_graph_output():
            return False
        if node.op_type == "Clip" and not _clip_starts_at_zero(node):
            return False
        params, _ = self._table_params(output)
        if params is None or params.zero_point != params.qmin:
            return False
        # The producer now writes the activation's output tensor, under its name.
        ir.convenience.replace_all_uses_with(output, data)
        self.graph.remove(node, safe=True)
        old_name = output.name
        output.name = f"{old_name}__removed"
        data.name = old_name
        self.params[data] = params
        self.removed.append(NodeDecision(label, node.op_type,
                                         f"folded into {producer.op_type} output range"))
        return True

    # -- rewriting ---------------------------------------------------------------------

    def insert(self) -> None:
        for value, params in list(self.params.items()):
            if value.const_value is not None:
                continue
            self._insert_qdq(value, params)
        for node, roles in self.node_roles:
            for index, role in roles.items():
                if role.role is Role.WEIGHT:
                    self._quantize_weight(node, index, role.axis,
                                          self._bias_floor(node, roles, index))
            for index, role in roles.items():
                if role.role is Role.BIAS:
                    self._quantize_bias(node, index, role)
                elif role.role is Role.CONSTANT:
                    self._quantize_constant(node, index)

    def _insert_qdq(self, value: ir.Value, params: QuantParams) -> None:
        base = value.name or "tensor"
        # Tensors tied together (pass-through ops, Concat) share one scale/zero-point pair.
        if params not in self._param_values:
            self._param_values[params] = (
                self._initializer(f"{base}_scale", np.array(params.scale, np.float32)),
                self._initializer(f"{base}_zero_point",
                                  np.array(params.zero_point, params.dtype)))
        scale, zero = self._param_values[params]
        q_out = ir.Value(name=self._names.make(f"{base}_quantized"))
        dq_out = ir.Value(name=self._names.make(f"{base}_dequantized"))
        users = [(user, idx) for user, idx in value.uses()]
        q = ir.Node("", "QuantizeLinear", [value, scale, zero], outputs=[q_out],
                    name=self._names.make(f"{base}_QuantizeLinear"))
        dq = ir.Node("", "DequantizeLinear", [q_out, scale, zero], outputs=[dq_out],
                     name=self._names.make(f"{base}_DequantizeLinear"))
        self.graph.extend([q, dq])
        for user, idx in users:
            user.replace_input_with(idx, dq_out)

    def _bias_floor(self, node: ir.Node, roles: Mapping[int, InputRole], weight_index: int
                    ) -> np.ndarray | None:
        """Per-channel weight-scale floor that keeps this node's int32 bias from overflowing."""
        for index, role in roles.items():
            if role.role is not Role.BIAS or role.weight_index != weight_index:
                continue
            bias = node.inputs[index]
            input_scale = _dequantized_scale(node.inputs[role.input_index])
            if bias is None or bias.const_value is None or input_scale is None:
                return None
            values = bias.const_value.numpy().astype(np.float32).reshape(-1)
            floor = bias_safe_weight_scale(values, input_scale)
            if not self.settings.per_channel:
                floor = np.array(floor.max(initial=0.0), np.float32)
            return floor
        return None

    def _quantize_weight(self, node: ir.Node, index: int, axis: int | None,
                         min_scale: np.ndarray | None = None) -> None:
        value = node.inputs[index]
        assert value is not None and value.const_value is not None
        if not self.settings.per_channel:
            axis = None
        floor_key = None if min_scale is None else min_scale.tobytes()
        group = node.attributes.get_int("group", 1) if node.op_type == "Conv" else 1
        shape = tuple(d if isinstance(d, int) else -1 for d in value.const_value.shape)
        kind, layout = weight_kind(node.op_type, shape, axis, group)
        grid = self.settings.weight_grid(kind)
        key = (value.name or "", axis, floor_key, grid)
        if key not in self._weight_cache:
            wq = self._given_weight(value, axis, min_scale, grid, layout)
            if wq is None:
                weight = value.const_value.numpy().astype(np.float32)
                wq = quantize_weight_on(grid, weight, axis, layout, min_scale)
                raised = 0 if min_scale is None else int(np.sum(
                    min_scale > quantize_weight_on(grid, weight, axis, layout).scale))
                if raised:
                    log.info("%s: raised the weight scale of %d channel(s) so the int32 bias "
                             "fits", value.name, raised)
            base = value.name or "weight"
            storage = ml_dtypes.int4 if self.int4 and grid == "int4" else np.int8
            q = self._initializer(f"{base}_quantized", wq.q.astype(storage))
            scale = self._initializer(f"{base}_scale",
                                      wq.scale if axis is not None else wq.scale.reshape(()))
            zero = self._initializer(f"{base}_zero_point",
                                     np.zeros(wq.scale.shape if axis is not None else (), storage))
            dq_out = ir.Value(name=self._names.make(f"{base}_dequantized"))
            attrs = {"axis": ir.AttrInt64("axis", axis)} if axis is not None else {}
            dq = ir.Node("", "DequantizeLinear", [q, scale, zero], attributes=attrs,
                         outputs=[dq_out], name=self._names.make(f"{base}_DequantizeLinear"))
            self.graph.append(dq)
            self._weight_cache[key] = dq_out
            dq_out.meta["lowbit_weight_scale"] = wq.scale
        node.replace_input_with(index, self._weight_cache[key])

    def _given_weight(self, value: ir.Value, axis: int | None, min_scale: np.ndarray | None,
                      grid: str, layout: str | None) -> WeightQuant | None:
        """The precomputed integers for this weight, when they fit its axis and bias floor."""
        given = self.given_weights.get(value.name or "")
        if given is None:
            return None
        shape = tuple(value.const_value.shape) if value.const_value is not None else ()
        if given.axis != axis or tuple(given.q.shape) != shape:
            log.warning("%s: the given integer weights (axis %s, shape %s) do not fit this use "
                        "(axis %s, shape %s); rounding to nearest", value.name, given.axis,
                        tuple(given.q.shape), axis, shape)
            return None
        if min_scale is None or not np.any(np.asarray(min_scale) > given.scale):
            return given
        if axis is None:
            log.warning("%s: the given weight scale is too small for the int32 bias; rounding "
                        "to nearest with a raised scale", value.name)
            return None
        # Only the channels whose int32 bias would overflow are re-rounded, with the raised
        # scale (near-zero weights and a sizeable bias); the others keep the given integers.
        assert value.const_value is not None
        weight = value.const_value.numpy().astype(np.float32)
        raised = quantize_weight_on(grid, weight, axis, layout, min_scale)
        low = np.asarray(min_scale) > given.scale
        mask_shape: list[int] = [1] * weight.ndim
        mask_shape[axis] = -1
        q = np.where(low.reshape(mask_shape), raised.q, given.q).astype(given.q.dtype)
        log.info("%s: %d channel(s) re-rounded to nearest with a raised scale so the int32 "
                 "bias fits", value.name, int(low.sum()))
        return WeightQuant(q, np.where(low, raised.scale, given.scale).astype(np.float32), axis)

    def _quantize_bias(self, node: ir.Node, index: int, role: InputRole) -> None:
        bias_value = node.inputs[index]
        input_value = node.inputs[role.input_index]
        weight_value = node.inputs[role.weight_index]
        assert bias_value is not None and bias_value.const_value is not None
        if input_value is None or input_value.producer() is None:
            return
        # The activation input is now a DequantizeLinear output; its scale is input 1.
        dq_in = input_value.producer()
        weight_scale = weight_value.meta.get("lowbit_weight_scale") if weight_value else None
        if dq_in is None or dq_in.op_type != "DequantizeLinear" or weight_scale is None:
            return
        in_scale_value = dq_in.inputs[1]
        assert in_scale_value is not None and in_scale_value.const_value is not None
        in_scale = float(in_scale_value.const_value.numpy())
        bias = bias_value.const_value.numpy().astype(np.float32).reshape(-1)
        weight_scale = np.broadcast_to(weight_scale, bias.shape)
        base = f"{bias_value.name or 'bias'}"
        q = self._initializer(f"{base}_quantized", quantize_bias(bias, in_scale, weight_scale))
        scale = self._initializer(f"{base}_scale", bias_scale(in_scale, weight_scale))
        zero = self._initializer(f"{base}_zero_point", np.zeros(bias.shape, np.int32))
        dq_out = ir.Value(name=self._names.make(f"{base}_dequantized"))
        dq = ir.Node("", "DequantizeLinear", [q, scale, zero], attributes={"axis": ir.AttrInt64(
            "axis", 0)}, outputs=[dq_out], name=self._names.make(f"{base}_DequantizeLinear"))
        self.graph.append(dq)
        node.replace_input_with(index, dq_out)

    def _quantize_constant(self, node: ir.Node, index: int) -> None:
        value = node.inputs[index]
        assert value is not None and value.const_value is not None
        if value.dtype != ir.DataType.FLOAT:
            return
        array = value.const_value.numpy().astype(np.float32)
        try:
            params = activation_params(float(array.min()), float(array.max()),
                                       self.settings.activation, symmetric=self.settings.symmetric)
        except ValueError:
            return  # an all-zero constant stays float
        from lowbit.quantize.int8.params import quantize  # local: keeps the import list short

        base = value.name or "constant"
        q = self._initializer(f"{base}_quantized", quantize(array, params))
        scale = self._initializer(f"{base}_scale", np.array(params.scale, np.float32))
        zero = self._initializer(f"{base}_zero_point", np.array(params.zero_point, params.dtype))
        dq_out = ir.Value(name=self._names.make(f"{base}_dequantized"))
        dq = ir.Node("", "DequantizeLinear", [q, scale, zero], outputs=[dq_out],
                     name=self._names.make(f"{base}_DequantizeLinear"))
        self.graph.append(dq)
        node.replace_input_with(index, dq_out)

    def _initializer(self, name: str, array: np.ndarray) -> ir.Value:
        name = self._names.make(name)
        dtype = _NP_TO_IR[array.dtype]
        # ir.Tensor, not the ir.tensor convenience: its protocol checks took about 50 µs a
        # call, a second of the qtable ranking's 60 builds of EfficientNet-Lite0
        value = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(dtype),
                         const_value=ir.Tensor(array, dtype=dtype, name=name))
        self.graph.register_initializer(value)
        return value

def _dequantized_scale(value: ir.Value | None) -> float | None:
    """The scale of the DequantizeLinear that produces ``value``, if one does."""
    producer = value.producer() if value is not None else None
    if producer is None or producer.op_type != "DequantizeLinear":
        return None
    scale = producer.inputs[1]
    if scale is None or scale.const_value is None:
        return None
    return float(scale.const_value.numpy())


def _kept_readers(graph: ir.Graph, keep: Mapping[str, str]) -> set[str]:
    """Kept nodes, plus Relu/Clip nodes whose output only kept nodes read (their input then
    reaches the kept op in float too)."""
    kept = set(keep)
    if not kept:
        return kept
    for node in reversed(list(graph)):
        if node.op_type not in ("Relu", "Clip") or not node.name or node.name in kept:
            continue
        output = node.outputs[0]
        if output.uses() and not output.is_graph_output() \
                and all(user.name in kept for user, _ in output.uses()):
            kept.add(node.name)
    return kept


def _no_rule_reason(node: ir.Node) -> str:
    inner = sum(len(list(g.all_nodes())) for g in _subgraphs(node))
    if inner:
        return (f"control flow ({node.op_type}): its {inner} subgraph op(s) stay float; "
                "lowbit does not quantize inside If/Loop/Scan yet")
    return f"no INT8 rule for {node.domain or 'ai.onnx'}::{node.op_type}"


def _subgraphs(node: ir.Node) -> list[ir.Graph]:
    graphs: list[ir.Graph] = []
    for attr in node.attributes.values():
        if attr.type == ir.AttributeType.GRAPH:
            graphs.append(attr.as_graph())
        elif attr.type == ir.AttributeType.GRAPHS:
            graphs.extend(attr.as_graphs())
    return graphs


def _clip_starts_at_zero(node: ir.Node) -> bool:
    low = node.inputs[1] if len(node.inputs) > 1 else None
    if low is None or low.const_value is None:
        return False
    return float(low.const_value.numpy()) == 0.0
