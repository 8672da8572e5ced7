"""SmoothQuant (Xiao et al. 2023): move activation outliers into the weights before INT8.

    groups = find_groups(model)                       # MatMuls grouped by the input they read
    maxima = channel_maxima(model, groups, samples)   # {tensor: max|X_j| per channel}, one pass
    smoothed = smooth(model, groups, maxima, alpha=0.5)
    smoothed.model, smoothed.changed                  # same function in float; tensors that moved
    table = recalibrate(table, smoothed, samples)     # the changed tensors re-measured
    outcome = smooth_for_int8(model, table, samples, "auto", QuantizeSettings())
    outcome.summary()   # "SmoothQuant: α=0.5, 36 MatMuls, max activation range 49.4 → 6.1, ..."

For each linear layer Y = X·W (W constant, ``[K, N]``) and each input channel j,
s_j = max|X_j|^α / max|W_j|^(1−α); X ← X/s and W ← diag(s)·W leave Y unchanged in
float, while the activation, whose outliers sit in a few channels, gets a much
smaller per-tensor range and the weight (quantized per output column) absorbs the
difference. MatMuls that read the same X (Q, K and V) share one s, computed from
their concatenated weights.

Where X/s goes, in order of preference (each keeps the graph free of new ops):

1. into the LayerNormalization that produces X (γ/s, β/s), when only the group reads X;
2. into the MatMul (+ bias Add) with a constant weight that produces X (its columns);
3. through attention into the value projection: X = merge_heads(P·split_heads(V·Wv + b))
   keeps channel c of V as channel c of X, so Wv's columns and b take 1/s;
4. otherwise a Mul by 1/s is inserted before the group (BERT's post-LN residual
   reads the LayerNorm output too, and the FFN's second MatMul reads GELU's output).

The per-channel maxima take ONE ONNX Runtime pass: every group's input is exposed
through Reshape([-1, K]) → Abs → ReduceMax(axis 0) inside the session, so only K
floats per tensor leave it. After smoothing, the tensors between the fold point and
the MatMuls (``SmoothResult.changed``) have new ranges: ``recalibrate`` re-measures
exactly those with the table's method, on the same samples, and keeps every other
range of the table. ``smooth_for_int8(..., "auto")`` tries α in 0.3…0.8 and keeps the
one whose INT8 model has the best output SQNR against float on the first samples; in
a model with an attention mask input (lowbit.quantize.int8.scope.attention_mask_input)
padded positions are left out of that score, since nothing downstream reads them (on
MiniLM they would otherwise decide the choice: their outputs are 12 dB noisier).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lowbit.calibration.channel_ranges import linear_inputs, linear_weight_layout
from lowbit.calibration.collect import collect_ranges
from lowbit.calibration.observers import CalibrationSettings, TensorRange
from lowbit.calibration.table import CalibrationTable
from lowbit.errors import ArgumentError, CalibrationError, DatasetError, ModelError, UsageError
from lowbit.graph import (
    FreshNames,
    add_reduce,
    infer_shapes_light,
    onnx_opset,
    schedule_probes,
    with_outputs,
)
from lowbit.io.model import input_specs
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.runtime.memory import MemoryBudget, choose_batch
from lowbit.runtime.ort import create_session

log = logging.getLogger(__name__)

ALPHAS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
SMOOTH_SAMPLES = 128  # samples deploy --smooth measures maxima and re-calibrates on
SEARCH_SAMPLES = 32   # samples scoring each α of the auto search
_SCALE_LIMITS = (1e-4, 1e4)
Sample = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class SmoothGroup:
    """Linear layers reading one activation: their nodes, and where 1/s went."""

    tensor: str
    matmuls: tuple[str, ...]
    fold: str = ""  # "LayerNormalization <name>", "MatMul <name>", "value <name>", "Mul <name>"


@dataclass(frozen=True)
class SmoothResult:
    model: onnx.ModelProto
    alpha: float
    groups: tuple[SmoothGroup, ...]
    changed: frozenset[str]           # tensors whose values differ from the original's
    range_before: float               # max over groups of max|X|
    range_after: float                # the same after smoothing
    scales: Mapping[str, np.ndarray] = field(default_factory=dict)  # group tensor → s

    @property
    def num_matmuls(self) -> int:
        return sum(len(g.matmuls) for g in self.groups)

    def summary(self) -> str:
        kinds: dict[str, int] = {}
        for group in self.groups:
            kind = group.fold.split(" ", 1)[0]
            kinds[kind] = kinds.get(kind, 0) + 1
        where = ", ".join(f"{n} into {_FOLD_WORDS.get(k, k)}" for k, n in sorted(kinds.items()))
        return (f"SmoothQuant: α={self.alpha:g}, {self.num_matmuls} MatMuls in "
                f"{len(self.groups)} groups, max activation range before/after: "
                f"{self.range_before:.4g} → {self.range_after:.4g}; 1/s folded {where}")


_FOLD_WORDS = {"LayerNormalization": "LayerNorm γ/β", "MatMul": "the producing MatMul",
               "value": "the attention value projection", "Mul": "an inserted Mul"}


@dataclass(frozen=True)
class SmoothOutcome:
    """What deploy --smooth did: the smoothed model, its table, and the α search."""

    result: SmoothResult
    table: CalibrationTable | None
    scores: Mapping[float, float] = field(default_factory=dict)  # α → output SQNR dB

    def summary(self) -> str:
        text = self.result.summary()
        if len(self.scores) > 1:
            tried = ", ".join(f"{a:g}: {s:.2f} dB" for a, s in sorted(self.scores.items()))
            text += f"; auto chose α by output SQNR vs float ({tried})"
        return text


def find_groups(model: onnx.ModelProto) -> list[SmoothGroup]:
    """MatMul/Gemm nodes with a constant 2-D weight and a run-time float input, grouped by
    that input (in graph order)."""
    initializers = {i.name: i for i in model.graph.initializer}
    groups: dict[str, list[str]] = {}
    for node in model.graph.node:
        if not linear_weight_layout(node, initializers) or not node.name:
            continue
        groups.setdefault(node.input[0], []).append(node.name)
    return [SmoothGroup(tensor, tuple(names)) for tensor, names in groups.items()]


def channel_maxima(model: onnx.ModelProto, groups: Sequence[SmoothGroup],
                   samples: Iterable[Sample], *, threads: int | None = None,
                   max_batch: int = 8, memory_budget: MemoryBudget | None = None
                   ) -> dict[str, np.ndarray]:
    """max|X_j| over all samples and all positions, per channel j of each group's input;
    up to ``max_batch`` samples per run, as many as ``memory_budget`` allows."""
    initializers = {i.name: i for i in model.graph.initializer}
    nodes = {n.name: n for n in model.graph.node}
    fetch = {group.tensor: f"lowbit_smooth_{index}_max" for index, group in enumerate(groups)}
    probe = with_outputs(model, list(fetch.values()), elem_type=TensorProto.FLOAT)
    opset = onnx_opset(model)
    for index, group in enumerate(groups):
        node = nodes[group.matmuls[0]]
        weight = numpy_helper.to_array(initializers[node.input[1]])
        k = weight.shape[1] if linear_weight_layout(node, initializers) == "nk" else weight.shape[0]
        tag = f"lowbit_smooth_{index}"
        shape = numpy_helper.from_array(np.array([-1, k], np.int64), f"{tag}_shape")
        probe.graph.initializer.append(shape)
        probe.graph.node.extend([
            helper.make_node("Reshape", [group.tensor, shape.name], [f"{tag}_flat"]),
            helper.make_node("Abs", [f"{tag}_flat"], [f"{tag}_abs"])])
        add_reduce(probe.graph, "ReduceMax", f"{tag}_abs", fetch[group.tensor], [0],
                   opset=opset)
    schedule_probes(probe.graph, first=len(model.graph.node))
    session = create_session(probe.SerializeToString(), threads=threads, memory_pattern=False)
    stream = iter(samples)
    first = next(stream, None)
    if first is None:
        raise DatasetError("the smoothing data set has no samples")
    size = choose_batch(probe, first, memory_budget or MemoryBudget.default(), most=max_batch)
    del probe
    names = list(fetch.values())
    maxima: dict[str, np.ndarray] = {}
    count = 0
    for feeds in _batches(model, itertools.chain([first], stream), size):
        try:
            values = session.run(names, feeds)
        except Exception as err:  # ORT raises several unrelated exception types
            raise ModelError(f"measuring channel maxima failed: "
                             f"{str(err).strip().splitlines()[0]}") from err
        for tensor, value in zip(fetch, values, strict=True):
            maxima[tensor] = value if tensor not in maxima else np.maximum(maxima[tensor], value)
        count += 1
    if count == 0:
        raise DatasetError("the smoothing data set has no samples")
    return maxima


def _batches(model: onnx.ModelProto, samples: Iterable[Sample], size: int
             ) -> Iterator[dict[str, np.ndarray]]:
    """Feeds of up to ``size`` samples concatenated on axis 0 when every input's first axis
    is dynamic, else one sample per feed."""
    specs = input_specs(model)
    batching = all(len(s.shape) > 0 and not isinstance(s.shape[0], int) for s in specs)
    group: list[dict[str, np.ndarray]] = []
    for sample in samples:
        feeds = {s.name: np.asarray(sample[s.name]).astype(s.dtype, copy=False) for s in specs
                 if s.name in sample}
        if len(feeds) != len(specs):
            missing = [s.name for s in specs if s.name not in sample]
            raise DatasetError(f"a smoothing sample lacks input(s) {', '.join(missing)}")
        if not batching:
            yield feeds
            continue
        group.append(feeds)
        if len(group) == size:
            yield {k: np.concatenate([g[k] for g in group]) for k in group[0]}
            group = []
    if group:
        yield {k: np.concatenate([g[k] for g in group]) for k in group[0]}


def smooth(model: onnx.ModelProto, groups: Sequence[SmoothGroup],
           maxima: Mapping[str, np.ndarray], alpha: float) -> SmoothResult:
    """A copy of ``model`` with every group smoothed at ``alpha`` (function unchanged)."""
    if not 0.0 <= alpha <= 1.0:
        raise UsageError(f"SmoothQuant α must lie in [0, 1], got {alpha:g}")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    editor = _Editor(out)
    done: list[SmoothGroup] = []
    scales: dict[str, np.ndarray] = {}
    changed: set[str] = set()
    before = after = 0.0
    for group in groups:
        act = np.asarray(maxima.get(group.tensor), np.float64)
        if act.ndim != 1 or not act.size:
            continue
        weights = [editor.weight_rows(name) for name in group.matmuls]
        w_max = np.max(np.stack([np.abs(w).max(axis=1) for w in weights]), axis=0)
        scale = _smoothing_scale(act, w_max, alpha)
        for name in group.matmuls:
            editor.scale_weight_rows(name, scale)
        fold, moved = editor.fold_inverse(group, 1.0 / scale)
        changed |= moved
        before = max(before, float(act.max()))
        after = max(after, float((act / scale).max()))
        done.append(SmoothGroup(group.tensor, group.matmuls, fold))
        scales[group.tensor] = scale
    editor.finish()
    return SmoothResult(out, alpha, tuple(done), frozenset(changed), before, after, scales)


def _smoothing_scale(act: np.ndarray, w_max: np.ndarray, alpha: float) -> np.ndarray:
    """s_j = max|X_j|^α / max|W_j|^(1−α), 1 where either side is zero, clipped to a sane
    range so a dead channel cannot blow a weight row up."""
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.power(act, alpha) / np.power(w_max, 1.0 - alpha)
    scale = np.where((act > 0) & (w_max > 0) & np.isfinite(scale), scale, 1.0)
    return np.clip(scale, *_SCALE_LIMITS).astype(np.float32)


class _Editor:
    """In-place edits of a model proto: weight rows, folds, inserted Muls."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.graph = model.graph
        self.init = {i.name: i for i in self.graph.initializer}
        self.nodes = {n.name: n for n in self.graph.node if n.name}
        self.producer = {o: n for n in self.graph.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.outputs = {o.name for o in self.graph.output}
        self.names = FreshNames.of(model)
        self.shapes = _inferred_shapes(model)
        self.inserted: list[tuple[onnx.NodeProto, str]] = []  # (Mul, tensor it follows)

    # -- weights -----------------------------------------------------------------------

    def _layout(self, name: str) -> str:
        layout = linear_weight_layout(self.nodes[name], self.init)
        assert layout is not None
        return layout

    def weight_rows(self, name: str) -> np.ndarray:
        """The weight as [K, N] (input channels first)."""
        array = numpy_helper.to_array(self.init[self.nodes[name].input[1]])
        return array.T if self._layout(name) == "nk" else array

    def scale_weight_rows(self, name: str, scale: np.ndarray) -> None:
        node = self.nodes[name]
        rows = self.weight_rows(name) * scale[:, None]
        array = rows.T if self._layout(name) == "nk" else rows
        node.input[1] = self._new_initializer(f"{node.input[1]}_smoothed", array)

    def _scale_columns(self, node: onnx.NodeProto, index: int, factor: np.ndarray) -> None:
        """Multiply the last axis of a constant operand (a weight's columns, a bias)."""
        array = numpy_helper.to_array(self.init[node.input[index]]).astype(np.float32)
        node.input[index] = self._new_initializer(f"{node.input[index]}_smoothed",
                                                  array * factor)

    def _new_initializer(self, name: str, array: np.ndarray) -> str:
        unique = self.names.make(name)
        tensor = numpy_helper.from_array(np.asarray(array, np.float32), unique)
        self.graph.initializer.append(tensor)
        self.init[unique] = tensor
        return unique

    # -- folds -------------------------------------------------------------------------

    def fold_inverse(self, group: SmoothGroup, inverse: np.ndarray) -> tuple[str, set[str]]:
        """Apply X ← X·inverse (per channel) where it costs nothing, else insert a Mul;
        returns the fold's description and the tensors whose values changed."""
        x = group.tensor
        readers = {n.name for n in self.consumers.get(x, [])}
        only_group = readers <= set(group.matmuls) and x not in self.outputs
        producer = self.producer.get(x)
        if only_group and producer is not None:
            if producer.op_type == "LayerNormalization" and self._fold_layernorm(producer,
                                                                                 inverse):
                return f"LayerNormalization {producer.name}", {x}
            linear = self._fold_linear(producer, inverse)
            if linear is not None:
                return f"MatMul {linear[0]}", linear[1]
            value = self._fold_value(x, inverse)
            if value is not None:
                return f"value {value[0]}", value[1]
        return self._insert_mul(group, inverse)

    def _fold_layernorm(self, node: onnx.NodeProto, inverse: np.ndarray) -> bool:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        rank = len(self.shapes.get(node.input[0], ()) or ())
        axis = attrs.get("axis", -1)
        if not (axis == -1 or (rank and axis == rank - 1)):
            return False
        if any(name not in self.init for name in node.input[1:3] if name):
            return False
        self._scale_columns(node, 1, inverse)
        if len(node.input) > 2 and node.input[2]:
            self._scale_columns(node, 2, inverse)
        return True

    def _fold_linear(self, node: onnx.NodeProto, inverse: np.ndarray
                     ) -> tuple[str, set[str]] | None:
        """X = MatMul(Z, W) or X = Add(MatMul(Z, W), b): divide W's columns (and b)."""
        changed = {node.output[0]}
        bias_node, bias_index = None, -1
        if node.op_type == "Add":
            consts = [i for i, name in enumerate(node.input) if name in self.init]
            others = [name for name in node.input if name not in self.init]
            if len(consts) != 1 or len(others) != 1:
                return None
            bias_node, bias_index = node, consts[0]
            inner = self.producer.get(others[0])
            if inner is None or len(self.consumers.get(others[0], [])) != 1 \
                    or others[0] in self.outputs:
                return None
            changed.add(others[0])
            node = inner
        if node.op_type != "MatMul" or linear_weight_layout(node, self.init) != "kn":
            return None
        bias = numpy_helper.to_array(self.init[bias_node.input[bias_index]]) \
            if bias_node is not None else None
        if bias is not None and bias.shape[-1:] != inverse.shape:
            return None
        self._scale_columns(node, 1, inverse)
        if bias_node is not None:
            self._scale_columns(bias_node, bias_index, inverse)
        return node.name, changed

    def _fold_value(self, x: str, inverse: np.ndarray) -> tuple[str, set[str]] | None:
        """X = Reshape(Transpose(MatMul(P, Transpose(Reshape(V)))) with head split/merge
        transposes [0, 2, 1, 3]: channel c of V is channel c of X, so V's producer takes
        1/s (V = MatMul(h, Wv) [+ b])."""
        chain = []
        name = x
        for op in ("Reshape", "Transpose", "MatMul", "Transpose", "Reshape"):
            node = self.producer.get(name)
            if node is None or node.op_type != op:
                return None
            if op == "Transpose" and _attr(node, "perm") != [0, 2, 1, 3]:
                return None
            chain.append(node)
            name = node.input[1] if op == "MatMul" else node.input[0]
            if name in self.outputs or len(self.consumers.get(name, [])) != 1:
                return None
        split = self.shapes.get(chain[-1].output[0]) or ()
        head_dim = split[-1] if len(split) == 4 else None
        if not isinstance(head_dim, int) or inverse.size % head_dim:
            return None
        source = self.producer.get(name)
        if source is None:
            return None
        folded = self._fold_linear(source, inverse)
        if folded is None:
            return None
        moved = {n.output[0] for n in chain} | folded[1] | {name}
        return folded[0], moved

    def _insert_mul(self, group: SmoothGroup, inverse: np.ndarray) -> tuple[str, set[str]]:
        x = group.tensor
        factor = self._new_initializer(f"{x}_smooth_inverse", inverse)
        out = self.names.make(f"{x}_smoothed")
        mul = helper.make_node("Mul", [x, factor], [out], name=self.names.make(
            f"{x}_SmoothMul"))
        for name in group.matmuls:
            self.nodes[name].input[0] = out
        self.inserted.append((mul, x))
        return f"Mul {mul.name}", {out}

    def finish(self) -> None:
        """Put each inserted Mul right after the producer of the tensor it reads."""
        for mul, x in self.inserted:
            producer = self.producer.get(x)
            nodes = list(self.graph.node)
            position = nodes.index(producer) + 1 if producer is not None else 0
            self.graph.node.insert(position, mul)
        used = {name for node in self.graph.node for name in node.input}
        keep = [i for i in self.graph.initializer if i.name in used]
        del self.graph.initializer[:]
        self.graph.initializer.extend(keep)


def _attr(node: onnx.NodeProto, name: str) -> object:
    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return None


def _inferred_shapes(model: onnx.ModelProto) -> dict[str, tuple[int | None, ...]]:
    try:
        graph = infer_shapes_light(model).graph
    except Exception:  # noqa: BLE001 - shapes only sharpen the fold checks
        graph = model.graph
    shapes = {}
    for value in [*graph.value_info, *graph.input, *graph.output]:
        if not value.type.HasField("tensor_type") or \
                not value.type.tensor_type.HasField("shape"):
            continue
        shapes[value.name] = tuple(d.dim_value if d.HasField("dim_value") else None
                                   for d in value.type.tensor_type.shape.dim)
    return shapes


# -- the deploy flow ------------------------------------------------------------------


def recalibrate(table: CalibrationTable, smoothed: SmoothResult, samples: Iterable[Sample],
                *, threads: int | None = None, memory_budget: MemoryBudget | None = None
                ) -> CalibrationTable:
    """The table with every tensor in ``smoothed.changed`` re-measured on ``samples`` by the
    table's own method; the other ranges are kept as they were."""
    settings = CalibrationSettings(method=table.method, bins=table.bins or 2048,
                                   percentile=table.percentile or 99.99)
    fresh = collect_ranges(smoothed.model, samples, settings, progress=False, threads=threads,
                           memory_budget=memory_budget)
    ranges = {k: v for k, v in table.ranges.items() if k not in smoothed.changed}
    skipped = {k: v for k, v in table.skipped.items() if k not in smoothed.changed}
    for name in smoothed.changed:
        if name in fresh.ranges:
            ranges[name] = fresh.ranges[name]
        elif name in fresh.skipped:
            skipped[name] = fresh.skipped[name]
    return CalibrationTable(ranges, table.method, table.num_samples, table.bins,
                            table.percentile, skipped)


DEFAULT_ALPHA = 0.8  # deploy's default for transformers (bench/minilm_int8.py)


def smooth_from_table(model: onnx.ModelProto, table: CalibrationTable, alpha: float, *,
                      smoothed: SmoothResult | None = None
                      ) -> tuple[SmoothResult, CalibrationTable] | None:
    """Smooth ``model`` at ``alpha`` with the per-channel ranges ``lowbit calibrate`` keeps in
    the table (no data): the maxima are max(|min_j|, |max_j|), and each smoothed MatMul
    input's range is derived exactly, min(X/s) = min_j(min_j / s_j) and max likewise.
    Other tensors smoothing changes (a value projection's output, the attention chain
    after it) have no such derivation: their ranges leave the table and they stay float,
    with that reason. None when the table has no channel range for any group.

    The smoothed model depends on the channel ranges and ``alpha`` only, not on the
    table's thresholds: ``smoothed``, this call's result for a table with the same
    channel ranges, is reused instead of smoothing again."""
    groups = [g for g in find_groups(model) if g.tensor in table.channel_ranges]
    if not groups:
        return None
    channels = linear_inputs(model)
    for group in groups:
        found = table.channel_ranges[group.tensor][0].size
        if found != channels[group.tensor]:
            raise CalibrationError(
                f"the calibration table's channel ranges of {group.tensor!r} have {found} "
                f"channels, but the model's {group.matmuls[0]} reads "
                f"{channels[group.tensor]}: the table was made for another model; re-run "
                "lowbit calibrate")
    maxima = {g.tensor: np.maximum(np.abs(table.channel_ranges[g.tensor][0]),
                                   np.abs(table.channel_ranges[g.tensor][1]))
              for g in groups}
    result = smoothed if smoothed is not None else smooth(model, groups, maxima, alpha)
    nodes = {n.name: n for n in result.model.graph.node}
    ranges = dict(table.ranges)
    skipped = dict(table.skipped)
    kept_channels = dict(table.channel_ranges)
    derived: set[str] = set()
    for group in result.groups:
        scale = result.scales[group.tensor].astype(np.float64)
        low, high = table.channel_ranges[group.tensor]
        low, high = low / scale, high / scale
        tensor = nodes[group.matmuls[0]].input[0]  # X itself, or the inserted Mul's output
        rmin, rmax = float(low.min()), float(high.max())
        ranges[tensor] = TensorRange(max(abs(rmin), abs(rmax)), rmin, rmax)
        kept_channels.pop(group.tensor, None)
        kept_channels[tensor] = (low, high)
        derived.add(tensor)
    for name in result.changed - derived:
        kept_channels.pop(name, None)
        if ranges.pop(name, None) is not None:
            skipped[name] = ("changed by SmoothQuant and not derivable from the table's channel "
                             "ranges: give smooth data (deploy --smooth-data) to re-measure it")
    return result, replace(table, ranges=ranges, skipped=skipped, channel_ranges=kept_channels,
                           input_means=dict(table.input_means), notes=list(table.notes))


def parse_alpha(value: str | float) -> float | None:
    """``"auto"`` → None (search), else α as a float in [0, 1]."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    try:
        alpha = float(value)
    except ValueError:
        raise ArgumentError(f"{{smooth}} takes a number in [0, 1] or 'auto', got "
                            f"{value!r}") from None
    if not 0.0 <= alpha <= 1.0 or math.isnan(alpha):
        raise ArgumentError(f"{{smooth}} α must lie in [0, 1], got {value}")
    return alpha


def smooth_for_int8(model: onnx.ModelProto, table: CalibrationTable | None,
                    samples: Sequence[Sample], alpha: str | float,
                    settings: QuantizeSettings, *, dynamic: bool = False,
                    threads: int | None = None, alphas: Sequence[float] = ALPHAS,
                    memory_budget: MemoryBudget | None = None) -> SmoothOutcome:
    """Smooth ``model`` at ``alpha`` (or the best of ``alphas`` for "auto") and return it with
    ``table`` re-measured for the tensors smoothing changed (no table for ``dynamic``
    INT8, which calibrates nothing). The auto search scores each α on the first
    SEARCH_SAMPLES samples (re-calibrated on those too); the winner is re-calibrated on
    all of ``samples``."""
    chosen = parse_alpha(alpha)
    if not samples:
        raise DatasetError("the smoothing data set has no samples")
    groups = find_groups(model)
    if not groups:
        raise ArgumentError("{smooth} found no MatMul/Gemm with a constant 2-D weight to smooth")
    maxima = channel_maxima(model, groups, samples, threads=threads,
                            memory_budget=memory_budget)
    if chosen is None:
        search = list(samples[:SEARCH_SAMPLES])
        reference = _run(model, search, threads, memory_budget)
        keep = _real_positions(model, search)
        scores: dict[float, float] = {}
        for candidate in alphas:
            trial = smooth(model, groups, maxima, candidate)
            trial_table = None if table is None else recalibrate(
                table, trial, search, threads=threads, memory_budget=memory_budget)
            quantized = _quantize(trial.model, trial_table, settings, dynamic)
            scores[candidate] = _sqnr(reference, _run(quantized, search, threads, memory_budget),
                                      keep)
            log.info("SmoothQuant α=%g: output SQNR %.2f dB", candidate, scores[candidate])
        chosen = max(scores, key=lambda a: scores[a])
    else:
        scores = {}
    result = smooth(model, groups, maxima, chosen)
    new_table = None if table is None else recalibrate(table, result, samples, threads=threads,
                                                       memory_budget=memory_budget)
    return SmoothOutcome(result, new_table, scores)


def _quantize(model: onnx.ModelProto, table: CalibrationTable | None,
              settings: QuantizeSettings, dynamic: bool) -> onnx.ModelProto:
    # Imported here: both import lowbit.quantize.int8.qdq, which this module need not load.
    from lowbit.quantize.int8.dynamic import quantize_dynamic
    from lowbit.quantize.int8.static import quantize_int8

    if dynamic or table is None:
        return quantize_dynamic(model, settings).model
    return quantize_int8(model, table.ranges, settings, skipped=table.skipped)[0].model


def _real_positions(model: onnx.ModelProto, samples: Sequence[Sample]) -> np.ndarray | None:
    """The attention mask of ``samples`` ([N, S] booleans) when the model has one: padded
    positions' outputs are not used downstream, so the α search does not score them."""
    from lowbit.quantize.int8.scope import attention_mask_input

    name = attention_mask_input(model)
    if name is None or any(name not in s for s in samples):
        return None
    mask = np.concatenate([np.asarray(s[name]) for s in samples])
    return mask.astype(bool) if mask.ndim == 2 else None


def _sqnr(reference: Sequence[np.ndarray], actual: Sequence[np.ndarray],
          keep: np.ndarray | None = None) -> float:
    """Output SQNR (dB) summed over outputs; an output shaped [N, S, …] like ``keep`` counts
    only the kept (unpadded) positions."""
    signal = noise = 0.0
    for ref, act in zip(reference, actual, strict=True):
        ref, act = ref.astype(np.float64), act.astype(np.float64)
        if keep is not None and ref.shape[:2] == keep.shape:
            ref, act = ref[keep], act[keep]
        signal += float(np.sum(np.square(ref)))
        noise += float(np.sum(np.square(ref - act)))
    return 10.0 * math.log10(signal / noise) if noise > 0 else float("inf")


def _run(model: onnx.ModelProto, samples: Sequence[Sample], threads: int | None,
         memory_budget: MemoryBudget | None = None) -> list[np.ndarray]:
    """Every output, concatenated over the samples (outputs in graph order), up to 8
    samples per run as ``memory_budget`` allows."""
    session = create_session(model.SerializeToString(), threads=threads, memory_pattern=False)
    names = [o.name for o in session.get_outputs()]
    collected: list[list[np.ndarray]] = [[] for _ in names]
    size = choose_batch(model, samples[0], memory_budget or MemoryBudget.default()) \
        if samples else 1
    for feeds in _batches(model, samples, size):
        for index, value in enumerate(session.run(names, feeds)):
            collected[index].append(value)
    return [np.concatenate(parts) for parts in collected]
