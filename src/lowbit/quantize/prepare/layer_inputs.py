"""Sampled input columns of every Conv / Gemm / MatMul with a constant weight.

    layers = find_layers(model)                      # [Layer(node, weight, axis, ...)]
    inputs = collect_inputs(model, layers, samples, columns=2048)
    inputs["conv1"].columns                           # [G, P, K] float32, or None and
    inputs["conv1"].gram                              # [G, K, K] = mean of x xᵀ
    # with quantized=qdq_model: x̂, what the layer reads in the quantized model, too
    w = weight_matrix(weight, layers[0])              # [G, O/G, K]: out = x @ wᵀ

One ONNX Runtime pass exposes each layer's input tensor; from each sample a random
subset of output positions is taken and only their receptive fields are kept
(im2col on a few positions). A Conv with ``group`` G gives G column sets, one per
group (a depthwise Conv: one per channel, K = kh·kw). Gemm and MatMul rows are
columns as they are. A layer with K ≤ ``gram_up_to`` keeps only the second moment
Σ = E[x xᵀ] ([G, K, K], exact over every sampled column: ||ΔW x||² averages to
tr(ΔW Σ ΔWᵀ)); a wider one keeps its P columns. Memory is bounded by layers ×
max(K², P·K), never by the image size or the number of samples: the layers' inputs a
run exposes are split into groups that fit the memory budget at the data's shape
(lowbit.runtime.memory), one pass over the samples per group (one pass when all fit).

Weight layouts follow the INT8 rules (lowbit.quantize.int8.rules): Conv [O, I/G, k…]
with channel axis 0, Gemm's B with axis 0 when transB else 1, MatMul's 2-D B with
axis 1; ``weight_matrix`` and ``from_matrix`` convert to and from [G, O/G, K].
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import onnx
from onnx import helper, numpy_helper

from lowbit.errors import DatasetError
from lowbit.graph import with_outputs
from lowbit.runtime.memory import MemoryBudget, sample_cost
from lowbit.runtime.ort import create_session

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Layer:
    """One layer whose weight is quantized: what reads what, in which layout."""

    node: str
    op_type: str                    # Conv | Gemm | MatMul
    input: str                      # the activation tensor it reads
    weight: str                     # its weight initializer
    shape: tuple[int, ...]          # the weight's shape
    axis: int                       # output-channel axis of the weight
    group: int = 1
    strides: tuple[int, ...] = ()
    pads: tuple[int, ...] = ()      # begin..., end... (ONNX order)
    dilations: tuple[int, ...] = ()


def find_layers(model: onnx.ModelProto) -> list[Layer]:
    """Conv (1-D/2-D, explicit or VALID pads), Gemm (transA 0, plain alpha/beta) and MatMul
    with a 2-D constant weight, each weight read by this node only."""
    inits = {init.name: init for init in model.graph.initializer}
    uses: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    layers = []
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or len(node.input) < 2:
            continue
        weight = node.input[1]
        if weight not in inits or uses.get(weight, 0) != 1 or not node.name:
            continue
        shape = tuple(int(d) for d in inits[weight].dims)
        if inits[weight].data_type != onnx.TensorProto.FLOAT:
            continue
        layer = _layer(node, shape)
        if layer is not None:
            layers.append(layer)
    return layers


def _layer(node: onnx.NodeProto, shape: tuple[int, ...]) -> Layer | None:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Conv" and len(shape) in (3, 4):
        spatial = len(shape) - 2
        auto_pad = attrs.get("auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        if auto_pad not in ("NOTSET", "VALID"):
            return None  # SAME_* pads depend on the input size: nearest rounding there
        pads = tuple(attrs.get("pads", [0] * 2 * spatial)) if auto_pad == "NOTSET" else \
            (0,) * 2 * spatial
        return Layer(node.name, "Conv", node.input[0], node.input[1], shape, 0,
                     int(attrs.get("group", 1)), tuple(attrs.get("strides", [1] * spatial)),
                     pads, tuple(attrs.get("dilations", [1] * spatial)))
    if node.op_type == "Gemm" and len(shape) == 2 and not attrs.get("transA", 0):
        if attrs.get("alpha", 1.0) != 1.0:
            return None
        return Layer(node.name, "Gemm", node.input[0], node.input[1], shape,
                     0 if attrs.get("transB", 0) else 1)
    if node.op_type == "MatMul" and len(shape) == 2:
        return Layer(node.name, "MatMul", node.input[0], node.input[1], shape, 1)
    return None


def weight_matrix(weight: np.ndarray, layer: Layer) -> np.ndarray:
    """The weight as [G, O/G, K], so that a column set x [G, P, K] gives x @ wᵀ."""
    if layer.op_type == "Conv":
        out = weight.shape[0]
        return weight.reshape(layer.group, out // layer.group, -1)
    matrix = weight if layer.axis == 0 else weight.T  # [O, K]
    return matrix[None]


def from_matrix(matrix: np.ndarray, layer: Layer) -> np.ndarray:
    """Inverse of ``weight_matrix``: back to the weight's own layout."""
    if layer.op_type == "Conv":
        return matrix.reshape(layer.shape)
    return matrix[0] if layer.axis == 0 else matrix[0].T


