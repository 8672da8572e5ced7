"""Fold a per-channel scale and shift into the Conv, ConvTranspose, Gemm or MatMul before it.

    rewrites = get_pass("fold_affine").run(ir_model)

``Conv(x)·s + t`` with constant ``s``/``t`` broadcasting per output channel (shape
``[C]`` after the channel axis, ``[1, C, 1, 1]``, ``[C, 1, 1]`` or a scalar) is one
Conv with its weight scaled per output channel and its bias shifted. The pass
rewrites Mul, Add, Sub and Div by such constants (either operand order where the op
is affine in the other: ``c − x`` yes, ``c / x`` no). MatMul has no bias, so only a
Mul folds into a constant 2-D right operand. BatchNormalization folding
(lowbit.passes.fold_batchnorm) uses the same :func:`scale_shift_producer`.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from lowbit.passes.registry import register_rules
from lowbit.passes.rewrite import (
    Match,
    Op,
    Replacement,
    Rule,
    clone_node,
    constant,
    new_initializer,
)

PRODUCERS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def scale_shift_producer(producer: ir.Node, replaced: ir.Value, scale: np.ndarray,
                         shift: np.ndarray, suffix: str) -> Replacement | None:
    """A copy of ``producer`` computing ``producer(x)·scale + shift`` (per output channel,
    1-D or scalar arrays) in place of ``replaced``; None when it cannot be folded."""
    weight = constant(producer.inputs[1]) if len(producer.inputs) > 1 else None
    if weight is None or not np.issubdtype(weight.dtype, np.floating):
        return None
    if producer.op_type == "Conv":
        folded = _fold_conv(producer, weight, scale, shift)
    elif producer.op_type == "ConvTranspose":
        folded = _fold_conv_transpose(producer, weight, scale, shift)
    elif producer.op_type == "Gemm":
        folded = _fold_gemm(producer, weight, scale, shift)
    else:
        folded = _fold_matmul(weight, scale, shift)
    if folded is None:
        return None
    new_weight, new_bias, attributes = folded
    graph = producer.graph
    assert isinstance(graph, ir.Graph)
    base = producer.name or producer.outputs[0].name or producer.op_type
    inputs: list[ir.Value | None] = [
        producer.inputs[0], new_initializer(graph, new_weight.astype(weight.dtype),
                                            f"{base}_weight_{suffix}")]
    if new_bias is not None:
        inputs.append(new_initializer(graph, new_bias.astype(weight.dtype),
                                      f"{base}_bias_{suffix}"))
    node = clone_node(producer, inputs, attributes=attributes)
    return Replacement(((replaced, node.outputs[0]),), (node,))


_Folded = tuple[np.ndarray, np.ndarray | None, dict[str, ir.Attr]] | None


def _bias(producer: ir.Node, channels: int) -> np.ndarray | None:
    if len(producer.inputs) < 3 or producer.inputs[2] is None:
        return np.zeros(channels, np.float32)
    return constant(producer.inputs[2])


def _per_channel(array: np.ndarray, channels: int) -> np.ndarray | None:
    flat = np.asarray(array).reshape(-1)
    if flat.size not in (1, channels):
        return None
    return np.broadcast_to(flat, (channels,))


def _fold_conv(conv: ir.Node, weight: np.ndarray, scale: np.ndarray, shift: np.ndarray
               ) -> _Folded:
    channels = weight.shape[0]
    bias, s, t = _bias(conv, channels), _per_channel(scale, channels), _per_channel(shift, channels)
    if bias is None or bias.shape != (channels,) or s is None or t is None:
        return None
    new_weight = weight * s.reshape(-1, *([1] * (weight.ndim - 1)))
    return new_weight, bias * s + t, {}


def _fold_conv_transpose(conv: ir.Node, weight: np.ndarray, scale: np.ndarray,
                         shift: np.ndarray) -> _Folded:
    # weight: (C_in, C_out/group, k...); output channel o = g·(C_out/group) + j.
    group = conv.attributes.get_int("group", 1)
    c_in, per_group = weight.shape[0], weight.shape[1]
    channels = group * per_group
    bias, s, t = _bias(conv, channels), _per_channel(scale, channels), _per_channel(shift, channels)
    if (bias is None or bias.shape != (channels,) or s is None or t is None
            or c_in % group):
        return None
    kernel = weight.shape[2:]
    grouped = weight.reshape(group, c_in // group, per_group, *kernel)
    grouped = grouped * s.reshape(group, 1, per_group, *([1] * len(kernel)))
    return grouped.reshape(weight.shape), bias * s + t, {}


def _fold_gemm(gemm: ir.Node, weight: np.ndarray, scale: np.ndarray, shift: np.ndarray
               ) -> _Folded:
    # y = alpha·A'·B' + beta·C, B' of shape (K, N): B is (N, K) when transB.
    if weight.ndim != 2:
        return None
    trans_b = gemm.attributes.get_int("transB", 0)
    channels = weight.shape[0] if trans_b else weight.shape[1]
    s, t = _per_channel(scale, channels), _per_channel(shift, channels)
    bias = _bias(gemm, channels)
    if s is None or t is None or bias is None or bias.ndim > 2:
        return None
    beta = gemm.attributes.get_float("beta", 1.0)
    new_bias = bias * np.float32(beta) * s + t  # C broadcasts against (M, N)
    if new_bias.ndim == 2 and new_bias.shape[1] != channels:
        return None
    new_weight = weight * (s[:, None] if trans_b else s[None, :])
    return new_weight, new_bias, {"beta": ir.AttrFloat32("beta", 1.0)}


def _fold_matmul(weight: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> _Folded:
    if weight.ndim != 2 or np.any(shift != 0):
        return None
    s = _per_channel(scale, weight.shape[1])
    if s is None:
        return None
    return weight * s[None, :], None, {}


def _channel_constant(array: np.ndarray, producer: ir.Node) -> np.ndarray | None:
    """``array`` as a per-output-channel vector (or scalar) for ``producer``'s output."""
    weight = constant(producer.inputs[1])
    if weight is None:
        return None
    if producer.op_type in ("Conv", "ConvTranspose"):
        rank, axis = weight.ndim, 1  # (N, C, spatial...)
    elif producer.op_type == "Gemm":
        rank, axis = 2, 1
    else:  # MatMul: the output has A's rank (when known), channels last
        data = producer.inputs[0]
        rank = len(data.shape) if data is not None and data.shape is not None else 1
        axis = rank - 1
    if array.ndim > rank:
        return None
    shape = (1,) * (rank - array.ndim) + array.shape
    if any(size != 1 for i, size in enumerate(shape) if i != axis):
        return None  # varies along another axis (or would broadcast the output up)
    return array.reshape(-1)


