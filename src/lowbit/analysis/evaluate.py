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
(for score-vector outputs only). All outputs are held in memory: N × output size
per model.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from lowbit import arguments
from lowbit.analysis.labels import HOW_TO_GIVE_LABELS, load_labels, load_targets
from lowbit.analysis.metrics import mean_cosine, psnr, ssim, top1_agreement, topk_accuracy
from lowbit.data import Dataset, ImageOptions, check_finite, open_dataset
from lowbit.errors import ArgumentError, DatasetError, ModelError, UsageError
from lowbit.io.model import input_specs, load_model
from lowbit.runtime.backends import check_backend, make_runner
from lowbit.runtime.memory import MemoryBudget, choose_batch, stacked_batches

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


@dataclass(frozen=True)
class _RunSettings:
    dataset: Path
    threads: int | None
    num: int | None
    output_name: str | None
    image_options: ImageOptions | None
    input_shapes: Mapping[str, tuple[int, ...]] | None
    backend: str = "ort"
    memory_budget: MemoryBudget | None = None


@dataclass
class _Runs:
    """Runs models over one data set; each model's outputs are computed once."""

    settings: _RunSettings
    cache: dict[Path, np.ndarray] = field(default_factory=dict)

    def open(self, model: Path) -> Dataset:
        return open_dataset(self.settings.dataset, input_specs(load_model(model, check=False)),
                            image_options=self.settings.image_options,
                            input_shapes=self.settings.input_shapes)

    def outputs(self, model: Path, *, strict_name: bool = True) -> np.ndarray:
        key = model.resolve()
        if key not in self.cache:
            self.cache[key] = self._predict(model, strict_name)
        return self.cache[key]

    def _predict(self, model: Path, strict_name: bool) -> np.ndarray:
        data = self.open(model)
        runner = make_runner(model, backend=self.settings.backend,
                             threads=self.settings.threads)
        name = _output_name(runner.output_names, self.settings.output_name, model, strict_name)
        samples = self._checked(data, runner.input_names)
        first = next(samples, None)
        if first is None:
            raise DatasetError(f"data set {self.settings.dataset} has no samples")
        # Samples run in batches as the memory budget allows at their shape: same outputs.
        size = choose_batch(load_model(model, check=False), first,
                            self.settings.memory_budget or MemoryBudget.default())
        rows = [runner.run(feeds, [name])[name]
                for feeds in stacked_batches(itertools.chain([first], samples), size)]
        log.info("ran %s on %d samples (output '%s', batch %d)", model.name,
                 sum(len(row) for row in rows) if size > 1 else len(rows), name, size)
        if size > 1 or all(row.ndim >= 1 and row.shape[0] == 1 for row in rows):
            return np.concatenate(rows, axis=0)
        return np.stack(rows, axis=0)

    def _checked(self, data: Dataset, inputs: Sequence[str]
                 ) -> Iterator[dict[str, np.ndarray]]:
        for index, sample in enumerate(data.take(self.settings.num)):
            check_finite(sample, index, data.source)
            yield {k: v for k, v in sample.items() if k in inputs}


@dataclass(frozen=True)
class _Truth:
    labels: np.ndarray | None
    reference: np.ndarray | None
    reference_name: str | None


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
) -> EvalReport:
    """Evaluate ``model`` (and ``vs``, the float model, on the same samples); see the module."""
    model_path = arguments.path(model, "model")
    vs_path = arguments.optional_path(vs, "vs")
    labels, reference = _labels_and_reference(labels, reference)
    wanted = parse_metrics(metrics)
    runs = _Runs(_settings(dataset, threads, num, output_name, image_options, input_shapes,
                           backend))
    runs.settings = replace(runs.settings, memory_budget=MemoryBudget.parse(memory_budget))
    truth = _ground_truth(runs, model_path, wanted, labels, reference, fallback=vs_path)
    paths = [model_path] + ([vs_path] if vs_path is not None else [])
    results = tuple(_score(runs, path, wanted, truth) for path in paths)
    agreement = None
    if vs_path is not None:
        agreement = top1_agreement(runs.outputs(model_path), runs.outputs(vs_path))
    return EvalReport(results, agreement, truth.reference_name)


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
) -> tuple[EvalResult, ...]:
    """Evaluate several models (e.g. each precision of one model) on the same samples.

    ``reference`` (typically the F32 model, which may also be in ``models``; it runs
    once) is what PSNR/SSIM/cos compare against, unless a ``target`` array is given.
    """
    paths = arguments.paths(models, "models")
    labels, reference = _labels_and_reference(labels, reference)
    wanted = parse_metrics(metrics)
    runs = _Runs(_settings(dataset, threads, num, output_name, image_options, input_shapes,
                           backend))
    runs.settings = replace(runs.settings, memory_budget=MemoryBudget.parse(memory_budget))
    truth = _ground_truth(runs, paths[0], wanted, labels, reference, fallback=None)
    return tuple(_score(runs, path, wanted, truth) for path in paths)


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