@dataclass(frozen=True)
class LayerInputs:
    """A layer's sampled inputs x (float model) and, when a quantized model was given,
    x̂ (what the layer reads there) at the same positions: the columns themselves, or
    their second moments."""

    count: int                              # columns sampled
    columns: np.ndarray | None = None       # x [G, P, K]
    gram: np.ndarray | None = None          # E[x xᵀ] [G, K, K]
    quantized: np.ndarray | None = None     # x̂ [G, P, K]
    cross: np.ndarray | None = None         # E[x x̂ᵀ] [G, K, K]
    gram_quantized: np.ndarray | None = None  # E[x̂ x̂ᵀ] [G, K, K]
    validation: LayerInputs | None = None   # the same, from held-out samples


def collect_inputs(model: onnx.ModelProto, layers: Sequence[Layer],
                   samples: Sequence[Mapping[str, np.ndarray]], *, columns: int = 2048,
                   gram_up_to: int = 256, seed: int = 0, holdout: int = 0,
                   quantized: onnx.ModelProto | None = None,
                   memory_budget: MemoryBudget | None = None) -> dict[str, LayerInputs]:
    """Node name → its sampled inputs (about ``columns`` columns, evenly over the
    samples), in one ONNX Runtime pass per group of layers whose inputs fit
    ``memory_budget`` together (two with ``quantized``: the same model in QDQ form, whose
    nodes keep their names, so x̂ is read at the same positions). With ``holdout`` n > 1,
    every n-th sample goes to ``validation`` instead. Grouping changes nothing: the
    positions drawn depend on the sample and the layer only."""
    if not samples:
        raise DatasetError("collecting layer inputs needs samples; the data set has none")
    readers = {node.name: node.input[0] for node in quantized.graph.node if node.input} \
        if quantized is not None else {}
    training = {i for i in range(len(samples)) if holdout <= 1 or i % holdout != holdout - 1}
    per_sample = max(1, math.ceil(columns / len(training)))
    train = _Accumulator(layers, gram_up_to)
    held = _Accumulator(layers, gram_up_to)
    for group in _layer_groups(model, layers, samples[0],
                               memory_budget or MemoryBudget.default(),
                               exposed=2 if quantized is not None else 1):
        float_run = _InputRunner(model, {layer.node: layer.input for layer in group})
        quant_run = None
        if quantized is not None:
            quant_run = _InputRunner(quantized, {layer.node: readers[layer.node]
                                                 for layer in group if layer.node in readers})
        for index, sample in enumerate(samples):
            xs = float_run.run(sample)
            x_hats = quant_run.run(sample) if quant_run is not None else {}
            target = train if index in training else held
            for layer in group:
                x = xs.get(layer.node)
                if x is None or (quant_run is not None and layer.node not in x_hats):
                    continue
                # The same generator state for x and x̂: the same output positions.
                key = [seed, index, layers.index(layer)]
                cols = _columns(x, layer, per_sample, np.random.default_rng(key))
                cols_q = _columns(x_hats[layer.node], layer, per_sample,
                                  np.random.default_rng(key)) if quant_run is not None else None
                target.add(layer, cols, cols_q)
    validation = held.result()
    return {node: replace(inputs, validation=validation.get(node))
            for node, inputs in train.result().items()}


def _layer_groups(model: onnx.ModelProto, layers: Sequence[Layer],
                  sample: Mapping[str, np.ndarray], budget: MemoryBudget, exposed: int
                  ) -> list[list[Layer]]:
    """``layers`` in groups whose input tensors (``exposed`` copies: float and QDQ)
    fit ``budget`` beside the model's own activations, for one sample of ``sample``'s
    shape; all in one group when the sizes are unknown."""
    shapes = {name: np.shape(value) for name, value in sample.items()}
    cost = sample_cost(model, shapes)
    if cost is None:
        return [list(layers)]
    sizes = {layer.node: exposed * cost.sizes.get(layer.input, 0) for layer in layers}
    groups = budget.groups(sizes, [layer.node for layer in layers], fixed=cost.per_sample)
    by_node = {layer.node: layer for layer in layers}
    if len(groups) > 1:
        log.info("layer inputs in %d passes (%d layers; memory budget %s)", len(groups),
                 len(layers), budget)
    return [[by_node[node] for node in group] for group in groups]


