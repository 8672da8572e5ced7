"""Observer.merge: observers that saw parts of the data merge into the observer of all of
it, bit for bit (histogram, range, threshold), in any split and order."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest

from lowbit.calibration.observers import (
    METHODS,
    CalibrationSettings,
    HistogramObserver,
    Observer,
    grid_range,
    make_observer,
)
from lowbit.errors import UsageError


def batches(seed: int = 0) -> list[np.ndarray]:
    """Batches whose scale jumps up and down (the range doubles several times, not in
    order), a batch of zeros, a saturated batch (many values at the max) and a NaN-free
    -inf batch (a mask)."""
    rng = np.random.default_rng(seed)
    out = [rng.normal(size=500).astype(np.float32) * scale for scale in (0.01, 3.0, 0.2, 40.0)]
    out.insert(1, np.zeros(64, np.float32))
    out.append(np.minimum(np.abs(rng.normal(size=300)) * 8, 6.0).astype(np.float32))
    masked = rng.normal(size=100).astype(np.float32)
    masked[:5] = -np.inf
    out.append(masked)
    return out


def observe(method: str, parts: list[np.ndarray]) -> Observer:
    observer = make_observer(CalibrationSettings(method=method, bins=256))
    for batch in parts:
        observer.update(batch)
    return observer


def assert_same(a: Observer, b: Observer) -> None:
    assert (a.count, a.min, a.max) == (b.count, b.min, b.max)
    if isinstance(a, HistogramObserver):
        assert isinstance(b, HistogramObserver)
        assert a.range == b.range
        assert np.array_equal(a.hist, b.hist)
        assert (a.zeros, a.top, a.at_top) == (b.zeros, b.top, b.at_top)
    assert a.result() == b.result()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("cuts", [(1,), (3,), (2, 5), (1, 2, 3, 4, 5, 6)])
def test_merged_parts_equal_one_observer(method: str, cuts: tuple[int, ...]) -> None:
    data = batches()
    whole = observe(method, data)
    bounds = [0, *cuts, len(data)]
    parts = [observe(method, data[a:b]) for a, b in itertools.pairwise(bounds)]
    merged = parts[0]
    for part in parts[1:]:
        merged.merge(part)
    assert_same(merged, whole)


@pytest.mark.parametrize("method", ["kl", "auto"])
def test_merge_order_does_not_matter(method: str) -> None:
    data = batches(seed=3)
    forward = observe(method, data[:4])
    forward.merge(observe(method, data[4:]))
    backward = observe(method, data[4:])
    backward.merge(observe(method, data[:4]))
    assert_same(forward, backward)
    assert_same(forward, observe(method, data))


def test_subsampled_summaries_merge_exactly() -> None:
    """update_summary with an integer stride as the weight (collect's in-graph subsample)."""
    rng = np.random.default_rng(5)
    tensors = [rng.normal(size=4096).astype(np.float32) * s for s in (1.0, 9.0, 0.3)]

    def fed(parts: list[np.ndarray]) -> Observer:
        observer = make_observer(CalibrationSettings(method="mse"))
        for t in parts:
            observer.update_summary(float(t.min()), float(t.max()), t.size, t[::4], weight=4.0)
        return observer

    merged = fed(tensors[:1])
    merged.merge(fed(tensors[1:]))
    assert_same(merged, fed(tensors))
    assert merged.hist.sum() == 3 * 4096  # type: ignore[attr-defined]


def test_a_part_that_saw_only_zeros_or_nothing_merges() -> None:
    data = batches()
    for empty in (observe("percentile", []), observe("percentile", [np.zeros(10, np.float32)])):
        merged = observe("percentile", [])
        merged.merge(empty)
        merged.merge(observe("percentile", data))
        assert_same(merged, observe("percentile", [*([] if empty.count == 0 else
                                                      [np.zeros(10, np.float32)]), *data]))


def test_pickled_observer_keeps_only_the_occupied_bins() -> None:
    observer = observe("kl", [np.linspace(0, 1, 1000, dtype=np.float32)])
    again = pickle.loads(pickle.dumps(observer))
    assert_same(again, observer)
    state = observer.__getstate__()  # type: ignore[attr-defined]
    assert state["hist"].size <= observer.hist.size // 2 + 1  # type: ignore[attr-defined]


def test_histogram_range_is_the_power_of_two_above_the_max() -> None:
    assert grid_range(1.0) == 2.0
    assert grid_range(0.75) == 1.0
    assert grid_range(3.0e-5) == 2.0 ** -15
    observer = observe("mse", [np.array([0.3, -5.0], np.float32)])
    assert observer.range == 8.0  # type: ignore[attr-defined]


def test_merging_different_methods_or_bins_is_refused() -> None:
    with pytest.raises(UsageError, match="cannot merge a KLObserver into a MSEObserver"):
        observe("mse", []).merge(observe("kl", []))
    small = make_observer(CalibrationSettings(method="kl", bins=128))
    with pytest.raises(UsageError, match="histograms of 256 and 128 bins"):
        small.merge(observe("kl", []))
