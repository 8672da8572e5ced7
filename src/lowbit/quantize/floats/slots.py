"""Which inputs and outputs of a node take the low float type, read from the ONNX op schema.

    plan = plan_node(node, opset=17, low=ir.DataType.FLOAT16, keep=False)
    plan.converted          # True when some float output now has the low type
    plan.inputs[1]          # ir.DataType the input must arrive in, None (any), or a group name
    plan.outputs[0]         # the output's new type, or None (unchanged)
    plan.reason             # why a float node stays F32 ("" when converted)

Every input and output of an op is bound to a type parameter of its schema
(``T``, ``T1`` …) or has a fixed type (``tensor(float)``: Resize ``scales``,
opset-13 DequantizeLinear ``x_scale``). A parameter bound to FLOAT in the
original graph moves to the low type as a whole, so inputs that must share the
data's type (Pad ``constant_value``, Clip ``min``/``max``, Range, BatchNormalization
``scale``/``mean``) follow it, while fixed-type inputs and int64 operands never
change. A parameter bound only to inputs (Shape's ``T``, Resize ``roi``, Cast's
input, Equal's ``T``) accepts whatever arrives, as long as all its inputs agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import onnx
import onnx_ir as ir

FLOAT = ir.DataType.FLOAT
_TYPE_STR = {ir.DataType.FLOAT16: "tensor(float16)", ir.DataType.BFLOAT16: "tensor(bfloat16)"}
# Ops whose float output type is set by an attribute the schema rule cannot follow.
ATTRIBUTE_TYPED = frozenset({"Constant", "EyeLike", "RandomNormal", "RandomUniform",
                             "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"})

Requirement = ir.DataType | str | None
"""What an input slot needs: a type, any type (None), or a group that must agree (its name)."""


@dataclass
class NodePlan:
    converted: bool = False
    reason: str = ""
    inputs: list[Requirement] = field(default_factory=list)
    outputs: list[ir.DataType | None] = field(default_factory=list)

    @property
    def is_float(self) -> bool:
        """True when the node reads or writes a float tensor through a typed slot."""
        return self.converted or bool(self.reason)


def tensor_dtype(value: ir.Value | None) -> ir.DataType | None:
    if value is None or not isinstance(value.type, ir.TensorType):
        return None
    return value.type.dtype


def plan_node(node: ir.Node, opset: int, low: ir.DataType, keep: str = "") -> NodePlan:
    """Plan ``node``: convert it to ``low`` unless ``keep`` gives a reason to stay F32."""
    float_inputs = [tensor_dtype(v) == FLOAT for v in node.inputs]
    float_outputs = [tensor_dtype(v) == FLOAT for v in node.outputs]
    if not any(float_inputs) and not any(float_outputs):
        return NodePlan(inputs=[None] * len(node.inputs), outputs=[None] * len(node.outputs))
    reason = keep or _reason_to_keep(node)
    schema = None
    if not reason:
        schema = _schema(node, opset)
        if schema is None:
            reason = f"no ONNX schema for {node.domain or 'ai.onnx'}::{node.op_type}"
    if reason or schema is None:
        return _kept(node, float_inputs, reason)
    plan = _plan_from_schema(node, schema, low, opset)
    return plan if plan is not None else _kept(
        node, float_inputs, f"{node.op_type} (opset {opset}) has no {_TYPE_STR[low]} variant")


def _reason_to_keep(node: ir.Node) -> str:
    if any(isinstance(attr, ir.Attr) and attr.type in (ir.AttributeType.GRAPH,
                                                        ir.AttributeType.GRAPHS)
           for attr in node.attributes.values()):
        return "has subgraphs"
    if node.op_type in ATTRIBUTE_TYPED and node.domain in ("", "ai.onnx"):
        return "output type is set by an attribute"
    if any(v is not None and v.type is not None and not isinstance(v.type, ir.TensorType)
           for v in (*node.inputs, *node.outputs)):
        return "reads or writes a sequence/optional"
    return ""


def _kept(node: ir.Node, float_inputs: list[bool], reason: str) -> NodePlan:
    return NodePlan(False, reason, [FLOAT if is_float else None for is_float in float_inputs],
                    [None] * len(node.outputs))


def _schema(node: ir.Node, opset: int) -> onnx.defs.OpSchema | None:
    if node.domain not in ("", "ai.onnx"):
        return None
    try:
        return onnx.defs.get_schema(node.op_type, opset, "")
    except onnx.defs.SchemaError:
        return None


def _formal(params: Sequence[onnx.defs.OpSchema.FormalParameter], index: int
            ) -> onnx.defs.OpSchema.FormalParameter | None:
    if index < len(params):
        return params[index]
    if params and params[-1].option == onnx.defs.OpSchema.FormalParameterOption.Variadic:
        return params[-1]
    return None


def _plan_from_schema(node: ir.Node, schema: onnx.defs.OpSchema, low: ir.DataType,
                      opset: int) -> NodePlan | None:
    """None when a FLOAT-bound type parameter does not allow ``low``."""
    allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
    slots: list[tuple[str, int, str]] = []   # (kind, index, param) for typed slots
    bound: dict[str, ir.DataType] = {}
    for kind, values, formals in (("in", node.inputs, schema.inputs),
                                  ("out", node.outputs, schema.outputs)):
        for index, value in enumerate(values):
            formal = _formal(formals, index)
            dtype = tensor_dtype(value)
            if formal is None or dtype is None or formal.type_str not in allowed:
                continue
            slots.append((kind, index, formal.type_str))
            bound.setdefault(formal.type_str, dtype)
    float_params = {p for p, dtype in bound.items() if dtype == FLOAT}
    with_outputs = {p for kind, _, p in slots if kind == "out"}
    if any(_TYPE_STR[low] not in allowed[p] for p in float_params & with_outputs):
        return None
    plan = NodePlan(inputs=[None] * len(node.inputs), outputs=[None] * len(node.outputs))
    for kind, index, param in slots:
        if param not in float_params:
            continue
        if kind == "out":
            plan.outputs[index] = low
        else:
            plan.inputs[index] = (low if param in with_outputs
                                  else param if _TYPE_STR[low] in allowed[param] else FLOAT)
    # Fixed float slots (Resize ``scales``: tensor(float)) keep FLOAT.
    for index, value in enumerate(node.inputs):
        formal = _formal(schema.inputs, index)
        if formal is not None and formal.type_str not in allowed and tensor_dtype(value) == FLOAT:
            plan.inputs[index] = FLOAT
    plan.converted = any(t is not None for t in plan.outputs)
    return plan
