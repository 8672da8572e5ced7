"""Per-channel min/max of the inputs of linear layers: what SmoothQuant needs, kept in the table.

    tensors = linear_inputs(model)          # {"/ln_out": 384, ...}: run-time input → K
    extremes = ChannelExtremes(model, tensors)
    summary = extremes.extend(summary)      # adds Reshape([-1, K]) → ReduceMin/ReduceMax
    extremes.add(feeds, fetched)            # per run
    extremes.result()                       # {tensor: (min[K], max[K])}
    part = extremes.fresh(); part.merge(other_part)   # exact, for runs in parts

SmoothQuant (lowbit.quantize.prepare.smoothquant) divides channel j of a MatMul input X by
s_j, computed from max|X_j|. With the per-channel min and max of X, the smoothed
tensor's range follows exactly: min(X/s) = min_j(min_j / s_j), max likewise (s > 0),
so deploy can smooth and quantize without the data set again. Channels are the last
axis (K, the one the weight contracts); every other axis (batch, tokens) is reduced
inside the ONNX Runtime session, so only 2·K floats per tensor leave it per run.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lowbit.graph import add_outputs, add_reduce, onnx_opset

LINEAR_OPS = ("MatMul", "Gemm")


def linear_weight_layout(node: onnx.NodeProto, initializers: Mapping[str, onnx.TensorProto]
                         ) -> str | None:
    """'kn' for a float weight [K, N] (MatMul, Gemm), 'nk' for Gemm with transB; None for
    any other node (no constant 2-D weight, a constant input, Gemm with transA)."""
    if node.domain not in ("", "ai.onnx") or node.op_type not in LINEAR_OPS \
            or len(node.input) < 2:
        return None
    weight = initializers.get(node.input[1])
    if weight is None or len(weight.dims) != 2 or node.input[0] in initializers:
        return None
    if weight.data_type != TensorProto.FLOAT:
        return None
    if node.op_type == "MatMul":
        return "kn"
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("transA", 0):
        return None
    return "nk" if attrs.get("transB", 0) else "kn"


def linear_inputs(model: onnx.ModelProto) -> dict[str, int]:
    """The run-time input of every named MatMul/Gemm with a constant 2-D float weight, with
    its channel count K (graph order; tensors read by several such layers once)."""
    initializers = {i.name: i for i in model.graph.initializer}
    found: dict[str, int] = {}
    for node in model.graph.node:
        layout = linear_weight_layout(node, initializers)
        if layout is None or not node.name:
            continue
        dims = initializers[node.input[1]].dims
        found.setdefault(node.input[0], int(dims[1] if layout == "nk" else dims[0]))
    return found


class ChannelExtremes:
    """Running per-channel min and max of some tensors over the calibration runs."""

    def __init__(self, model: onnx.ModelProto, tensors: Mapping[str, int]) -> None:
        graph_inputs = {value.name for value in model.graph.input}
        self.channels = dict(tensors)
        self.from_feeds = [t for t in tensors if t in graph_inputs]
        self.outputs = {t: (f"lowbit_channel_min_{i}", f"lowbit_channel_max_{i}")
                        for i, t in enumerate(tensors) if t not in graph_inputs}
        self.opset = onnx_opset(model)
        self.low: dict[str, np.ndarray] = {}
        self.high: dict[str, np.ndarray] = {}
        self.broken: set[str] = set()  # a run whose last axis was not K, or not finite

    @property
    def fetch(self) -> list[str]:
        return [name for pair in self.outputs.values() for name in pair]

    def extend(self, model: onnx.ModelProto) -> onnx.ModelProto:
        """The summary model with Reshape([-1, K]) → ReduceMin/ReduceMax(axis 0) outputs."""
        graph = model.graph
        for index, (tensor, (low, high)) in enumerate(self.outputs.items()):
            shape = f"lowbit_channel_shape_{index}"
            flat = f"lowbit_channel_flat_{index}"
            graph.initializer.append(numpy_helper.from_array(
                np.array([-1, self.channels[tensor]], np.int64), shape))
            graph.node.append(helper.make_node("Reshape", [tensor, shape], [flat]))
            for op, out in (("ReduceMin", low), ("ReduceMax", high)):
                add_reduce(graph, op, flat, f"{out}_raw", [0], opset=self.opset)
                graph.node.append(helper.make_node("Cast", [f"{out}_raw"], [out],
                                                   to=TensorProto.FLOAT))
        add_outputs(graph, self.fetch, elem_type=TensorProto.FLOAT)
        return model

    def add(self, feeds: Mapping[str, np.ndarray], fetched: Mapping[str, np.ndarray]) -> None:
        values: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for tensor in self.from_feeds:
            flat = np.asarray(feeds[tensor], np.float64)
            if flat.ndim and flat.shape[-1] == self.channels[tensor]:
                flat = flat.reshape(-1, self.channels[tensor])
                values[tensor] = (flat.min(axis=0), flat.max(axis=0))
            else:
                self.broken.add(tensor)
        for tensor, (low_name, high_name) in self.outputs.items():
            values[tensor] = (np.asarray(fetched[low_name], np.float64),
                              np.asarray(fetched[high_name], np.float64))
        for tensor, (low, high) in values.items():
            if low.shape != (self.channels[tensor],) or not (
                    np.isfinite(low).all() and np.isfinite(high).all()):
                self.broken.add(tensor)
                continue
            if tensor in self.low:
                np.minimum(self.low[tensor], low, out=self.low[tensor])
                np.maximum(self.high[tensor], high, out=self.high[tensor])
            else:
                self.low[tensor], self.high[tensor] = low.copy(), high.copy()

    def fresh(self) -> ChannelExtremes:
        """A copy for the same tensors that has seen nothing (a part's state)."""
        copy = ChannelExtremes.__new__(ChannelExtremes)
        copy.__dict__.update(self.__dict__)
        copy.low, copy.high, copy.broken = {}, {}, set()
        return copy

    def merge(self, other: ChannelExtremes) -> None:
        """Add what ``other`` (the same tensors) saw: per-channel min and max, exact."""
        self.broken |= other.broken
        for tensor, low in other.low.items():
            high = other.high[tensor]
            if tensor not in self.low:
                self.low[tensor], self.high[tensor] = low.copy(), high.copy()
            elif self.low[tensor].shape != low.shape:
                self.broken.add(tensor)
            else:  # not in place: an unpickled array is read-only
                self.low[tensor] = np.minimum(self.low[tensor], low)
                self.high[tensor] = np.maximum(self.high[tensor], high)

    def result(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {t: (self.low[t], self.high[t]) for t in self.channels
                if t in self.low and t not in self.broken}
