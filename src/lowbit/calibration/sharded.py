"""Calibration as shards on an executor (lowbit.parallel), merged into one table.

    with open_executor(Parallelism(workers=2), threads=None, samples=1000) as executor:
        table = collect_ranges_sharded(model, DatasetRef("calib.npz"), settings, executor)

Each worker opens the data set by path, reads its range of samples and returns a
:class:`lowbit.calibration.collect.CalibrationState`; the states merge exactly, so the
table equals the one :func:`lowbit.calibration.collect.collect_ranges` writes in one
process (bit-identical ranges for every method; input means equal to float rounding),
whatever the number of workers. The model is shared once per job, never per shard.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import reduce

import onnx

from lowbit.calibration.collect import CalibrationRun, CalibrationState, finish_table
from lowbit.calibration.observers import CalibrationSettings
from lowbit.calibration.table import CalibrationTable
from lowbit.data.refs import DatasetRef
from lowbit.errors import DatasetError
from lowbit.io.model import input_specs
from lowbit.parallel import Advance, Executor, Shard, Shared, new_key, worker_cache
from lowbit.parallel.shards import split_samples
from lowbit.runtime.memory import MemoryBudget

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CalibrationJob:
    """What every shard of one calibration needs: small, picklable, by reference."""

    key: str
    model: Shared
    dataset: DatasetRef
    settings: CalibrationSettings
    threads: int | None
    memory_budget: int
    input_means: bool
    channel_ranges: bool


def observe_shard(job: CalibrationJob, shard: Shard, advance: Advance) -> CalibrationState:
    """The calibration state of one shard's samples (in a worker)."""
    model, run = worker_cache(job.key, "calibration", lambda: _prepare(job))
    data = job.dataset.open(input_specs(model))
    return run.observe(data.take_range(shard.start, shard.stop), source=data.source,
                       first_index=shard.start, advance=advance)


def _prepare(job: CalibrationJob) -> tuple[onnx.ModelProto, CalibrationRun]:
    model = onnx.load_from_string(job.model.load())
    run = CalibrationRun(model, job.settings, threads=job.threads,
                         memory_budget=MemoryBudget(job.memory_budget),
                         input_means=job.input_means, channel_ranges=job.channel_ranges)
    return model, run


def calibration_job(model: onnx.ModelProto, dataset: DatasetRef,
                    settings: CalibrationSettings, executor: Executor, *,
                    memory_budget: MemoryBudget | None = None, input_means: bool = False,
                    channel_ranges: bool = False) -> CalibrationJob:
    """The job every shard of one calibration on ``executor`` reads: the model shared
    once, the memory budget split among the workers on this machine."""
    budget = memory_budget or MemoryBudget.default()
    return CalibrationJob(new_key(), executor.share(model.SerializeToString()), dataset,
                          settings, executor.threads,
                          max(budget.bytes // executor.local_workers, 1 << 20), input_means,
                          channel_ranges)


def merge_states(states: list[CalibrationState]) -> CalibrationState:
    """The shards' states as one (in shard order; any order gives the same table)."""
    started = time.perf_counter()
    state = reduce(CalibrationState.merge, states)
    log.info("merged %d calibration shard(s) in %.3f s", len(states),
             time.perf_counter() - started)
    return state


def collect_ranges_sharded(model: onnx.ModelProto, dataset: DatasetRef,
                           settings: CalibrationSettings, executor: Executor, *,
                           num: int | None = None, progress: bool = True,
                           memory_budget: MemoryBudget | None = None,
                           input_means: bool = False, channel_ranges: bool = False,
                           shards: list[Shard] | None = None) -> CalibrationTable:
    """The calibration table of the first ``num`` samples of ``dataset`` (all when None),
    observed as shards on ``executor`` (``shards``: these ranges instead of an even
    split) and merged."""
    count = len(dataset.open(input_specs(model)))
    count = count if num is None else min(num, count)
    if count == 0:
        raise DatasetError("data set has no samples")
    job = calibration_job(model, dataset, settings, executor, memory_budget=memory_budget,
                          input_means=input_means, channel_ranges=channel_ranges)
    parts = shards if shards is not None else split_samples(count, executor.parts)
    states = executor.run(observe_shard, job, parts, label="calibrating", progress=progress)
    return finish_table(merge_states(states), progress=progress)