def _settings(dataset: str | Path, threads: int | None, num: int | None,
              output_name: str | None, image_options: ImageOptions | None,
              input_shapes: Mapping[str, tuple[int, ...]] | None,
              backend: str = "ort") -> _RunSettings:
    arguments.instance(image_options, ImageOptions, "image_options", "an ImageOptions")
    check_backend(arguments.text(backend, "backend"))
    return _RunSettings(arguments.path(dataset, "dataset"), arguments.threads(threads),
                        arguments.optional_count(num, "num"),
                        arguments.optional_text(output_name, "output_name"), image_options,
                        arguments.shapes(input_shapes), backend)  # type: ignore[arg-type]


def _labels_and_reference(labels: object, reference: object) -> tuple[Path | None, Path | None]:
    return arguments.optional_path(labels, "labels"), \
        arguments.optional_path(reference, "reference")


def _ground_truth(runs: _Runs, first_model: Path, wanted: Sequence[str],
                  labels: str | Path | None, reference: str | Path | None,
                  fallback: Path | None) -> _Truth:
    """Labels (for top-k) and the reference outputs (for psnr/ssim/cos), cut to ``num``."""
    data = runs.open(first_model)
    total = len(data)
    count = total if runs.settings.num is None else min(runs.settings.num, total)
    label_array = None
    if any(m in CLASSIFICATION_METRICS for m in wanted):
        paths = getattr(data, "paths", None)
        try:
            label_array = load_labels(labels, runs.settings.dataset, total,
                                      sample_paths=paths)[:count]
        except DatasetError as err:
            if labels is None and HOW_TO_GIVE_LABELS in err.template:
                needing = ", ".join(m for m in wanted if m in CLASSIFICATION_METRICS)
                raise DatasetError(f"{needing} need(s) labels: {err.template}") from err
            raise
    ref_array, ref_name = None, None
    if any(m in REFERENCE_METRICS for m in wanted):
        ref_array, ref_name = _reference_outputs(runs, labels, reference, fallback, total, count)
    return _Truth(label_array, ref_array, ref_name)


def _reference_outputs(runs: _Runs, labels: str | Path | None, reference: str | Path | None,
                       fallback: Path | None, total: int,
                       count: int) -> tuple[np.ndarray, str]:
    if reference is not None:
        path = Path(reference)
        return runs.outputs(path, strict_name=False), path.name
    targets = load_targets(labels, runs.settings.dataset, total)
    if targets is not None:
        return targets[:count], "target arrays"
    if fallback is not None:
        return runs.outputs(fallback, strict_name=False), fallback.name
    raise UsageError(f"{', '.join(REFERENCE_METRICS)} compare each output with a reference; "
                     f"give a reference model ({{reference}} or {{vs}}) or a 'target' "
                     f"array (first axis = samples) in the labels or data-set .npz")


def _score(runs: _Runs, model: Path, wanted: Sequence[str], truth: _Truth) -> EvalResult:
    outputs = runs.outputs(model)
    values: dict[str, float] = {}
    for metric in wanted:
        if metric in CLASSIFICATION_METRICS:
            assert truth.labels is not None
            values[metric] = topk_accuracy(outputs, truth.labels, int(metric[3:]))
            continue
        assert truth.reference is not None
        reference = _matching(truth.reference, outputs, truth.reference_name, model)
        if metric == "psnr":
            values[metric] = psnr(reference, outputs)
        elif metric == "ssim":
            values[metric] = ssim(reference, outputs)
        else:
            values[metric] = mean_cosine(reference, outputs)
    return EvalResult(model=model.name, metrics=values, num_samples=int(outputs.shape[0]))


def _matching(reference: np.ndarray, outputs: np.ndarray, name: str | None,
              model: Path) -> np.ndarray:
    """The reference in the outputs' shape; same sample count and per-sample size required."""
    if reference.shape == outputs.shape:
        return reference
    if reference.shape[:1] == outputs.shape[:1] and reference.size == outputs.size:
        return reference.reshape(outputs.shape)
    raise DatasetError(f"the reference ({name}) has shape {list(reference.shape)}, but "
                       f"{model.name}'s output has {list(outputs.shape)}; they must hold the "
                       f"same samples of the same size")


def _output_name(names: Sequence[str], wanted: str | None, model: Path, strict: bool) -> str:
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
