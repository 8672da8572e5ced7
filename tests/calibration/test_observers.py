"""Observers against brute-force numpy references, streaming and memory behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from lowbit.calibration.observers import (
    METHODS,
    CalibrationSettings,
    HistogramObserver,
    KLObserver,
    MinMaxObserver,
    MSEObserver,
    PercentileObserver,
    _bin_index,
    kl_threshold,
    make_observer,
    mse_threshold,
    register_observer,
)
from lowbit.errors import UsageError


def _data(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.standard_normal(20000), 6 * rng.standard_normal(50)]).astype(
        np.float32)


def _kl_loop(hist: np.ndarray, width: float, levels: int) -> float:
    """TensorRT's entropy search written out bin by bin (without eps smoothing)."""
    best, best_i = np.inf, hist.size
    for i in range(levels, hist.size + 1):
        p = hist[:i].astype(np.float64)
        p[-1] += hist[i:].sum()
        clipped = hist[:i]
        bucket = (np.arange(i) * levels) // i
        q = np.zeros(i)
        for b in range(levels):
            members = np.flatnonzero(bucket == b)
            nonzero = [j for j in members if p[j] > 0]
            for j in nonzero:
                q[j] = clipped[members].sum() / len(nonzero)
        pn, qn = p / p.sum(), q / q.sum()
        mask = pn > 0
        with np.errstate(divide="ignore"):
            kl = float(np.sum(pn[mask] * np.log(pn[mask] / qn[mask])))
        if kl < best:
            best, best_i = kl, i
    return best_i * width


def _mse_loop(hist: np.ndarray, width: float, levels: int) -> float:
    centres = (np.arange(hist.size) + 0.5) * width
    best, best_t = np.inf, 0.0
    for k in range(1, hist.size + 1):
        t = k * width
        above = centres > t
        error = np.sum(hist[above] * (centres[above] - t) ** 2)
        error += hist[~above].sum() * (t / levels) ** 2 / 12
        if error < best:
            best, best_t = error, t
    return best_t


def test_settings_validate() -> None:
    assert METHODS == ("minmax", "percentile", "kl", "mse", "auto")
    with pytest.raises(UsageError, match="minmax, percentile, kl, mse"):
        CalibrationSettings(method="entropy")
    with pytest.raises(UsageError, match="percentile"):
        CalibrationSettings(method="percentile", percentile=0)
    with pytest.raises(UsageError, match="percentile"):
        CalibrationSettings(percentile=100.5)
    with pytest.raises(UsageError, match="bins"):
        CalibrationSettings(bins=64)


def test_registry_refuses_duplicates() -> None:
    with pytest.raises(UsageError, match="already registered"):
        register_observer("kl")(MinMaxObserver)


@pytest.mark.parametrize(("method", "cls"), [("minmax", MinMaxObserver),
                                             ("percentile", PercentileObserver),
                                             ("kl", KLObserver), ("mse", MSEObserver)])
def test_make_observer_picks_class(method: str, cls: type) -> None:
    assert type(make_observer(CalibrationSettings(method=method, bins=256))) is cls


def test_minmax_exact() -> None:
    x = _data()
    obs = MinMaxObserver()
    for chunk in np.array_split(x, 7):
        obs.update(chunk.reshape(-1, 1))
    rng = obs.result()
    assert rng.min == float(x.min()) and rng.max == float(x.max())
    assert rng.threshold == max(-float(x.min()), float(x.max()))


@pytest.mark.parametrize("percentile", [50.0, 99.0, 99.9])
def test_percentile_matches_numpy(percentile: float) -> None:
    x = _data()
    obs = PercentileObserver(bins=512, percentile=percentile)
    obs.update(x)
    expected = np.percentile(np.abs(x), percentile)
    assert abs(obs.result().threshold - expected) <= obs.bin_width


def test_percentile_100_is_max_abs() -> None:
    x = _data()
    obs = PercentileObserver(bins=128, percentile=100.0)
    obs.update(x)
    assert obs.result().threshold == pytest.approx(float(np.abs(x).max()))


def test_kl_matches_loop_reference() -> None:
    rng = np.random.default_rng(1)
    for values in (np.abs(rng.standard_normal(5000)), rng.exponential(size=5000) ** 2):
        hist, edges = np.histogram(values, bins=300, range=(0, values.max()))
        width = edges[1]
        for levels in (128, 255):
            assert kl_threshold(hist, width, levels) == pytest.approx(
                _kl_loop(hist, width, levels))


