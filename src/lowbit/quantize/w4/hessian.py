"""The input Hessians GPTQ needs, H = 2·XᵀX / rows, collected in one ONNX Runtime pass.

    hessians = collect_hessians(model, ["x", "/layer.0/Mul_output_0"], samples)
    hessians.hessians["x"]      # float64 [K, K]
    hessians.samples, hessians.rows["x"]   # samples run; rows of X seen (tokens × samples)

    run = HessianRun(model, ["x"])                  # the probe session, built once
    sums = run.observe(shard_samples, first_index=128)   # a shard's partial sums
    sums.merge(other_sums).finish()                 # exact: sums of XᵀX and of rows

Every requested tensor (the A input of a MatMul whose weight is quantized; MatMuls
that read the same tensor share it) gets a probe in a copy of the model: X flattened
to [rows, K], XᵀX (a float32 MatMul inside ONNX Runtime) and X's size leave the run,
and each XᵀX is added to a float64 sum. Only K×K numbers per tensor leave a run, and
the probes run right after their tensor (lowbit.graph.schedule_probes), so memory is
one K×K matrix per tensor, whatever the number of samples or their length; samples
are batched as the memory budget allows (XᵀX sums exactly over a batch's rows).
The inputs come from the float model, so every layer's Hessian is that of the float
activations (not of the partly quantized model, as sequential GPTQ would use).

The statistics are sums, so a data set can be cut into shards whose
:class:`HessianSums` merge into those of one pass (lowbit.quantize.w4.hessian_shards);
:func:`collect_hessians` is that pass as a single shard. A merged H equals one
process's up to float rounding: the float64 sums add the same per-batch products in
another order, and a batch that a shard boundary cuts sums its float32 XᵀX over other
rows.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lowbit.errors import DatasetError, ModelError, UsageError
from lowbit.graph import add_outputs, schedule_probes
from lowbit.parallel import Advance
from lowbit.progress import progress_bar
from lowbit.runtime.memory import MemoryBudget, choose_batch, stacked_batches
from lowbit.runtime.ort import OrtRunner

__all__ = ["HessianRun", "HessianSums", "Hessians", "collect_hessians", "progress_bar"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hessians:
    hessians: Mapping[str, np.ndarray]  # tensor -> float64 [K, K]
    rows: Mapping[str, int]             # tensor -> rows of X accumulated
    samples: int


@dataclass
class HessianSums:
    """The partial state of some samples: Σ XᵀX (float64 [K, K]) and the rows of X per
    tensor, and the samples seen. A tensor has no sum until a sample reached it."""

    tensors: tuple[str, ...]
    sums: dict[str, np.ndarray] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    samples: int = 0

    def add(self, name: str, product: np.ndarray, rows: int) -> None:
        """One run's XᵀX (float32 from ONNX Runtime) of ``rows`` rows, summed in float64."""
        if name in self.sums:
            self.sums[name] += product
        else:
            self.sums[name] = product.astype(np.float64)
        self.rows[name] = self.rows.get(name, 0) + rows

    def merge(self, other: HessianSums) -> HessianSums:
        """Add ``other``'s samples (same model and tensors) to this state; returns it."""
        if other.tensors != self.tensors:
            raise UsageError("cannot merge GPTQ statistics of different tensors")
        for name, total in other.sums.items():
            self.add(name, total, other.rows[name])
        self.samples += other.samples
        return self

    def finish(self) -> Hessians:
        """H = 2·ΣXᵀX / rows of every tensor; no sample at all is an error."""
        if not self.samples:
            raise DatasetError("GPTQ needs calibration samples; the data set has none")
        hessians = {name: 2.0 * self.sums[name] / max(self.rows[name], 1)
                    for name in self.tensors}
        log.info("GPTQ Hessians of %d tensors over %d samples", len(self.tensors),
                 self.samples)
        return Hessians(hessians, dict(self.rows), self.samples)


