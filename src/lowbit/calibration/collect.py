"""Run a model over a data set and observe the range of every activation tensor.

    model = load_model("model.f32.onnx")
    settings = CalibrationSettings(method="percentile", percentile=99.99)
    table = collect_ranges(model, samples, settings, num_samples=200)
    write_table(table, "model.calib")

    run = CalibrationRun(model, settings)            # the same, in parts (lowbit.parallel)
    state = run.observe(part_one)                    # CalibrationState: small, picklable
    state.merge(run.observe(part_two))               # exact: as if one run saw both
    table = finish_table(state)

`samples` is any iterable of ``{input_name: array}`` dicts, one sample each
(batch-1 slices for models with a batch axis). Every float tensor an activation
can be (the graph's float inputs and every float output of a main-graph node
not computed from initializers and constants alone) is added as an extra
output of a copy of the model; one ONNX Runtime session streams the samples
and each tensor's observer sees each value once, so memory depends on the
number of tensors and bins, never on the number of samples.

When every model input has a dynamic first axis, up to `max_batch` samples
are concatenated along axis 0 per run (this assumes samples are independent
along that axis, as a batch axis is), as many as the memory budget allows at the
data's shape (lowbit.runtime.memory: bytes per sample from shape inference, else
measured on a first run of one sample), so memory does not grow with the input
size either; a model that fails to run batched falls back to one sample per run.
The probes are ordered so that ONNX Runtime runs each right after the tensor it
reads (lowbit.graph.schedule_probes): a tensor is freed as in plain inference.
Batching does not change the table, nor does splitting the samples into parts whose
states are merged (:meth:`CalibrationState.merge`): min/max merge exactly, the histogram
observers merge exactly (lowbit.calibration.observers), and the values a histogram
method sees are chosen per sample (every stride-th value of each sample's tensor, the
stride an integer that is also the values' weight), whatever batch the sample ran in.
Only the input means are float sums, equal to rounding. The model's own outputs can be
fetched on the first samples as well (lowbit.calibration.float_outputs), for auto's output
check to score against without running the float model again.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from lowbit.calibration.channel_ranges import ChannelExtremes, linear_inputs
from lowbit.calibration.derived import derived_ranges
from lowbit.calibration.float_outputs import FloatOutputs
from lowbit.calibration.input_means import (
    MeanInputOp,
    mean_input_ops,
    means_from_tap_sums,
    tap_sum_probe,
)
from lowbit.calibration.observers import (
    CalibrationSettings,
    Observer,
    TensorRange,
    make_observer,
)
from lowbit.calibration.table import CalibrationTable
from lowbit.errors import DatasetError, ModelError, UsageError
from lowbit.graph import infer_shapes_light, onnx_opset, schedule_probes, weightless
from lowbit.io.model import input_specs
from lowbit.progress import progress_bar
from lowbit.runtime.memory import MemoryBudget, format_size, rss_growth, sample_cost
from lowbit.runtime.ort import create_session
from lowbit.spec import TensorSpec

log = logging.getLogger(__name__)

_FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE}
_NO_INPUT_DYNAMIC_OPS = {"RandomNormal", "RandomUniform"}
# Histogram methods see about this many values of each tensor per sample; min and max
# are exact whatever the size.
SUBSAMPLE_PER_SAMPLE = 1 << 13
_ROWS_INPUT = "lowbit_subsample_rows"  # samples in the run: the subsample is taken per sample

Sample = Mapping[str, np.ndarray]
Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class ActivationTensors:
    """The tensors to observe: graph inputs (fed), node outputs (fetched), and ones left out."""

    inputs: list[str]
    outputs: dict[str, int]  # name -> ONNX elem type
    skipped: dict[str, str]


def collect_ranges(
    model: onnx.ModelProto,
    samples: Iterable[Sample],
    settings: CalibrationSettings,
    *,
    num_samples: int | None = None,
    progress: bool = True,
    threads: int | None = None,
    max_batch: int = 8,
    memory_budget: MemoryBudget | None = None,
    skip_derived: bool = True,
    input_means: bool = False,
    channel_ranges: bool = False,
    float_outputs: FloatOutputs | None = None,
) -> CalibrationTable:
    """Stream samples through the model and return the calibration table of its activations.

    With ``input_means`` the table also holds each Conv/Gemm's mean input taps
    (lowbit.calibration.input_means), from which deploy corrects biases without data;
    with ``channel_ranges`` the per-channel min/max of every MatMul/Gemm input
    (lowbit.calibration.channel_ranges), from which deploy smooths without data.
    ``float_outputs`` keeps the model's outputs on the first samples as the runs fetch
    them (lowbit.calibration.float_outputs: auto's output check scores against them).
    Runs batch up to ``max_batch`` samples, as many as ``memory_budget`` (default:
    :meth:`MemoryBudget.default`) allows at the data's shape (lowbit.runtime.memory)."""
    run = CalibrationRun(model, settings, threads=threads, max_batch=max_batch,
                         memory_budget=memory_budget, skip_derived=skip_derived,
                         input_means=input_means, channel_ranges=channel_ranges)
    stream = samples if num_samples is None else itertools.islice(samples, num_samples)
    with progress_bar("calibrating", progress, _total(samples, num_samples)) as advance:
        state = run.observe(stream, source=getattr(samples, "source", None), advance=advance,
                            float_outputs=float_outputs)
    return finish_table(state, progress=progress)


@dataclass
class TapSums:
    """The input means' partial state: per Conv/Gemm op, its tap sums over the runs seen."""

    ops: dict[str, MeanInputOp]
    averaged: dict[str, bool]  # the probe sums per-sample means (1x1 convs)
    sums: dict[str, np.ndarray] = field(default_factory=dict)
    spatial: dict[str, tuple[int, ...]] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)  # ops whose input size changed

    def add(self, name: str, value: np.ndarray, spatial: tuple[int, ...]) -> None:
        total = self.sums.get(name)
        if total is None:
            self.sums[name] = value
            self.spatial[name] = spatial
        elif total.shape == value.shape and self.spatial[name] == spatial:
            self.sums[name] = total + value  # not in place: an unpickled array is read-only
        else:
            self.broken.add(name)

    def merge(self, other: TapSums) -> None:
        self.broken |= other.broken
        for name, value in other.sums.items():
            self.add(name, value.copy(), other.spatial[name])

    def result(self, count: int) -> dict[str, np.ndarray]:
        found = {}
        for name, op in self.ops.items():
            total = self.sums.get(name)
            if total is None or name in self.broken or not np.isfinite(total).all():
                continue
            if op.op_type == "Conv" and len(self.spatial[name]) != len(op.kernel):
                continue
            found[name] = means_from_tap_sums(op, total, self.spatial[name], count,
                                              averaged=self.averaged[name])
        return found


