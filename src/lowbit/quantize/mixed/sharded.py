"""The sensitivity ranking as shards of candidate ops on an executor (lowbit.parallel).

    with open_executor(Parallelism(workers=2), threads=None) as executor:
        result = rank_sensitivity_sharded(model, table.ranges, settings,
                                          DatasetRef("calib.npz"), 16, executor)

Every candidate op is measured independently (the model with that op alone kept float),
so the candidates split into one shard per worker (every worker-th op, so that each
gets early ops, whose suffixes are long, and late ones); a worker opens the data set
by path, reads the same first ``num`` samples, runs the F32 reference and the INT8 model once and
measures its shard's ops (lowbit.quantize.mixed.sensitivity.rank_sensitivity with those
``candidates``). The rows of all shards, sorted as one process sorts them (ties keep the
candidate order), are the ranking; each worker's reference and INT8 passes are counted
in ``forward_passes``, so the cost shows what the workers did between them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import onnx

from lowbit.calibration.observers import TensorRange
from lowbit.data.refs import DatasetRef
from lowbit.data.samples import first_samples
from lowbit.io.model import input_specs
from lowbit.parallel import Advance, Executor, Shard, Shared, new_key, worker_cache
from lowbit.parallel.shards import split_samples
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.quantize.mixed.qtable import LossRow
from lowbit.quantize.mixed.search import Judge, Target
from lowbit.quantize.mixed.sensitivity import (
    SensitivityResult,
    candidate_ops,
    rank_sensitivity,
)
from lowbit.runtime.memory import MemoryBudget


@dataclass(frozen=True)
class RankingJob:
    """What every shard of one ranking needs: small, picklable, by reference."""

    key: str
    model: Shared
    dataset: DatasetRef
    num: int
    ranges: Mapping[str, TensorRange]
    settings: QuantizeSettings
    candidates: tuple[tuple[str, str], ...]
    precision: str
    skipped: Mapping[str, str] | None
    threads: int | None
    memory_budget: int


def rank_shard(job: RankingJob, shard: Shard, advance: Advance) -> SensitivityResult:
    """The rows of one shard's candidate ops (in a worker)."""
    model, feeds = worker_cache(job.key, "ranking", lambda: _prepare(job))
    result = rank_sensitivity(model, job.ranges, job.settings, feeds, precision=job.precision,
                              skipped=job.skipped,
                              candidates=list(job.candidates[shard.start:shard.stop]),
                              memory_budget=MemoryBudget(job.memory_budget),
                              threads=job.threads)
    advance(shard.size)
    return result


def _prepare(job: RankingJob) -> tuple[onnx.ModelProto, list[dict[str, np.ndarray]]]:
    return _model_and_feeds(job.model, job.dataset, job.num)


def _model_and_feeds(shared: Shared, dataset: DatasetRef, num: int
                     ) -> tuple[onnx.ModelProto, list[dict[str, np.ndarray]]]:
    """The shared model, and the first ``num`` samples of ``dataset`` (in a worker)."""
    model = onnx.load_from_string(shared.load())
    return model, list(first_samples(dataset.open(input_specs(model)), num))


def merge_rankings(parts: Sequence[SensitivityResult],
                   candidates: Sequence[tuple[str, str]]) -> SensitivityResult:
    """The shards' rows as one ranking, ordered as rank_sensitivity orders them."""
    position = {name: index for index, (name, _) in enumerate(candidates)}
    rows = sorted((row for part in parts for row in part.rows),
                  key=lambda row: (-row.sqnr_db, -row.cosine, position[row.name]))
    return SensitivityResult(
        [LossRow(order, row.name, row.op_type, row.sqnr_db, row.cosine)
         for order, row in enumerate(rows, start=1)],
        sum(part.forward_passes for part in parts), sum(part.runs for part in parts),
        parts[0].samples if parts else 0)


def rank_sensitivity_sharded(model: onnx.ModelProto, ranges: Mapping[str, TensorRange],
                             settings: QuantizeSettings, dataset: DatasetRef, num: int,
                             executor: Executor, *, precision: str = "F32",
                             skipped: Mapping[str, str] | None = None,
                             memory_budget: MemoryBudget | None = None,
                             progress: bool = True) -> SensitivityResult:
    """rank_sensitivity of ``model`` (canonical) on the first ``num`` samples of
    ``dataset``, its candidate ops measured as shards on ``executor``."""
    candidates = candidate_ops(model, ranges, settings, skipped=skipped)
    # One shard per worker: each shard pays the F32 reference and the INT8 model's runs
    # again, so more shards than workers would only repeat them.
    workers = max(1, min(executor.workers, len(candidates)))
    dealt = tuple(op for first in range(workers) for op in candidates[first::workers])
    budget = memory_budget or MemoryBudget.default()
    job = RankingJob(new_key(), executor.share(model.SerializeToString()), dataset, num,
                     dict(ranges), settings, dealt, precision,
                     None if skipped is None else dict(skipped), executor.threads,
                     max(budget.bytes // executor.local_workers, 1 << 20))
    shards = split_samples(len(dealt), workers, align=1)
    parts = executor.run(rank_shard, job, shards, label="ranking ops", progress=progress)
    return merge_rankings(parts, candidates)


@dataclass(frozen=True)
class SearchJob:
    """What every worker measuring the search's candidate sets needs: the model shared
    once, the samples by reference; ``sets`` changes from call to call under one ``key``,
    so a worker keeps its F32 reference outputs for the whole search."""

    key: str
    model: Shared
    dataset: DatasetRef
    num: int
    ranges: Mapping[str, TensorRange]
    settings: QuantizeSettings
    target: Target
    labels: np.ndarray | None
    fallback: str
    skipped: Mapping[str, str] | None
    sets: tuple[tuple[str, ...], ...] = ()


def measure_set_shard(job: SearchJob, shard: Shard, advance: Advance) -> float:
    """The target's metric of one candidate set, ``job.sets[shard.start]`` (in a worker)."""
    judge = worker_cache(job.key, "search", lambda: _search_judge(job))
    value = judge.metric(job.sets[shard.start])
    advance(shard.size)
    return value


def _search_judge(job: SearchJob) -> Judge:
    model, feeds = _model_and_feeds(job.model, job.dataset, job.num)
    return Judge(model, job.ranges, job.settings, feeds, job.target, job.labels,
                  job.fallback, job.skipped)


def measure_sets(executor: Executor, model: onnx.ModelProto,
                 ranges: Mapping[str, TensorRange], settings: QuantizeSettings,
                 dataset: DatasetRef, num: int, target: Target,
                 labels: np.ndarray | None, fallback: str,
                 skipped: Mapping[str, str] | None
                 ) -> Callable[[Sequence[tuple[str, ...]]], list[float]]:
    """search_mixed's ``measure_many`` on ``executor``: one shard per candidate set, each
    measured in a worker as this process would (its own F32 reference outputs on the
    first ``num`` samples of ``dataset``)."""
    job = SearchJob(new_key(), executor.share(model.SerializeToString()), dataset, num,
                    dict(ranges), settings, target, labels, fallback,
                    dict(skipped) if skipped else None)

    def measure(sets: Sequence[tuple[str, ...]]) -> list[float]:
        shards = [Shard(index, index, index + 1) for index in range(len(sets))]
        return [float(v) for v in executor.run(measure_set_shard,
                                                replace(job, sets=tuple(sets)), shards,
                                                label="search trials", progress=False)]

    return measure