class HessianRun:
    """``model`` with an XᵀX probe on each tensor, loaded once: :meth:`observe` gives the
    partial sums of any run of samples (a worker keeps one for all its shards)."""

    def __init__(self, model: onnx.ModelProto, tensors: Sequence[str], *,
                 threads: int | None = None, memory_budget: MemoryBudget | None = None
                 ) -> None:
        self.tensors = tuple(dict.fromkeys(tensors))
        self._probe: onnx.ModelProto | None = _probe_model(model, self.tensors)
        self._runner = OrtRunner(self._probe, threads=threads, memory_pattern=False)
        self._budget = memory_budget or MemoryBudget.default()
        self._batch: int | None = None
        self._fetch = [name for i in range(len(self.tensors))
                       for name in (f"lowbit_xtx_{i}", f"lowbit_size_{i}")]

    def observe(self, samples: Iterable[Mapping[str, np.ndarray]], *, first_index: int = 0,
                advance: Advance | None = None) -> HessianSums:
        """The sums of ``samples`` (sample ``first_index`` first, as errors name it)."""
        state = HessianSums(self.tensors)
        wanted = set(self._runner.input_names)
        stream = ({k: v for k, v in sample.items() if k in wanted} for sample in samples)
        first = next(stream, None)
        if first is None:
            return state
        for feeds in stacked_batches(itertools.chain([first], stream), self._batch_for(first)):
            values = self._run(feeds, first_index + state.samples)
            for index, name in enumerate(self.tensors):
                product, elements = values[2 * index], int(values[2 * index + 1])
                state.add(name, product, elements // max(product.shape[0], 1))
            done = _batch_of(feeds)
            state.samples += done
            if advance is not None:
                advance(done)
        return state

    def _batch_for(self, first: Mapping[str, np.ndarray]) -> int:
        """Samples per run, chosen on the first sample seen; the probe copy is freed then."""
        if self._batch is None:
            assert self._probe is not None
            self._batch = choose_batch(self._probe, first, self._budget)
            self._probe = None
        return self._batch

    def _run(self, feeds: Mapping[str, np.ndarray], index: int) -> list[np.ndarray]:
        try:
            outputs = self._runner.run(feeds, self._fetch)
        except ModelError as err:
            raise ModelError(f"GPTQ's Hessians, at sample {index}: {err.template}") from None
        return [outputs[name] for name in self._fetch]


def collect_hessians(model: onnx.ModelProto, tensors: Sequence[str],
                     samples: Iterable[Mapping[str, np.ndarray]], *, total: int | None = None,
                     progress: bool = True, threads: int | None = None,
                     memory_budget: MemoryBudget | None = None) -> Hessians:
    """Run ``samples`` through ``model`` once and return H of each tensor in ``tensors``:
    the whole stream as one shard, in this process."""
    run = HessianRun(model, tensors, threads=threads, memory_budget=memory_budget)
    with progress_bar("GPTQ inputs", progress, total) as advance:
        return run.observe(samples, advance=advance).finish()


def _probe_model(model: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    """A copy of ``model`` with, per tensor i, ``lowbit_xtx_i`` = XᵀX of X flattened to
    [rows, K] (K its last axis) and ``lowbit_size_i`` = its number of elements."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    graph = probe.graph
    graph.initializer.extend([
        numpy_helper.from_array(np.array([-1], np.int64), "lowbit_xtx_rows"),
        numpy_helper.from_array(np.array([-1], np.int64), "lowbit_xtx_last"),
        numpy_helper.from_array(np.array([np.iinfo(np.int64).max], np.int64),
                                "lowbit_xtx_end")])
    for index, name in enumerate(names):
        tag = f"lowbit_xtx_{index}"
        graph.node.extend([
            helper.make_node("Cast", [name], [f"{tag}_x"], to=TensorProto.FLOAT),
            helper.make_node("Shape", [f"{tag}_x"], [f"{tag}_shape"]),
            helper.make_node("Slice", [f"{tag}_shape", "lowbit_xtx_last", "lowbit_xtx_end"],
                             [f"{tag}_k"]),
            helper.make_node("Concat", ["lowbit_xtx_rows", f"{tag}_k"], [f"{tag}_2d"], axis=0),
            helper.make_node("Reshape", [f"{tag}_x", f"{tag}_2d"], [f"{tag}_flat"]),
            helper.make_node("Transpose", [f"{tag}_flat"], [f"{tag}_t"], perm=[1, 0]),
            helper.make_node("MatMul", [f"{tag}_t", f"{tag}_flat"], [tag]),
            helper.make_node("Size", [name], [f"lowbit_size_{index}"])])
    add_outputs(graph, [name for i in range(len(names))
                        for name in (f"lowbit_xtx_{i}", f"lowbit_size_{i}")])
    schedule_probes(graph, first=len(model.graph.node))
    return probe


def _batch_of(feeds: Mapping[str, np.ndarray]) -> int:
    head = next(iter(feeds.values()), None)
    return int(head.shape[0]) if head is not None and head.ndim else 1