@dataclass
class CalibrationState:
    """What calibration saw of some samples: small (tensors x bins), picklable, and
    mergeable: ``a.merge(b)`` is the state of a run that saw a's samples and b's."""

    settings: CalibrationSettings
    observers: dict[str, Observer]
    skipped: dict[str, str]
    means: TapSums
    extremes: ChannelExtremes
    count: int = 0

    def merge(self, other: CalibrationState) -> CalibrationState:
        """Add ``other``'s samples (same model and settings) to this state; returns it."""
        if other.settings != self.settings or other.observers.keys() != self.observers.keys():
            raise UsageError("cannot merge calibration states of different models or settings")
        for name, observer in self.observers.items():
            observer.merge(other.observers[name])
        self.means.merge(other.means)
        self.extremes.merge(other.extremes)
        self.count += other.count
        return self


def finish_table(state: CalibrationState, *, progress: bool = False) -> CalibrationTable:
    """The calibration table of everything ``state`` saw. Choosing a histogram method's
    thresholds searches each tensor's histogram (seconds on a transformer's hundreds of
    tensors), so it has its own bar."""
    if state.count == 0:
        raise DatasetError("data set has no samples")
    with progress_bar("choosing thresholds", progress and state.settings.method != "minmax",
                      len(state.observers)) as advance:
        table = _table(state.observers, state.skipped, state.settings, state.count, advance)
    table.input_means = state.means.result(state.count)
    table.channel_ranges = state.extremes.result()
    return table


