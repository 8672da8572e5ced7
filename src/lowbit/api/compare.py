"""lowbit.compare: two models, tensor by tensor, on the same inputs."""

from __future__ import annotations

import logging
from pathlib import Path

from lowbit import arguments
from lowbit.analysis.compare_shards import compare_layers_sharded
from lowbit.analysis.layerwise import DUMP_FILES, LayerReport, compare_layers, write_csv
from lowbit.analysis.plots import plot_layers
from lowbit.analysis.validate import Tolerance, checked_tolerance
from lowbit.data import (
    open_dataset,
)
from lowbit.data.refs import DatasetRef
from lowbit.data.samples import SampleWindow
from lowbit.errors import ArgumentError
from lowbit.graph import check_qdq_params
from lowbit.io.model import input_specs, load_model
from lowbit.outputs import OutputDir, check_distinct
from lowbit.parallel import InlineExecutor, Parallelism, open_executor
from lowbit.runtime.memory import MemoryBudget

log = logging.getLogger(__name__)


def compare(
    reference_model: str | Path,
    test_model: str | Path,
    inputs: str | Path,
    *,
    tolerance: str | Tolerance | None = None,
    csv: str | Path | None = None,
    plot: str | Path | None = None,
    dump: str | Path | None = None,
    progress: bool = True,
    memory_budget: str | int | None = None,
    workers: int | None = None,
    cluster: str | None = None,
) -> LayerReport:
    """Compare two models tensor by tensor on the same inputs.

    Tensors pair across the graphs by the structure lowbit writes (same names, a
    QuantizeLinear→DequantizeLinear chain back to the float tensor it stands for,
    folded BN / removed activations under their original names); each pair gets
    cosine, euclidean similarity, SQNR and a status, pooled over all samples. The
    final outputs pair by name, so the last rows are the output check.
    ``memory_budget`` (bytes or "512M"; lowbit.runtime.memory) bounds the tensors one run
    exposes: past it the samples run once per group of tensors.
    ``workers`` / ``cluster`` run the samples as shards (lowbit.parallel, as calibrate
    does; not with ``dump``, which writes the samples in order from one process); the
    pooled metrics are the same up to float rounding (lowbit.analysis.compare_shards).
    """
    reference_model = arguments.path(reference_model, "reference_model")
    test_model = arguments.path(test_model, "test_model")
    inputs = arguments.path(inputs, "inputs")
    csv, plot = (arguments.optional_path(value, name) for name, value in
                 (("csv", csv), ("plot", plot)))
    dump = arguments.folder(dump, "dump") if dump is not None else None
    arguments.flag(progress, "progress")
    tol = checked_tolerance(tolerance)
    budget = MemoryBudget.parse(memory_budget)
    parallel = Parallelism.checked(workers, cluster)
    if dump is not None and (parallel.cluster is not None or (parallel.workers or 1) > 1):
        raise ArgumentError("{dump} writes every sample's tensors in order from one process; "
                            "leave out {workers} and {cluster} to dump")
    check_distinct({"{reference_model}": reference_model, "{test_model}": test_model,
                    "{inputs}": inputs},
                   {"{csv}": csv, "{plot}": plot,
                    "{dump}": OutputDir(dump, DUMP_FILES) if dump else None})
    ref_model = load_model(reference_model)
    test = load_model(test_model)  # a missing or broken file fails with a clear message
    check_qdq_params(test, str(test_model))  # one made elsewhere may hold any scale
    samples = open_dataset(inputs, input_specs(ref_model))
    with open_executor(parallel, threads=None, samples=len(samples)) as executor:
        if isinstance(executor, InlineExecutor):
            report = compare_layers(ref_model, test, SampleWindow(samples, len(samples)), tol,
                                    dump_dir=Path(dump) if dump else None, progress=progress,
                                    memory_budget=budget)
        else:
            report = compare_layers_sharded(reference_model, test_model,
                                            DatasetRef(str(inputs)), tol, executor,
                                            progress=progress, memory_budget=budget)
    if csv is not None:
        write_csv(report, csv)
    if plot is not None:
        plot_layers(report, plot)
    return report
