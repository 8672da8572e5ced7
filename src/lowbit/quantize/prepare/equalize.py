"""Cross-layer equalization (Nagel et al. 2019, "Data-free quantization through weight
equalization and bias correction").

    maxima = measure_channel_max(canonical, samples)       # for pairs through ReLU6
    model, report = equalize_layers(canonical, EqualizeSettings(), channel_max=maxima)
    report.summary()   # "equalization: 17 conv pairs, per-channel range ratio 9.3 → 1.00, ..."
    table = remeasure_ranges(model, table, samples, report)   # the ranges CLE changed

For two Convs in a row, Conv₁ → (Relu | LeakyRelu | Clip(0, ∞) | nothing) → Conv₂,
output channel i of Conv₁ is divided by s_i (weights and bias) and input channel i of
Conv₂ multiplied by s_i, with s_i = √(r1_i · r2_i) / r2_i = √(r1_i / r2_i) (r1_i: range
of Conv₁'s output-channel-i weights, r2_i: range of Conv₂'s weights reading channel i).
Both ranges become √(r1_i · r2_i), and because these activations are positively
homogeneous (f(x / s) = f(x) / s for s > 0) the float function is unchanged. Grouped
and depthwise Convs take part (a depthwise Conv's channel i is both its input and its
output channel), so Conv → DWConv → Conv chains, as in MobileNet/EfficientNet blocks,
are swept pair by pair until the scales stop changing.

ReLU6 (Clip(0, c), c = 6) is not homogeneous: clip(y / s, 0, c) · s = clip(y, 0, c·s),
which differs from clip(y, 0, c) wherever y passes min(c, c·s), and one Clip cannot hold
a bound per channel. ``relu6="bound"`` (the default) uses the data: with m_i, the
largest value channel i reaches before the Clip on the calibration samples
(``measure_channel_max``, one ORT pass), a channel that reaches c (m_i > c) keeps
s_i = 1, and the others get s_i ≥ m_i / c, so that they still never reach the clip:
the model is unchanged on every input whose pre-activations stay within what the
calibration data reached, and the Clip's output range stays [0, c]. Without channel
maxima such pairs are skipped. ``relu6="relu"`` does what the data-free paper does for
MobileNetV2: it replaces the Clip of each such pair by Relu and equalizes freely. That
CHANGES the function (values above c now pass; on EfficientNet-Lite0 the float model's
top-1 then agrees with the original on under half the crops) — the report says how many
were replaced, deploy validates against the original float model, and every
calibration range is then re-measured.

The output tensor of Conv₁ (and of its activation) changes range per channel, by
1/s_i, so a calibration table made before CLE does not fit it: ``remeasure_ranges``
runs the equalized model once over calibration samples with the table's own method and
replaces those tensors' ranges.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import numpy as np
import onnx
from onnx import helper, numpy_helper

from lowbit.calibration.collect import collect_ranges
from lowbit.calibration.observers import CalibrationSettings
from lowbit.calibration.table import CalibrationTable
from lowbit.errors import DatasetError, UsageError
from lowbit.graph import FreshNames, add_reduce, onnx_opset, schedule_probes, with_outputs
from lowbit.runtime.memory import MemoryBudget
from lowbit.runtime.ort import create_session

log = logging.getLogger(__name__)

RELU6_MODES = ("bound", "relu")
_HOMOGENEOUS = ("Relu", "LeakyRelu")
_TINY = 1e-12  # a channel range below this is dead: it keeps scale 1


@dataclass(frozen=True)
class EqualizeSettings:
    """How to equalize: ReLU6 pairs bounded by the data or turned into Relu, and when
    to stop."""

    relu6: str = "bound"
    max_sweeps: int = 50
    tolerance: float = 1e-4  # stop when no scale of a sweep moves |log s| more than this

    def __post_init__(self) -> None:
        if self.relu6 not in RELU6_MODES:
            raise UsageError(f"unknown ReLU6 handling '{self.relu6}'; choose one of "
                             f"{', '.join(RELU6_MODES)}")
        if self.max_sweeps < 1:
            raise UsageError(f"max_sweeps must be at least 1, got {self.max_sweeps}")


@dataclass(frozen=True)
class EqualizeReport:
    """What equalization did; ratios are over the channels of every equalized pair."""

    pairs: int
    sweeps: int
    relu6_replaced: int          # Clip(0, c) turned into Relu (function changed)
    relu6_bounded: int           # pairs through Clip(0, c) equalized within the data's range
    relu6_skipped: int           # pairs through Clip(0, c) left alone (no channel maxima)
    ratio_before: float          # geometric mean of max(r1, r2) / min(r1, r2) per channel
    ratio_after: float
    fit_before: float            # mean over weights of mean(channel range) / tensor range
    fit_after: float
    changed: tuple[str, ...]     # tensors whose range changed (all, when the function did)
    remeasured: int = 0
    samples: int = 0

    @property
    def function_changed(self) -> bool:
        return self.relu6_replaced > 0

    def summary(self) -> str:
        text = (f"equalization: {self.pairs} conv pairs ({self.sweeps} sweeps), mean "
                f"per-channel range ratio {self.ratio_before:.3g} → {self.ratio_after:.3g}, "
                f"channel/tensor weight range {self.fit_before:.2f} → {self.fit_after:.2f}")
        if self.relu6_replaced:
            text += (f"; {self.relu6_replaced} ReLU6 replaced by Relu (the float function "
                     "changed)")
        if self.relu6_bounded:
            text += f"; {self.relu6_bounded} through ReLU6 kept below its bound"
        if self.relu6_skipped:
            text += f"; {self.relu6_skipped} pairs through ReLU6 skipped (no data)"
        if self.remeasured:
            text += f"; {self.remeasured} ranges re-measured on {self.samples} samples"
        return text


@dataclass(frozen=True)
class _Pair:
    first: int                     # node indices into graph.node
    second: int
    activation: int | None
    relu6: bool                    # the activation is Clip(0, c), c finite
    channels: int
    clip_max: float = np.inf

    def link(self, nodes: list[onnx.NodeProto]) -> str:
        """The tensor Conv₁ writes (the input of its activation)."""
        return nodes[self.first].output[0]


def equalize_layers(model: onnx.ModelProto, settings: EqualizeSettings | None = None, *,
                    channel_max: Mapping[str, np.ndarray] | None = None
                    ) -> tuple[onnx.ModelProto, EqualizeReport]:
    """A copy of ``model`` (canonical) with consecutive Conv pairs equalized.

    ``channel_max`` (tensor → per-channel max over the data, from
    ``measure_channel_max``) lets ``relu6="bound"`` equalize pairs through ReLU6."""
    settings = settings or EqualizeSettings()
    inits = {init.name: init for init in model.graph.initializer}
    nodes = list(model.graph.node)
    found = find_pairs(model)
    maxima = dict(channel_max or {})
    bounds: dict[int, np.ndarray] = {}  # pair index → current pre-activation max per channel
    pairs: list[_Pair] = []
    for pair in found:
        if pair.relu6 and settings.relu6 == "bound":
            measured = maxima.get(pair.link(nodes))
            if measured is None or measured.shape != (pair.channels,):
                continue
            bounds[len(pairs)] = measured.astype(np.float64)
        pairs.append(pair)
    skipped = len(found) - len(pairs)
    weights: dict[int, np.ndarray] = {}
    biases: dict[int, np.ndarray] = {}
    for pair in pairs:
        for index in (pair.first, pair.second):
            node = nodes[index]
            weights.setdefault(index, numpy_helper.to_array(inits[node.input[1]]).astype(
                np.float32))
            if len(node.input) > 2 and node.input[2]:
                biases.setdefault(index, numpy_helper.to_array(inits[node.input[2]]).astype(
                    np.float32))
    touched = sorted(weights)
    ratio_before = _pair_ratio(pairs, nodes, weights)
    fit_before = _fit(weights[i] for i in touched)
    sweeps = 0
    for sweeps in range(1, settings.max_sweeps + 1):
        moved = 0.0
        for index, pair in enumerate(pairs):
            moved = max(moved, _equalize_pair(pair, nodes, weights, biases, bounds.get(index)))
        if moved < settings.tolerance:
            break
    replace_relu6 = settings.relu6 == "relu"
    out = _write(model, pairs, nodes, weights, biases, replace_relu6=replace_relu6)
    changed = _changed_tensors(out, pairs, nodes, replace_relu6=replace_relu6)
    replaced = sum(1 for p in pairs if p.relu6) if replace_relu6 else 0
    report = EqualizeReport(len(pairs), sweeps if pairs else 0, replaced, len(bounds), skipped,
                            ratio_before, _pair_ratio(pairs, nodes, weights), fit_before,
                            _fit(weights[i] for i in touched), changed)
    log.info(report.summary())
    return out, report


def find_pairs(model: onnx.ModelProto) -> list[_Pair]:
    """Conv → (homogeneous activation | Clip(0, c) | nothing) → Conv, each link read once."""
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    outputs = {value.name for value in graph.output}
    consumers: dict[str, list[int]] = {}
    for index, node in enumerate(graph.node):
        for name in node.input:
            consumers.setdefault(name, []).append(index)
    nodes = list(graph.node)

    def only_reader(tensor: str) -> int | None:
        readers = consumers.get(tensor, [])
        if tensor in outputs or len(readers) != 1:
            return None
        return readers[0]

    pairs: list[_Pair] = []
    for index, node in enumerate(nodes):
        if not _is_conv_with_weights(node, inits):
            continue
        reader = only_reader(node.output[0])
        if reader is None:
            continue
        activation, relu6 = None, False
        if nodes[reader].op_type != "Conv":
            kind = _activation_kind(nodes[reader], inits)
            if kind is None:
                continue
            activation, relu6 = reader, kind == "relu6"
            reader = only_reader(nodes[reader].output[0])
            if reader is None:
                continue
        second = nodes[reader]
        link = node.output[0] if activation is None else nodes[activation].output[0]
        if not _is_conv_with_weights(second, inits) or second.input[0] != link:
            continue
        channels = inits[node.input[1]].dims[0]
        w2 = inits[second.input[1]].dims
        if w2[1] * _group(second) != channels:
            continue
        clip_max = np.inf
        if relu6 and activation is not None:
            clip_max = float(_clip_bounds(nodes[activation], inits)[1] or np.inf)
        pairs.append(_Pair(index, reader, activation, relu6, int(channels), clip_max))
    return pairs


def measure_channel_max(model: onnx.ModelProto, samples: Iterable[Mapping[str, np.ndarray]]
                        ) -> dict[str, np.ndarray]:
    """Per-channel max, over the samples, of every tensor that feeds a ReLU6 of a pair:
    one ORT pass, each reduced to [C] inside the session."""
    nodes = list(model.graph.node)
    inits = {init.name: init for init in model.graph.initializer}
    links = {pair.link(nodes): len(inits[nodes[pair.first].input[1]].dims)
             for pair in find_pairs(model) if pair.relu6}
    if not links:
        return {}
    fetch = [f"lowbit_channel_max_{i}" for i in range(len(links))]
    probe = with_outputs(model, fetch, elem_type=onnx.TensorProto.FLOAT)
    for out, (name, rank) in zip(fetch, links.items(), strict=True):
        add_reduce(probe.graph, "ReduceMax", name, out, [0, *range(2, rank)],
                   opset=onnx_opset(model))
    schedule_probes(probe.graph, first=len(model.graph.node))
    session = create_session(probe, memory_pattern=False)
    del probe
    inputs = {i.name for i in session.get_inputs()}
    maxima: list[np.ndarray] | None = None
    for sample in samples:
        values = session.run(fetch, {k: v for k, v in sample.items() if k in inputs})
        maxima = values if maxima is None else [np.maximum(a, b) for a, b in
                                                zip(maxima, values, strict=True)]
    if maxima is None:
        raise DatasetError("equalization needs samples to bound its ReLU6 pairs; the data set "
                           "has none")
    return dict(zip(links, maxima, strict=True))


def remeasure_ranges(model: onnx.ModelProto, table: CalibrationTable,
                     samples: Iterable[Mapping[str, np.ndarray]], report: EqualizeReport, *,
                     progress: bool = True, memory_budget: MemoryBudget | None = None
                     ) -> tuple[CalibrationTable, EqualizeReport]:
    """The table with the ranges equalization changed measured again on ``model`` (the
    equalized one), with the table's own method and number of samples; every range
    when the function changed (ReLU6 replaced)."""
    if not report.pairs:
        return table, report
    method = table.method if table.method in ("minmax", "percentile", "kl", "mse",
                                              "auto") else "minmax"
    settings = CalibrationSettings(method=method, percentile=table.percentile or 99.99,
                                   bins=table.bins or 2048)
    fresh = collect_ranges(model, samples, settings, num_samples=table.num_samples or None,
                           progress=progress, memory_budget=memory_budget)
    ranges = dict(table.ranges)
    names = list(fresh.ranges) if report.function_changed else \
        [n for n in report.changed if n in fresh.ranges]
    for name in names:
        ranges[name] = fresh.ranges[name]
    updated = CalibrationTable(ranges, table.method, table.num_samples, table.bins,
                               table.percentile, dict(table.skipped))
    return updated, replace(report, remeasured=len(names), samples=fresh.num_samples)


# -- pair math -------------------------------------------------------------------------

def _equalize_pair(pair: _Pair, nodes: list[onnx.NodeProto], weights: dict[int, np.ndarray],
                   biases: dict[int, np.ndarray], bound: np.ndarray | None = None) -> float:
    """Equalize one pair in place; the largest |log s| it applied. ``bound`` (ReLU6
    pairs): the channels' current pre-activation maxima, updated in place."""
    w1, w2 = weights[pair.first], weights[pair.second]
    r1 = _output_ranges(w1)
    r2 = _input_ranges(w2, _group(nodes[pair.second]))
    live = (r1 > _TINY) & (r2 > _TINY)
    scale = np.ones_like(r1)
    scale[live] = np.sqrt(r1[live] / r2[live])
    if bound is not None:
        # A channel that reaches the clip keeps its scale; the others stay below it.
        clipping = bound > pair.clip_max * (1 + 1e-6)
        scale = np.maximum(scale, (bound / pair.clip_max).astype(np.float32))
        scale[clipping] = 1.0
        bound /= scale
    weights[pair.first] = (w1 / scale.reshape(-1, *([1] * (w1.ndim - 1)))).astype(np.float32)
    if pair.first in biases:
        biases[pair.first] = (biases[pair.first] / scale).astype(np.float32)
    weights[pair.second] = _scale_inputs(w2, _group(nodes[pair.second]), scale)
    return float(np.abs(np.log(scale)).max(initial=0.0))


