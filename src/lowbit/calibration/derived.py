"""Tensors whose range follows from another tensor's, so calibration need not observe them.

    sources = derived_ranges(model)     # {"conv1_out": "relu1_out", "pool1_out": "relu1_out"}

Two structural facts:
- a data-movement op (MaxPool, Reshape, Transpose, …) outputs values taken from its
  input, so the input's range covers the output's;
- a tensor read only by Relu / Clip(0, ·) matters only where the activation keeps it,
  so the activation output's range stands for it (the quantizer then either folds the
  activation or clips the negative part, which the activation discards anyway).

Calibration skips these tensors (on MobileNet-style graphs this halves the work) and
the quantizer looks their ranges up through this map.
"""

from __future__ import annotations

from collections.abc import Mapping

import onnx
from onnx import numpy_helper

DATA_MOVEMENT = frozenset({"MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze",
                           "Unsqueeze", "Resize", "Identity", "Pad"})


def derived_ranges(model: onnx.ModelProto) -> dict[str, str]:
    """Map each derivable tensor to the observed tensor whose range stands for it."""
    graph = model.graph
    constants = {init.name: init for init in graph.initializer}
    outputs = {value.name for value in graph.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    direct: dict[str, str] = {}
    for node in graph.node:
        if node.domain not in ("", "ai.onnx") or not node.output:
            continue
        out = node.output[0]
        if node.op_type in DATA_MOVEMENT and node.input and out not in outputs \
                and _pads_with_zero(node, constants):
            direct[out] = node.input[0]
        if node.op_type in ("Relu", "Clip") and node.input and _starts_at_zero(node, constants):
            source = node.input[0]
            if source not in outputs and len(consumers.get(source, [])) == 1 \
                    and source not in constants:
                direct[source] = out
    return {name: _resolve(name, direct) for name in direct}


def _resolve(name: str, direct: Mapping[str, str]) -> str:
    seen = {name}
    while name in direct and direct[name] not in seen:
        name = direct[name]
        seen.add(name)
    return name


def _starts_at_zero(node: onnx.NodeProto, constants: Mapping[str, onnx.TensorProto]) -> bool:
    if node.op_type == "Relu":
        return True
    low = node.input[1] if len(node.input) > 1 else ""
    return low in constants and float(numpy_helper.to_array(constants[low])) == 0.0


def _pads_with_zero(node: onnx.NodeProto, constants: Mapping[str, onnx.TensorProto]) -> bool:
    if node.op_type != "Pad":
        return True
    value = node.input[2] if len(node.input) > 2 else ""
    if not value:
        return True
    return value in constants and float(numpy_helper.to_array(constants[value])) == 0.0
