"""The input Hessians GPTQ needs, H = 2·XᵀX / rows, collected in one ONNX Runtime pass.

    hessians = collect_hessians(model, ["x", "/layer.0/Mul_output_0"], samples)
    hessians.hessians["x"]      # float64 [K, K]
    hessians.samples, hessians.rows["x"]   # samples run; rows of X seen (tokens × samples)

Every requested tensor (the A input of a MatMul whose weight is quantized; MatMuls
that read the same tensor share it) gets a probe in a copy of the model: X flattened
to [rows, K], XᵀX (a float32 MatMul inside ONNX Runtime) and X's size leave the run,
and each XᵀX is added to a float64 sum. Only K×K numbers per tensor leave a run, and
the probes run right after their tensor (lowbit.graph.schedule_probes), so memory is
one K×K matrix per tensor, whatever the number of samples or their length; samples
are batched as the memory budget allows (XᵀX sums exactly over a batch's rows).
The inputs come from the float model, so every layer's Hessian is that of the float
activations (not of the partly quantized model, as sequential GPTQ would use).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lowbit.errors import DatasetError, ModelError
from lowbit.graph import add_outputs, schedule_probes
from lowbit.progress import progress_bar
from lowbit.runtime.memory import MemoryBudget, choose_batch, stacked_batches
from lowbit.runtime.ort import create_session

__all__ = ["Hessians", "collect_hessians", "progress_bar"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hessians:
    hessians: Mapping[str, np.ndarray]  # tensor -> float64 [K, K]
    rows: Mapping[str, int]             # tensor -> rows of X accumulated
    samples: int


def collect_hessians(model: onnx.ModelProto, tensors: Sequence[str],
                     samples: Iterable[Mapping[str, np.ndarray]], *, total: int | None = None,
                     progress: bool = True, threads: int | None = None,
                     memory_budget: MemoryBudget | None = None) -> Hessians:
    """Run ``samples`` through ``model`` once and return H of each tensor in ``tensors``."""
    names = list(dict.fromkeys(tensors))
    probe = _probe_model(model, names)
    session = create_session(probe, threads=threads, memory_pattern=False)
    feeds_wanted = {i.name for i in session.get_inputs()}
    fetch = [name for i in range(len(names)) for name in (f"lowbit_xtx_{i}", f"lowbit_size_{i}")]
    stream = iter(samples)
    first = next(stream, None)
    if first is None:
        raise DatasetError("GPTQ needs calibration samples; the data set has none")
    wanted = {k: v for k, v in first.items() if k in feeds_wanted}
    size = choose_batch(probe, wanted, memory_budget or MemoryBudget.default())
    del probe
    sums: dict[str, np.ndarray] = {}
    rows = dict.fromkeys(names, 0)
    count = 0
    with progress_bar("GPTQ inputs", progress, total) as advance:
        runs = stacked_batches(({k: v for k, v in sample.items() if k in feeds_wanted}
                                for sample in itertools.chain([first], stream)), size)
        for feeds in runs:
            try:
                values = session.run(fetch, feeds)
            except Exception as err:  # ORT raises unrelated types for a bad feed
                first_line = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
                raise ModelError(f"running the model for GPTQ's Hessians failed on sample "
                                 f"{count}: {first_line}") from err
            for index, name in enumerate(names):
                product, elements = values[2 * index], int(values[2 * index + 1])
                # One batch's XᵀX in float32 (a few hundred rows a sample), summed in float64.
                if name in sums:
                    sums[name] += product
                else:
                    sums[name] = product.astype(np.float64)
                rows[name] += elements // max(product.shape[0], 1)
            done = _batch_of(feeds)
            count += done
            advance(done)
    hessians = {name: 2.0 * sums[name] / max(rows[name], 1) for name in names}
    log.info("GPTQ Hessians of %d tensors over %d samples", len(names), count)
    return Hessians(hessians, rows, count)


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
