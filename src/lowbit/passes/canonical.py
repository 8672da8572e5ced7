"""The canonical clean-up every stage relies on.

    model, report = canonicalize(onnx_model, input_shapes={"input": (1, 3, 224, 224)})
    report.summary()   # "37 → 29 nodes: 2 constants lifted, 8 BN folded, ..."

Steps: make negative dims dynamic (paddle2onnx writes ``dim_value: -1`` for a
dynamic axis; shape inference would compute with it), upgrade opsets below 13 (so
per-channel DequantizeLinear is legal), fix the input shapes the user gives, lift
weights held in Constant nodes into initializers, remove Identity and inference
Dropout, fold BatchNormalization into Conv/ConvTranspose/Gemm, drop dead nodes,
sort, and re-run shape inference. A graph output whose node a step removes keeps
the shape it declares (lowbit.passes.rewrite). Each step is a registered graph
pass (lowbit.passes.registry), the same code `lowbit.passes.optimize` runs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import onnx
import onnx_ir as ir
from onnx import version_converter

from lowbit.errors import ArgumentError, ModelError
from lowbit.graph import onnx_opset
from lowbit.passes.finish import MAX_IR_VERSION, finish, infer_shapes
from lowbit.passes.registry import get_pass

log = logging.getLogger(__name__)

MIN_OPSET = 13
Shapes = Mapping[str, tuple[int, ...]] | Sequence[tuple[int, ...]]
__all__ = ["MAX_IR_VERSION", "CanonicalizeReport", "Shapes", "canonicalize", "infer_shapes",
           "resolve_input_shapes"]

# The clean-up, as registered passes (lowbit.passes.registry), with the report's wording.
_STEPS = (("lift_constants", "constants lifted"),
          ("remove_identity", "Identity removed"),
          ("remove_dropout", "Dropout removed"),
          ("fold_batchnorm", "BatchNormalization folded"))


@dataclass
class CanonicalizeReport:
    nodes_before: int = 0
    nodes_after: int = 0
    opset_before: int = 0
    opset_after: int = 0
    changes: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [f"{count} {what}" for what, count in self.changes.items() if count]
        upgraded = (f", opset {self.opset_before} → {self.opset_after}"
                    if self.opset_after != self.opset_before else "")
        return (f"{self.nodes_before} → {self.nodes_after} nodes"
                + (": " + ", ".join(parts) if parts else "") + upgraded)


def canonicalize(
    model: onnx.ModelProto,
    *,
    input_shapes: Shapes | None = None,
    fold_bn: bool = True,
) -> tuple[onnx.ModelProto, CanonicalizeReport]:
    report = CanonicalizeReport(nodes_before=len(model.graph.node))
    model = _clear_negative_dims(model)
    report.opset_before = onnx_opset(model)
    model = _upgrade_opset(model)
    report.opset_after = onnx_opset(model)
    if input_shapes:
        model = _fix_input_shapes(model, input_shapes)

    ir_model = ir.from_proto(model)
    for name, what in _STEPS:
        if name == "fold_batchnorm" and not fold_bn:
            continue
        report.changes[what] = get_pass(name).run(ir_model)
    nodes = len(ir_model.graph)
    get_pass("remove_dead_nodes").run(ir_model)
    report.changes["dead nodes removed"] = nodes - len(ir_model.graph)
    # qtables, reports and the layer compare name ops: every node gets a unique name.
    out = finish(ir_model)
    report.nodes_after = len(out.graph.node)
    log.info("canonicalize: %s", report.summary())
    return out, report


def _clear_negative_dims(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with every negative ``dim_value`` of the graph's inputs, outputs and value_info
    made an unknown dim, as ONNX Runtime reads it (shape inference would carry the -1 into
    arithmetic: a Conv's output height of 0). ``model`` itself when it has none."""
    def negative(graph: onnx.GraphProto) -> list[onnx.TensorShapeProto.Dimension]:
        return [dim for value in (*graph.input, *graph.output, *graph.value_info)
                if value.type.HasField("tensor_type")
                for dim in value.type.tensor_type.shape.dim
                if dim.HasField("dim_value") and dim.dim_value < 0]

    if not negative(model.graph):
        return model
    model = onnx.ModelProto.FromString(model.SerializeToString())
    dims = negative(model.graph)
    for dim in dims:
        dim.ClearField("dim_value")
    log.info("%d negative input/output dims made dynamic", len(dims))
    return model


def _upgrade_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    opset = onnx_opset(model)
    if opset >= MIN_OPSET:
        return model
    try:
        upgraded = version_converter.convert_version(model, MIN_OPSET)
    except Exception as err:
        raise ModelError(
            f"the model uses opset {opset}; lowbit needs ≥ {MIN_OPSET} for per-channel "
            f"quantization and onnx's version converter failed: {str(err).splitlines()[0]}"
        ) from err
    log.info("upgraded the model from opset %d to %d", opset, MIN_OPSET)
    return upgraded


def resolve_input_shapes(model: onnx.ModelProto, input_shapes: Shapes
                         ) -> dict[str, tuple[int, ...]]:
    """Shapes given by name, or as a list in the order of the model's (non-weight) inputs."""
    if isinstance(input_shapes, Mapping):
        return {name: tuple(shape) for name, shape in input_shapes.items()}
    initializers = {init.name for init in model.graph.initializer}
    names = [v.name for v in model.graph.input if v.name not in initializers]
    if len(input_shapes) != len(names):
        raise ArgumentError(f"{{input_shapes}} gives {len(input_shapes)} shape(s) but the model "
                            "has "
                         f"{len(names)} input(s): {', '.join(names)}")
    return {name: tuple(shape) for name, shape in zip(names, input_shapes, strict=True)}


def _fix_input_shapes(model: onnx.ModelProto, input_shapes: Shapes) -> onnx.ModelProto:
    input_shapes = resolve_input_shapes(model, input_shapes)
    model = onnx.ModelProto.FromString(model.SerializeToString())
    inputs = {value.name: value for value in model.graph.input}
    for name, shape in input_shapes.items():
        if name not in inputs:
            raise ArgumentError(f"{{input_shapes}} names '{name}', but the model's inputs are "
                             f"{', '.join(sorted(inputs))}")
        tensor_type = inputs[name].type.tensor_type
        dims = tensor_type.shape.dim
        # A declared scalar has a shape with no dims; an input without a shape has any rank.
        if tensor_type.HasField("shape") and len(dims) != len(shape):
            raise ArgumentError(f"input '{name}' has rank {len(dims)}, {{input_shapes}} gives "
                             f"{list(shape)} (rank {len(shape)})")
        del dims[:]
        for size in shape:
            dims.add().dim_value = int(size)
    del model.graph.value_info[:]
    return model
