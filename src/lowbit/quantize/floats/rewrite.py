"""The graph rewrite behind :func:`lowbit.quantize.floats.convert_float`.

    rewriter = FloatRewriter(graph, opset=17, low=ir.DataType.FLOAT16, method="cast",
                             keep_io_types=True, keep_float=frozenset({"Softmax"}))
    rewriter.run()        # graph retyped in place, Casts inserted
    rewriter.converted    # node names;  rewriter.kept: [(name, op_type, reason)]

Steps: plan every node (floats_slots.plan_node), give graph inputs, initializers
and node outputs their new types, then walk every use of every value: where the
value's type differs from what the consuming slot needs, the use reads a Cast of
the value instead (one Cast per value and type, placed right after the producer,
so the order stays topological). Graph outputs get a final Cast that takes the
output's name when their type must change.
"""

from __future__ import annotations

import logging

import ml_dtypes
import numpy as np
import onnx_ir as ir

from lowbit.graph import FreshNames
from lowbit.quantize.floats.slots import FLOAT, NodePlan, Requirement, plan_node, tensor_dtype

log = logging.getLogger(__name__)

F16_MAX = 65504.0
_SUFFIX = {ir.DataType.FLOAT16: "f16", ir.DataType.BFLOAT16: "bf16", FLOAT: "f32"}
SHAPE_SOURCES = frozenset({"Shape", "Size"})
# Ops through which a shape stays a shape (their float forms are kept F32).
SHAPE_MATH = frozenset({"Cast", "Add", "Sub", "Mul", "Div", "Floor", "Ceil", "Round", "Gather",
                        "Concat", "Slice", "Squeeze", "Unsqueeze", "ReduceProd", "Min", "Max",
                        "Neg", "Abs", "Sqrt", "Reshape", "Range", "Identity", "Mod"})


def to_low_array(array: np.ndarray, low: ir.DataType) -> np.ndarray:
    """F32 → float16 (clamp first: beyond ±65504 becomes inf) or bfloat16 (round to nearest even)."""
    array = np.asarray(array, dtype=np.float32)
    if low == ir.DataType.BFLOAT16:
        return array.astype(ml_dtypes.bfloat16)
    return array.astype(np.float16)


