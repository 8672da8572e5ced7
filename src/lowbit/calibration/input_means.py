"""Mean inputs of Conv and Gemm ops: what bias correction needs, measured during calibration.

    ops = mean_input_ops(model)                  # {"conv1": MeanInputOp(...), ...}
    means = patch_means(op, mean_of_input)       # (C_in, KH, KW) for a Conv, (K,) for a Gemm

Bias correction subtracts, per output channel, the mean shift E[op(x, ΔW)] that weight
rounding (ΔW = W_q − W) causes. The op is linear in x, so that mean is the op applied
to the mean input: for a Conv, shift[o] = Σ ΔW[o, c, i, j] · M[g(o)·C/g + c, i, j],
where M[c, i, j] is the mean (over samples and output positions, zero padding
included) of the input value the kernel tap (i, j) reads; for a Gemm, shift = ΔW·E[x].
M follows from the per-position mean of the input over the samples (one tensor the
size of one sample, summed as the samples stream), so calibration keeps that sum and
the table stores M: exact for any weight rounding deploy chooses later (7 or 8 bits,
per channel or per tensor, AdaRound's), without deploy needing the data again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

_CONV_AUTO_PAD = ("NOTSET", "VALID")


@dataclass(frozen=True)
class MeanInputOp:
    """A Conv or Gemm whose input mean bias correction can use."""

    node: str
    op_type: str
    input: str  # the activation tensor it reads
    kernel: tuple[int, ...] = ()  # Conv: kernel spatial shape
    pads: tuple[int, ...] = ()  # Conv: begin pads then end pads, as ONNX lists them
    strides: tuple[int, ...] = ()
    dilations: tuple[int, ...] = ()
    transposed: bool = False  # Gemm transA


def mean_input_ops(model: onnx.ModelProto) -> dict[str, MeanInputOp]:
    """Conv (2-D or 1-D, explicit pads) and Gemm nodes with a constant weight, by node name."""
    inits = {init.name: init for init in model.graph.initializer}
    ops = {}
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or len(node.input) < 2 or not node.name \
                or node.input[1] not in inits or node.input[0] in inits:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        dims = tuple(inits[node.input[1]].dims)
        if node.op_type == "Conv" and len(dims) in (3, 4):
            auto_pad = attrs.get("auto_pad", b"NOTSET")
            auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
            if auto_pad not in _CONV_AUTO_PAD:
                continue
            rank = len(dims) - 2
            kernel = tuple(int(k) for k in attrs.get("kernel_shape", dims[2:]))
            pads = tuple(int(p) for p in attrs.get("pads", [0] * 2 * rank))
            if auto_pad == "VALID":
                pads = (0,) * 2 * rank
            ops[node.name] = MeanInputOp(
                node.name, "Conv", node.input[0], kernel, pads,
                tuple(int(s) for s in attrs.get("strides", [1] * rank)),
                tuple(int(d) for d in attrs.get("dilations", [1] * rank)))
        elif node.op_type == "Gemm" and len(dims) == 2:
            ops[node.name] = MeanInputOp(node.name, "Gemm", node.input[0],
                                         transposed=bool(attrs.get("transA", 0)))
    return ops


def patch_means(op: MeanInputOp, mean_input: np.ndarray) -> np.ndarray:
    """M for one op from the mean of its input over the samples.

    Conv: ``mean_input`` is (C, *spatial) (the batch axis averaged away); returns
    (C, *kernel): the mean over output positions of the zero-padded input each kernel
    tap reads. Gemm: ``mean_input`` is (K,) — or (M, K) / (K, M) with transA, averaged
    to (K,) — and is returned as it is.
    """
    x = np.asarray(mean_input, np.float64)
    if op.op_type == "Gemm":
        if x.ndim == 2:
            x = x.mean(axis=1) if op.transposed else x.mean(axis=0)
        return x
    rank = len(op.kernel)
    begin, end = op.pads[:rank], op.pads[rank:]
    padded = np.pad(x, [(0, 0), *zip(begin, end, strict=True)])
    out = [(padded.shape[1 + a] - op.dilations[a] * (op.kernel[a] - 1) - 1) // op.strides[a] + 1
           for a in range(rank)]
    means = np.zeros((x.shape[0], *op.kernel))
    for tap in np.ndindex(*op.kernel):
        window = tuple(slice(tap[a] * op.dilations[a],
                             tap[a] * op.dilations[a] + (out[a] - 1) * op.strides[a] + 1,
                             op.strides[a]) for a in range(rank))
        means[(slice(None), *tap)] = padded[(slice(None), *window)].reshape(
            x.shape[0], -1).mean(axis=1)
    return means


def mean_shift(weight_delta: np.ndarray, op: MeanInputOp, means: np.ndarray, *,
               group: int = 1, trans_b: bool = False) -> np.ndarray:
    """E[op(x, ΔW)] per output channel, from the op's patch means (see the module doc)."""
    delta = np.asarray(weight_delta, np.float64)
    if op.op_type == "Gemm":
        return (delta @ means) if trans_b else (means @ delta)
    out_channels, in_per_group = delta.shape[0], delta.shape[1]
    per_group_out = out_channels // group
    shift = np.empty(out_channels)
    for g in range(group):
        rows = slice(g * per_group_out, (g + 1) * per_group_out)
        cols = means[g * in_per_group:(g + 1) * in_per_group]
        shift[rows] = np.tensordot(delta[rows], cols, axes=delta.ndim - 1)
    return shift