class CalibrationRun:
    """One ONNX Runtime session over the model with its summaries added: observes samples
    into fresh :class:`CalibrationState` objects (keywords as for :func:`collect_ranges`)."""

    def __init__(self, model: onnx.ModelProto, settings: CalibrationSettings, *,
                 threads: int | None = None, max_batch: int = 8,
                 memory_budget: MemoryBudget | None = None, skip_derived: bool = True,
                 input_means: bool = False, channel_ranges: bool = False) -> None:
        if max_batch < 1:
            raise UsageError(f"max_batch must be at least 1, got {max_batch}")
        self.settings = settings
        self.specs = input_specs(model)
        self.tensors = find_activation_tensors(model, skip_derived=skip_derived)
        self.with_values = make_observer(settings).needs_values
        summary_model, self.summaries = _summary_model(model, self.tensors.outputs,
                                                       with_values=self.with_values)
        self.means = _MeanSums(mean_input_ops(model) if input_means else {}, onnx_opset(model))
        summary_model = self.means.extend(summary_model)
        self.extremes = ChannelExtremes(model, linear_inputs(model) if channel_ranges else {})
        summary_model = self.extremes.extend(summary_model)
        schedule_probes(summary_model.graph, first=len(model.graph.node))
        session = create_session(summary_model.SerializeToString(), threads=threads,
                                 memory_pattern=False)
        self.fetch = [name for s in self.summaries.values() for name in s.fetch] + \
            self.means.fetch + self.extremes.fetch
        batching = max_batch > 1 and all(
            len(s.shape) > 0 and not isinstance(s.shape[0], int) for s in self.specs)
        self.runner = _BatchRunner(session, self.fetch, self.specs, batching=batching,
                                   rows_input=_ROWS_INPUT if self.with_values else None)
        self.sizes = _BatchSizes(summary_model, memory_budget or MemoryBudget.default(),
                                 max_batch if batching else 1, self.runner)

    def new_state(self) -> CalibrationState:
        names = [*self.tensors.inputs, *self.tensors.outputs]
        return CalibrationState(self.settings, {n: make_observer(self.settings) for n in names},
                                dict(self.tensors.skipped), self.means.partial(),
                                self.extremes.fresh())

    def observe(self, samples: Iterable[Sample], *, source: object = None,
                first_index: int = 0, advance: Callable[[int], None] | None = None,
                float_outputs: FloatOutputs | None = None) -> CalibrationState:
        """A new state of ``samples`` (numbered from ``first_index`` in errors); the
        model's outputs are fetched too while ``float_outputs`` wants them."""
        state = self.new_state()
        observers, extremes = state.observers, state.extremes
        for group in _groups(_checked(samples, self.specs, source, first_index), self.sizes):
            kept = float_outputs if float_outputs is not None and float_outputs.wanted \
                else None
            extra = kept.names if kept is not None else []
            for feeds, values, rows in self.runner.run(group, extra):
                if kept is not None:  # the model's outputs follow the summaries
                    kept.add(values[len(self.fetch):], rows)
                for name in self.tensors.inputs:
                    value = feeds[name]
                    if rows > 1:  # per sample, as a run of one sample would see it
                        for row in range(rows):
                            observers[name].update(value[row:row + 1])
                    else:
                        observers[name].update(value)
                fetched = dict(zip(self.fetch, values[:len(self.fetch)], strict=True))
                self.means.add(state.means, fetched)
                extremes.add(feeds, fetched)
                for name, summary in self.summaries.items():
                    observers[name].update_summary(
                        float(fetched[summary.min]), float(fetched[summary.max]),
                        int(fetched[summary.size]),
                        fetched[summary.values] if summary.values else None,
                        float(fetched[summary.stride]) if summary.stride else None)
            state.count += len(group)
            if advance is not None:
                advance(len(group))
        return state