def test_kl_observer_clips_outliers_of_a_gaussian() -> None:
    obs = KLObserver(bins=1024)
    obs.update(_data())
    rng = obs.result()
    assert 2.0 < rng.threshold < rng.max  # the 6-sigma outliers are clipped


def test_kl_levels_follow_sign() -> None:
    x = np.abs(_data())
    unsigned, signed = KLObserver(bins=256), KLObserver(bins=256)
    unsigned.update(x)
    signed.update(np.concatenate([x, [-0.5]]))
    hist = unsigned._occupied()
    assert unsigned.result().threshold == pytest.approx(
        min(kl_threshold(hist, unsigned.bin_width, 255), unsigned.result().max))
    assert signed.result().threshold == pytest.approx(
        min(kl_threshold(signed._occupied(), signed.bin_width, 128), signed.result().max))


def test_mse_matches_loop_reference() -> None:
    rng = np.random.default_rng(2)
    for values in (np.abs(rng.standard_normal(5000)), rng.exponential(size=5000) ** 2):
        hist, edges = np.histogram(values, bins=400, range=(0, values.max()))
        width = edges[1]
        for levels in (128, 255):
            assert mse_threshold(hist, width, levels) == pytest.approx(
                _mse_loop(hist, width, levels))


@pytest.mark.parametrize("method", ["percentile", "kl", "mse"])
def test_streaming_with_growing_range_matches_one_pass(method: str) -> None:
    x = _data()
    # small values first, so the range must grow several times
    order = np.argsort(np.abs(x), kind="stable")
    chunks = np.array_split(x[order], 9)
    settings = CalibrationSettings(method=method, bins=512, percentile=99.5)
    streamed, whole = make_observer(settings), make_observer(settings)
    for chunk in chunks:
        streamed.update(chunk)
    whole.update(x)
    assert isinstance(streamed, HistogramObserver) and isinstance(whole, HistogramObserver)
    assert streamed.range >= whole.range
    # after growth the occupied range still has at least `bins` bins
    assert streamed._occupied().size >= 512
    tolerance = max(streamed.bin_width, whole.bin_width) * (2 if method != "percentile" else 1)
    assert abs(streamed.result().threshold - whole.result().threshold) <= tolerance
    assert streamed.result().min == whole.result().min
    assert streamed.result().max == whole.result().max


def test_growth_keeps_counts() -> None:
    obs = PercentileObserver(bins=128)
    obs.update(np.full(10, 0.3, dtype=np.float32))
    obs.update(np.full(5, 100.0, dtype=np.float32))
    assert obs.hist.sum() == 15
    assert obs.range >= 100.0


def test_memory_does_not_grow_with_updates() -> None:
    rng = np.random.default_rng(3)
    obs = KLObserver(bins=256)
    obs.update(rng.standard_normal(100))
    sizes = {k: v.nbytes for k, v in vars(obs).items() if isinstance(v, np.ndarray)}
    for scale in range(1, 60):
        obs.update(rng.standard_normal(1000) * scale)
    assert sizes == {k: v.nbytes for k, v in vars(obs).items() if isinstance(v, np.ndarray)}
    assert obs.hist.size == 512


def test_large_tensor_is_subsampled_but_min_max_exact() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal(2_500_001).astype(np.float32)
    obs = PercentileObserver(bins=512, percentile=99.0)
    obs.update(x)
    rng_ = obs.result()
    assert rng_.min == float(x.min()) and rng_.max == float(x.max())
    assert obs.hist.sum() == pytest.approx(x.size, rel=1e-5)
    assert abs(rng_.threshold - np.percentile(np.abs(x), 99.0)) < 0.02


@pytest.mark.parametrize("method", METHODS)
def test_empty_and_zero_tensors(method: str) -> None:
    obs = make_observer(CalibrationSettings(method=method, bins=128))
    obs.update(np.zeros((0, 3), dtype=np.float32))
    assert obs.count == 0
    assert obs.result().threshold == 0.0
    obs.update(np.zeros((4, 4), dtype=np.float16))
    rng = obs.result()
    assert (rng.threshold, rng.min, rng.max) == (0.0, 0.0, 0.0)
    obs.update(np.array([0.5, -0.25], dtype=np.float32))
    assert obs.result().max == 0.5 and obs.result().min == -0.25
    assert 0 < obs.result().threshold <= 0.5


