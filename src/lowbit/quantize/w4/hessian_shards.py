"""GPTQ's input statistics as shards on an executor (lowbit.parallel), merged into one set.

    with open_executor(Parallelism(workers=2), threads=None, samples=128) as executor:
        hessians = collect_hessians_sharded(model, ["x"], DatasetRef("calib.npz"), executor,
                                            num=128)

Each worker opens the data set by path, reads its range of samples and returns the
:class:`lowbit.quantize.w4.hessian.HessianSums` of that range (per tensor Σ XᵀX in
float64 and the rows of X: K×K numbers per tensor, whatever the samples); the sums
merge into what :func:`lowbit.quantize.w4.hessian.collect_hessians` gives in one
process, equal up to float rounding (see there). The model is shared once per job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import reduce

import numpy as np
import onnx

from lowbit.data import Dataset, check_finite
from lowbit.data.refs import DatasetRef
from lowbit.errors import DatasetError
from lowbit.io.model import input_specs
from lowbit.parallel import Advance, Executor, Shard, Shared, new_key, worker_cache
from lowbit.parallel.shards import split_samples
from lowbit.quantize.w4.hessian import HessianRun, Hessians, HessianSums
from lowbit.runtime.memory import MemoryBudget

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HessianJob:
    """What every shard of one collection needs: small, picklable, by reference."""

    key: str
    model: Shared
    dataset: DatasetRef
    tensors: tuple[str, ...]
    threads: int | None
    memory_budget: int  # bytes, one worker's part of the budget


def observe_hessian_shard(job: HessianJob, shard: Shard, advance: Advance) -> HessianSums:
    """The partial sums of one shard's samples (in a worker)."""
    model, run = worker_cache(job.key, "hessians", lambda: _prepare(job))
    data = job.dataset.open(input_specs(model))
    return run.observe(_finite(data, shard), first_index=shard.start, advance=advance)


def _prepare(job: HessianJob) -> tuple[onnx.ModelProto, HessianRun]:
    model = onnx.load_from_string(job.model.load())
    run = HessianRun(model, job.tensors, threads=job.threads,
                     memory_budget=MemoryBudget(job.memory_budget))
    return model, run


def _finite(data: Dataset, shard: Shard) -> Iterator[dict[str, np.ndarray]]:
    """The shard's samples; a NaN or Inf fails naming the sample, as in one process."""
    for index, sample in enumerate(data.take_range(shard.start, shard.stop), shard.start):
        check_finite(sample, index, data.source)
        yield sample


def hessian_job(model: onnx.ModelProto, tensors: tuple[str, ...], dataset: DatasetRef,
                executor: Executor, *, memory_budget: MemoryBudget | None = None
                ) -> HessianJob:
    """The job every shard reads: the model shared once, the memory budget split among
    the workers on this machine."""
    budget = memory_budget or MemoryBudget.default()
    return HessianJob(new_key(), executor.share(model.SerializeToString()), dataset,
                      tuple(dict.fromkeys(tensors)), executor.threads,
                      max(budget.bytes // executor.local_workers, 1 << 20))


def merge_sums(states: list[HessianSums]) -> HessianSums:
    """The shards' sums as one (in shard order)."""
    started = time.perf_counter()
    state = reduce(HessianSums.merge, states)
    log.info("merged %d GPTQ shard(s) in %.3f s", len(states), time.perf_counter() - started)
    return state


def collect_hessians_sharded(model: onnx.ModelProto, tensors: tuple[str, ...],
                             dataset: DatasetRef, executor: Executor, *,
                             num: int | None = None, progress: bool = True,
                             memory_budget: MemoryBudget | None = None,
                             shards: list[Shard] | None = None) -> Hessians:
    """H of each tensor over the first ``num`` samples of ``dataset`` (all when None),
    collected as shards on ``executor`` (``shards``: these ranges instead of an even
    split) and merged."""
    count = len(dataset.open(input_specs(model)))
    count = count if num is None else min(num, count)
    if count == 0:
        raise DatasetError("GPTQ needs calibration samples; the data set has none")
    job = hessian_job(model, tensors, dataset, executor, memory_budget=memory_budget)
    parts = shards if shards is not None else split_samples(count, executor.parts)
    states = executor.run(observe_hessian_shard, job, parts, label="GPTQ inputs",
                          progress=progress)
    return merge_sums(states).finish()
