"""lowbit.qtable: rank ops by sensitivity, or search the smallest float set that meets a target."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from lowbit import arguments
from lowbit.analysis.labels import load_labels
from lowbit.api.common import load_float_model
from lowbit.calibration.fit import check_table_fits
from lowbit.calibration.observers import TensorRange
from lowbit.calibration.table import CalibrationTable, read_table
from lowbit.data import (
    Dataset,
    open_dataset,
)
from lowbit.data.refs import DatasetRef
from lowbit.data.samples import first_samples
from lowbit.errors import DatasetError
from lowbit.io.model import input_specs
from lowbit.outputs import check_distinct
from lowbit.parallel import Executor, InlineExecutor, Parallelism, open_executor
from lowbit.parallel.plan import ranking_workers
from lowbit.passes import canonicalize
from lowbit.quantize.int8.settings import ACTIVATION_TYPES, WEIGHT_RANGES, QuantizeSettings
from lowbit.quantize.mixed.qtable import QTable, write_qtable
from lowbit.quantize.mixed.search import FLOAT_PRECISIONS, SearchResult, Target, search_mixed
from lowbit.quantize.mixed.sensitivity import SensitivityResult, rank_sensitivity
from lowbit.quantize.mixed.sharded import measure_sets, rank_sensitivity_sharded
from lowbit.runtime.memory import MemoryBudget

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QTableResult:
    path: Path
    qtable: QTable
    sensitivity: SensitivityResult | None
    search: SearchResult | None


def qtable(
    model: str | Path,
    dataset: str | Path,
    *,
    calibration_table: str | Path | CalibrationTable,
    output: str | Path,
    num: int | None = 32,
    target: str | None = None,
    labels: str | Path | None = None,
    fallback: str = "F32",
    activation: str = "uint8",
    per_channel: bool = True,
    weight_range: str = "auto",
    memory_budget: str | int | None = None,
    workers: int | None = None,
    cluster: str | None = None,
) -> QTableResult:
    """Rank every quantizable op by how much the network output (SQNR against F32)
    improves when it alone stays float, and write the ranking as a qtable's loss table;
    with ``target`` (``cos=0.99`` or ``top1-drop=0.5`` with ``labels``), search the
    smallest set of ``fallback`` ops that meets it, checked by running the mixed model,
    and write those ops as the qtable's entries. ``memory_budget`` (bytes or "512M";
    lowbit.runtime.memory) bounds the per-sample values the ranking keeps in memory.
    ``workers`` and ``cluster`` run the ranking's candidate ops as shards on local
    processes or Ray, as for lowbit.calibrate (lowbit.quantize.mixed.sharded); the
    ranking is the same. ``workers`` None: one per core for a model whose candidate
    builds are many (lowbit.parallel.plan.ranking_workers), else this process."""
    model, dataset = arguments.path(model, "model"), arguments.path(dataset, "dataset")
    output, labels = arguments.path(output, "output"), arguments.optional_path(labels, "labels")
    if not isinstance(calibration_table, CalibrationTable):
        calibration_table = arguments.path(calibration_table, "calibration_table")
    num = arguments.optional_count(num, "num")
    if target is not None:
        Target.parse(arguments.text(target, "target"))
    fallback = arguments.choice(fallback.upper() if isinstance(fallback, str) else fallback,
                                FLOAT_PRECISIONS, "fallback")
    arguments.flag(per_channel, "per_channel")
    budget = MemoryBudget.parse(memory_budget)
    parallel = Parallelism.checked(workers, cluster)
    check_distinct({"{model}": model, "{dataset}": dataset, "{labels}": labels,
                    "{calibration_table}": None if isinstance(calibration_table,
                                                              CalibrationTable)
                    else calibration_table}, {"{output}": output})
    settings = QuantizeSettings(activation=arguments.choice(activation, ACTIVATION_TYPES,
                                                            "activation"),
                                per_channel=per_channel,
                                weight_range=arguments.choice(weight_range, WEIGHT_RANGES,
                                                              "weight_range"))
    table = calibration_table if isinstance(calibration_table, CalibrationTable) else \
        read_table(calibration_table)
    canonical, _ = canonicalize(load_float_model(model, "qtable"))
    check_table_fits(table, canonical, calibration_table)
    dataset_ = open_dataset(dataset, input_specs(canonical))
    samples = list(first_samples(dataset_, num if num is not None else len(dataset_)))
    if not samples:
        raise DatasetError(f"the data set {dataset} has no samples")
    if parallel == Parallelism():  # none asked for: a pool where the builds are many
        parallel = Parallelism(ranking_workers(canonical))
    with open_executor(parallel, threads=None) as executor:
        rank = _ranking(executor, DatasetRef(str(dataset)))
        if target is None:
            ranking = rank(canonical, table.ranges, settings, samples,
                           skipped=table.skipped, memory_budget=budget)
            result_table = QTable({}, ranking.rows)
            path = write_qtable(result_table, output)
            return QTableResult(path, result_table, ranking, None)
        return _search(canonical, table, settings, samples, dataset, dataset_, target,
                       labels, fallback, budget, output, rank, executor)


def _ranking(executor: Executor, dataset: DatasetRef) -> Callable[..., SensitivityResult]:
    """rank_sensitivity, or its shards on ``executor`` where that has several workers."""
    if isinstance(executor, InlineExecutor):
        return rank_sensitivity

    def sharded(model: onnx.ModelProto, ranges: Mapping[str, TensorRange],
                settings: QuantizeSettings, feeds: Sequence[object], *,
                num: int | None = None, **keywords: Any) -> SensitivityResult:
        count = len(feeds) if num is None else min(num, len(feeds))
        return rank_sensitivity_sharded(model, ranges, settings, dataset, count, executor,
                                        **keywords)

    return sharded


def _search(canonical: onnx.ModelProto, table: CalibrationTable, settings: QuantizeSettings,
            samples: list[dict[str, np.ndarray]], dataset: Path, dataset_: Dataset,
            target: str, labels: Path | None, fallback: str, budget: MemoryBudget,
            output: Path, rank: Callable[..., SensitivityResult],
            executor: Executor) -> QTableResult:
    label_array = None
    if labels is not None or Path(dataset).suffix == ".npz":
        try:
            label_array = load_labels(labels, dataset, len(dataset_))[:len(samples)]
        except DatasetError:
            if labels is not None or Target.parse(target).metric == "top1-drop":
                raise
    goal = Target.parse(target)
    # with workers, the pruning pass measures two candidate sets at a time on them
    many = None if isinstance(executor, InlineExecutor) else measure_sets(
        executor, canonical, table.ranges, settings, DatasetRef(str(dataset)), len(samples),
        goal, label_array, fallback, table.skipped)
    search = search_mixed(canonical, table.ranges, settings, samples, goal,
                          labels=label_array, fallback=fallback,
                          skipped=table.skipped, memory_budget=budget, rank=rank,
                          measure_many=many)
    path = write_qtable(search.qtable, output)
    return QTableResult(path, search.qtable, search.ranking, search)
