"""Automatic mixed precision: the fewest float ops that meet an accuracy target.

    target = Target.parse("cos=0.999")               # or "top1-drop=0.5" with labels
    result = search_mixed(model, table.ranges, QuantizeSettings(), samples, target)
    result.qtable        # QTable({"conv5": "F32", ...}, loss=ranking rows)
    result.met           # the target holds for the chosen set, measured (not estimated)
    result.path          # [SearchStep(added_ops, metric, met, action), ...]
    result.forward_passes

Strategy: (1) all-INT8 is measured first; (2) ops are ranked by sensitivity
(lowbit.quantize.mixed.sensitivity: output SQNR with that op alone float); (3) a galloping
search over the length k of the ranked prefix (k = 1, 2, 4, … then bisection)
finds the shortest prefix that meets the target; (4) a pruning pass tries to drop each
chosen op, least sensitive first, keeping the drop when the target still holds. Every
candidate set is checked by running the mixed model on all ``samples``; results are
cached, so no set is run twice. Where tpu-mlir floats every layer whose own cosine is
below a threshold (capped at a quarter of the ops) and INC falls back one op at a
time, this needs O(log L) model runs plus the pruning pass.

``forward_passes`` counts full-model-equivalent passes: the ranking's (see
SensitivityResult), one F32 reference pass per sample, and one per sample per set tried.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx

from lowbit.analysis.metrics import cosine
from lowbit.calibration.observers import TensorRange
from lowbit.errors import ArgumentError, DatasetError, UsageError
from lowbit.quantize.int8.scope import real_token_masks, real_tokens
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.quantize.mixed.deploy import deploy_mixed
from lowbit.quantize.mixed.qtable import FLOAT_PRECISIONS, QTable
from lowbit.quantize.mixed.sensitivity import SensitivityResult, rank_sensitivity
from lowbit.runtime.memory import MemoryBudget
from lowbit.runtime.ort import create_session

log = logging.getLogger(__name__)

METRICS = ("cos", "sqnr", "top1-drop")
Sample = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Target:
    """``cos``: mean per-sample output cosine vs F32 ≥ value; ``sqnr``: output SQNR vs F32
    in dB (all outputs and samples pooled) ≥ value; ``top1-drop``: top-1 accuracy drop vs
    F32 in percentage points ≤ value (needs labels)."""

    metric: str
    value: float

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise UsageError(f"unknown target '{self.metric}'; choose one of "
                             f"{', '.join(m + '=VALUE' for m in METRICS)}")
        if self.metric == "cos" and not -1.0 <= self.value <= 1.0:
            raise UsageError(f"a cosine target must lie in [-1, 1], got {self.value}")
        if self.metric == "top1-drop" and self.value < 0:
            raise UsageError(f"a top-1 drop target must be ≥ 0 points, got {self.value}")

    @classmethod
    def parse(cls, text: str) -> Target:
        metric, sep, value = text.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not sep or math.isnan(number):
            raise ArgumentError(f"{{target}} {text[:60]!r}: expected cos=0.99, sqnr=30 or "
                                "top1-drop=0.5")
        return cls(metric.strip().lower(), number)

    def holds(self, measured: float) -> bool:
        return measured <= self.value if self.metric == "top1-drop" else measured >= self.value

    def __str__(self) -> str:
        return f"{self.metric}={self.value:g}"


@dataclass(frozen=True)
class SearchStep:
    """One measured set: the float ops it holds, its metric, whether the target held."""

    added_ops: tuple[str, ...]
    metric: float
    met: bool
    action: str


@dataclass
class SearchResult:
    qtable: QTable
    path: list[SearchStep] = field(default_factory=list)
    forward_passes: float = 0.0
    met: bool = False
    ranking: SensitivityResult | None = None

    @property
    def float_ops(self) -> list[str]:
        return list(self.qtable.precisions)


def search_mixed(
    model: onnx.ModelProto,
    ranges: Mapping[str, TensorRange],
    settings: QuantizeSettings,
    samples: Iterable[Sample],
    target: Target | str,
    *,
    labels: Sequence[int] | np.ndarray | None = None,
    fallback: str = "F32",
    max_steps: int | None = None,
    sensitivity_num: int | None = 16,
    skipped: Mapping[str, str] | None = None,
    reference: onnx.ModelProto | None = None,
    build: Callable[[Mapping[str, str]], onnx.ModelProto] | None = None,
    prune: int | None = None,
    memory_budget: MemoryBudget | None = None,
    rank: Callable[..., SensitivityResult] = rank_sensitivity,
    measure_many: Callable[[Sequence[tuple[str, ...]]], list[float]] | None = None,
) -> SearchResult:
    """Find the fewest ops to run at ``fallback`` so that ``target`` holds on ``samples``.

    The ranking uses the first ``sensitivity_num`` samples; every check uses all of them.
    ``max_steps`` caps the number of mixed models measured after the all-INT8 one, and
    ``prune`` the trials of the pruning pass (None: one per chosen op). ``reference`` is
    the model whose outputs the target compares with (default ``model``; deploy passes
    the float model when ``model`` is already prepared, e.g. bias-corrected),
    ``build`` how a candidate is made from {op: precision} (default deploy_mixed) and
    ``rank`` the ranking, called as rank_sensitivity is (a sharded one on workers:
    lowbit.quantize.mixed.sharded). ``measure_many`` measures several sets at once (on
    workers: lowbit.quantize.mixed.sharded.measure_sets), each as this process would;
    with it the pruning pass tries two drops at a time (see _prune).
    """
    goal = Target.parse(target) if isinstance(target, str) else target
    if fallback not in FLOAT_PRECISIONS:
        raise ArgumentError(f"{{fallback}} {fallback!r}: choose one of "
                            f"{', '.join(FLOAT_PRECISIONS)}")
    feeds = list(samples)
    if not feeds:
        raise DatasetError("the mixed-precision search needs at least one sample")
    judge = Judge(model, ranges, settings, feeds, goal, labels, fallback, skipped,
                   reference=reference, build=build, measure_many=measure_many)
    result = SearchResult(QTable({}))
    if judge.check((), "all INT8", result.path):
        return _finish(result, (), judge, fallback)

    # BF16 rarely runs on ORT's CPU provider: rank with F32, the closest runnable proxy.
    ranking = rank(model, ranges, settings, feeds, num=sensitivity_num,
                               precision="F16" if fallback == "F16" else "F32", skipped=skipped,
                               memory_budget=memory_budget)
    result.ranking = ranking
    ranked = [row.name for row in ranking.rows]
    budget = max_steps if max_steps is not None else 10 * len(ranked) + 10
    chosen = _shortest_prefix(ranked, judge, result.path, budget)
    if chosen is None:
        log.info("target %s not met even with all %d candidates float", goal, len(ranked))
        return _finish(result, tuple(ranked), judge, fallback, met=False)
    chosen = _prune(chosen, judge, result.path,
                    budget if prune is None else judge.trials + prune)
    return _finish(result, chosen, judge, fallback)


def _shortest_prefix(ranked: list[str], judge: Judge, path: list[SearchStep],
                     budget: int) -> tuple[str, ...] | None:
    """Gallop k = 1, 2, 4, … to the first prefix that meets the target, then bisect."""
    failing, passing, k = 0, None, 1
    while k <= len(ranked) and judge.trials < budget:
        if judge.check(tuple(ranked[:k]), f"first {k} ranked", path):
            passing = k
            break
        failing = k
        k = len(ranked) if k < len(ranked) < 2 * k else 2 * k
    if passing is None:
        return None
    while passing - failing > 1 and judge.trials < budget:
        middle = (failing + passing) // 2
        if judge.check(tuple(ranked[:middle]), f"first {middle} ranked", path):
            passing = middle
        else:
            failing = middle
    return tuple(ranked[:passing])


def _prune(chosen: tuple[str, ...], judge: Judge, path: list[SearchStep],
           budget: int) -> tuple[str, ...]:
    """Drop chosen ops (least sensitive first) while the target still holds.

    With workers (``judge.measure_many``) the next two drops are measured at once from
    the same set: the second's result stands when the first drop fails (the set is then
    unchanged), the common case; when the first holds, the second is measured again from
    the smaller set. Same choices as one at a time, fewer rounds."""
    names = list(reversed(chosen if len(chosen) > 1 else ()))
    for index, name in enumerate(names):
        if judge.trials >= budget:
            break
        trial = tuple(op for op in chosen if op != name)
        if judge.measure_many is not None and not judge.known(trial) and \
                index + 1 < len(names) and judge.trials + 2 <= budget:
            following = tuple(op for op in chosen if op != names[index + 1])
            if not judge.known(following):
                judge.prefetch([trial, following])
        if judge.check(trial, f"without {name}", path):
            chosen = trial
    return chosen


def _finish(result: SearchResult, chosen: tuple[str, ...], judge: Judge, fallback: str,
            *, met: bool = True) -> SearchResult:
    loss = result.ranking.rows if result.ranking is not None else None
    result.qtable = QTable({name: fallback for name in chosen}, loss)
    result.met = met
    result.forward_passes = judge.passes + (result.ranking.forward_passes
                                            if result.ranking is not None else 0.0)
    return result


class Judge:
    """Builds and runs mixed models, caching each set's metric and counting passes."""

    def __init__(self, model: onnx.ModelProto, ranges: Mapping[str, TensorRange],
                 settings: QuantizeSettings, feeds: list[Sample], target: Target,
                 labels: Sequence[int] | np.ndarray | None, fallback: str,
                 skipped: Mapping[str, str] | None, *,
                 reference: onnx.ModelProto | None = None,
                 build: Callable[[Mapping[str, str]], onnx.ModelProto] | None = None,
                 measure_many: Callable[[Sequence[tuple[str, ...]]], list[float]] | None
                 = None) -> None:
        self.model, self.ranges, self.settings = model, ranges, settings
        self.feeds, self.target, self.fallback, self.skipped = feeds, target, fallback, skipped
        self.build, self.measure_many = build, measure_many
        self.cache: dict[frozenset[str], float] = {}
        self.trials = -1  # the all-INT8 set is not counted against max_steps
        self.reference = self._run(reference if reference is not None else model)
        self.masks = real_token_masks(model, feeds)  # a transformer's padding not scored
        self.passes = float(len(feeds))
        self.labels = self._labels(labels)
        self.reference_top1 = self._top1(self.reference) if self.labels is not None else 0.0

    def _labels(self, labels: Sequence[int] | np.ndarray | None) -> np.ndarray | None:
        if self.target.metric != "top1-drop":
            return None
        if labels is None:
            raise ArgumentError("a top1-drop {target} needs {labels}")
        array = np.asarray(labels).reshape(-1)
        if len(array) < len(self.feeds):
            raise DatasetError(f"{len(array)} labels for {len(self.feeds)} samples")
        return array[:len(self.feeds)]

    def metric(self, ops: tuple[str, ...]) -> float:
        """The target's metric with ``ops`` at the fallback precision (built and run here,
        not cached: a worker's measure)."""
        keep = {name: self.fallback for name in ops}
        mixed = self.build(keep) if self.build is not None else deploy_mixed(
            self.model, self.ranges, self.settings, keep, skipped=self.skipped).model
        return self._measure(self._run(mixed))

    def known(self, ops: tuple[str, ...]) -> bool:
        return frozenset(ops) in self.cache

    def prefetch(self, sets: Sequence[tuple[str, ...]]) -> None:
        """Measure the sets not yet known at once on ``measure_many`` (each counts a
        trial and a pass over the samples, as check does)."""
        assert self.measure_many is not None
        wanted = [ops for ops in dict.fromkeys(sets) if frozenset(ops) not in self.cache]
        if not wanted:
            return
        for ops, value in zip(wanted, self.measure_many(wanted), strict=True):
            self.cache[frozenset(ops)] = value
            self.trials += 1
            self.passes += len(self.feeds)

    def check(self, ops: tuple[str, ...], action: str, path: list[SearchStep]) -> bool:
        key = frozenset(ops)
        if key not in self.cache:
            self.trials += 1
            self.cache[key] = self.metric(ops)
            self.passes += len(self.feeds)
        metric = self.cache[key]
        met = self.target.holds(metric)
        path.append(SearchStep(ops, metric, met, action))
        log.info("%s: %d float op(s), %s → %.6f %s", action, len(ops), self.target.metric,
                 metric, "met" if met else "not met")
        return met

    def _run(self, model: onnx.ModelProto) -> list[list[np.ndarray]]:
        session = create_session(model)
        return [session.run(None, dict(feed)) for feed in self.feeds]

    def _measure(self, outputs: list[list[np.ndarray]]) -> float:
        if self.target.metric == "cos":
            return output_cosine(self.reference, outputs, self.masks)
        if self.target.metric == "sqnr":
            return output_sqnr(self.reference, outputs, self.masks)
        return 100.0 * (self.reference_top1 - self._top1(outputs))

    def _top1(self, outputs: list[list[np.ndarray]]) -> float:
        assert self.labels is not None
        predicted = np.array([int(np.argmax(out[0].reshape(-1))) for out in outputs])
        return float(np.mean(predicted == self.labels))


