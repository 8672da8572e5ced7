"""Mean inputs of Conv and Gemm ops: what bias correction needs, measured during calibration.

    ops = mean_input_ops(model)                  # {"conv1": MeanInputOp(...), ...}
    means = patch_means(op, mean_of_input)       # (C_in, KH, KW) for a Conv, (K,) for a Gemm
    probe = tap_sum_probe(op, "lowbit_taps_0")  # the same sums, inside the calibration run
    means = means_from_tap_sums(op, summed_taps, spatial_shape, samples)

Bias correction subtracts, per output channel, the mean shift E[op(x, ΔW)] that weight
rounding (ΔW = W_q − W) causes. The op is linear in x, so that mean is the op applied
to the mean input: for a Conv, shift[o] = Σ ΔW[o, c, i, j] · M[g(o)·C/g + c, i, j],
where M[c, i, j] is the mean (over samples and output positions, zero padding
included) of the input value the kernel tap (i, j) reads; for a Gemm, shift = ΔW·E[x].
M follows from the sums, over the samples and output positions, of the input each tap
reads; calibration computes them inside its ONNX Runtime run (:func:`tap_sum_probe`:
C·KH·KW numbers per run, whatever the image size) and the table stores M: exact for
any weight rounding deploy chooses later (7 or 8 bits, per channel or per tensor,
AdaRound's), without deploy needing the data again.

The taps of a kernel row read rows i·d − pad, i·d − pad + s, … of the input, up to the
last output position: a strided slice whose start and end (counted from the axis's end)
are fixed by the kernel, pads, stride and dilation, not by the input size. The probe
sums the batch first, then slices and sums one spatial axis at a time (separable), so
it reads the input once and a few strided slices of the batch sum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lowbit.errors import ModelError

_CONV_AUTO_PAD = ("NOTSET", "VALID")
_AXES_INPUT_OPSET = 13  # ReduceSum takes its axes as an input from opset 13
_TO_THE_END = np.iinfo(np.int64).max


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
            op = MeanInputOp(node.name, "Conv", node.input[0], kernel, pads,
                             tuple(int(s) for s in attrs.get("strides", [1] * rank)),
                             tuple(int(d) for d in attrs.get("dilations", [1] * rank)))
            _check_conv(op, dims[2:])
            ops[node.name] = op
        elif node.op_type == "Gemm" and len(dims) == 2:
            ops[node.name] = MeanInputOp(node.name, "Gemm", node.input[0],
                                         transposed=bool(attrs.get("transA", 0)))
    return ops


def _check_conv(op: MeanInputOp, weight_kernel: tuple[int, ...]) -> None:
    """A Conv whose attributes ONNX does not allow (a model ONNX Runtime would refuse) is a
    ModelError naming it, not an index error in the tap arithmetic."""
    rank = len(weight_kernel)
    if op.kernel != weight_kernel or len(op.pads) != 2 * rank or min(op.pads) < 0 \
            or len(op.strides) != rank or len(op.dilations) != rank \
            or min((*op.strides, *op.dilations)) < 1:
        raise ModelError(f"Conv '{op.node}' has kernel_shape {list(op.kernel)}, pads "
                         f"{list(op.pads)}, strides {list(op.strides)} and dilations "
                         f"{list(op.dilations)}, which do not fit its {rank}-D weight "
                         f"{list(weight_kernel)} (ONNX wants 2x{rank} pads >= 0 and "
                         f"{rank} strides and dilations >= 1)")


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



@dataclass(frozen=True)
class TapSumProbe:
    """Nodes that sum, over the batch and the output positions, what each kernel tap of a
    Conv reads: ``sums`` [C, KH·KW] (a Gemm: [K]) and the input's ``shape`` (int64)."""

    sums: str
    shape: str
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    averaged: bool = False  # the sums are of each sample's mean over the positions