class _InputRunner:
    """Runs a model and returns, per layer, the tensor it reads (a graph input is fed)."""

    def __init__(self, model: onnx.ModelProto, inputs: Mapping[str, str]) -> None:
        graph_inputs = {value.name for value in model.graph.input}
        self.inputs = dict(inputs)
        self.fetch = sorted({t for t in inputs.values() if t not in graph_inputs})
        self.session = create_session(with_outputs(model, self.fetch,
                                                   elem_type=onnx.TensorProto.FLOAT),
                                      memory_pattern=False)
        self.feeds = {i.name for i in self.session.get_inputs()}

    def run(self, sample: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {k: v for k, v in sample.items() if k in self.feeds}
        values = dict(zip(self.fetch, self.session.run(self.fetch, feeds), strict=True)) \
            if self.fetch else {}
        values.update({k: np.asarray(v, np.float32) for k, v in feeds.items()})
        return {node: values[t].astype(np.float32) for node, t in self.inputs.items()
                if t in values}


class _Accumulator:
    """Columns, or the sums of x xᵀ (and x x̂ᵀ, x̂ x̂ᵀ), per layer."""

    def __init__(self, layers: Sequence[Layer], gram_up_to: int) -> None:
        self.gram_up_to = gram_up_to
        self.parts: dict[str, list[tuple[np.ndarray, np.ndarray | None]]] = {
            layer.node: [] for layer in layers}
        self.sums: dict[str, list[np.ndarray | None]] = {}
        self.counts: dict[str, int] = {layer.node: 0 for layer in layers}

    def add(self, layer: Layer, cols: np.ndarray, cols_q: np.ndarray | None) -> None:
        self.counts[layer.node] += cols.shape[1]  # cols [G, p, K]
        if cols.shape[2] > self.gram_up_to:
            self.parts[layer.node].append((cols, cols_q))
            return
        x = cols.astype(np.float64)
        terms: list[np.ndarray | None] = [np.einsum("gpk,gpl->gkl", x, x), None, None]
        if cols_q is not None:
            x_hat = cols_q.astype(np.float64)
            terms[1] = np.einsum("gpk,gpl->gkl", x, x_hat)
            terms[2] = np.einsum("gpk,gpl->gkl", x_hat, x_hat)
        before = self.sums.get(layer.node)
        self.sums[layer.node] = terms if before is None else [
            None if a is None or b is None else a + b for a, b in zip(before, terms, strict=True)]

    def result(self) -> dict[str, LayerInputs]:
        out = {}
        for node, count in self.counts.items():
            if node in self.sums:
                gram, cross, gram_q = (None if t is None else (t / count).astype(np.float32)
                                       for t in self.sums[node])
                out[node] = LayerInputs(count, gram=gram, cross=cross, gram_quantized=gram_q)
            elif self.parts[node]:
                parts = self.parts[node]
                quantized = None if parts[0][1] is None else np.concatenate(
                    [q for _, q in parts if q is not None], axis=1)
                out[node] = LayerInputs(count, columns=np.concatenate([c for c, _ in parts],
                                                                      axis=1),
                                        quantized=quantized)
        return out


def _columns(x: np.ndarray, layer: Layer, count: int, rng: np.random.Generator) -> np.ndarray:
    if layer.op_type != "Conv":
        rows = x.reshape(-1, x.shape[-1])
        pick = rng.choice(len(rows), size=min(count, len(rows)), replace=False)
        return rows[pick][None]
    return _conv_columns(x, layer, count, rng)


def _conv_columns(x: np.ndarray, layer: Layer, count: int, rng: np.random.Generator
                  ) -> np.ndarray:
    """Receptive fields of ``count`` random output positions: [G, count, C/G · kh · kw]."""
    if x.ndim == 3:  # 1-D conv: a 2-D one of height 1
        layer_2d = Layer(layer.node, "Conv", layer.input, layer.weight,
                         (*layer.shape[:2], 1, layer.shape[2]), 0, layer.group,
                         (1, *layer.strides), (0, layer.pads[0], 0, layer.pads[1]),
                         (1, *layer.dilations))
        return _conv_columns(x[:, :, None, :], layer_2d, count, rng)
    n, c, _, _ = x.shape
    kh, kw = layer.shape[2], layer.shape[3]
    (sh, sw), (dh, dw) = layer.strides, layer.dilations
    top, left, bottom, right = layer.pads
    padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    out_h = (padded.shape[2] - dh * (kh - 1) - 1) // sh + 1
    out_w = (padded.shape[3] - dw * (kw - 1) - 1) // sw + 1
    total = n * out_h * out_w
    flat = rng.choice(total, size=min(count, total), replace=False)
    b, rest = np.divmod(flat, out_h * out_w)
    oh, ow = np.divmod(rest, out_w)
    rows = oh[:, None] * sh + dh * np.arange(kh)            # [P, kh]
    cols = ow[:, None] * sw + dw * np.arange(kw)            # [P, kw]
    patches = padded[b[:, None, None, None], np.arange(c)[None, :, None, None],
                     rows[:, None, :, None], cols[:, None, None, :]]  # [P, C, kh, kw]
    grouped = patches.reshape(len(flat), layer.group, -1)   # [P, G, C/G·kh·kw]
    return np.ascontiguousarray(grouped.transpose(1, 0, 2))


def weight_of(model: onnx.ModelProto, layer: Layer) -> np.ndarray:
    init = next(i for i in model.graph.initializer if i.name == layer.weight)
    return numpy_helper.to_array(init).astype(np.float32)
