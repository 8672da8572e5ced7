"""Turn a rewritten onnx-ir model back into a clean ONNX model.

    proto = finish(ir_model)   # sorted, unique node names, IR version ≤ 10, shapes inferred

Every stage names ops in qtables and reports, and the layer compare pairs tensors
by name, so unnamed nodes are named after their op type (Conv, Conv_2, …) and
unnamed values after their producer's op type.
"""

from __future__ import annotations

import onnx
import onnx_ir as ir
from onnx_ir.passes.common import NameFixPass, TopologicalSortPass
from onnx_ir.passes.common.naming import SimpleNameGenerator

from lowbit.errors import ModelError
from lowbit.graph import infer_shapes_light

# onnx may stamp an IR version newer than ONNX Runtime reads; 10 covers opset ≤ 21.
MAX_IR_VERSION = 10


class OpTypeNames(SimpleNameGenerator):
    """Unnamed nodes are named after their op type, values after their producer's op type."""

    def generate_node_name(self, node: ir.Node) -> str:
        return node.name or node.op_type

    def generate_value_name(self, value: ir.Value) -> str:
        producer = value.producer()
        return value.name or (f"{producer.op_type}_out" if producer is not None else "value")


def sort_and_name(model: ir.Model) -> None:
    """Sort topologically and give every node and value a unique name, in place."""
    TopologicalSortPass()(model)
    NameFixPass(name_generator=OpTypeNames())(model)


def finish(model: ir.Model) -> onnx.ModelProto:
    """Sort and name ``model``, serialise it and infer shapes afresh."""
    sort_and_name(model)
    out = ir.to_proto(model)
    out.ir_version = min(out.ir_version, MAX_IR_VERSION)
    del out.graph.value_info[:]
    return infer_shapes(out)


def infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with the value_info and output types shape inference finds (in place; the
    weights are not serialized for it: lowbit.graph.infer_shapes_light)."""
    try:
        inferred = infer_shapes_light(model, data_prop=True).graph
    except Exception as err:
        raise ModelError(f"shape inference failed: {str(err).strip().splitlines()[0]}") from err
    graph = model.graph
    del graph.value_info[:]
    graph.value_info.extend(inferred.value_info)
    del graph.output[:]
    graph.output.extend(inferred.output)
    return model