class FloatRewriter:
    def __init__(self, graph: ir.Graph, opset: int, low: ir.DataType, *, method: str,
                 keep_io_types: bool, keep_float: frozenset[str]) -> None:
        self.graph = graph
        self.opset = opset
        self.low = low
        self.method = method
        self.keep_io_types = keep_io_types
        self.keep_float = keep_float
        self.plans: dict[ir.Node, NodePlan] = {}
        self.converted: list[str] = []
        self.kept: list[tuple[str, str, str]] = []
        self.clamped: list[tuple[str, int]] = []
        self.casts_added = 0
        self._original: dict[ir.Value, ir.DataType | None] = {}
        self._casts: dict[tuple[ir.Value, ir.DataType], ir.Value] = {}
        self._cast_nodes: set[ir.Node] = set()
        self._names = FreshNames()

    def run(self) -> None:
        self.graph.sort()
        values = self._top_values()
        self._original = {v: tensor_dtype(v) for v in values}
        self._names = FreshNames.of_ir(self.graph)
        self._plan()
        self._retype(values)
        for value in values:
            self._fix_uses(value)
        self._fix_graph_outputs()
        if self.low == ir.DataType.FLOAT16:
            self._clamp_cast_sources()

    # -- planning -------------------------------------------------------------------------
    def _plan(self) -> None:
        shape_nodes = self._shape_math_nodes()
        for node in self.graph:
            keep = ""
            if node.op_type in self.keep_float or node.name in self.keep_float:
                keep = f"{node.op_type if node.op_type in self.keep_float else node.name} " \
                       "is in keep_float"
            elif node in shape_nodes:
                keep = (f"computes shapes ({_SUFFIX[self.low]} holds integers exactly only up "
                        f"to {2048 if self.low == ir.DataType.FLOAT16 else 256})")
            plan = plan_node(node, self.opset, self.low, keep)
            self.plans[node] = plan
            if plan.converted:
                self.converted.append(node.name or node.op_type)
            elif plan.reason:
                self.kept.append((node.name or "", node.op_type, plan.reason))

    def _shape_math_nodes(self) -> set[ir.Node]:
        shape_values: set[ir.Value] = set()
        nodes: set[ir.Node] = set()
        for node in self.graph:
            if node.op_type in SHAPE_SOURCES:
                shape_values.update(node.outputs)
                continue
            inputs = [v for v in node.inputs if v is not None]
            if (node.op_type in SHAPE_MATH and any(v in shape_values for v in inputs)
                    and all(v in shape_values or _is_constant(v) for v in inputs)):
                shape_values.update(node.outputs)
                nodes.add(node)
        return nodes

    def _requirement(self, node: ir.Node, index: int, value: ir.Value) -> Requirement:
        plan = self.plans.get(node)
        if plan is None:  # a node inside a subgraph reads the outer value as it was
            return self._original.get(value)
        requirement = plan.inputs[index]
        if isinstance(requirement, str):  # inputs sharing a type parameter must agree
            group = {tensor_dtype(v) for v, r in zip(node.inputs, plan.inputs, strict=True)
                     if r == requirement and v is not None}
            return None if len(group) <= 1 else self.low
        return requirement

    # -- retyping -------------------------------------------------------------------------
    def _retype(self, values: list[ir.Value]) -> None:
        if not self.keep_io_types:
            for value in self.graph.inputs:
                if self._original.get(value) == FLOAT and not value.is_initializer():
                    value.type = ir.TensorType(self.low)
        if self.method == "full":
            for value in list(self.graph.initializers.values()):
                if self._original.get(value) == FLOAT and self._wants_low(value):
                    self._store_low(value)
        for node, plan in self.plans.items():
            for value, dtype in zip(node.outputs, plan.outputs, strict=True):
                if dtype is not None:
                    value.type = ir.TensorType(dtype)
            if plan.converted and node.op_type == "Cast":
                node.attributes["to"] = ir.AttrInt64("to", self.low)
            elif plan.converted and node.op_type == "ConstantOfShape":
                self._retype_constant_of_shape(node)

    def _wants_low(self, value: ir.Value) -> bool:
        wants = [self._requirement(u.node, u.idx, value) for u in value.uses()]
        plans = [self.plans.get(u.node) for u in value.uses()]
        grouped = any(p is not None and isinstance(p.inputs[u.idx], str)
                      for p, u in zip(plans, value.uses(), strict=True))
        return FLOAT not in wants and (self.low in wants or grouped)

    def _store_low(self, value: ir.Value) -> None:
        assert value.const_value is not None and value.name is not None
        array = self._clamp(value.name, value.const_value.numpy())
        value.const_value = ir.tensor(to_low_array(array, self.low), name=value.name)
        value.type = ir.TensorType(self.low)

    def _retype_constant_of_shape(self, node: ir.Node) -> None:
        attr = node.attributes.get("value")
        fill = (attr.as_tensor().numpy() if isinstance(attr, ir.Attr) and attr.value is not None
                else np.zeros(1, np.float32))
        fill = self._clamp(f"{node.name}.value", fill)
        node.attributes["value"] = ir.AttrTensor("value", ir.tensor(to_low_array(fill, self.low)))

    def _clamp(self, name: str, array: np.ndarray) -> np.ndarray:
        if self.low != ir.DataType.FLOAT16:
            return array
        over = int(np.count_nonzero(np.abs(array) > F16_MAX))
        if not over:
            return array
        log.warning("%s: %d value(s) beyond ±65504 clamped for float16 (largest %g)", name, over,
                    float(np.nanmax(np.abs(array))))
        self.clamped.append((name, over))
        return np.clip(array, -F16_MAX, F16_MAX)

    # -- casts ----------------------------------------------------------------------------
    def _fix_uses(self, value: ir.Value) -> None:
        current = tensor_dtype(value)
        if current not in (FLOAT, self.low):
            return
        for use in list(value.uses()):
            if use.node in self._cast_nodes:
                continue
            needed = self._requirement(use.node, use.idx, value)
            if isinstance(needed, ir.DataType) and needed != tensor_dtype(value):
                use.node.replace_input_with(use.idx, self._cast(value, needed))

    def _fix_graph_outputs(self) -> None:
        for index, value in enumerate(list(self.graph.outputs)):
            if self._original.get(value) != FLOAT:
                continue
            wanted = FLOAT if self.keep_io_types else self.low
            if tensor_dtype(value) == wanted:
                continue
            cast = self._cast(value, wanted)
            if not value.is_graph_input() and not value.is_initializer():
                # The Cast's output takes the graph output's name.
                name = value.name or "output"
                value.name = self._names.make(f"{name}_{_SUFFIX[tensor_dtype(value) or FLOAT]}")
                cast.name = name
            self.graph.outputs[index] = cast

    def _cast(self, value: ir.Value, dtype: ir.DataType) -> ir.Value:
        key = (value, dtype)
        if key in self._casts:
            return self._casts[key]
        base = value.name or "value"
        out = ir.Value(name=self._names.make(f"{base}_{_SUFFIX[dtype]}"), type=ir.TensorType(dtype),
                       shape=value.shape.copy() if value.shape is not None else None)
        node = ir.Node("", "Cast", [value], [ir.AttrInt64("to", dtype)], outputs=[out],
                       name=self._names.make(f"{base}_to_{_SUFFIX[dtype]}"))
        producer = value.producer()
        if producer is not None and producer.graph is self.graph:
            self.graph.insert_after(producer, node)
        elif len(self.graph):
            self.graph.insert_before(self.graph.node(0), node)
        else:
            self.graph.append(node)
        self._casts[key] = out
        self._cast_nodes.add(node)
        self.casts_added += 1
        return out

    def _clamp_cast_sources(self) -> None:
        """Cast method: an F32 weight beyond ±65504 would become inf in its Cast to float16."""
        for (value, dtype), out in list(self._casts.items()):
            if dtype != self.low or not value.is_initializer() or value.const_value is None:
                continue
            name = value.name or "initializer"
            array = value.const_value.numpy()
            clamped = self._clamp(name, array)
            if clamped is array:
                continue
            if len(value.uses()) == 1:
                value.const_value = ir.tensor(clamped.astype(np.float32), name=name)
                continue
            copy = ir.Value(name=self._names.make(f"{name}_clamped"), type=ir.TensorType(FLOAT),
                            shape=value.shape.copy() if value.shape is not None else None,
                            const_value=ir.tensor(clamped.astype(np.float32)))
            copy.const_value = ir.tensor(clamped.astype(np.float32), name=copy.name)
            self.graph.register_initializer(copy)
            producer = out.producer()
            assert producer is not None
            producer.replace_input_with(0, copy)

    # -- helpers --------------------------------------------------------------------------
    def _top_values(self) -> list[ir.Value]:
        values = list(self.graph.inputs) + [
            v for v in self.graph.initializers.values() if not v.is_graph_input()]
        for node in self.graph:
            values.extend(v for v in node.outputs)
        return values

def _is_constant(value: ir.Value) -> bool:
    producer = value.producer()
    return value.is_initializer() or (producer is not None and producer.op_type == "Constant")
