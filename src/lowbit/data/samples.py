"""Samples as every stage reads them: finite, and only as many as asked.

    for sample in finite_samples(dataset): ...        # a NaN/Inf fails, naming the sample
    feeds = list(first_samples(dataset, 32))          # at most 32, read lazily
    window = SampleWindow(dataset, 32)                # the same, read again per pass
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import overload

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


class SampleWindow(Sequence[dict[str, np.ndarray]]):
    """The first ``limit`` samples of a data set as a sequence that holds none of them:
    each pass reads them again, for a stage that runs over a few samples several times
    (auto's output check, AdaRound, SmoothQuant). Indexing reads up to that sample."""

    def __init__(self, dataset: Dataset, limit: int) -> None:
        self.dataset = dataset
        self.limit = max(0, min(limit, len(dataset)))

    def __len__(self) -> int:
        return self.limit

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return first_samples(self.dataset, self.limit)

    @overload
    def __getitem__(self, index: int) -> dict[str, np.ndarray]: ...

    @overload
    def __getitem__(self, index: slice) -> SampleWindow: ...

    def __getitem__(self, index: int | slice) -> dict[str, np.ndarray] | SampleWindow:
        if isinstance(index, slice):
            if index.start not in (None, 0) or index.step not in (None, 1):
                raise TypeError("a sample window slices only prefixes: window[:n]")
            stop = self.limit if index.stop is None else index.stop
            return SampleWindow(self.dataset, max(0, min(stop, self.limit)))
        position = index + self.limit if index < 0 else index
        if not 0 <= position < self.limit:
            raise IndexError(f"sample {index} of a window of {self.limit}")
        return next(itertools.islice(iter(self), position, None))