def output_sqnr(reference: list[list[np.ndarray]], outputs: list[list[np.ndarray]],
                masks: list[np.ndarray | None] | None = None) -> float:
    """SQNR (dB) of each output over all samples pooled (real tokens only, as for the
    cosine); the lowest over the outputs, so a weak head is not hidden by a strong one."""
    worst = math.inf
    for index in range(len(reference[0]) if reference else 0):
        signal = noise = 0.0
        for ref, out, mask in zip(reference, outputs, masks or [None] * len(reference),
                                  strict=True):
            a = real_tokens(ref[index], mask).astype(np.float64).ravel()
            b = real_tokens(out[index], mask).astype(np.float64).ravel()
            signal += float(a @ a)
            noise += float((a - b) @ (a - b))
        value = math.inf if noise == 0.0 else (
            -math.inf if signal == 0.0 else 10.0 * math.log10(signal / noise))
        worst = min(worst, value)
    return worst


def output_cosine(reference: list[list[np.ndarray]], outputs: list[list[np.ndarray]],
                  masks: list[np.ndarray | None] | None = None) -> float:
    """Per output, the mean over samples of the cosine between the sample's reference and
    test values (at the real tokens only where ``masks`` say: lowbit.quantize.int8.scope);
    the lowest over the outputs, so a weak head (a box regression beside a probability
    map) is not hidden by a strong one."""
    worst = math.inf
    for index in range(len(reference[0]) if reference else 0):
        values = [cosine(real_tokens(ref[index], mask).ravel(),
                         real_tokens(out[index], mask).ravel())
                  for ref, out, mask in zip(reference, outputs,
                                            masks or [None] * len(reference), strict=True)]
        worst = min(worst, float(np.mean(values)))
    return worst
