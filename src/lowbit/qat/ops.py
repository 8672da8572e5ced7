"""ONNX ops as differentiable torch functions: what lowbit.qat runs a graph with.

    kernel = kernel_for(node)                   # KERNELS[op_type](node) or UnsupportedOpError
    y = kernel([x, w, b])                       # torch tensors in, a list of tensors out

One small function per op (a "builder" reads the node's attributes once and returns the
kernel); the registry refuses duplicates and an unknown op names the op and lists what is
supported. Semantics are ONNX's (opset 13 and later): asymmetric pads become an explicit
``F.pad``, Reshape's 0 copies the input's dimension, constant operands (shapes, axes,
pads) are read from the graph once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch.nn import functional as F

from lowbit.errors import UnsupportedOpError

Kernel = Callable[[Sequence[torch.Tensor | None]], list[torch.Tensor]]
Builder = Callable[[onnx.NodeProto, "Constants"], Kernel]


class Constants:
    """The graph's constant values by name (initializers, Constant outputs), as numpy."""

    def __init__(self, values: dict[str, np.ndarray]) -> None:
        self.values = values

    def get(self, name: str) -> np.ndarray | None:
        return self.values.get(name) if name else None

    def optional(self, node: onnx.NodeProto, index: int) -> np.ndarray | None:
        """Input ``index`` as a constant, None where it is not given; raises where it is
        given but computed at run time."""
        if index >= len(node.input) or not node.input[index]:
            return None
        value = self.get(node.input[index])
        if value is None:
            raise UnsupportedOpError(f"{node.op_type} '{node.name}': input {index} "
                                     f"('{node.input[index]}') must be a constant for QAT")
        return value

    def ints(self, node: onnx.NodeProto, index: int) -> list[int] | None:
        value = self.optional(node, index)
        return None if value is None else [int(v) for v in value.reshape(-1)]

    def number(self, node: onnx.NodeProto, index: int) -> float | None:
        value = self.optional(node, index)
        return None if value is None else float(value.reshape(-1)[0])


KERNELS: dict[str, Builder] = {}


def register(*op_types: str) -> Callable[[Builder], Builder]:
    def add(builder: Builder) -> Builder:
        for op_type in op_types:
            if op_type in KERNELS:
                raise ValueError(f"a QAT kernel for {op_type} is already registered")
            KERNELS[op_type] = builder
        return builder
    return add


def kernel_for(node: onnx.NodeProto, constants: Constants) -> Kernel:
    if node.domain not in ("", "ai.onnx") or node.op_type not in KERNELS:
        raise UnsupportedOpError(f"lowbit.qat has no torch kernel for {node.domain or 'ai.onnx'}"
                                 f"::{node.op_type} (node '{node.name}'); supported: "
                                 f"{', '.join(sorted(KERNELS))}")
    return KERNELS[node.op_type](node, constants)


def attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _one(fn: Callable[..., torch.Tensor]) -> Kernel:
    return lambda xs: [fn(*xs)]


def _spatial_pad(node: onnx.NodeProto, rank: int) -> tuple[list[int], bool]:
    """ONNX pads [b1, b2, ..., e1, e2, ...] as F.pad's (last dim first) and whether they
    are symmetric (then the op's own padding argument takes them)."""
    a = attrs(node)
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise UnsupportedOpError(f"{node.op_type} '{node.name}': auto_pad is not supported by "
                                 "lowbit.qat (lowbit transform makes pads explicit)")
    pads = list(a.get("pads", [0] * (2 * rank)))
    begins, ends = pads[:rank], pads[rank:]
    torch_pads: list[int] = []
    for b, e in zip(reversed(begins), reversed(ends), strict=True):
        torch_pads += [b, e]
    return torch_pads, begins == ends


@register("Conv")
def _conv(node: onnx.NodeProto, constants: Constants) -> Kernel:
    a = attrs(node)
    rank = len(a["kernel_shape"]) if "kernel_shape" in a else None
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}

    def run(xs: Sequence[torch.Tensor | None]) -> list[torch.Tensor]:
        x, w = xs[0], xs[1]
        assert x is not None and w is not None
        r = rank or w.dim() - 2
        pads, symmetric = _spatial_pad(node, r)
        strides = a.get("strides", [1] * r)
        dilations = a.get("dilations", [1] * r)
        if not symmetric:
            x = F.pad(x, pads)
        padding = pads[::2][::-1] if symmetric else [0] * r
        bias = xs[2] if len(xs) > 2 else None
        return [conv[r](x, w, bias, strides, padding, dilations, a.get("group", 1))]
    return run