class _MeanSums:
    """Per-tap input sums of Conv/Gemm ops over the samples (input_means), summed inside
    each run (lowbit.calibration.input_means.tap_sum_probe): C·KH·KW numbers per op."""

    def __init__(self, ops: Mapping[str, MeanInputOp], opset: int) -> None:
        self.ops = dict(ops)
        self.probes = {name: tap_sum_probe(op, f"lowbit_taps_{index}", opset=opset)
                       for index, (name, op) in enumerate(self.ops.items())}

    @property
    def fetch(self) -> list[str]:
        return [name for probe in self.probes.values() for name in (probe.sums, probe.shape)]

    def extend(self, model: onnx.ModelProto) -> onnx.ModelProto:
        """The summary model with every op's tap sums and input shape as outputs."""
        graph = model.graph
        for probe in self.probes.values():
            graph.node.extend(probe.nodes)
            graph.initializer.extend(probe.initializers)
            graph.output.extend([
                helper.make_tensor_value_info(probe.sums, TensorProto.FLOAT, None),
                helper.make_tensor_value_info(probe.shape, TensorProto.INT64, [None])])
        return model

    def partial(self) -> TapSums:
        return TapSums(dict(self.ops), {name: probe.averaged
                                        for name, probe in self.probes.items()})

    def add(self, sums: TapSums, fetched: Mapping[str, np.ndarray]) -> None:
        for name, probe in self.probes.items():
            spatial = tuple(int(d) for d in fetched[probe.shape][2:])
            sums.add(name, np.asarray(fetched[probe.sums], np.float64), spatial)


def find_activation_tensors(model: onnx.ModelProto, *, skip_derived: bool = False
                            ) -> ActivationTensors:
    """Float graph inputs and float outputs of main-graph nodes that depend on an input.

    With ``skip_derived``, tensors whose range follows from another's
    (lowbit.calibration.derived) are left out: the quantizer looks them up.
    """
    derived = derived_ranges(model) if skip_derived else {}
    try:
        inferred = infer_shapes_light(model)
    except Exception as err:  # onnx raises several exception types for bad graphs
        raise ModelError(f"shape inference failed: {str(err).strip().splitlines()[0]}") from err
    graph = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type
             for v in [*graph.value_info, *graph.input, *graph.output]
             if v.type.HasField("tensor_type")}
    constant = {init.name for init in graph.initializer}
    inputs = [v.name for v in graph.input
              if v.name not in constant and types.get(v.name) in _FLOAT_TYPES]
    constant.add("")  # an omitted optional input does not make a node dynamic
    outputs: dict[str, int] = {}
    skipped: dict[str, str] = {}
    for node in graph.node:
        if _is_constant(node, constant):
            constant.update(node.output)
            continue
        for name in node.output:
            elem = types.get(name, TensorProto.UNDEFINED)
            if not name or name in outputs or name in derived:
                continue
            if elem in _FLOAT_TYPES:
                outputs[name] = elem
            elif elem == TensorProto.BFLOAT16:
                skipped[name] = "bfloat16 tensors cannot be fetched from ONNX Runtime"
            elif elem == TensorProto.UNDEFINED:
                skipped[name] = "type unknown after shape inference"
    return ActivationTensors(inputs, outputs, skipped)


def _is_constant(node: onnx.NodeProto, constant: set[str]) -> bool:
    if node.op_type == "Constant":
        return True
    if not node.input or node.op_type in _NO_INPUT_DYNAMIC_OPS:
        return False
    # A node with a subgraph may read outer tensors implicitly: treat it as dynamic.
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
           for a in node.attribute):
        return False
    return all(name in constant for name in node.input)


@dataclass(frozen=True)
class _Summary:
    """Names of the in-graph outputs that summarise one activation tensor."""

    min: str
    max: str
    size: str
    values: str | None  # strided subsample, for histogram methods
    stride: str | None  # its stride: the weight of each value

    @property
    def fetch(self) -> list[str]:
        return [self.min, self.max, self.size] + ([self.values, self.stride]
                                                  if self.values and self.stride else [])