def _fold_elementwise(m: Match, producer_index: int) -> Replacement | None:
    node, producer = m.root, m["producer"]
    if len(node.inputs) != 2:
        return None
    other = constant(node.inputs[1 - producer_index])
    if other is None or not np.issubdtype(other.dtype, np.floating):
        return None
    vector = _channel_constant(other, producer)
    if vector is None:
        return None
    ones, zeros = np.ones_like(vector), np.zeros_like(vector)
    op, first = node.op_type, producer_index == 0
    if op == "Mul":
        scale, shift = vector, zeros
    elif op == "Add":
        scale, shift = ones, vector
    elif op == "Sub":
        scale, shift = (ones, -vector) if first else (-ones, vector)
    elif op == "Div" and first and np.all(vector != 0):
        scale, shift = 1 / vector, zeros
    else:
        return None
    return scale_shift_producer(producer, node.outputs[0], scale, shift, "affine")


register_rules(
    "fold_affine",
    "Mul/Add/Sub/Div by a per-channel constant folded into the Conv/Gemm (MatMul: Mul) before it",
    [Rule(Op("Mul", "Add", "Sub", "Div", inputs={0: Op(*PRODUCERS, name="producer")}),
          lambda m: _fold_elementwise(m, 0)),
     Rule(Op("Mul", "Add", "Sub", inputs={1: Op(*PRODUCERS, name="producer")}),
          lambda m: _fold_elementwise(m, 1))],
    needs_shapes=True)
