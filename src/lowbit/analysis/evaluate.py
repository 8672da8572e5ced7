"""Accuracy of a model on a labelled data set, alone or beside its float original.

    report = evaluate("model.int8.onnx", "val.npz")                 # labels from val.npz's 'label'
    report.results[0].metrics                                       # {"top1": 97.9, "top5": 99.9}
    report = evaluate("model.int8.onnx", "val/", labels="val.txt", vs="model.f32.onnx")
    report.drop("top1"), report.agreement                           # 0.3 (points), 99.1 (%)
    report = evaluate("sr.int8.onnx", "lr.npz", metrics=("psnr", "ssim"), reference="sr.f32.onnx")
    results = evaluate_models(["m.f32.onnx", "m.int8.onnx"], "val.npz",
                              metrics=("top1", "top5", "cos"), reference="m.f32.onnx")

The prediction is the model's first output (or ``output_name``), one row per
sample. Metrics:

- ``top1``, ``top5``: % of samples whose label is among the k highest scores
  (ties go to the lower class index, as argmax does). Labels come from
  :func:`lowbit.analysis.labels.load_labels`.
- ``psnr``, ``ssim``, ``cos``: the output against a reference output for the
  same sample. The reference is, first found: the ``reference`` model's
  outputs; a ``target`` array (first axis = samples) in the labels .npz or the
  data-set .npz; the ``vs`` model's outputs (so ``vs`` alone gives the test
  model's PSNR/SSIM/cosine against the float model; the ``vs`` model then
  scores inf / 1.0 / 1.0 against itself).

  - ``psnr`` (dB) = 10·log10(R² / MSE) per sample, averaged over the samples
    that differ from their reference (inf when none differs); R is the data
    range, max − min over the whole reference.
  - ``ssim``: Wang et al. 2004, Gaussian window 11×11, σ = 1.5, K1 = 0.01,
    K2 = 0.03, 'valid' filtering (no padding), data range R as above; mean over
    the window positions, then over channels and samples. Outputs are images
    (N,H,W), (N,C,H,W), or (N,H,W,C) when axis 1 is longer than 4 and axis 3 is
    at most 4. An image smaller than 11 pixels uses the largest odd window that fits.
  - ``cos``: mean over samples of the cosine similarity of the flattened outputs.

With ``vs``, both models run on the same samples; ``drop(metric)`` is
metric(vs) − metric(model), so a positive top-1 drop is accuracy lost by the
model under test, and ``agreement`` is the % of samples whose argmax agrees
(for score-vector outputs only).

The samples run as shards (one, in this process, by default; ``workers``/``cluster``
spread them as calibrate does): each keeps running sums (lowbit.analysis.eval_sums), so
memory holds a batch of outputs per model, not N × output size; SSIM first runs the
reference once more for its data range (lowbit.analysis.eval_shards). ``progress``
(default True) shows one bar over the samples, of all workers together, on a terminal.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from lowbit import arguments
from lowbit.analysis.eval_shards import EvalJob, Scored, merge_sums, range_shard, score_shard
from lowbit.analysis.eval_sums import EvalSums, MetricSet
from lowbit.analysis.labels import HOW_TO_GIVE_LABELS, load_labels, load_targets
from lowbit.data import Dataset, ImageOptions
from lowbit.data.refs import DatasetRef
from lowbit.errors import ArgumentError, DatasetError, ModelError, UsageError
from lowbit.io.model import input_specs, load_model
from lowbit.parallel import Parallelism, new_key, open_executor, split_samples
from lowbit.runtime.backends import check_backend
from lowbit.runtime.memory import MemoryBudget

log = logging.getLogger(__name__)

KNOWN_METRICS = ("top1", "top5", "psnr", "ssim", "cos")
CLASSIFICATION_METRICS = ("top1", "top5")
REFERENCE_METRICS = ("psnr", "ssim", "cos")


@dataclass(frozen=True)
class EvalResult:
    """One model's metrics (percent for top-k, dB for PSNR) over ``num_samples`` samples."""

    model: str
    metrics: dict[str, float]
    num_samples: int


