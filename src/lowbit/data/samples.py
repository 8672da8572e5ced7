"""Samples as every stage reads them: finite, and only as many as asked.

    for sample in finite_samples(dataset): ...        # a NaN/Inf fails, naming the sample
    feeds = list(first_samples(dataset, 32))          # at most 32, read lazily
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from lowbit.data.datasets import Dataset, check_finite


def finite_samples(dataset: Dataset) -> Iterator[dict[str, np.ndarray]]:
    """The data set's samples; a NaN or Inf in one raises DatasetError naming it."""
    for index, sample in enumerate(dataset):
        check_finite(sample, index, dataset.source)
        yield sample


def first_samples(dataset: Dataset, limit: int) -> Iterator[dict[str, np.ndarray]]:
    """The first ``limit`` samples (finite), never reading past them."""
    for index, sample in enumerate(finite_samples(dataset)):
        if index >= limit:
            return
        yield sample
