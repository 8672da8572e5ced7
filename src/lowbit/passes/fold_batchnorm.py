"""Fold inference-mode BatchNormalization into the Conv or Gemm before it.

    folded = fold_batchnorm(ir_model)   # number of BN nodes removed

y = gamma·(conv(x) − mean)/sqrt(var + eps) + beta is a per-output-channel affine
map, so it folds into the producer's weight (scaled per output channel) and bias.
The producer's output takes the BN output's name. Only folds when the producer's output feeds the BN alone and the weights are
initializers.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir


def fold_batchnorm(model: ir.Model) -> int:
    graph = model.graph
    folded = 0
    for bn in list(graph):
        if bn.op_type != "BatchNormalization" or bn.domain not in ("", "ai.onnx"):
            continue
        if len(bn.outputs) > 1 and any(v.uses() for v in bn.outputs[1:]):
            continue  # training mode
        data = bn.inputs[0]
        producer = data.producer() if data is not None else None
        if data is None or producer is None or producer.op_type not in ("Conv", "Gemm"):
            continue
        if len(data.uses()) != 1 or data.is_graph_output():
            continue
        params = [_const(v) for v in bn.inputs[1:5]]
        if any(p is None for p in params):
            continue
        gamma, beta, mean, var = (p for p in params if p is not None)
        eps = bn.attributes.get_float("epsilon", 1e-5)
        scale = gamma / np.sqrt(var + eps)
        shift = beta - mean * scale
        if producer.op_type == "Conv":
            ok = _fold_into_conv(graph, producer, scale, shift)
        else:
            ok = _fold_into_gemm(graph, producer, scale, shift)
        if not ok:
            continue
        # The producer now computes what BN did, so its output takes BN's name: later
        # stages (calibration tables, layer-by-layer compare) pair tensors by it.
        bn_out, conv_out = bn.outputs[0], producer.outputs[0]
        # BN keeps type and shape; a graph output must carry them even without shape inference.
        conv_out.type = conv_out.type or bn_out.type
        conv_out.shape = conv_out.shape or bn_out.shape
        ir.convenience.replace_all_uses_with(bn_out, conv_out, replace_graph_outputs=True)
        graph.remove(bn, safe=True)
        name = bn_out.name
        bn_out.name = f"{name}__folded"
        conv_out.name = name
        folded += 1
    return folded


def _fold_into_conv(graph: ir.Graph, conv: ir.Node, scale: np.ndarray, shift: np.ndarray) -> bool:
    weight = _const(conv.inputs[1])
    if weight is None or weight.shape[0] != scale.shape[0]:
        return False
    bias = _const(conv.inputs[2]) if len(conv.inputs) > 2 and conv.inputs[2] is not None else None
    if len(conv.inputs) > 2 and conv.inputs[2] is not None and bias is None:
        return False
    bias = np.zeros(weight.shape[0], np.float32) if bias is None else bias
    new_w = weight * scale.reshape(-1, *([1] * (weight.ndim - 1)))
    new_b = bias * scale + shift
    _set_input(graph, conv, 1, new_w.astype(weight.dtype), "weight_bnfold")
    _set_input(graph, conv, 2, new_b.astype(weight.dtype), "bias_bnfold")
    return True


def _fold_into_gemm(graph: ir.Graph, gemm: ir.Node, scale: np.ndarray, shift: np.ndarray) -> bool:
    if gemm.attributes.get_int("transA", 0):
        return False
    weight = _const(gemm.inputs[1])
    if weight is None or weight.ndim != 2:
        return False
    trans_b = gemm.attributes.get_int("transB", 0)
    n_out = weight.shape[0] if trans_b else weight.shape[1]
    if n_out != scale.shape[0]:
        return False
    beta = gemm.attributes.get_float("beta", 1.0)
    has_c = len(gemm.inputs) > 2 and gemm.inputs[2] is not None
    bias = _const(gemm.inputs[2]) if has_c else np.zeros(n_out, np.float32)
    if bias is None or bias.ndim > 1 and bias.shape[0] != 1:
        return False
    # y = alpha·A·B + beta·C; BN scales each output column and shifts it.
    bias = np.broadcast_to(bias.reshape(-1) * beta, (n_out,))
    new_w = weight * (scale[:, None] if trans_b else scale[None, :])
    new_b = bias * scale + shift
    _set_input(graph, gemm, 1, new_w.astype(weight.dtype), "weight_bnfold")
    _set_input(graph, gemm, 2, new_b.astype(weight.dtype), "bias_bnfold")
    gemm.attributes["beta"] = ir.AttrFloat32("beta", 1.0)
    return True


def _const(value: ir.Value | None) -> np.ndarray | None:
    if value is None or value.const_value is None:
        return None
    return np.asarray(value.const_value.numpy(), dtype=np.float32)


def _set_input(graph: ir.Graph, node: ir.Node, index: int, array: np.ndarray, suffix: str) -> None:
    if index >= len(node.inputs):
        node.resize_inputs(index + 1)
    name = f"{node.name or node.outputs[0].name}_{suffix}"
    while name in graph.initializers:
        name += "_"
    value = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(ir.DataType.FLOAT),
                     const_value=ir.tensor(array, name=name))
    graph.register_initializer(value)
    node.replace_input_with(index, value)