@dataclass(frozen=True)
class EvalReport:
    """The model's result first, then the ``vs`` model's (if any).

    ``agreement``: % of samples where both models' argmax agree (None without ``vs``
    or for outputs that are not score vectors). ``reference`` says what PSNR/SSIM/cos
    compared against.
    """

    results: tuple[EvalResult, ...]
    agreement: float | None = None
    reference: str | None = None

    def drop(self, metric: str) -> float:
        """metric(vs) − metric(model): what the model under test loses against ``vs``."""
        if len(self.results) < 2:
            raise UsageError("drop needs a model to compare with; evaluate with vs=REFERENCE")
        model, vs = self.results[0], self.results[1]
        if metric not in model.metrics:
            raise UsageError(f"metric '{metric}' was not evaluated; evaluated: "
                             f"{', '.join(model.metrics)}")
        return vs.metrics[metric] - model.metrics[metric]

    def summary(self) -> str:
        """One line: each model's metrics, the drop and the agreement."""
        parts = []
        for result in self.results:
            values = ", ".join(f"{name} {format_metric(name, value)}"
                               for name, value in result.metrics.items())
            parts.append(f"{result.model}: {values}")
        if len(self.results) > 1:
            drops = ", ".join(f"{name} {self.drop(name):+.3g}" for name in self.results[0].metrics)
            parts.append(f"drop (vs − model): {drops}")
        if self.agreement is not None:
            parts.append(f"top-1 agreement {self.agreement:.2f}%")
        return "; ".join(parts)


def format_metric(name: str, value: float) -> str:
    """A metric value as the report prints it: '97.90%', '31.2 dB', '0.9871'."""
    if name in CLASSIFICATION_METRICS:
        return f"{value:.2f}%"
    if name == "psnr":
        return "inf dB" if math.isinf(value) else f"{value:.2f} dB"
    return f"{value:.4f}"


def evaluate(
    model: str | Path,
    dataset: str | Path,
    *,
    labels: str | Path | None = None,
    metrics: Sequence[str] | str = ("top1", "top5"),
    reference: str | Path | None = None,
    vs: str | Path | None = None,
    threads: int | None = None,
    num: int | None = None,
    output_name: str | None = None,
    image_options: ImageOptions | None = None,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    backend: str = "ort",
    memory_budget: str | int | None = None,
    workers: int | None = None,
    cluster: str | None = None,
    progress: bool = True,
) -> EvalReport:
    """Evaluate ``model`` (and ``vs``, the float model, on the same samples); see the module.

    ``workers`` / ``cluster`` run the samples as shards (lowbit.parallel, as calibrate
    does); the metrics are the same up to float rounding however the samples are split.
    ``progress`` shows one bar over the samples of all workers (on a terminal only)."""
    model_path = arguments.path(model, "model")
    vs_path = arguments.optional_path(vs, "vs")
    paths = [model_path] + ([vs_path] if vs_path is not None else [])
    sums, plan = _evaluate(paths, dataset, labels, metrics, reference, vs_path, threads, num,
                           output_name, image_options, input_shapes, backend, memory_budget,
                           Parallelism.checked(workers, cluster), progress=progress)
    results = tuple(_result(sums, plan, index) for index in range(len(paths)))
    agreement = sums.agreement_percent() if vs_path is not None else None
    return EvalReport(results, agreement, plan.reference_name)


