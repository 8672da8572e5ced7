"""Calibration as shards merged into one table: bit-identical to one process.

Shards run here in this process (InlineExecutor) with explicit sample ranges, so every
split (1, 2 and 3 shards, uneven ones, a shard of one sample) costs no process start;
tests/parallel/test_pool.py runs the same on spawned processes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lowbit.calibration import CalibrationSettings, collect_ranges
from lowbit.calibration.collect import CalibrationRun, finish_table
from lowbit.calibration.observers import METHODS
from lowbit.calibration.sharded import collect_ranges_sharded
from lowbit.calibration.table import CalibrationTable
from lowbit.data import open_dataset
from lowbit.data.refs import DatasetRef
from lowbit.io.model import input_specs
from lowbit.parallel import InlineExecutor, shards_from_bounds, split_samples
from lowbit.runtime.memory import MemoryBudget
from tests.parallel.shard_models import SPLITS, conv_model, samples


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("shards") / "calib.npz"
    np.savez(path, x=samples())
    return path


def single_process(path: Path, method: str, **keywords: object) -> CalibrationTable:
    model = conv_model()
    dataset = open_dataset(path, input_specs(model))
    return collect_ranges(model, dataset, CalibrationSettings(method=method), progress=False,
                          input_means=True, channel_ranges=True, **keywords)  # type: ignore[arg-type]


def assert_same_table(got: CalibrationTable, want: CalibrationTable) -> None:
    """Ranges and channel ranges bit for bit; input means (float sums) to rounding."""
    assert got.ranges == want.ranges  # TensorRange equality: exact floats
    assert got.skipped == want.skipped
    assert got.num_samples == want.num_samples
    assert got.channel_ranges.keys() == want.channel_ranges.keys()
    for name, (low, high) in want.channel_ranges.items():
        assert np.array_equal(got.channel_ranges[name][0], low)
        assert np.array_equal(got.channel_ranges[name][1], high)
    assert got.input_means.keys() == want.input_means.keys()
    for name, mean in want.input_means.items():
        np.testing.assert_allclose(got.input_means[name], mean, rtol=1e-6, atol=1e-7)


_WANT: dict[str, CalibrationTable] = {}  # one single-process table per method


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("split", SPLITS)
def test_merged_shards_equal_one_process(data: Path, method: str, split: str) -> None:
    if method not in _WANT:
        _WANT[method] = single_process(data, method)
    want = _WANT[method]
    assert want.input_means and want.channel_ranges and len(want.ranges) >= 5
    with InlineExecutor() as executor:
        got = collect_ranges_sharded(conv_model(), DatasetRef(str(data)),
                                     CalibrationSettings(method=method), executor,
                                     progress=False, input_means=True, channel_ranges=True,
                                     shards=shards_from_bounds(SPLITS[split]))
    assert_same_table(got, want)


def test_the_histogram_methods_see_a_strided_subsample(data: Path) -> None:
    """The merge is exercised where it is delicate: a tensor subsampled (stride 2) and a
    histogram range that grows between the shards."""
    model = conv_model()
    run = CalibrationRun(model, CalibrationSettings(method="kl"))
    first = run.observe({"x": s[None]} for s in samples()[:4])
    last = run.observe({"x": s[None]} for s in samples()[-4:])
    relu_first, relu_last = first.observers["r0"], last.observers["r0"]
    assert relu_first.count == 4 * 16 * 32 * 32
    assert relu_first.hist.sum() == relu_first.count  # each of 8,192 values stands for 2
    assert relu_first.range < relu_last.range  # type: ignore[attr-defined]
    merged = finish_table(first.merge(last))
    assert merged.num_samples == 8


def test_batching_does_not_change_the_table(data: Path) -> None:
    """A memory budget that batches 1 sample per run gives the table of batches of 8:
    the histogram subsample is taken per sample, whatever batch a sample ran in."""
    want = single_process(data, "auto")
    got = single_process(data, "auto", memory_budget=MemoryBudget(1), max_batch=8)
    assert_same_table(got, want)


def test_split_samples_aligns_to_batches_and_covers_every_sample() -> None:
    shards = split_samples(21, parts=3)
    assert [(s.start, s.stop) for s in shards] == [(0, 8), (8, 16), (16, 21)]
    uneven = split_samples(100, parts=8)
    assert sum(s.size for s in uneven) == 100
    assert all(s.start % 8 == 0 for s in uneven)
    assert [s.stop for s in uneven][:-1] == [s.start for s in uneven][1:]
    assert len(split_samples(5, parts=4)) == 1  # fewer samples than a batch: one shard
