"""Constant folding, shape subgraphs included (onnxscript's folder).

    rewrites = get_pass("fold_constants").run(ir_model)

Nodes whose inputs are all constants are evaluated once and replaced by
initializers; ``Shape`` of a tensor with a static shape is a constant too, so a
Shape → Gather → Unsqueeze → Concat chain feeding a Reshape becomes one constant
shape input. onnxscript's folder (``onnxscript.optimizer.fold_constants``) does the
work, with its node-level shape inference on; Quantize/DequantizeLinear stay (so
a QDQ model keeps its quantization). The folder keeps every ConstantOfShape by
default; here one producing at most 4096 elements folds, since exporters build
pad and shape vectors with it (torch's F.pad: ConstantOfShape → Concat → Slice →
Pad). The count is the nodes the graph lost.

Limits: inputs up to 1M elements are folded (onnxscript's default, 8192, would
leave a transposed or scaled weight matrix unfolded); outputs up to 1M elements.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass
from onnxscript.optimizer import fold_constants_ir

from lowbit.passes.registry import GraphPass, register

SIZE_LIMIT = 1 << 20
SMALL_FILL = 4096


def fold_constants(model: ir.Model) -> int:
    """Fold constant subgraphs in place; returns how many nodes went."""
    before = len(model.graph)
    fold_constants_ir(model, onnx_shape_inference=True, input_size_limit=SIZE_LIMIT,
                      output_size_limit=SIZE_LIMIT, should_fold=_small_fill)
    RemoveUnusedNodesPass()(model)
    return before - len(model.graph)


def _small_fill(node: ir.Node) -> bool | None:
    """True for a ConstantOfShape of a small constant shape; None: the folder's own rules."""
    if node.op_type != "ConstantOfShape" or node.domain not in ("", "ai.onnx"):
        return None
    shape = node.inputs[0].const_value if node.inputs and node.inputs[0] is not None else None
    if shape is None:
        return None
    return int(np.prod(shape.numpy())) <= SMALL_FILL or None


register(GraphPass("fold_constants",
                   "constant subgraphs (static Shape chains too) evaluated into initializers",
                   fold_constants))