@register("ConvTranspose")
def _conv_transpose(node: onnx.NodeProto, constants: Constants) -> Kernel:
    a = attrs(node)

    def run(xs: Sequence[torch.Tensor | None]) -> list[torch.Tensor]:
        x, w = xs[0], xs[1]
        assert x is not None and w is not None
        r = w.dim() - 2
        pads, symmetric = _spatial_pad(node, r)
        if not symmetric or "output_shape" in a:
            raise UnsupportedOpError(f"ConvTranspose '{node.name}': asymmetric pads or "
                                     "output_shape are not supported by lowbit.qat")
        fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[r]
        return [fn(x, w, xs[2] if len(xs) > 2 else None, a.get("strides", [1] * r),
                   pads[::2][::-1], a.get("output_padding", [0] * r), a.get("group", 1),
                   a.get("dilations", [1] * r))]
    return run


@register("Gemm")
def _gemm(node: onnx.NodeProto, constants: Constants) -> Kernel:
    a = attrs(node)
    alpha, beta = a.get("alpha", 1.0), a.get("beta", 1.0)

    def run(xs: Sequence[torch.Tensor | None]) -> list[torch.Tensor]:
        x, w = xs[0], xs[1]
        assert x is not None and w is not None
        x = x.t() if a.get("transA", 0) else x
        w = w.t() if a.get("transB", 0) else w
        y = x @ w
        y = y * alpha if alpha != 1.0 else y
        c = xs[2] if len(xs) > 2 else None
        return [y if c is None else y + (c * beta if beta != 1.0 else c)]
    return run


register("MatMul")(lambda node, c: _one(torch.matmul))
register("Add")(lambda node, c: _one(torch.add))
register("Sub")(lambda node, c: _one(torch.sub))
register("Mul")(lambda node, c: _one(torch.mul))
register("Div")(lambda node, c: _one(torch.div))
register("Relu")(lambda node, c: _one(F.relu))
register("Sigmoid")(lambda node, c: _one(torch.sigmoid))
register("Tanh")(lambda node, c: _one(torch.tanh))
register("Erf")(lambda node, c: _one(torch.erf))
register("HardSwish")(lambda node, c: _one(F.hardswish))
register("Identity", "Dropout")(lambda node, c: lambda xs: [xs[0]])  # type: ignore[list-item]
register("Neg")(lambda node, c: _one(torch.neg))
register("Abs")(lambda node, c: _one(torch.abs))
register("Exp")(lambda node, c: _one(torch.exp))
register("Log")(lambda node, c: _one(torch.log))
register("Sqrt")(lambda node, c: _one(torch.sqrt))
register("Reciprocal")(lambda node, c: _one(torch.reciprocal))
register("Pow")(lambda node, c: _one(torch.pow))
register("Softplus")(lambda node, c: _one(F.softplus))
# ONNX's PRelu broadcasts the slope to the input (MTCNN: one slope per channel, (C, 1, 1))
register("PRelu")(lambda node, c: _one(lambda x, slope: torch.where(x >= 0, x, x * slope)))


@register("Max", "Min", "Sum", "Mean")
def _variadic(node: onnx.NodeProto, constants: Constants) -> Kernel:
    pair = {"Max": torch.maximum, "Min": torch.minimum, "Sum": torch.add,
            "Mean": torch.add}[node.op_type]

    def run(xs: Sequence[torch.Tensor | None]) -> list[torch.Tensor]:
        values = [x for x in xs if x is not None]
        out = values[0]
        for x in values[1:]:
            out = pair(out, x)
        return [out / len(values) if node.op_type == "Mean" else out]
    return run


@register("Elu")
def _elu(node: onnx.NodeProto, constants: Constants) -> Kernel:
    alpha = attrs(node).get("alpha", 1.0)
    return lambda xs: [F.elu(xs[0], alpha)]  # type: ignore[arg-type]


@register("Clip")
def _clip(node: onnx.NodeProto, constants: Constants) -> Kernel:
    low, high = constants.number(node, 1), constants.number(node, 2)
    return lambda xs: [torch.clamp(xs[0], low, high)]  # type: ignore[arg-type]


@register("LeakyRelu")
def _leaky(node: onnx.NodeProto, constants: Constants) -> Kernel:
    slope = attrs(node).get("alpha", 0.01)
    return lambda xs: [F.leaky_relu(xs[0], slope)]  # type: ignore[arg-type]


