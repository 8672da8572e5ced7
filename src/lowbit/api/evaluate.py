"""lowbit.evaluate: accuracy of a model on real data."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from lowbit import arguments
from lowbit.analysis.evaluate import EvalReport
from lowbit.analysis.evaluate import evaluate as evaluate_model
from lowbit.api.common import (
    image_options_for,
)
from lowbit.data import (
    ImageOptions,
)

log = logging.getLogger(__name__)


def evaluate(model: str | Path, dataset: str | Path, *,
             labels: str | Path | None = None, metrics: Sequence[str] | str = ("top1", "top5"),
             reference: str | Path | None = None, vs: str | Path | None = None,
             threads: int | None = None, num: int | None = None,
             output_name: str | None = None, image_options: ImageOptions | None = None,
             input_shapes: Mapping[str, tuple[int, ...]] | None = None,
             backend: str = "ort", memory_budget: str | int | None = None,
             workers: int | None = None, cluster: str | None = None,
             progress: bool = True) -> EvalReport:
    """lowbit.analysis.evaluate.evaluate (same keywords), with an image-folder data set
    preprocessed as the model's meta file says when no ``image_options`` are given;
    samples run in batches as ``memory_budget`` (lowbit.runtime.memory) allows, as shards
    on ``workers`` processes or a Ray ``cluster`` (lowbit.parallel) when given; one
    progress bar over the samples of all workers unless ``progress`` is False."""
    model, dataset = arguments.path(model, "model"), arguments.path(dataset, "dataset")
    arguments.instance(image_options, ImageOptions, "image_options", "an ImageOptions")
    return evaluate_model(model, dataset, labels=labels, metrics=metrics, reference=reference,
                          vs=vs, threads=threads, num=num, output_name=output_name,
                          image_options=image_options_for(model, image_options, dataset),
                          input_shapes=input_shapes, backend=backend,
                          memory_budget=memory_budget, workers=workers, cluster=cluster,
                          progress=progress)
