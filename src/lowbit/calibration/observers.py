"""Streaming per-tensor range observers: minmax, percentile, KL (entropy) and MSE.

    settings = CalibrationSettings(method="kl", bins=2048)
    observer = make_observer(settings)
    for batch in batches:
        observer.update(batch)            # any shape, any number of calls
    rng = observer.result()               # TensorRange(threshold, min, max)

Memory is bounded by the bin count, never by the number of samples: the
histogram observers keep one histogram of |x| and a few scalars.

Histogram layout. The histogram has ``2 * bins`` internal bins over [0, R], R a
power of two: the smallest one above the first non-zero batch's max |x|; when a
later batch reaches R, R is doubled (as often as needed) and adjacent bin pairs
are merged. The occupied range [0, max|x|] always covers at least half of the
internal bins, i.e. at least ``bins`` bins of resolution. Threshold searches run
over the occupied bins only.

Exact merging. Values are binned exactly (a float32 value times 2·bins / R, a
power-of-two multiple of an integer below 2¹⁷, is exact in float64, and in float32 too
where the bin count is a power of two, as by default), so binning at R and
then merging pairs equals binning at 2R; counts are whole numbers (a subsample's
weight is its integer stride), so their sums are exact in any order. The final R
is the smallest power of two above the max |x| of all the data, whatever came
first. Hence ``a.merge(b)`` of two observers that saw two parts of a data set is
bit-identical to one observer that saw all of it, in any order and split
(lowbit.parallel runs calibration as shards on this).

Large tensors. For an update with more than ``SUBSAMPLE_ABOVE`` elements the
histogram is built from every ``stride``-th element (stride = ceil(size /
SUBSAMPLE_ABOVE)) with counts weighted by the stride; min, max and the
histogram range still come from every element.

Non-finite values (an attention mask's -inf) are left out of the histogram but
kept in the observed min/max, so the consumer can see and skip such a tensor.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lowbit.arguments import MAX_BINS, choice, count, number
from lowbit.errors import UsageError

SUBSAMPLE_ABOVE = 1 << 20
_SIGNED_LEVELS = 128
_UNSIGNED_LEVELS = 255


@dataclass(frozen=True)
class TensorRange:
    """Symmetric clipping threshold (as in tpu-mlir's table) and the observed min/max."""

    threshold: float
    min: float
    max: float


class Observer(ABC):
    """Accumulates statistics of one tensor over any number of batches."""

    def __init__(self) -> None:
        self.min = math.inf
        self.max = -math.inf
        self.count = 0  # elements seen, including non-finite ones

    def update(self, x: np.ndarray) -> None:
        """Observe one batch of values (any shape, any float dtype)."""
        values = np.asarray(x)
        if values.size == 0:
            return
        if values.dtype not in (np.float32, np.float64):
            values = values.astype(np.float32)
        values = values.ravel()
        lo, hi = float(values.min()), float(values.max())
        self.count += values.size
        # NaN propagates through min/max and is kept: the range is then reported as not finite.
        self.min = lo if math.isnan(lo) else min(self.min, lo)
        self.max = hi if math.isnan(hi) else max(self.max, hi)
        if math.isfinite(lo) and math.isfinite(hi):
            self._observe(values, max(-lo, hi))
        else:
            finite = values[np.isfinite(values)]
            if finite.size:
                self._observe(finite, float(np.abs(finite).max()))

    def update_summary(self, lo: float, hi: float, size: int,
                       sample: np.ndarray | None = None, weight: float | None = None
                       ) -> None:
        """Observe a tensor known by its exact min/max and element count, plus (for
        histogram methods) a strided subsample of its values, each standing for
        ``weight`` elements (default: size / the subsample's size), as the in-graph
        summaries of lowbit.calibration.collect deliver them (their weight is the
        integer stride, so that merged histograms are exact)."""
        if size == 0:
            return
        self.count += size
        self.min = lo if math.isnan(lo) else min(self.min, lo)
        self.max = hi if math.isnan(hi) else max(self.max, hi)
        if sample is None or sample.size == 0:
            return
        values = np.asarray(sample, dtype=np.float32).ravel()
        if weight is None:
            weight = size / values.size
        if math.isfinite(lo) and math.isfinite(hi):
            self._observe(values, max(-lo, hi), weight)
        else:
            finite = values[np.isfinite(values)]
            if finite.size:
                self._observe(finite, float(np.abs(finite).max()), weight)

    @property
    def needs_values(self) -> bool:
        """Whether the observer needs values beyond min/max (histogram methods)."""
        return False

    def merge(self, other: Observer) -> None:
        """Add what ``other`` (an observer of the same settings) saw, as if this one had
        seen it too: exact (see the module doc)."""
        if type(other) is not type(self):
            raise UsageError(f"cannot merge a {type(other).__name__} into a "
                             f"{type(self).__name__}")
        self.count += other.count
        self.min = _merged(self.min, other.min, min)
        self.max = _merged(self.max, other.max, max)

    def result(self) -> TensorRange:
        """The range seen so far; a tensor never seen (or always empty) gives zeros."""
        if self.count == 0:
            return TensorRange(0.0, 0.0, 0.0)
        return TensorRange(self._threshold(), self.min, self.max)

    @abstractmethod
    def _observe(self, values: np.ndarray, max_abs: float, weight: float = 1.0) -> None:
        """Observe finite values (1-D) whose largest |value| is max_abs; each value stands
        for `weight` elements of the tensor (a subsample)."""

    @abstractmethod
    def _threshold(self) -> float: ...

    @property
    def _levels(self) -> int:
        return _UNSIGNED_LEVELS if self.min >= 0 else _SIGNED_LEVELS

    @property
    def _max_abs(self) -> float:
        return max(abs(self.min), abs(self.max))


def _merged(a: float, b: float, pick: Callable[[float, float], float]) -> float:
    """min or max of two running extremes; NaN (seen by either) stays NaN."""
    return math.nan if math.isnan(a) or math.isnan(b) else pick(a, b)


_OBSERVERS: dict[str, type[Observer]] = {}


def register_observer(method: str) -> Callable[[type[Observer]], type[Observer]]:
    """Class decorator adding an observer under a method name; a name is registered once."""

    def add(cls: type[Observer]) -> type[Observer]:
        if method in _OBSERVERS:
            raise UsageError(f"calibration method {method!r} is already registered "
                             f"by {_OBSERVERS[method].__name__}")
        _OBSERVERS[method] = cls
        return cls

    return add


MIN_BINS = 128


@dataclass(frozen=True)
class CalibrationSettings:
    """How activation ranges are chosen: method, percentile (for 'percentile'), histogram bins."""

    method: str = "minmax"
    percentile: float = 99.99
    bins: int = 2048

    def __post_init__(self) -> None:
        choice(self.method, tuple(_OBSERVERS), "method")
        object.__setattr__(self, "percentile",
                           number(self.percentile, "percentile", low=0, high=100,
                                  low_open=True))
        object.__setattr__(self, "bins", count(self.bins, "bins", minimum=MIN_BINS,
                                               maximum=MAX_BINS))


def make_observer(settings: CalibrationSettings) -> Observer:
    """A fresh observer for one tensor, of the class registered for settings.method."""
    cls = _OBSERVERS[settings.method]
    if issubclass(cls, HistogramObserver):
        return cls(bins=settings.bins, percentile=settings.percentile)
    return cls()


@register_observer("minmax")
class MinMaxObserver(Observer):
    """threshold = max(|min|, |max|)."""

    def _observe(self, values: np.ndarray, max_abs: float, weight: float = 1.0) -> None:
        """Nothing beyond the min/max that every observer keeps."""

    def _threshold(self) -> float:
        return self._max_abs if math.isfinite(self._max_abs) else 0.0


class HistogramObserver(Observer):
    """Keeps a histogram of |x| with 2*bins bins over [0, R], R growing by powers of two."""

    def __init__(self, bins: int = 2048, percentile: float = 99.99) -> None:
        super().__init__()
        self.bins = bins
        self.percentile = percentile
        self.hist = np.zeros(2 * bins, dtype=np.float64)
        self.range = 0.0  # R; 0 until a non-zero value is seen (zeros go to bin 0 meanwhile)
        self.zeros = 0.0  # values exactly 0 (a ReLU's output): quantized without error
        self.at_top = 0.0  # values whose |x| is exactly top (a saturated ReLU6's 6)
        self.top = 0.0

    @property
    def bin_width(self) -> float:
        return self.range / self.hist.size

    def __getstate__(self) -> dict[str, object]:
        """Pickled with the histogram cut after its last non-empty bin (what a worker of
        lowbit.parallel sends back is the occupied part only)."""
        state = dict(self.__dict__)
        nonzero = np.flatnonzero(self.hist)
        state["hist"] = self.hist[: nonzero[-1] + 1 if nonzero.size else 0].copy()
        state["hist_size"] = self.hist.size
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        state = dict(state)
        occupied = np.asarray(state.pop("hist"), dtype=np.float64)
        hist = np.zeros(int(state.pop("hist_size")), dtype=np.float64)  # type: ignore[call-overload]
        hist[: occupied.size] = occupied
        self.__dict__.update(state, hist=hist)

    @property
    def needs_values(self) -> bool:
        return True

    def _observe(self, values: np.ndarray, max_abs: float, weight: float = 1.0) -> None:
        if values.size > SUBSAMPLE_ABOVE:
            stride = -(-values.size // SUBSAMPLE_ABOVE)
            values = values[::stride]
            weight *= stride
        self.zeros += (values.size - np.count_nonzero(values)) * weight
        magnitude = np.abs(values)
        if max_abs > self.top:
            self.top, self.at_top = max_abs, 0.0
        if max_abs == self.top:
            self.at_top += np.count_nonzero(magnitude == max_abs) * weight
        if max_abs == 0.0:
            self.hist[0] += values.size * weight
            return
        if self.range == 0.0:
            self.range = grid_range(max_abs)
        elif max_abs >= self.range:
            self._grow(grid_range(max_abs))
        nbins = self.hist.size
        counts = np.bincount(_bin_index(magnitude, nbins, self.range), minlength=nbins)
        if weight == 1:
            self.hist += counts
        else:
            self.hist += counts * weight

    def _grow(self, target: float) -> None:
        """Double R up to ``target`` (a power of two), merging bin pairs so the counts
        are those of binning at the coarser width."""
        nbins = self.hist.size
        while self.range < target:
            self.range *= 2.0
            if self.hist[1:].any():
                merged = self.hist.reshape(-1, 2).sum(axis=1)
                self.hist[: nbins // 2] = merged
                self.hist[nbins // 2 :] = 0.0

    def merge(self, other: Observer) -> None:
        super().merge(other)
        assert isinstance(other, HistogramObserver)
        if other.hist.size != self.hist.size:
            raise UsageError(f"cannot merge histograms of {other.hist.size // 2} and "
                             f"{self.hist.size // 2} bins")
        if other.range > self.range:
            if self.range == 0.0:
                self.range = other.range  # only zeros so far: they stay in bin 0
            else:
                self._grow(other.range)
        counts = other.hist
        if 0.0 < other.range < self.range:
            coarse = copy.copy(other)
            coarse.hist = other.hist.copy()
            coarse._grow(self.range)
            counts = coarse.hist
        self.hist += counts
        self.zeros += other.zeros
        if other.top > self.top:
            self.top, self.at_top = other.top, other.at_top
        elif other.top == self.top:
            self.at_top += other.at_top

    def _occupied(self) -> np.ndarray:
        """The histogram up to its last non-empty bin."""
        nonzero = np.flatnonzero(self.hist)
        return self.hist[: nonzero[-1] + 1] if nonzero.size else self.hist[:0]

    def _threshold(self) -> float:
        hist = self._occupied()
        if self.range == 0.0 or hist.size == 0:
            return 0.0
        threshold = self._search(hist, self.bin_width)
        return min(threshold, self._max_abs)

    @abstractmethod
    def _search(self, hist: np.ndarray, width: float) -> float: ...


@register_observer("percentile")
class PercentileObserver(HistogramObserver):
    """threshold = the percentile-th percentile of |x|, interpolated within its bin."""

    def _search(self, hist: np.ndarray, width: float) -> float:
        if self.percentile >= 100:
            return self._max_abs
        return percentile_threshold(hist, width, self.percentile)


@register_observer("kl")
class KLObserver(HistogramObserver):
    """TensorRT-style entropy calibration: the threshold minimising KL(P || Q)."""

    def _search(self, hist: np.ndarray, width: float) -> float:
        return kl_threshold(hist, width, self._levels)


@register_observer("mse")
class MSEObserver(HistogramObserver):
    """The threshold minimising the expected squared error of uniform quantization."""

    def _search(self, hist: np.ndarray, width: float) -> float:
        return mse_threshold(hist, width, self._levels)


@register_observer("auto")
class AutoObserver(HistogramObserver):
    """Per tensor, the candidate threshold with the least quantization error.

    Candidates: the observed max (minmax), the 99.9 / 99.99 / 99.999 percentiles, the
    KL threshold and the MSE search. Each is scored by the squared error of putting the
    histogram on the uint8 grid deploy uses for it (``grid_error``: clipping plus
    rounding, with a ReLU's zeros and a saturated max exact), so a candidate that clips
    a saturated activation (KL on ReLU6 outputs) loses to one that does not, and a
    tensor whose values crowd on a few points keeps the step that fits them.
    """

    def _search(self, hist: np.ndarray, width: float) -> float:
        levels = self._levels
        candidates = [hist.size * width, kl_threshold(hist, width, levels),
                      mse_threshold(hist, width, levels)]
        candidates += [percentile_threshold(hist, width, p) for p in AUTO_PERCENTILES]
        errors = [grid_error(hist, width, t, self._step(t), zeros=self.zeros,
                             at_top=self.at_top if t >= self.top else 0.0)
                  for t in candidates]
        return float(candidates[int(np.argmin(errors))])

    def _step(self, threshold: float) -> float:
        """The uint8 step deploy uses for this threshold: the range [max(min, −T),
        min(max, T)], widened to hold 0, over 255 steps (a signed tensor whose min is
        −0.5·max gets a finer step than ±T/128 would say)."""
        lo = min(max(self.min, -threshold), 0.0)
        hi = max(min(self.max, threshold), 0.0)
        return (hi - lo) / _UNSIGNED_LEVELS


AUTO_PERCENTILES = (99.9, 99.99, 99.999)


def _bin_index(magnitude: np.ndarray, nbins: int, top: float) -> np.ndarray:
    """The bin of each |x| (below ``top``, a power of two) among ``nbins`` over [0, top].

    |x| (24-bit mantissa) times nbins/top (an integer over a power of two) is exact in
    float64, so the bin of a value at R and at 2R agree (see the module doc). With the
    default power-of-two bin counts the factor is a power of two, and the product is exact
    in float32 too (the values' dtype: half the memory traffic) while the factor is a
    normal float32 (products below nbins cannot overflow; one that underflows is below 1
    and in bin 0 either way)."""
    factor = nbins / top
    if magnitude.dtype == np.float32 and nbins & (nbins - 1) == 0 \
            and 2.0 ** -126 <= factor <= 2.0 ** 127:
        index = (magnitude * np.float32(factor)).astype(np.intp)
    else:
        index = (magnitude.astype(np.float64) * factor).astype(np.intp)
    np.minimum(index, nbins - 1, out=index)
    return index


def grid_range(max_abs: float) -> float:
    """The histogram range R for a largest |x|: the smallest power of two above it."""
    _, exponent = math.frexp(max_abs)  # max_abs = m · 2**exponent, 0.5 <= m < 1
    return math.ldexp(1.0, exponent)


def quantization_error(hist: np.ndarray, width: float, levels: int, threshold: float, *,
                       step: float | None = None, exact: float = 0.0) -> float:
    """Expected squared error of quantizing a histogram of |x| with clipping at
    ``threshold`` and uniform steps of ``step`` (default threshold/levels): Σ over bins
    above it of count·(centre−T)² plus (count below − ``exact``) · step²/12, where
    ``exact`` values (zeros, which every range represents) round without error. With
    the defaults, the objective mse_threshold minimises."""
    hist = np.asarray(hist, dtype=np.float64)
    if threshold <= 0:
        return math.inf
    if step is None:
        step = threshold / levels
    centres = (np.arange(hist.size) + 0.5) * width
    above = centres > threshold
    clip = float(np.sum(hist[above] * (centres[above] - threshold) ** 2))
    rounded = max(float(hist[~above].sum()) - exact, 0.0)
    return clip + rounded * step ** 2 / 12.0


def grid_error(hist: np.ndarray, width: float, threshold: float, step: float, *,
               zeros: float = 0.0, at_top: float = 0.0) -> float:
    """Squared error of quantizing a histogram of |x| onto the grid k·step, clipped at
    ``threshold``, with each bin's values taken at its centre; ``zeros`` of bin 0's
    count are exact zeros and ``at_top`` of the last bin's count sit exactly on the top
    of the range (the max, when the threshold keeps it): neither has an error.

    Unlike the uniform model (step²/12 per value) this sees where the values sit on
    the grid: a tensor whose values crowd at a few points (the first layers of a net
    fed near-binary pixels) can round worse with a finer step, and a ReLU's zeros
    cost nothing. With the default 2048 bins a step spans at least 8 bins.
    """
    hist = np.asarray(hist, dtype=np.float64)
    if threshold <= 0 or step <= 0:
        return math.inf
    centres = (np.arange(hist.size) + 0.5) * width
    top = np.floor(threshold / step + 1e-9) * step  # the last grid point the range keeps
    clipped = np.minimum(centres, max(top, 0.0))
    error = (centres - step * np.rint(clipped / step)) ** 2
    counts = hist.copy()
    if counts.size:
        counts[0] = max(counts[0] - zeros, 0.0)
        counts[-1] = max(counts[-1] - at_top, 0.0)
    return float(np.dot(counts, error))


METHODS: tuple[str, ...] = tuple(_OBSERVERS)


def percentile_threshold(hist: np.ndarray, width: float, percentile: float) -> float:
    """The percentile of a histogram of |x| (bins of `width` from 0), linear within a bin."""
    cumulative = np.cumsum(hist)
    target = cumulative[-1] * percentile / 100.0
    k = int(np.searchsorted(cumulative, target, side="left"))
    k = min(k, hist.size - 1)
    below = cumulative[k - 1] if k > 0 else 0.0
    fraction = (target - below) / hist[k] if hist[k] > 0 else 1.0
    return float((k + min(max(fraction, 0.0), 1.0)) * width)


KL_MAX_CLIPPED = 0.01


def kl_threshold(hist: np.ndarray, width: float, levels: int) -> float:
    """Entropy calibration over a histogram of |x|; returns the chosen bin edge.

    TensorRT's recipe: for each candidate i (levels <= i <= n bins), the
    reference P = hist[:i] with every count at or beyond bin i added to bin
    i-1; the candidate Q = the clipped hist[:i] merged into `levels` buckets
    (bin j goes to bucket floor(j * levels / i)) and spread back evenly over
    the bucket's bins where P is non-zero (zeros stay zero). Q lacks the
    clipped mass, which is what penalises clipping too much.

    With P_b, S_b, N_b a bucket's mass in P, in the clipped histogram and its
    count of non-zero P bins, and T, T_i the total and clipped mass,
    KL(P||Q) = (sum_j P_j log P_j - sum_b P_b log(S_b / N_b)) / T + log(T_i / T),
    evaluated for all candidates at once from prefix sums, O(candidates * levels).
    TensorRT smooths P and Q with eps = 1e-4 (counts) only so that a Q bin that
    is zero where P is not gives a large finite KL; here such a candidate gets
    an infinite KL instead, which the search never picks.
    """
    hist = np.asarray(hist, dtype=np.float64)
    n = hist.size
    total = hist.sum()
    if n <= levels or total <= 0:
        return float(n * width)
    mass = np.concatenate([[0.0], np.cumsum(hist)])  # mass[k] = sum(hist[:k])
    nonzero = np.concatenate([[0], np.cumsum(hist > 0)])
    entropy_sum = np.concatenate([[0.0], np.cumsum(_xlogx(hist))])

    # When every value sits far from zero (a pooled output in [0.4, 5.6]), a candidate
    # that folds all the mass into its last bin has P and Q identical after
    # normalisation: KL = 0 at a threshold that clips everything. Never clip more
    # than KL_MAX_CLIPPED of the values: the candidates that would are not evaluated
    # (the mass kept only grows with i, so they are the first ones).
    candidates = np.arange(levels, n + 1)  # (C,)
    kept = mass[candidates] / total
    candidates = candidates[int(np.argmax(kept >= 1.0 - KL_MAX_CLIPPED)):]
    # start of bucket b for candidate i: ceil(b * i / levels); the last "start" is i itself.
    starts = -(-(candidates[:, None] * np.arange(levels + 1)[None, :]) // levels)  # (C, L+1)
    last = starts[:, -2]  # the last bucket's start
    # Each prefix sum is gathered once at every start; a bucket's sum is the difference
    # of its two ends (the gathers are most of the search's time).
    clipped = np.diff(mass[starts], axis=1)  # S_b
    p_mass = clipped.copy()  # P_b: the last bucket also holds the tail
    p_mass[:, -1] = total - mass[last]
    tail = total - mass[candidates - 1]  # P's last bin: sum(hist[i-1:])
    p_nonzero = np.diff(nonzero[starts], axis=1).astype(np.float64)  # N_b
    p_nonzero[:, -1] = nonzero[candidates - 1] - nonzero[last] + (tail > 0)
    p_term = entropy_sum[candidates - 1] + _xlogx(tail)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_q = np.log(clipped / p_nonzero)  # -inf where S_b = 0 < P_b
        q_term = np.where(p_mass > 0, p_mass * log_q, 0.0).sum(axis=1)
        divergence = (p_term - q_term) / total + np.log(mass[candidates] / total)
    divergence = np.where(np.isnan(divergence), np.inf, divergence)
    best = int(np.argmin(divergence))
    return float(candidates[best] * width)


def _xlogx(values: np.ndarray) -> np.ndarray:
    """x * log(x), 0 where x == 0."""
    values = np.asarray(values, dtype=np.float64)
    positive = values > 0
    return np.where(positive, values * np.log(np.where(positive, values, 1.0)), 0.0)


def mse_threshold(hist: np.ndarray, width: float, levels: int) -> float:
    """The bin edge T minimising clip error + rounding error over a histogram of |x|.

    error(T) = sum over bins with centre m > T of count * (m - T)^2
             + (count of bins below T) * (T / levels)^2 / 12,
    for T at every bin edge k * width, k = 1..n, from suffix sums in O(n).
    """
    hist = np.asarray(hist, dtype=np.float64)
    n = hist.size
    if n == 0 or hist.sum() <= 0:
        return 0.0
    centres = (np.arange(n) + 0.5) * width
    edges = np.arange(1, n + 1) * width  # candidate T_k = k * width, k = 1..n

    def suffix(values: np.ndarray) -> np.ndarray:  # suffix(v)[k] = sum(v[k:]), length n+1
        return np.concatenate([np.cumsum(values[::-1])[::-1], [0.0]])

    count_above = suffix(hist)[1:]  # bins k..n-1 lie above T_k
    first_above = suffix(hist * centres)[1:]
    second_above = suffix(hist * centres**2)[1:]
    clip = second_above - 2 * edges * first_above + edges**2 * count_above
    within = hist.sum() - count_above
    error = np.maximum(clip, 0.0) + within * (edges / levels) ** 2 / 12.0
    return float(edges[int(np.argmin(error))])