@register("HardSigmoid")
def _hard_sigmoid(node: onnx.NodeProto, constants: Constants) -> Kernel:
    a = attrs(node)
    alpha, beta = a.get("alpha", 0.2), a.get("beta", 0.5)
    return lambda xs: [torch.clamp(xs[0] * alpha + beta, 0.0, 1.0)]  # type: ignore[operator]


@register("Softmax", "LogSoftmax")
def _softmax(node: onnx.NodeProto, constants: Constants) -> Kernel:
    axis = attrs(node).get("axis", -1)
    fn = torch.softmax if node.op_type == "Softmax" else torch.log_softmax
    return lambda xs: [fn(xs[0], axis)]  # type: ignore[arg-type]


def _pool_args(node: onnx.NodeProto) -> tuple[list[int], list[int], list[int], bool, bool]:
    a = attrs(node)
    kernel = list(a["kernel_shape"])
    rank = len(kernel)
    pads, symmetric = _spatial_pad(node, rank)
    strides = list(a.get("strides", [1] * rank))
    return kernel, strides, pads, symmetric, bool(a.get("ceil_mode", 0))


@register("MaxPool")
def _max_pool(node: onnx.NodeProto, constants: Constants) -> Kernel:
    kernel, strides, pads, symmetric, ceil = _pool_args(node)
    dilations = attrs(node).get("dilations", [1] * len(kernel))
    fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[len(kernel)]

    def run(xs: Sequence[torch.Tensor | None]) -> list[torch.Tensor]:
        x = xs[0]
        assert x is not None
        if not symmetric:
            x = F.pad(x, pads, value=float("-inf"))
        padding = pads[::2][::-1] if symmetric else 0
        return [fn(x, kernel, strides, padding, dilations, ceil_mode=ceil)]
    return run


@register("AveragePool")
def _average_pool(node: onnx.NodeProto, constants: Constants) -> Kernel:
    kernel, strides, pads, symmetric, ceil = _pool_args(node)
    include = bool(attrs(node).get("count_include_pad", 0))
    fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[len(kernel)]
    if not symmetric:
        raise UnsupportedOpError(f"AveragePool '{node.name}': asymmetric pads are not "
                                 "supported by lowbit.qat")
    return lambda xs: [fn(xs[0], kernel, strides, pads[::2][::-1],  # type: ignore[arg-type]
                          ceil_mode=ceil, count_include_pad=include)]


