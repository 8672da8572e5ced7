"""lowbit.evaluate: accuracy of a model on real data."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

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
             image_options: ImageOptions | None = None, **options: Any) -> EvalReport:
    """lowbit.analysis.evaluate.evaluate (same keywords), with an image-folder data set
    preprocessed as the model's meta file says when no ``image_options`` are given."""
    return evaluate_model(model, dataset,
                          image_options=image_options_for(model, image_options, dataset),
                          **options)