def evaluate_models(
    models: Sequence[str | Path],
    dataset: str | Path,
    *,
    labels: str | Path | None = None,
    metrics: Sequence[str] | str = ("top1", "top5"),
    reference: str | Path | None = None,
    threads: int | None = None,
    num: int | None = None,
    output_name: str | None = None,
    image_options: ImageOptions | None = None,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    backend: str = "ort",
    memory_budget: str | int | None = None,
    workers: int | None = None,
    cluster: str | None = None,
    progress: bool = True,
) -> tuple[EvalResult, ...]:
    """Evaluate several models (e.g. each precision of one model) on the same samples.

    ``reference`` (typically the F32 model, which may also be in ``models``; it runs
    once) is what PSNR/SSIM/cos compare against, unless a ``target`` array is given.
    """
    paths = arguments.paths(models, "models")
    sums, plan = _evaluate(paths, dataset, labels, metrics, reference, None, threads, num,
                           output_name, image_options, input_shapes, backend, memory_budget,
                           Parallelism.checked(workers, cluster), progress=progress)
    return tuple(_result(sums, plan, index) for index in range(len(paths)))


def parse_metrics(metrics: Sequence[str] | str) -> tuple[str, ...]:
    """Metric names, lower-cased, '-' dropped ('top-1' is top1), duplicates removed;
    a comma-separated string works too. An unknown name raises UsageError."""
    if not isinstance(metrics, str):
        metrics = arguments.names(metrics, "metrics") or ()
    items: Iterable[str] = metrics.split(",") if isinstance(metrics, str) else metrics
    names: list[str] = []
    for item in items:
        name = item.strip().lower().replace("-", "").replace("_", "")
        if not name:
            continue
        if name not in KNOWN_METRICS:
            raise ArgumentError(f"{{metrics}}: unknown metric '{item.strip()[:60]}'; known: "
                             f"{', '.join(KNOWN_METRICS)}")
        if name not in names:
            names.append(name)
    if not names:
        raise ArgumentError(f"{{metrics}} names no metric; known: {', '.join(KNOWN_METRICS)}")
    return tuple(names)


# --------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class _Plan:
    """One evaluation, checked: the job its shards run and what the report names."""

    job: EvalJob
    count: int
    reference_name: str | None


def _evaluate(paths: Sequence[Path], dataset: str | Path, labels: object, metrics: object,
              reference: object, fallback: Path | None, threads: object, num: object,
              output_name: object, image_options: object,
              input_shapes: Mapping[str, tuple[int, ...]] | None, backend: object,
              memory_budget: str | int | None, parallel: Parallelism, *,
              progress: bool) -> tuple[EvalSums, _Plan]:
    """Check everything in this process (nothing has run yet), then score the shards,
    a bar over the samples of all workers when ``progress``."""
    progress = arguments.flag(progress, "progress")
    plan = _plan(paths, dataset, labels, metrics, reference, fallback, threads, num,
                 output_name, image_options, input_shapes, backend, memory_budget)
    job = plan.job
    with open_executor(parallel, threads=job.threads, samples=plan.count) as executor:
        job = replace(job, memory_budget=max(job.memory_budget // executor.local_workers,
                                             1 << 20))
        shards = split_samples(plan.count, executor.parts)
        if "ssim" in job.wanted.names:  # SSIM's constants need R of the whole reference
            ranges = merge_sums(executor.run(range_shard, job, shards,
                                             label="reference range", progress=progress))
            job = replace(job, ssim_range=ranges.data_range)
        sums = merge_sums(executor.run(score_shard, job, shards, label="evaluating",
                                       progress=progress))
    for index, path in enumerate(paths):
        log.info("ran %s on %d samples", path.name, sums.models[index].samples)
    return sums, plan