def _summary_model(model: onnx.ModelProto, outputs: Mapping[str, int], *, with_values: bool
                   ) -> tuple[onnx.ModelProto, dict[str, _Summary]]:
    """A copy of the model that outputs, per activation tensor, its min, max and size
    (ReduceMin/ReduceMax/Size inside ONNX Runtime) and, for histogram methods, a
    strided subsample of each sample's values (the tensor seen as [rows, -1], rows the
    samples in the run, a graph input, or 1 where they do not divide its size: every
    stride-th value of each row, stride = max(row size // SUBSAMPLE_PER_SAMPLE, 1)) and
    that stride.

    Nothing but scalars and small subsamples leaves the session, so ORT reuses its
    buffers as in plain inference and the work stays in its multithreaded kernels.
    """
    summary = onnx.ModelProto()
    summary.CopyFrom(model)
    graph = summary.graph
    nodes: list[onnx.NodeProto] = []
    summaries: dict[str, _Summary] = {}
    if with_values:
        graph.input.append(helper.make_tensor_value_info(_ROWS_INPUT, TensorProto.INT64, []))
        graph.initializer.extend([
            numpy_helper.from_array(np.array([-1], np.int64), "lowbit_flat_shape"),
            numpy_helper.from_array(np.array([0], np.int64), "lowbit_zero"),
            numpy_helper.from_array(np.array([2**62], np.int64), "lowbit_end"),
            numpy_helper.from_array(np.array(1, np.int64), "lowbit_one"),
            numpy_helper.from_array(np.array(0, np.int64), "lowbit_zero_scalar"),
            numpy_helper.from_array(np.array([1], np.int64), "lowbit_shape1"),
            numpy_helper.from_array(np.array([1], np.int64), "lowbit_axis1"),
            numpy_helper.from_array(np.array(SUBSAMPLE_PER_SAMPLE, np.int64),
                                    "lowbit_per_sample"),
        ])
    for index, (name, elem) in enumerate(outputs.items()):
        tag = f"lowbit_summary_{index}"
        source = name
        if elem != TensorProto.FLOAT:
            source = f"{tag}_float"
            nodes.append(helper.make_node("Cast", [name], [source], to=TensorProto.FLOAT))
        names = _Summary(f"{tag}_min", f"{tag}_max", f"{tag}_size",
                         f"{tag}_values" if with_values else None,
                         f"{tag}_stride" if with_values else None)
        nodes += [helper.make_node("ReduceMin", [source], [names.min], keepdims=0),
                  helper.make_node("ReduceMax", [source], [names.max], keepdims=0),
                  helper.make_node("Size", [source], [names.size])]
        graph.output.extend([helper.make_tensor_value_info(names.min, TensorProto.FLOAT, []),
                             helper.make_tensor_value_info(names.max, TensorProto.FLOAT, []),
                             helper.make_tensor_value_info(names.size, TensorProto.INT64, [])])
        if names.values and names.stride:
            nodes += [
                helper.make_node("Mod", [names.size, _ROWS_INPUT], [f"{tag}_rest"]),
                helper.make_node("Equal", [f"{tag}_rest", "lowbit_zero_scalar"],
                                 [f"{tag}_divides"]),
                helper.make_node("Where", [f"{tag}_divides", _ROWS_INPUT, "lowbit_one"],
                                 [f"{tag}_rows"]),
                helper.make_node("Reshape", [f"{tag}_rows", "lowbit_shape1"],
                                 [f"{tag}_rows1"]),
                helper.make_node("Concat", [f"{tag}_rows1", "lowbit_flat_shape"],
                                 [f"{tag}_shape2"], axis=0),
                helper.make_node("Reshape", [source, f"{tag}_shape2"], [f"{tag}_matrix"]),
                helper.make_node("Div", [names.size, f"{tag}_rows"], [f"{tag}_per_row"]),
                helper.make_node("Div", [f"{tag}_per_row", "lowbit_per_sample"],
                                 [f"{tag}_ratio"]),
                helper.make_node("Max", [f"{tag}_ratio", "lowbit_one"], [names.stride]),
                helper.make_node("Reshape", [names.stride, "lowbit_shape1"],
                                 [f"{tag}_steps"]),
                helper.make_node("Slice", [f"{tag}_matrix", "lowbit_zero", "lowbit_end",
                                           "lowbit_axis1", f"{tag}_steps"], [f"{tag}_picked"]),
                helper.make_node("Reshape", [f"{tag}_picked", "lowbit_flat_shape"],
                                 [names.values]),
            ]
            graph.output.extend([
                helper.make_tensor_value_info(names.values, TensorProto.FLOAT, [None]),
                helper.make_tensor_value_info(names.stride, TensorProto.INT64, [])])
        summaries[name] = names
    graph.node.extend(nodes)
    return summary, summaries


