"""Layer-by-layer compare as shards of samples on an executor (lowbit.parallel), merged.

    with open_executor(Parallelism(workers=2), threads=None, samples=n) as executor:
        report = compare_layers_sharded("m.f32.onnx", "m.int8.onnx", DatasetRef("x.npz"),
                                        Tolerance(0.99, 0.90), executor)

Each worker loads both models by path, pairs their tensors (the same pairing in every
worker: it depends on the graphs only) and builds their sessions once per job (kept for
its next shard, lowbit.parallel.worker_cache), runs its shard's samples and returns the
:class:`lowbit.analysis.layerwise.LayerComparer` of that shard: a handful of sums per
pair, whatever the number of samples. The merged sums give the report one process
gives, up to float rounding (statuses and max errors exactly). Dumping tensors
(``dump``) writes the samples in order from one process and is not sharded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import reduce
from pathlib import Path

import numpy as np

from lowbit.analysis.layerwise import (
    ExposedSessions,
    LayerComparer,
    LayerReport,
    compare_samples,
    layer_report,
)
from lowbit.analysis.pairing import Pairing, check_pairs, pair_model_tensors
from lowbit.analysis.validate import Tolerance
from lowbit.data import Dataset, check_finite
from lowbit.data.refs import DatasetRef
from lowbit.errors import DatasetError
from lowbit.io.model import input_specs, load_model
from lowbit.parallel import Advance, Executor, Shard, new_key, split_samples, worker_cache
from lowbit.runtime.memory import MemoryBudget


@dataclass(frozen=True)
class CompareJob:
    """What every shard of one compare needs: paths and settings, small and picklable."""

    key: str
    reference: str
    test: str
    dataset: DatasetRef
    threads: int | None
    memory_budget: int


class ShardSamples:
    """Samples ``start`` .. ``stop`` - 1 of a data set, read again on every pass (finite):
    compare runs a pass per group of tensors when they do not fit the memory budget."""

    def __init__(self, dataset: Dataset, start: int, stop: int) -> None:
        self.dataset, self.start, self.stop = dataset, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for index, sample in enumerate(self.dataset.take_range(self.start, self.stop),
                                       self.start):
            check_finite(sample, index, self.dataset.source)
            yield sample


@dataclass(frozen=True)
class _Worker:
    """One worker's pairing and sessions of both models for a job (kept across its
    shards)."""

    pairing: Pairing
    sessions: ExposedSessions

    @classmethod
    def open(cls, job: CompareJob) -> _Worker:
        reference = load_model(Path(job.reference))
        test = load_model(Path(job.test))
        return cls(pair_model_tensors(reference, test),
                   ExposedSessions(reference, test, job.threads, keep=True))


def compare_shard(job: CompareJob, shard: Shard, advance: Advance) -> LayerComparer:
    """The running sums of every pair over one shard's samples (in a worker)."""
    worker = worker_cache(job.key, "compare", lambda: _Worker.open(job))
    reference, test = worker.sessions.reference, worker.sessions.test
    data = job.dataset.open(input_specs(reference))
    comparer = compare_samples(reference, test, worker.pairing.pairs,
                               ShardSamples(data, shard.start, shard.stop), progress=False,
                               memory_budget=MemoryBudget(job.memory_budget),
                               sessions=worker.sessions)
    advance(shard.size)
    return comparer


def merge_comparers(comparers: list[LayerComparer]) -> LayerComparer:
    """The shards' sums as one (in shard order)."""
    return reduce(LayerComparer.merge, comparers)


def compare_layers_sharded(reference: str | Path, test: str | Path, dataset: DatasetRef,
                           tolerance: Tolerance, executor: Executor, *,
                           progress: bool = True, memory_budget: MemoryBudget | None = None,
                           shards: list[Shard] | None = None) -> LayerReport:
    """Compare the two models on every sample of ``dataset`` as shards on ``executor``
    (``shards``: these ranges instead of an even split) and merge the sums."""
    ref_model = load_model(Path(reference))
    pairing = pair_model_tensors(ref_model, load_model(Path(test)))
    check_pairs(pairing.pairs, "layer compare")
    count = len(dataset.open(input_specs(ref_model)))
    if count == 0:
        raise DatasetError("layer compare: the data set has no samples")
    budget = memory_budget or MemoryBudget.default()
    job = CompareJob(new_key(), str(reference), str(test), dataset, executor.threads,
                     max(budget.bytes // executor.local_workers, 1 << 20))
    parts = shards if shards is not None else split_samples(count, executor.parts)
    comparers = executor.run(compare_shard, job, parts, label="comparing layers",
                             progress=progress)
    return layer_report(merge_comparers(comparers), len(pairing.unpaired), tolerance)