@pytest.mark.parametrize("method", METHODS)
def test_non_finite_values_kept_in_min_max(method: str) -> None:
    obs = make_observer(CalibrationSettings(method=method, bins=128))
    obs.update(np.array([1.0, -np.inf, 0.5], dtype=np.float32))
    rng = obs.result()
    assert rng.min == -np.inf and rng.max == 1.0
    assert np.isfinite(rng.threshold)


def test_kl_does_not_clip_a_tensor_whose_values_sit_far_from_zero() -> None:
    """Pooled outputs in [0.4, 5.6]: KL must keep (almost) all of them."""
    from lowbit.calibration.observers import CalibrationSettings, make_observer

    values = np.random.default_rng(3).uniform(0.378, 5.61, size=20_000).astype(np.float32)
    observer = make_observer(CalibrationSettings(method="kl"))
    observer.update(values)
    assert observer.result().threshold >= np.quantile(values, 0.99)


def test_auto_never_clips_a_saturated_activation_the_way_kl_does() -> None:
    """ReLU6-like output: most values small, a spike at the bound 6. KL may clip the spike;
    auto picks the candidate with the least expected error, which keeps it."""
    from lowbit.calibration.observers import (
        CalibrationSettings,
        make_observer,
        quantization_error,
    )

    rng = np.random.default_rng(5)
    values = np.clip(np.abs(rng.normal(0, 1.2, 200_000)), 0, 6).astype(np.float32)
    values[:4000] = 6.0
    results = {}
    for method in ("kl", "mse", "auto", "minmax"):
        observer = make_observer(CalibrationSettings(method=method))
        observer.update(values)
        results[method] = observer.result().threshold
    assert results["auto"] >= 5.9  # the 2 % of values at the bound are not clipped
    hist = np.histogram(values, bins=2048, range=(0, 6.0))[0]
    width = 6.0 / 2048
    err = {m: quantization_error(hist, width, 255, t) for m, t in results.items()}
    assert err["auto"] <= min(err.values()) * 1.01


def test_auto_is_never_worse_than_minmax_by_the_expected_error() -> None:
    from lowbit.calibration.observers import quantization_error

    rng = np.random.default_rng(9)
    for values in (rng.normal(size=50_000), rng.standard_t(3, size=50_000),
                   rng.exponential(size=50_000)):
        from lowbit.calibration.observers import CalibrationSettings, make_observer

        auto, minmax = (make_observer(CalibrationSettings(method=m)) for m in ("auto", "minmax"))
        auto.update(values)
        minmax.update(values)
        hist, edges = np.histogram(np.abs(values), bins=4096)
        width = edges[1] - edges[0]
        levels = 255 if values.min() >= 0 else 128
        assert quantization_error(hist, width, levels, auto.result().threshold) <= \
            quantization_error(hist, width, levels, minmax.result().threshold) * 1.001


@pytest.mark.parametrize("top_exponent", [-140, -20, 0, 7, 60, 127])
def test_float32_binning_puts_every_value_where_float64_does(top_exponent: int) -> None:
    """With a power-of-two bin count the scale is a power of two, exact in float32: the
    faster binning agrees with float64's value for value, from subnormal to huge ranges
    (a bin count that is not a power of two takes the float64 path)."""
    top = 2.0 ** top_exponent
    rng = np.random.default_rng(top_exponent + 200)
    magnitude = (np.abs(rng.standard_normal(50_000)) * top / 8).astype(np.float32)
    magnitude = np.minimum(magnitude, np.nextafter(np.float32(top), np.float32(0)))
    magnitude[:5] = [0.0, np.float32(top) / 2, np.nextafter(np.float32(top), np.float32(0)),
                     np.float32(top) / 4096, 1e-45]
    for nbins in (4096, 2000):
        exact = np.minimum((magnitude.astype(np.float64) * (nbins / top)).astype(np.intp),
                           nbins - 1)
        np.testing.assert_array_equal(_bin_index(magnitude, nbins, top), exact)