def _plan(paths: Sequence[Path], dataset: str | Path, labels: object, metrics: object,
          reference: object, fallback: Path | None, threads: object, num: object,
          output_name: object, image_options: object,
          input_shapes: Mapping[str, tuple[int, ...]] | None, backend: object,
          memory_budget: str | int | None) -> _Plan:
    """The arguments checked, the labels read once and the reference chosen."""
    labels_path = arguments.optional_path(labels, "labels")
    reference_path = arguments.optional_path(reference, "reference")
    wanted = MetricSet(parse_metrics(metrics))  # type: ignore[arg-type]
    data_path = arguments.path(dataset, "dataset")
    arguments.instance(image_options, ImageOptions, "image_options", "an ImageOptions")
    chosen_backend = check_backend(arguments.text(backend, "backend")).name
    threads, num = arguments.threads(threads), arguments.optional_count(num, "num")
    wanted_output = arguments.optional_text(output_name, "output_name")
    ref = DatasetRef(str(data_path), image_options=image_options,  # type: ignore[arg-type]
                     input_shapes=arguments.shapes(input_shapes))  # type: ignore[arg-type]
    budget = MemoryBudget.parse(memory_budget)
    data = ref.open(input_specs(load_model(paths[0], check=False)))
    total = len(data)
    count = total if num is None else min(num, total)
    if count == 0:
        raise DatasetError(f"data set {data_path} has no samples")
    if wanted.ks:
        _check_labels(labels_path, data_path, total, data, wanted)
    scored = tuple(Scored(str(path), _output_name(path, wanted_output, strict=True))
                   for path in paths)
    source, targets, name = None, False, None
    if wanted.against_reference:
        source, targets, name = _reference(labels_path, reference_path, fallback, data_path,
                                           total, wanted_output)
    job = EvalJob(new_key(), ref, total, scored, wanted, labels=_text(labels_path),
                  reference=source, targets=targets, agreement=fallback is not None,
                  threads=threads, backend=chosen_backend, memory_budget=budget.bytes)
    return _Plan(job, count, name)


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _check_labels(labels: Path | None, dataset: Path, total: int, data: Dataset,
                  wanted: MetricSet) -> None:
    """Read the labels once here, so that a missing or short file fails before any run."""
    try:
        load_labels(labels, dataset, total, sample_paths=getattr(data, "paths", None))
    except DatasetError as err:
        if labels is None and HOW_TO_GIVE_LABELS in err.template:
            needing = ", ".join(m for m in wanted.names if m in CLASSIFICATION_METRICS)
            raise DatasetError(f"{needing} need(s) labels: {err.template}") from err
        raise


def _reference(labels: Path | None, reference: Path | None, fallback: Path | None,
               dataset: Path, total: int, wanted_output: str | None
               ) -> tuple[Scored | None, bool, str]:
    """What psnr/ssim/cos compare with, first found: the reference model, a ``target``
    array, the ``vs`` model; with the name the report gives it."""
    if reference is not None:
        return Scored(str(reference), _output_name(reference, wanted_output, strict=False)), \
            False, reference.name
    if load_targets(labels, dataset, total) is not None:
        return None, True, "target arrays"
    if fallback is not None:
        return Scored(str(fallback), _output_name(fallback, wanted_output, strict=False)), \
            False, fallback.name
    raise UsageError(f"{', '.join(REFERENCE_METRICS)} compare each output with a reference; "
                     f"give a reference model ({{reference}} or {{vs}}) or a 'target' "
                     f"array (first axis = samples) in the labels or data-set .npz")


def _result(sums: EvalSums, plan: _Plan, index: int) -> EvalResult:
    scored = plan.job.models[index]
    return EvalResult(model=Path(scored.path).name,
                      metrics=sums.metrics(index, plan.job.wanted),
                      num_samples=sums.models[index].samples)


def _output_name(model: Path, wanted: str | None, *, strict: bool) -> str:
    """The output of ``model`` to score: ``wanted``, else its first; a reference without
    ``wanted`` (not ``strict``) falls back to its first output."""
    names = [output.name for output in load_model(model, check=False).graph.output]
    if not names:
        raise ModelError(f"{model} has no graph outputs: there is nothing to score")
    if wanted is None:
        return names[0]
    if wanted in names:
        return wanted
    if not strict:
        log.warning("%s has no output '%s'; comparing with its first output '%s'", model.name,
                    wanted, names[0])
        return names[0]
    raise UsageError(f"{model} has no output '{wanted}'; its outputs: {', '.join(names)}")


__all__ = ["KNOWN_METRICS", "EvalReport", "EvalResult", "evaluate", "evaluate_models",
           "format_metric", "parse_metrics"]