def tap_sum_probe(op: MeanInputOp, prefix: str, *, opset: int = 17) -> TapSumProbe:
    """The probe for ``op``'s input tensor, its names starting with ``prefix``."""
    rank = len(op.kernel)
    windows = [[_tap_window(op, axis, tap) for tap in range(op.kernel[axis])]
               for axis in range(rank)]
    everywhere = op.op_type == "Conv" and all(w == (0, _TO_THE_END, 1)
                                              for axis in windows for w in axis)
    probe = TapSumProbe(f"{prefix}_sums", f"{prefix}_shape", averaged=everywhere)
    probe.nodes.append(helper.make_node("Shape", [op.input], [probe.shape]))
    if everywhere:
        # Every tap reads every position (1x1, stride 1, no pads): each channel's mean, by
        # GlobalAveragePool (which ONNX Runtime runs in its blocked NCHWc layout, without
        # reordering the tensor), summed over the batch: C numbers.
        probe.nodes.append(helper.make_node("GlobalAveragePool", [op.input], [f"{prefix}_gap"]))
        _reduce_sum(probe, f"{prefix}_gap", f"{prefix}_raw", [0, *range(2, 2 + rank)], opset,
                    keepdims=False)
        probe.nodes.append(helper.make_node("Cast", [f"{prefix}_raw"], [probe.sums],
                                            to=TensorProto.FLOAT))
        return probe
    if op.op_type != "Conv":  # Gemm: the batch axis summed, [K]
        _reduce_sum(probe, op.input, f"{prefix}_raw", [0], opset, keepdims=False)
        probe.nodes.append(helper.make_node("Cast", [f"{prefix}_raw"], [probe.sums],
                                            to=TensorProto.FLOAT))
        return probe
    batch_sum = f"{prefix}_batch"  # [C, *spatial]
    _reduce_sum(probe, op.input, batch_sum, [0], opset, keepdims=False)
    # Sum the last spatial axis per tap, then the one before it, ...: [C, *rest] per tap.
    partial: dict[tuple[int, ...], str] = {(): batch_sum}
    for axis in reversed(range(rank)):
        data_axis = 1 + axis
        step: dict[tuple[int, ...], str] = {}
        for taps, source in partial.items():
            for tap, window in enumerate(windows[axis]):
                name = f"{prefix}_{axis}_{tap}_{'_'.join(map(str, taps)) or 'all'}"
                sliced = _slice(probe, source, f"{name}_slice", data_axis, window)
                _reduce_sum(probe, sliced, name, [data_axis], opset,
                            keepdims=axis == 0)  # the last sum leaves [C, 1]
                step[(tap, *taps)] = name
        partial = step
    ordered = [partial[taps] for taps in np.ndindex(*op.kernel)]
    probe.nodes.append(helper.make_node("Concat", ordered, [f"{prefix}_cat"], axis=1))
    probe.nodes.append(helper.make_node("Cast", [f"{prefix}_cat"], [probe.sums],
                                        to=TensorProto.FLOAT))
    return probe


def means_from_tap_sums(op: MeanInputOp, sums: np.ndarray, spatial: tuple[int, ...],
                        samples: int, *, averaged: bool = False) -> np.ndarray:
    """M for one op (as :func:`patch_means` gives it) from its probe's ``sums``, added
    over every run, for inputs of ``spatial`` size and ``samples`` samples in all
    (``averaged``: the probe's, sums of per-sample means over the positions)."""
    total = np.asarray(sums, np.float64)
    if op.op_type != "Conv":
        return total / samples
    if averaged:
        return total.reshape(total.shape[0], *op.kernel) / samples
    positions = math.prod(_outputs(op, axis, size) for axis, size in enumerate(spatial))
    return total.reshape(total.shape[0], *op.kernel) / (samples * max(positions, 1))


def _outputs(op: MeanInputOp, axis: int, size: int) -> int:
    rank = len(op.kernel)
    padded = size + op.pads[axis] + op.pads[rank + axis]
    return (padded - op.dilations[axis] * (op.kernel[axis] - 1) - 1) // op.strides[axis] + 1


def _tap_window(op: MeanInputOp, axis: int, tap: int) -> tuple[int, int, int]:
    """(start, end, step) of the input positions tap ``tap`` reads along ``axis``: rows
    tap·d − pad_begin + s·t that are inside the input, up to the last output position
    (end counted from the axis's end, or to its end)."""
    rank = len(op.kernel)
    stride, dilation = op.strides[axis], op.dilations[axis]
    first = tap * dilation - op.pads[axis]
    if first < 0:
        first += stride * math.ceil(-first / stride)
    end = op.pads[rank + axis] - (op.kernel[axis] - 1 - tap) * dilation
    return first, (end if end < 0 else _TO_THE_END), stride


def _slice(probe: TapSumProbe, source: str, name: str, axis: int,
           window: tuple[int, int, int]) -> str:
    if window == (0, _TO_THE_END, 1):
        return source
    params = [f"{name}_{part}" for part in ("starts", "ends", "axes", "steps")]
    for param, value in zip(params, (*window[:2], axis, window[2]), strict=True):
        probe.initializers.append(numpy_helper.from_array(np.array([value], np.int64), param))
    probe.nodes.append(helper.make_node("Slice", [source, *params], [name]))
    return name


def _reduce_sum(probe: TapSumProbe, data: str, output: str, axes: list[int], opset: int, *,
                keepdims: bool) -> None:
    if opset >= _AXES_INPUT_OPSET:
        probe.initializers.append(numpy_helper.from_array(np.array(axes, np.int64),
                                                          f"{output}_axes"))
        probe.nodes.append(helper.make_node("ReduceSum", [data, f"{output}_axes"], [output],
                                            keepdims=int(keepdims)))
    else:
        probe.nodes.append(helper.make_node("ReduceSum", [data], [output], axes=axes,
                                            keepdims=int(keepdims)))