def _checked(samples: Iterable[Sample], specs: list[TensorSpec],
             source: object = None, first_index: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """Samples as feed dicts of the model's dtypes; missing, misshapen or NaN inputs raise,
    naming the data set's ``source`` (its file or folder) when known."""
    where = f" in {source}" if source else ""
    for index, sample in enumerate(samples, start=first_index):
        feeds: dict[str, np.ndarray] = {}
        for spec in specs:
            if spec.name not in sample:
                raise DatasetError(f"sample {index}{where} has no input {spec.name!r} "
                                   f"(found {', '.join(map(repr, sample)) or 'nothing'})")
            value = np.asarray(sample[spec.name])
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise DatasetError(f"sample {index}{where}: input {spec.name!r} contains NaN "
                                   "or Inf")
            # ONNX Runtime's rules, no stricter: float64 data for a float32 model, say
            feeds[spec.name] = spec.feed(value, f"sample {index}{where}")
        yield feeds


def _groups(feeds: Iterator[Feeds], sizes: _BatchSizes) -> Iterator[list[Feeds]]:
    """Consecutive samples whose shapes past axis 0 agree, as many per group as the memory
    budget allows at their shape; where shape inference cannot size the model, the first
    sample of a shape runs alone and is measured."""
    group: list[dict[str, np.ndarray]] = []
    size = 1
    for sample in feeds:
        if group and (len(group) >= size or _inner_shapes(sample) != _inner_shapes(group[0])):
            yield group
            group = []
        if not group:
            found = sizes.for_sample(sample)
            if found is None:
                yield [sample]  # run alone while measured
                size = sizes.measured(sample)
                continue
            size = found
        group.append(sample)
    if group:
        yield group


class _BatchSizes:
    """Samples per run for each input shape: the memory budget over the summary model's
    bytes per sample (lowbit.runtime.memory.sample_cost, else a measured first run)."""

    def __init__(self, model: onnx.ModelProto, budget: MemoryBudget, most: int,
                 runner: _BatchRunner) -> None:
        self.most = most
        self.budget = budget
        self.runner = runner
        self.model = weightless(model) if most > 1 else None
        self.known: dict[tuple[tuple[int, ...], ...], int] = {}
        self.chosen: list[int] = []

    def for_sample(self, sample: Mapping[str, np.ndarray]) -> int | None:
        """The batch for samples shaped like ``sample``; None when shape inference cannot
        tell: the runner then measures its next run (:meth:`measured` reads it)."""
        if self.model is None:
            return 1
        key = _shape_key(sample)
        if key not in self.known:
            cost = sample_cost(self.model, {name: (1, *value.shape[1:])
                                            for name, value in sample.items()})
            if cost is None:
                self.runner.measure_next = True
                return None
            self._choose(sample, cost.per_sample, "estimated")
        return self.known[key]

    def measured(self, sample: Mapping[str, np.ndarray]) -> int:
        per_sample = self.runner.growth
        per_sample = None if per_sample is None else per_sample // max(_batch_of(sample), 1)
        self._choose(sample, per_sample, "measured")
        return self.known[_shape_key(sample)]

    def _choose(self, sample: Mapping[str, np.ndarray], per_sample: int | None,
                how: str) -> None:
        batch = self.budget.batch(per_sample, self.most)
        self.known[_shape_key(sample)] = batch
        self.chosen.append(batch)
        log.info("calibration batch %d for inputs %s (%s %s per sample, budget %s)", batch,
                 ", ".join(f"{n}{list(v.shape[1:])}" for n, v in sample.items()), how,
                 "unknown" if per_sample is None else format_size(per_sample), self.budget)


def _shape_key(sample: Mapping[str, np.ndarray]) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(value.shape[1:]) for value in sample.values())


