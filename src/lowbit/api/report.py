"""lowbit.report: one table per model, every variant side by side."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx

from lowbit import arguments
from lowbit.analysis.bench import BenchSettings, bench_models
from lowbit.analysis.evaluate import evaluate_models
from lowbit.analysis.layerwise import LayerReport, compare_layers
from lowbit.analysis.plots import plot_layers
from lowbit.analysis.report import ReportFiles, ReportRow, build_rows, write_report
from lowbit.analysis.validate import Tolerance
from lowbit.api.common import has_labels, image_options_for
from lowbit.data import (
    ImageOptions,
    open_dataset,
)
from lowbit.data.samples import SampleWindow
from lowbit.graph import precision_of
from lowbit.io.model import input_specs, load_model
from lowbit.outputs import OutputDir, check_distinct
from lowbit.parallel import Parallelism
from lowbit.runtime.backends import check_backend
from lowbit.runtime.memory import MemoryBudget, choose_batch

log = logging.getLogger(__name__)

# What a report writes into its folder (the charts and the layer plot when it has them).
REPORT_FILES = ("report.md", "report.html", "speedup.png", "top1.png", "layers.png")


def report(
    variants: Sequence[str | Path],
    dataset: str | Path,
    output: str | Path,
    *,
    labels: str | Path | None = None,
    batch: int = 32,
    repeats: int = 20,
    threads: int | None = None,
    num: int | None = None,
    compare_samples: int = 32,
    title: str | None = None,
    backend: str = "ort",
    image_options: ImageOptions | None = None,
    memory_budget: str | int | None = None,
    workers: int | None = None,
    cluster: str | None = None,
) -> ReportResult:
    """One row per model variant: size, accuracy, speed, output cosine vs F32, written
    as report.md and a self-contained report.html (with the F32→first-quantized-variant
    layer plot and bar charts of speed and accuracy).

    The precision of each variant is read off its graph (QuantizeLinear → INT8, float16
    tensors → F16, else F32); the first F32 variant is the baseline. An image-folder
    data set is preprocessed with ``image_options``, or as the baseline's meta file says.
    ``memory_budget`` (bytes or "512M"; lowbit.runtime.memory) bounds what a run holds:
    the timed ``batch`` is lowered to what fits at the data's shape (said in the notes),
    and the layer compare runs once per group of tensors that fits. ``workers`` /
    ``cluster`` run the accuracy pass as shards, as lowbit.evaluate does (its metrics
    merged from running sums); the timing always runs in this process, alone.
    """
    paths = arguments.paths(variants, "variants")
    dataset, output = arguments.path(dataset, "dataset"), arguments.folder(output, "output")
    labels = arguments.optional_path(labels, "labels")
    batch, repeats = arguments.count(batch, "batch"), arguments.count(repeats, "repeats")
    compare_samples = arguments.count(compare_samples, "compare_samples")
    threads, num = arguments.threads(threads), arguments.optional_count(num, "num")
    title = arguments.optional_text(title, "title")
    check_backend(arguments.text(backend, "backend"))
    arguments.instance(image_options, ImageOptions, "image_options", "an ImageOptions")
    budget = MemoryBudget.parse(memory_budget)
    parallel = Parallelism.checked(workers, cluster)
    check_distinct({**{f"{{variants}} {i}": path for i, path in enumerate(paths, 1)},
                    "{dataset}": dataset, "{labels}": labels},
                   {"{output}": OutputDir(output, REPORT_FILES)})
    models = [load_model(path) for path in paths]
    precisions = [precision_of(model) for model in models]
    base = precisions.index("F32") if "F32" in precisions else 0
    image_options = image_options_for(paths[base], image_options, dataset, models[base])
    metrics: tuple[str, ...] = ("cos",)
    if labels is not None or has_labels(dataset):
        metrics = ("top1", "top5", "cos")
    results = evaluate_models(paths, dataset, labels=labels, metrics=metrics,
                              reference=paths[base], threads=threads, num=num, backend=backend,
                              image_options=image_options, memory_budget=budget.bytes,
                              workers=parallel.workers, cluster=parallel.cluster,
                              progress=False)
    timed = _timed_batch(models[base], dataset, image_options, batch, budget)
    bench = bench_models(paths, BenchSettings(batches=(1, timed), threads=threads,
                                              repeats=repeats, backend=backend), progress=False)
    rows = build_rows(list(zip(precisions, paths, strict=True)), results, bench, base)
    out = Path(output)
    layers = None
    plot = None
    quantized = [i for i, p in enumerate(precisions) if p != "F32"]
    if quantized and base != quantized[0] and check_backend(backend).inner_tensors:
        samples = open_dataset(dataset, input_specs(models[base]), image_options=image_options)
        layers = compare_layers(models[base], models[quantized[0]],
                                SampleWindow(samples, compare_samples), Tolerance(),
                                progress=False, memory_budget=budget)
        out.mkdir(parents=True, exist_ok=True)
        plot = plot_layers(layers, out / "layers.png")
    notes = [f"{r.model}: {r.metrics}" for r in results if not r.metrics]
    if timed < batch:
        notes.append(f"throughput timed at batch {timed}, not {batch}: a batch of {batch} "
                     f"would not fit the memory budget ({budget}) at this input size")
    if layers is not None:
        notes.append(f"layer by layer, {precisions[base]} vs {precisions[quantized[0]]} on "
                     f"{layers.samples} samples: {layers.summary()}")
    files = write_report(rows, out, title=title or f"lowbit report: {paths[base].stem}",
                         compare_plot=plot, notes=notes)
    return ReportResult(files, tuple(rows), layers)


@dataclass(frozen=True)
class ReportResult:
    files: ReportFiles
    rows: tuple[ReportRow, ...]
    layers: LayerReport | None


def _timed_batch(model: onnx.ModelProto, dataset: Path, image_options: ImageOptions | None,
                 batch: int, budget: MemoryBudget) -> int:
    """``batch``, or less where a batch of the data's first sample does not fit ``budget``."""
    if batch <= 1:
        return batch
    samples = open_dataset(dataset, input_specs(model), image_options=image_options)
    first = next(iter(SampleWindow(samples, 1)), None)
    if first is None:
        return batch
    return choose_batch(model, first, budget, most=batch)
