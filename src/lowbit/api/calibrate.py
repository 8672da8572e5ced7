"""lowbit.calibrate: stream a data set through the float model and write the calibration table."""

from __future__ import annotations

import logging
from pathlib import Path

import onnx

from lowbit import arguments
from lowbit.api.common import image_options_for, load_float_model
from lowbit.api.plausibility import input_warnings
from lowbit.calibration.collect import collect_ranges, find_activation_tensors
from lowbit.calibration.float_outputs import FloatOutputs
from lowbit.calibration.observers import CalibrationSettings
from lowbit.calibration.sharded import collect_ranges_sharded
from lowbit.calibration.table import CalibrationTable, write_table
from lowbit.data import (
    Dataset,
    ImageFolderDataset,
    ImageOptions,
    open_dataset,
)
from lowbit.data.refs import DatasetRef
from lowbit.data.samples import SampleWindow
from lowbit.io.model import input_specs
from lowbit.outputs import check_distinct
from lowbit.parallel import InlineExecutor, Parallelism, open_executor
from lowbit.passes import canonicalize
from lowbit.passes.canonical import Shapes
from lowbit.quantize.prepare.auto_check import CHECK_SAMPLES, check_auto_table, with_alpha
from lowbit.runtime.memory import MemoryBudget

log = logging.getLogger(__name__)


def calibrate(
    model: str | Path,
    dataset: str | Path,
    *,
    num: int | None = None,
    method: str = "auto",
    percentile: float = 99.99,
    bins: int = 2048,
    output: str | Path | None = None,
    input_shapes: Shapes | None = None,
    image_options: ImageOptions | None = None,
    threads: int | None = None,
    progress: bool = True,
    input_means: bool = True,
    channel_ranges: bool = True,
    check_samples: int = CHECK_SAMPLES,
    check_unsmoothed: bool = False,
    memory_budget: str | int | None = None,
    workers: int | None = None,
    cluster: str | None = None,
) -> CalibrationTable:
    """Stream ``num`` samples (all when None) through the model and write the table.

    An image-folder ``dataset`` is preprocessed with ``image_options``, or without them as
    the model's meta file (lowbit.io.meta) says. With ``input_means`` the table also
    keeps each Conv/Gemm's mean input, from which deploy corrects biases without data;
    with ``channel_ranges`` the per-channel min/max of each MatMul/Gemm input, from which
    deploy smooths a transformer (SmoothQuant) without data.
    Method auto ends with an output check on the first ``check_samples`` samples
    (lowbit.quantize.prepare.auto_check; 0 skips it). On a transformer whose smoothed
    default deploy does not depend on the blend the check scores nothing (α = 0) unless
    ``check_unsmoothed``: then it chooses the blend for deploy's --smooth off.
    ``memory_budget`` (bytes, or a
    size such as "512M"; default lowbit.runtime.memory.MemoryBudget.default()) bounds
    what a batch of samples may hold, in all workers together.

    ``workers`` runs the samples as shards on that many local processes (None: this
    process, see lowbit.parallel.plan), ``cluster`` on Ray ("local"
    starts it here, "ray" joins the cluster RAY_ADDRESS names); the table is the same,
    bit for bit, however the samples are split (lowbit.calibration.sharded)."""
    model, dataset = arguments.path(model, "model"), arguments.path(dataset, "dataset")
    output = arguments.optional_path(output, "output")
    num, threads = arguments.optional_count(num, "num"), arguments.threads(threads)
    settings = CalibrationSettings(method=method, percentile=percentile, bins=bins)
    budget = MemoryBudget.parse(memory_budget)
    input_shapes = arguments.shapes(input_shapes)
    arguments.instance(image_options, ImageOptions, "image_options", "an ImageOptions")
    for name, value in (("progress", progress), ("input_means", input_means),
                        ("channel_ranges", channel_ranges),
                        ("check_unsmoothed", check_unsmoothed)):
        arguments.flag(value, name)
    check_samples = arguments.count(check_samples, "check_samples", minimum=0)
    parallel = Parallelism.checked(workers, cluster)
    check_distinct({"{model}": model, "{dataset}": dataset}, {"{output}": output})
    source = load_float_model(model, "calibrate")
    canonical, _ = canonicalize(source, input_shapes=input_shapes)
    _check_histograms(canonical, settings, budget.bytes if memory_budget is not None else None)
    image_options = image_options_for(model, image_options, dataset, source)
    del source  # the canonical copy is the one used from here on
    samples = open_dataset(dataset, input_specs(canonical), image_options=image_options)
    count = len(samples) if num is None else min(num, len(samples))
    checking = method == "auto" and check_samples > 0
    # The check's float outputs, fetched by the calibration runs (a quarter of the budget)
    kept = FloatOutputs.for_model(canonical, min(check_samples, count), budget.bytes // 4) \
        if checking else None
    with open_executor(parallel, threads=threads, samples=count) as executor:
        if isinstance(executor, InlineExecutor):  # as before: no copy of the model
            table = collect_ranges(canonical, samples, settings, num_samples=num,
                                   progress=progress, threads=threads,
                                   input_means=input_means, channel_ranges=channel_ranges,
                                   memory_budget=budget, float_outputs=kept)
        else:
            table = collect_ranges_sharded(
                canonical, DatasetRef(str(dataset), image_options=image_options), settings,
                executor, num=num, progress=progress, memory_budget=budget,
                input_means=input_means, channel_ranges=channel_ranges)
    for warning in input_warnings(model, table.ranges, dataset, dtypes=samples.stored_dtypes,
                                  preprocessed_by_lowbit=isinstance(samples,
                                                                    ImageFolderDataset)):
        log.warning(warning)
    if checking:
        feeds = SampleWindow(samples, min(check_samples, table.num_samples))
        check = check_auto_table(canonical, feeds, table, threads=threads, progress=progress,
                                 memory_budget=budget,
                                 float_outputs=kept.samples if kept is not None else None,
                                 check_unsmoothed=check_unsmoothed)
        if check is not None:
            table = with_alpha(table, check.alpha)
            table.notes.append(check.summary())
    table.input_shapes = _first_shapes(samples)
    if output is not None:
        write_table(table, output)
    return table


def _first_shapes(samples: Dataset) -> dict[str, tuple[int, ...]]:
    """Each input's shape in the first sample (deploy times free-dimension models at it)."""
    first = next(iter(samples.take(1)), None)
    return {} if first is None else {name: tuple(array.shape) for name, array in first.items()}


def _check_histograms(model: onnx.ModelProto, settings: CalibrationSettings,
                      budget: int | None) -> None:
    """The histogram methods keep 2 x bins float64 counts per observed tensor: refuse a
    ``bins`` whose histograms cannot fit (in ``budget`` when the caller gave one, else in
    the memory there is), before any is allocated."""
    if settings.method == "minmax":
        return
    tensors = find_activation_tensors(model)
    observed = len(tensors.inputs) + len(tensors.outputs)
    arguments.check_memory(observed * 2 * settings.bins * 8, "bins",
                           f"{observed} histograms of {settings.bins} bins", budget)