def _batch_of(sample: Mapping[str, np.ndarray]) -> int:
    head = next(iter(sample.values()), None)
    return int(head.shape[0]) if head is not None and head.ndim else 1


def _inner_shapes(sample: Mapping[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    return {name: value.shape[1:] for name, value in sample.items()}


class _BatchRunner:
    """Runs groups of samples as one batch; falls back to one sample per run if that fails."""

    def __init__(self, session: ort.InferenceSession, fetch: list[str],
                 specs: list[TensorSpec], *, batching: bool, rows_input: str | None = None
                 ) -> None:
        self.rows_input = rows_input
        self.measure_next = False  # measure the next run's memory (into growth)
        self.growth: int | None = None
        self.session = session
        self.fetch = fetch
        self.names = [s.name for s in specs]
        self.batching = batching

    def run(self, group: list[dict[str, np.ndarray]], extra: Sequence[str] = ()
            ) -> Iterator[tuple[Mapping[str, np.ndarray], list[np.ndarray], int]]:
        """Yield (feeds, fetched values, samples in the run) per run: one per batch or per
        sample; the values of ``extra`` outputs follow the summaries'."""
        if self.batching and len(group) > 1:
            feeds = {n: np.concatenate([g[n] for g in group], axis=0) for n in self.names}
            try:
                yield feeds, self._run_one(feeds, len(group), extra), len(group)
                return
            except ModelError as err:
                log.warning("the model does not run on a batch of %d samples (%s); "
                            "calibrating one sample per run", len(group), err)
                self.batching = False
        for feeds in group:
            yield feeds, self._run_one(feeds, 1, extra), 1

    def _run_one(self, feeds: Mapping[str, np.ndarray], rows: int, extra: Sequence[str] = ()
                 ) -> list[np.ndarray]:
        fetch = [*self.fetch, *extra]
        if not fetch:
            return []
        run_feeds = dict(feeds)
        if self.rows_input:
            run_feeds[self.rows_input] = np.array(max(rows, 1), np.int64)
        try:
            if self.measure_next:
                self.measure_next = False
                values, self.growth = rss_growth(lambda: self.session.run(fetch, run_feeds))
                return list(values)
            return list(self.session.run(fetch, run_feeds))
        except Exception as err:  # ORT raises several unrelated exception types
            text = str(err).strip()
            first = text.splitlines()[0] if text else repr(err)
            raise ModelError(f"running the model failed: {first}") from err


def _table(observers: Mapping[str, Observer], skipped: Mapping[str, str],
           settings: CalibrationSettings, count: int, advance: Callable[[int], None]
           ) -> CalibrationTable:
    ranges = {}
    left_out = dict(skipped)
    for name, observer in observers.items():
        found = _range_of(observer)
        if isinstance(found, TensorRange):
            ranges[name] = found
        else:
            left_out[name] = found
        advance(1)
    return CalibrationTable(
        ranges=ranges,
        method=settings.method,
        num_samples=count,
        bins=settings.bins if settings.method != "minmax" else None,
        percentile=settings.percentile if settings.method == "percentile" else None,
        skipped=left_out,
    )


def _range_of(observer: Observer) -> TensorRange | str:
    """The observer's range, or why the tensor is left out of the table."""
    if observer.count == 0:
        return "tensor was empty in every sample"
    rng = observer.result()
    if not all(math.isfinite(v) for v in (rng.threshold, rng.min, rng.max)):
        return f"range not finite (min={rng.min:.6g}, max={rng.max:.6g})"
    return rng


def _total(samples: Iterable[Sample], num_samples: int | None) -> int | None:
    if isinstance(samples, Sized):
        return len(samples) if num_samples is None else min(len(samples), num_samples)
    return num_samples
