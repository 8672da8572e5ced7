"""Shards: a data set cut into ranges of sample indices, and what runs them.

    shards = split_samples(1000, parts=8)          # [Shard(0, 0, 128), Shard(1, 128, 256), ...]
    shards = split_samples(20, parts=3)            # uneven: 0..8, 8..16, 16..20

A shard is a range of sample indices, never the samples: a worker opens the data set
itself (by path) and reads only its range, so nothing but the range and the small
partial state it returns crosses a process boundary. Boundaries fall on multiples of
``align`` (the largest calibration batch), so a shard's runs batch the samples as a
single process would.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from lowbit.errors import UsageError

ALIGN = 8  # lowbit.calibration.collect's largest batch


@dataclass(frozen=True)
class Shard:
    """Samples ``start`` .. ``stop`` - 1 of a data set; ``index`` orders the results."""

    index: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start

    def __str__(self) -> str:
        return f"shard {self.index} (samples {self.start}..{self.stop - 1})"


def split_samples(count: int, parts: int, *, align: int = ALIGN) -> list[Shard]:
    """``count`` samples in at most ``parts`` contiguous shards of nearly equal size,
    boundaries on multiples of ``align`` (fewer shards when there are too few samples)."""
    if count < 0 or parts < 1 or align < 1:
        raise UsageError(f"cannot split {count} samples into {parts} parts of {align}")
    blocks = -(-count // align)
    parts = max(1, min(parts, blocks))
    bounds = [min(count, align * (blocks * k // parts)) for k in range(parts + 1)]
    return [Shard(i, a, b) for i, (a, b) in enumerate(itertools.pairwise(bounds))
            if b > a]


def shards_from_bounds(bounds: list[int]) -> list[Shard]:
    """Shards between the given increasing sample indices (tests: uneven splits)."""
    return [Shard(i, a, b) for i, (a, b) in enumerate(itertools.pairwise(bounds))]