@register("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(node: onnx.NodeProto, constants: Constants) -> Kernel:
    def run(xs: Sequence[torch.Tensor | None]) -> list[torch.Tensor]:
        x = xs[0]
        assert x is not None
        dims = tuple(range(2, x.dim()))
        if node.op_type == "GlobalAveragePool":
            return [x.mean(dim=dims, keepdim=True)]
        return [x.amax(dim=dims, keepdim=True)]
    return run


@register("Flatten")
def _flatten(node: onnx.NodeProto, constants: Constants) -> Kernel:
    axis = attrs(node).get("axis", 1)

    def run(xs: Sequence[torch.Tensor | None]) -> list[torch.Tensor]:
        x = xs[0]
        assert x is not None
        cut = axis % x.dim() if x.dim() else 0
        return [x.reshape(int(np.prod(x.shape[:cut], dtype=np.int64)), -1)]
    return run


@register("Reshape")
def _reshape(node: onnx.NodeProto, constants: Constants) -> Kernel:
    fixed = constants.get(node.input[1])  # else computed at run time (Shape → Concat)
    allow_zero = attrs(node).get("allowzero", 0)

    def run(xs: Sequence[torch.Tensor | None]) -> list[torch.Tensor]:
        x = xs[0]
        assert x is not None and (fixed is not None or xs[1] is not None)
        shape = [int(d) for d in (fixed.reshape(-1) if fixed is not None
                                  else xs[1].tolist())]  # type: ignore[union-attr]
        dims = [x.shape[i] if d == 0 and not allow_zero else d for i, d in enumerate(shape)]
        return [x.reshape(dims)]
    return run


@register("Transpose")
def _transpose(node: onnx.NodeProto, constants: Constants) -> Kernel:
    perm = attrs(node).get("perm")
    return lambda xs: [xs[0].permute(*(perm if perm is not None  # type: ignore[union-attr]
                                       else reversed(range(xs[0].dim()))))]  # type: ignore[union-attr]


@register("Concat")
def _concat(node: onnx.NodeProto, constants: Constants) -> Kernel:
    axis = attrs(node)["axis"]
    return lambda xs: [torch.cat([x for x in xs if x is not None], dim=axis)]


@register("Squeeze", "Unsqueeze")
def _squeeze(node: onnx.NodeProto, constants: Constants) -> Kernel:
    axes = constants.ints(node, 1) or attrs(node).get("axes")

    def run(xs: Sequence[torch.Tensor | None]) -> list[torch.Tensor]:
        x = xs[0]
        assert x is not None
        if node.op_type == "Squeeze":
            return [x.squeeze() if axes is None else x.squeeze(tuple(axes))]
        assert axes is not None
        out_rank = x.dim() + len(axes)
        for axis in sorted(a % out_rank for a in axes):
            x = x.unsqueeze(axis)
        return [x]
    return run


@register("Pad")
def _pad(node: onnx.NodeProto, constants: Constants) -> Kernel:
    pads = constants.ints(node, 1) or list(attrs(node).get("pads", []))
    value = constants.number(node, 2) or 0.0
    mode = attrs(node).get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "constant":
        raise UnsupportedOpError(f"Pad '{node.name}': mode {mode} is not supported by "
                                 "lowbit.qat")

    def run(xs: Sequence[torch.Tensor | None]) -> list[torch.Tensor]:
        x = xs[0]
        assert x is not None
        rank = x.dim()
        torch_pads: list[int] = []
        for b, e in zip(reversed(pads[:rank]), reversed(pads[rank:]), strict=True):
            torch_pads += [b, e]
        return [F.pad(x, torch_pads, value=value)]
    return run


@register("ReduceMean")
def _reduce_mean(node: onnx.NodeProto, constants: Constants) -> Kernel:
    a = attrs(node)
    axes = constants.ints(node, 1) or a.get("axes")
    keep = bool(a.get("keepdims", 1))

    def run(xs: Sequence[torch.Tensor | None]) -> list[torch.Tensor]:
        x = xs[0]
        assert x is not None
        dims = tuple(axes) if axes else tuple(range(x.dim()))
        return [x.mean(dim=dims, keepdim=keep)]
    return run


@register("LayerNormalization")
def _layer_norm(node: onnx.NodeProto, constants: Constants) -> Kernel:
    a = attrs(node)
    axis, epsilon = a.get("axis", -1), a.get("epsilon", 1e-5)

    def run(xs: Sequence[torch.Tensor | None]) -> list[torch.Tensor]:
        x, scale = xs[0], xs[1]
        assert x is not None and scale is not None
        shape = x.shape[axis % x.dim():]
        bias = xs[2] if len(xs) > 2 else None
        return [F.layer_norm(x, shape, scale.expand(shape),
                             None if bias is None else bias.expand(shape), epsilon)]
    return run


@register("Shape")
def _shape(node: onnx.NodeProto, constants: Constants) -> Kernel:
    a = attrs(node)
    start, end = a.get("start", 0), a.get("end")
    return lambda xs: [torch.tensor(list(xs[0].shape)[start:end],  # type: ignore[union-attr]
                                    dtype=torch.int64)]


@register("Gather")
def _gather(node: onnx.NodeProto, constants: Constants) -> Kernel:
    axis = attrs(node).get("axis", 0)

    def run(xs: Sequence[torch.Tensor | None]) -> list[torch.Tensor]:
        data, indices = xs[0], xs[1]
        assert data is not None and indices is not None
        dim = axis % data.dim()
        flat = indices.reshape(-1).long() % data.shape[dim]  # negative indices count back
        picked = torch.index_select(data, dim, flat)
        return [picked.reshape((*data.shape[:dim], *indices.shape, *data.shape[dim + 1:]))]
    return run


@register("Slice")
def _slice(node: onnx.NodeProto, constants: Constants) -> Kernel:
    def run(xs: Sequence[torch.Tensor | None]) -> list[torch.Tensor]:
        data = xs[0]
        assert data is not None and xs[1] is not None and xs[2] is not None
        starts, ends = xs[1].tolist(), xs[2].tolist()
        axes = xs[3].tolist() if len(xs) > 3 and xs[3] is not None else range(len(starts))
        steps = xs[4].tolist() if len(xs) > 4 and xs[4] is not None else [1] * len(starts)
        index = [slice(None)] * data.dim()
        for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
            if step < 1:
                raise UnsupportedOpError(f"Slice '{node.name}': lowbit.qat slices with "
                                         "positive steps only")
            index[axis % data.dim()] = slice(start, end, step)  # clamped as ONNX does
        return [data[tuple(index)]]
    return run


_TORCH_TYPES = {onnx.TensorProto.FLOAT: torch.float32, onnx.TensorProto.DOUBLE: torch.float64,
                onnx.TensorProto.FLOAT16: torch.float16, onnx.TensorProto.BFLOAT16: torch.bfloat16,
                onnx.TensorProto.INT64: torch.int64, onnx.TensorProto.INT32: torch.int32,
                onnx.TensorProto.INT8: torch.int8, onnx.TensorProto.UINT8: torch.uint8,
                onnx.TensorProto.BOOL: torch.bool}


@register("Cast")
def _cast(node: onnx.NodeProto, constants: Constants) -> Kernel:
    to = attrs(node)["to"]
    if to not in _TORCH_TYPES:
        raise UnsupportedOpError(f"Cast '{node.name}': lowbit.qat does not cast to "
                                 f"{onnx.TensorProto.DataType.Name(to)}")
    dtype = _TORCH_TYPES[to]
    return lambda xs: [xs[0].to(dtype)]  # type: ignore[union-attr]


# Resize's modes that F.interpolate computes exactly: ONNX (mode, coordinate transformation,
# nearest rounding) -> (torch mode, align_corners). torch.onnx writes these for nn.Upsample
# and F.interpolate (nearest: asymmetric + floor; bilinear: pytorch_half_pixel or
# align_corners).
_RESIZE = {("nearest", "asymmetric", "floor"): ("nearest", None),
           ("linear", "half_pixel", None): ("linear", False),
           ("linear", "pytorch_half_pixel", None): ("linear", False),
           ("linear", "align_corners", None): ("linear", True)}
_LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}