def _output_ranges(w: np.ndarray) -> np.ndarray:
    return np.abs(w.reshape(w.shape[0], -1)).max(axis=1)


def _input_ranges(w: np.ndarray, group: int) -> np.ndarray:
    """Range of the weights that read each input channel: [C_in] for weights
    [C_out, C_in / group, k...] (input channel i = group i // cpg, slot i % cpg)."""
    cout, cpg = w.shape[0], w.shape[1]
    grouped = np.abs(w.reshape(group, cout // group, cpg, -1))
    return grouped.max(axis=(1, 3)).reshape(-1)


def _scale_inputs(w: np.ndarray, group: int, scale: np.ndarray) -> np.ndarray:
    cout, cpg = w.shape[0], w.shape[1]
    grouped = w.reshape(group, cout // group, cpg, -1) * scale.reshape(group, 1, cpg, 1)
    return grouped.reshape(w.shape).astype(np.float32)


def _pair_ratio(pairs: list[_Pair], nodes: list[onnx.NodeProto],
                weights: Mapping[int, np.ndarray]) -> float:
    logs = []
    for pair in pairs:
        r1 = _output_ranges(weights[pair.first])
        r2 = _input_ranges(weights[pair.second], _group(nodes[pair.second]))
        live = (r1 > _TINY) & (r2 > _TINY)
        logs.append(np.abs(np.log(r1[live] / r2[live])))
    if not logs:
        return 1.0
    return float(np.exp(np.concatenate(logs).mean()))


def _fit(arrays: Iterable[np.ndarray]) -> float:
    """Mean over weights of mean(per-output-channel range) / tensor range: 1 when one
    per-tensor scale suits every channel."""
    fits = []
    for w in arrays:
        ranges = _output_ranges(w)
        if ranges.max(initial=0.0) > 0:
            fits.append(float(ranges.mean() / ranges.max()))
    return float(np.mean(fits)) if fits else 1.0


# -- graph -----------------------------------------------------------------------------

def _write(model: onnx.ModelProto, pairs: list[_Pair], nodes: list[onnx.NodeProto],
           weights: Mapping[int, np.ndarray], biases: Mapping[int, np.ndarray], *,
           replace_relu6: bool) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    names = FreshNames.of(out)
    replaced: set[str] = set()

    def add(base: str, array: np.ndarray) -> str:
        replaced.add(base)
        name = names.make(f"{base}_equalized")
        graph.initializer.append(numpy_helper.from_array(array, name))
        return name

    for index, array in weights.items():
        node = graph.node[index]
        node.input[1] = add(node.input[1], array)
        if index in biases:
            node.input[2] = add(node.input[2], biases[index])
    for pair in pairs:
        if replace_relu6 and pair.relu6 and pair.activation is not None:
            clip = graph.node[pair.activation]
            relu = helper.make_node("Relu", [clip.input[0]], list(clip.output), name=clip.name)
            clip.CopyFrom(relu)
    _drop_unused(graph, replaced)
    return out


def _drop_unused(graph: onnx.GraphProto, candidates: set[str]) -> None:
    """Remove the replaced initializers nothing reads any more."""
    used = {name for node in graph.node for name in node.input}
    used |= {value.name for value in [*graph.output, *graph.input]}
    keep = [init for init in graph.initializer if init.name not in candidates or init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def _changed_tensors(model: onnx.ModelProto, pairs: list[_Pair],
                     nodes: list[onnx.NodeProto], *, replace_relu6: bool) -> tuple[str, ...]:
    if replace_relu6 and any(p.relu6 for p in pairs):
        return tuple(o for node in model.graph.node for o in node.output if o)
    names = []
    for pair in pairs:
        names.append(nodes[pair.first].output[0])
        if pair.activation is not None:
            names.append(nodes[pair.activation].output[0])
    return tuple(names)


def _is_conv_with_weights(node: onnx.NodeProto, inits: Mapping[str, onnx.TensorProto]) -> bool:
    return (node.op_type == "Conv" and node.domain in ("", "ai.onnx") and len(node.input) > 1
            and node.input[1] in inits and len(inits[node.input[1]].dims) >= 3
            and (len(node.input) < 3 or not node.input[2] or node.input[2] in inits))


def _group(node: onnx.NodeProto) -> int:
    for attr in node.attribute:
        if attr.name == "group":
            return int(attr.i)
    return 1


def _activation_kind(node: onnx.NodeProto, inits: Mapping[str, onnx.TensorProto]
                     ) -> str | None:
    """'homogeneous' (f(x/s) = f(x)/s for s > 0), 'relu6' (Clip(0, c), c finite) or None."""
    if node.domain not in ("", "ai.onnx"):
        return None
    if node.op_type in _HOMOGENEOUS:
        return "homogeneous"
    if node.op_type != "Clip":
        return None
    low, high = _clip_bounds(node, inits)
    if low is None or low != 0.0:
        return None
    return "homogeneous" if high is None or np.isinf(high) else "relu6"


def _clip_bounds(node: onnx.NodeProto, inits: Mapping[str, onnx.TensorProto]
                 ) -> tuple[float | None, float | None]:
    """Clip's (min, max); min None when it is not a known constant, max None when absent."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if "min" in attrs or "max" in attrs:  # opset < 11
        return float(attrs.get("min", -np.inf)), float(attrs["max"]) if "max" in attrs else None

    def constant(position: int) -> float | None:
        name = node.input[position] if len(node.input) > position else ""
        if not name:
            return None
        if name not in inits:
            return np.nan
        return float(numpy_helper.to_array(inits[name]))

    low, high = constant(1), constant(2)
    if low is None or (high is not None and np.isnan(high)) or np.isnan(low):
        return None, None
    return low, high
