"""A data set by reference: what a worker of a parallel stage opens for itself.

    ref = DatasetRef("val/", image_options=ImageOptions(mean=(127.5,), scale=(1 / 127.5,)))
    data = ref.open(input_specs(model))              # a lowbit.data.Dataset
    for sample in data.take_range(128, 256): ...     # one shard's samples

Only the path and the options cross a process boundary (lowbit.parallel), never the
samples; the path must be readable where the worker runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lowbit.data.datasets import Dataset, open_dataset
from lowbit.data.images import ImageOptions
from lowbit.spec import TensorSpec


@dataclass(frozen=True)
class DatasetRef:
    """The path of a data set and how to read it (as lowbit.data.open_dataset takes them)."""

    path: str
    image_options: ImageOptions | None = None
    input_shapes: Mapping[str, tuple[int, ...]] | None = None

    def open(self, specs: Sequence[TensorSpec]) -> Dataset:
        return open_dataset(self.path, specs, image_options=self.image_options,
                            input_shapes=self.input_shapes)
