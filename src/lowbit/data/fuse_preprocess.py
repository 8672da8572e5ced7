"""Put image preprocessing into the graph, so the deployed model takes uint8 pixels.

    options = ImageOptions(mean=(127.0,), scale=(1 / 128,), pixel_format="rgb", layout="nchw")
    fused = fuse_preprocess(model, options, layout="nhwc")
    fused.model          # input "input": uint8 [N, 224, 224, 3] RGB; the rest of the graph unchanged
    fused.added          # ("Cast", "Transpose", "Sub", "Mul")

The model's one image input keeps its name but becomes uint8 pixels in ``layout``
(NHWC, as decoders give them, or NCHW), always in RGB order (or one gray channel).
In front of the old graph it gets::

    Cast(float) → Transpose (when layout differs) → Gather [2,1,0] (when the model
    wants BGR) → Sub(mean) → Mul(scale) → the old input tensor

which is ``value = (pixel - mean) * scale`` of :func:`lowbit.data.images.load_image`,
so the fused model on raw pixels gives the float model's outputs on preprocessed
images. Sub is skipped for a zero mean, Mul for a unit scale. Resizing and cropping
stay outside the graph (they depend on each image's size): feed images resized and
cropped as the meta file says. When deployed to INT8, Mul and Transpose take QDQ
like any other op, so the first Conv still reads a quantized tensor.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lowbit.data.images import LAYOUTS, ImageOptions
from lowbit.errors import UsageError
from lowbit.graph import FreshNames

log = logging.getLogger(__name__)

_FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE)


@dataclass(frozen=True)
class FusedPreprocess:
    """The rewritten model, the input it now takes and the op types put in front."""

    model: onnx.ModelProto
    input_name: str
    input_shape: tuple[int | str | None, ...]
    layout: str  # of the new uint8 input
    added: tuple[str, ...]


def fuse_preprocess(model: onnx.ModelProto, options: ImageOptions, *,
                    layout: str = "nhwc") -> FusedPreprocess:
    """Rewrite ``model`` (not changed in place) to take uint8 images; see the module doc."""
    if layout not in LAYOUTS:
        raise UsageError(f"fused input layout must be one of {', '.join(LAYOUTS)}, "
                         f"got {layout!r}")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    value = _image_input(graph)
    dims = [_dim(d) for d in value.type.tensor_type.shape.dim]
    options = options.for_shape(tuple(dims))
    model_layout = options.layout
    channel_axis = 1 if model_layout == "nchw" else 3
    channels = dims[channel_axis]
    where = f"input '{value.name}' {_shape_text(dims)} ({model_layout})"
    if isinstance(channels, int) and channels != options.channels:
        raise UsageError(f"{where} has {channels} channel(s), but pixel_format "
                         f"'{options.pixel_format}' gives {options.channels}; check "
                         f"{{pixel_format}} and {{layout}}")
    for label, values in (("mean", options.mean), ("scale", options.scale)):
        if len(values) not in (1, options.channels):
            raise UsageError(f"{label} has {len(values)} values but {where} has "
                             f"{options.channels} channel(s); give 1 or {options.channels}")

    float_type = value.type.tensor_type.elem_type
    inner = FreshNames.of(out).make(f"{value.name}_preprocessed")
    _rename_uses(graph, value.name, inner)
    names = FreshNames.of(out)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    current = value.name

    def add(op: str, inputs: list[str], **attrs: Any) -> None:
        nonlocal current
        output = names.make(f"{value.name}_{op.lower()}")
        nodes.append(helper.make_node(op, inputs, [output], name=names.make(
            f"preprocess_{op.lower()}"), **attrs))
        current = output

    add("Cast", [current], to=float_type)
    if layout != model_layout:
        add("Transpose", [current], perm=[0, 3, 1, 2] if layout == "nhwc" else [0, 2, 3, 1])
    np_type = helper.tensor_dtype_to_np_dtype(float_type)
    shape = (1, -1, 1, 1) if model_layout == "nchw" else (-1,)
    if options.pixel_format == "bgr":
        indices = names.make("preprocess_bgr_order")
        inits.append(numpy_helper.from_array(np.array([2, 1, 0], np.int64), indices))
        add("Gather", [current, indices], axis=channel_axis)
    mean = np.asarray(options.mean, np_type)
    if np.any(mean != 0):
        mean_name = names.make("preprocess_mean")
        inits.append(numpy_helper.from_array(mean.reshape(shape), mean_name))
        add("Sub", [current, mean_name])
    scale = np.asarray(options.scale, np_type)
    if np.any(scale != 1):
        scale_name = names.make("preprocess_scale")
        inits.append(numpy_helper.from_array(scale.reshape(shape), scale_name))
        add("Mul", [current, scale_name])
    nodes[-1].output[0] = inner  # the last step writes the tensor the old graph reads

    new_dims = dims if layout == model_layout else (
        [dims[0], dims[2], dims[3], dims[1]] if layout == "nhwc"
        else [dims[0], dims[3], dims[1], dims[2]])
    new_input = helper.make_tensor_value_info(value.name, TensorProto.UINT8, new_dims)
    index = list(graph.input).index(value)
    graph.input.remove(value)
    graph.input.insert(index, new_input)
    old_nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old_nodes)
    graph.initializer.extend(inits)
    added = tuple(n.op_type for n in nodes)
    log.info("fused preprocessing into %s: %s", value.name, " → ".join(added))
    return FusedPreprocess(out, value.name, tuple(new_dims), layout, added)


def _image_input(graph: onnx.GraphProto) -> onnx.ValueInfoProto:
    initializers = {init.name for init in graph.initializer}
    inputs = [v for v in graph.input if v.name not in initializers]
    if len(inputs) != 1:
        raise UsageError(f"{{fuse_preprocess}} needs a model with one image input; this one has "
                         f"{len(inputs)} ({', '.join(v.name for v in inputs) or 'none'})")
    value = inputs[0]
    tensor = value.type.tensor_type
    if tensor.elem_type not in _FLOAT_TYPES:
        raise UsageError(f"{{fuse_preprocess}} needs a float image input; input '{value.name}' "
                         "is "
                         f"{TensorProto.DataType.Name(tensor.elem_type).lower()}")
    if not tensor.HasField("shape") or len(tensor.shape.dim) != 4:
        rank = len(tensor.shape.dim) if tensor.HasField("shape") else "unknown"
        raise UsageError(f"{{fuse_preprocess}} needs a 4-D image input; input '{value.name}' has "
                         f"rank {rank} (fix it with {{input_shapes}})")
    return value


def _dim(dim: onnx.TensorShapeProto.Dimension) -> int | str | None:
    if dim.HasField("dim_value"):
        return int(dim.dim_value)
    return dim.dim_param or None


def _shape_text(dims: list[int | str | None]) -> str:
    return "[" + ",".join(str(d) if isinstance(d, int) else "?" for d in dims) + "]"


def _rename_uses(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Every node that reads ``old`` (in subgraphs too, which may read outer names) reads
    ``new``; a subgraph that defines its own ``old`` shadows it and is left alone."""
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for attr in node.attribute:
            subgraphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else \
                list(attr.graphs) if attr.type == onnx.AttributeProto.GRAPHS else []
            for sub in subgraphs:
                defined = {v.name for v in sub.input} | {i.name for i in sub.initializer} | \
                    {o for n in sub.node for o in n.output}
                if old not in defined:
                    _rename_uses(sub, old, new)
    for output in graph.output:
        if output.name == old:  # an input passed straight through: keep the graph valid
            raise UsageError(f"{{fuse_preprocess}}: input '{old}' is also a graph output")