@register("Resize")
def _resize(node: onnx.NodeProto, constants: Constants) -> Kernel:
    a = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs(node).items()}
    # opset 10's Resize is (X, scales), asymmetric with floor rounding (Upsample's rules);
    # from opset 11 on, (X, roi, scales, sizes) with the attributes below
    opset_10 = len(node.input) == 2
    mode = a.get("mode", "nearest")
    transform = a.get("coordinate_transformation_mode",
                      "asymmetric" if opset_10 else "half_pixel")
    rounding = a.get("nearest_mode", "floor" if opset_10 else "round_prefer_floor") \
        if mode == "nearest" else None
    chosen = _RESIZE.get((mode, transform, rounding))
    if chosen is None or a.get("antialias", 0) or a.get("axes") is not None:
        raise UnsupportedOpError(
            f"Resize '{node.name}': mode {mode}, coordinate_transformation_mode {transform}"
            f"{f', nearest_mode {rounding}' if rounding else ''} is not supported by lowbit.qat "
            "(supported: nearest with asymmetric + floor, linear with half_pixel, "
            "pytorch_half_pixel or align_corners)")
    scales = constants.optional(node, 1 if opset_10 else 2)
    sizes = constants.optional(node, 3)
    if scales is not None and not scales.size:
        scales = None  # an empty scales input: sizes are given
    if scales is None and sizes is None:
        raise UnsupportedOpError(f"Resize '{node.name}': neither scales nor sizes is given")
    spatial = [float(v) for v in scales.reshape(-1)] if scales is not None else None
    shape = [int(v) for v in sizes.reshape(-1)] if sizes is not None else None
    if len(spatial or shape or []) < 3 or spatial is not None and spatial[:2] != [1.0, 1.0]:
        raise UnsupportedOpError(f"Resize '{node.name}': lowbit.qat resizes spatial axes "
                                 "only (batch and channel scales must be 1)")
    torch_mode, align = chosen

    def run(xs: Sequence[torch.Tensor | None]) -> list[torch.Tensor]:
        x = xs[0]
        assert x is not None
        kind = torch_mode if torch_mode == "nearest" else _LINEAR[x.dim() - 2]
        if shape is not None:
            if list(x.shape[:2]) != shape[:2]:
                raise UnsupportedOpError(f"Resize '{node.name}': lowbit.qat resizes spatial "
                                         "axes only (batch and channel sizes must be kept)")
            return [F.interpolate(x, size=shape[2:], mode=kind, align_corners=align)]
        assert spatial is not None
        return [F.interpolate(x, scale_factor=spatial[2:], mode=kind, align_corners=align,
                              recompute_scale_factor=False)]
    return run


@register("Constant")
def _constant(node: onnx.NodeProto, constants: Constants) -> Kernel:
    value = torch.from_numpy(np.array(numpy_helper.to_array(attrs_tensor(node))))
    return lambda xs: [value]


def attrs_tensor(node: onnx.NodeProto) -> onnx.TensorProto:
    for a in node.attribute:
        if a.name == "value":
            return a.t
    raise UnsupportedOpError(f"Constant '{node.name}': only a 'value' tensor is supported")
