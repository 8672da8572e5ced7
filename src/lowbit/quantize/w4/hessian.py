"""The input Hessians GPTQ needs, H = 2·XᵀX / rows, collected in one ONNX Runtime pass.

    hessians = collect_hessians(model, ["x", "/layer.0/Mul_output_0"], samples)
    hessians.hessians["x"]      # float64 [K, K]
    hessians.samples, hessians.rows["x"]   # samples run; rows of X seen (tokens × samples)

Every requested tensor (the A input of a MatMul whose weight is quantized; MatMuls
that read the same tensor share it) becomes an output of a copy of the model, one
session runs the samples, and each value, flattened to [rows, K], adds its XᵀX to a
float64 sum. Memory is one K×K matrix per tensor, whatever the number of samples.
The inputs come from the float model, so every layer's Hessian is that of the float
activations (not of the partly quantized model, as sequential GPTQ would use).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lowbit.errors import DatasetError, ModelError
from lowbit.graph import with_outputs
from lowbit.runtime.ort import create_session

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hessians:
    hessians: Mapping[str, np.ndarray]  # tensor -> float64 [K, K]
    rows: Mapping[str, int]             # tensor -> rows of X accumulated
    samples: int


def collect_hessians(model: onnx.ModelProto, tensors: Sequence[str],
                     samples: Iterable[Mapping[str, np.ndarray]], *, total: int | None = None,
                     progress: bool = True, threads: int | None = None) -> Hessians:
    """Run ``samples`` through ``model`` once and return H of each tensor in ``tensors``."""
    names = list(dict.fromkeys(tensors))
    graph_inputs = {value.name for value in model.graph.input}
    fetched = [name for name in names if name not in graph_inputs]
    session = create_session(with_outputs(model, fetched, elem_type=TensorProto.FLOAT),
                             threads=threads)
    feeds_wanted = {i.name for i in session.get_inputs()}
    sums: dict[str, np.ndarray] = {}
    rows = dict.fromkeys(names, 0)
    count = 0
    with progress_bar("GPTQ inputs", progress, total) as advance:
        for sample in samples:
            feeds = {k: v for k, v in sample.items() if k in feeds_wanted}
            try:
                values = dict(zip(fetched, session.run(fetched, feeds), strict=True))
            except Exception as err:  # ORT raises unrelated types for a bad feed
                first = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
                raise ModelError(f"running the model for GPTQ's Hessians failed on sample "
                                 f"{count}: {first}") from err
            for name in names:
                value = feeds[name] if name in graph_inputs else values[name]
                # One sample's XᵀX in float32 (a few hundred rows), summed in float64.
                x = np.asarray(value, dtype=np.float32).reshape(-1, value.shape[-1])
                product = (x.T @ x).astype(np.float64)
                if name in sums:
                    sums[name] += product
                else:
                    sums[name] = product
                rows[name] += x.shape[0]
            count += 1
            advance(1)
    if count == 0:
        raise DatasetError("GPTQ needs calibration samples; the data set has none")
    hessians = {name: 2.0 * sums[name] / max(rows[name], 1) for name in names}
    log.info("GPTQ Hessians of %d tensors over %d samples", len(names), count)
    return Hessians(hessians, rows, count)


@contextmanager
def progress_bar(label: str, enabled: bool, total: int | None
                 ) -> Iterator[Callable[[int], None]]:
    """A transient rich progress bar on stderr, silent when disabled or not on a terminal;
    yields ``advance(n)``."""
    progress = Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=Console(stderr=True), transient=True,
        disable=not enabled or not sys.stderr.isatty(),
    )
    with progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.update(task, advance=n)
