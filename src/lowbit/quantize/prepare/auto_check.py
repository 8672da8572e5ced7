"""auto's last step: the network's output decides how far to trust per-tensor clipping.

    check = check_auto_table(model, feeds, table)      # feeds: a few batch-1 samples
    check.alpha, check.sqnr                            # 0.5, {0.0: 31.2, 0.25: …, 1.0: 31.6}
    table = with_alpha(table, check.alpha)

``calibrate --method auto`` picks each tensor's threshold by that tensor's own
quantization error. Some networks are hurt by clipping more than the tensor's error
says (a transformer's outlier channels carry signal; a net's rare large activations are
the features that fire), and others gain more than it says. So auto tries blends
between its per-tensor choice T_auto and the observed max M,
T = T_auto + α·(M − T_auto) for α in ALPHAS — α = 1 is minmax — builds for each the
INT8 model deploy builds by default (this module calls the same quantizer, with bias
correction from the table's input means, or for a transformer SmoothQuant from the
table's channel ranges), and keeps the one whose outputs have the best
SQNR against float on the check samples (a transformer's padded positions, where its
attention mask is 0, are not scored: nothing downstream reads them).

The blends are scored in two rounds: every blend on the first FIRST_ROUND samples, then
the best FINALISTS of them and minmax (α = 1) on the rest; the choice is the finalist
with the best SQNR over all the check samples. Minmax is always a finalist, so on those
samples auto is never worse than minmax. Neighbouring blends score within a few tenths
of a dB of each other, so the first round ranks them well enough; the second round
then runs three INT8 models instead of five (a check on 32 samples: 112 INT8 runs, not
160).

Cost: the float outputs on the check samples are those calibration's own runs fetched
(``float_outputs``, lowbit.calibration.float_outputs), else the float model runs once over
the check samples (its outputs kept when they fit the memory budget, else run again per
round); then per blend one quantization, one ONNX Runtime session and its round's runs,
in batches the memory budget allows (lowbit.runtime.memory); a finalist's INT8 model is
kept from the first round while the kept models fit an eighth of the budget, else
quantized again. For a transformer the smoothed blends at α = 0 and 1 are built first:
when they are the same model, smoothing derived every range the default uses (an
all-MatMul transformer such as MiniLM), the blend changes nothing deploy builds by
default, and nothing is scored (α = 0, auto's own thresholds; seconds saved on MiniLM).
``check_unsmoothed`` (calibrate --check-unsmoothed) then scores the blends on the model
deploy builds with ``--smooth off``, for that deploy. A progress bar counts the float
samples, the INT8 runs and those two builds.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass, field, replace

import numpy as np
import onnx

from lowbit.calibration.observers import TensorRange
from lowbit.calibration.table import CalibrationTable
from lowbit.errors import LowbitError
from lowbit.progress import progress_bar
from lowbit.quantize.int8.scope import attention_mask_input, real_tokens, transformer_scope
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.quantize.int8.static import quantize_int8
from lowbit.quantize.prepare.bias_correction import correct_biases_from_means
from lowbit.quantize.prepare.smoothquant import DEFAULT_ALPHA, SmoothResult, smooth_from_table
from lowbit.runtime.memory import MemoryBudget, choose_batch, stacked_batches
from lowbit.runtime.ort import OrtRunner

log = logging.getLogger(__name__)

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
CHECK_SAMPLES = 32
FIRST_ROUND = 8  # samples every blend is scored on
FINALISTS = 2  # blends (besides minmax) scored on the rest


@dataclass(frozen=True)
class AutoCheck:
    """The blend chosen and the output SQNR (dB, pooled over outputs and samples) of each
    finalist on all ``samples``; ``first_round``: every blend's on the first
    ``first_samples`` (the same samples as ``sqnr`` when there was no second round)."""

    alpha: float
    sqnr: Mapping[float, float]
    samples: int
    unsmoothed: bool = False  # scored without SmoothQuant (the default did not depend on α)
    first_round: Mapping[float, float] = field(default_factory=dict)
    first_samples: int = 0
    unscored: bool = False  # the smoothed default did not depend on α: no blend was scored

    def summary(self) -> str:
        if self.unscored:
            return ("auto output check: the default deploy smooths this transformer and "
                    "derives every range it uses from the channel ranges, so the blend "
                    "changes nothing there and none was scored; auto's own thresholds are "
                    "kept (α=0). For deploy --smooth off, calibrate with "
                    "--check-unsmoothed to choose the blend for that model")
        scores = ", ".join(f"{a:g}: {s:.1f}" for a, s in self.sqnr.items())
        text = (f"auto output check on {self.samples} samples chose α={self.alpha:g} "
                f"(INT8 output SQNR dB by α {scores}; α=1 is minmax)")
        others = {a: s for a, s in self.first_round.items() if a not in self.sqnr}
        if others:
            text += (f"; the other blends were dropped on the first {self.first_samples} "
                     "samples (" + ", ".join(f"{a:g}: {s:.1f}" for a, s in others.items())
                     + f" there, against {max(self.first_round.values()):.1f})")
        if self.unsmoothed:
            text += ("; scored with --smooth off: the default's smoothing derives every "
                     "range it uses")
        return text


def blend(rng: TensorRange, alpha: float) -> TensorRange:
    """The threshold ``alpha`` of the way from rng's threshold to its max |x|."""
    extent = max(abs(rng.min), abs(rng.max))
    return replace(rng, threshold=rng.threshold + alpha * max(extent - rng.threshold, 0.0))


def with_alpha(table: CalibrationTable, alpha: float) -> CalibrationTable:
    return replace(table, ranges={name: blend(rng, alpha) for name, rng in table.ranges.items()},
                   notes=list(table.notes))


def check_auto_table(model: onnx.ModelProto, feeds: Iterable[Mapping[str, np.ndarray]],
                     table: CalibrationTable, *, settings: QuantizeSettings | None = None,
                     threads: int | None = None, alphas: Sequence[float] = ALPHAS,
                     progress: bool = False, memory_budget: MemoryBudget | None = None,
                     float_outputs: Sequence[Mapping[str, np.ndarray]] | None = None,
                     check_unsmoothed: bool = False) -> AutoCheck | None:
    """Score each blend by the output SQNR, on ``feeds`` (batch-1 samples; read once per
    pass when they do not fit the memory budget, so a sequence or a re-iterable), of the
    INT8 model deploy would build with ``settings`` (default: deploy's defaults); None when
    there are no samples or the outputs are not float. ``float_outputs``: the float
    model's outputs on each of ``feeds`` when calibration kept them
    (lowbit.calibration.float_outputs), else the float model runs here.

    A transformer whose smoothed default does not depend on the blend (every range it
    uses comes from the channel ranges) is not scored: the check returns α = 0,
    ``unscored``; ``check_unsmoothed`` scores the blends on the model deploy builds with
    --smooth off instead."""
    settings = settings or QuantizeSettings()
    budget = memory_budget or MemoryBudget.default()
    # Deploy smooths a transformer's static INT8 from the table's channel ranges by default
    # (and then corrects no bias from the table): so does the model scored here.
    smoothing = settings.weight_bits == 8 and bool(table.channel_ranges) and \
        transformer_scope(model) is not None
    total = None
    if isinstance(feeds, Sized):  # a step per float sample, INT8 sample run, digest build
        head = min(len(feeds), FIRST_ROUND)
        total = len(feeds) + head * len(alphas) + (len(feeds) - head) * min(
            len(alphas), FINALISTS + 1) + (2 if smoothing else 0)
    with progress_bar("auto output check", progress, total) as advance:
        reference = _Reference(model, feeds, threads, budget, advance, float_outputs)
        if reference.samples == 0 or not reference.float_outputs:
            return None
        corrected = model
        if table.input_means and not smoothing:
            corrected, _ = correct_biases_from_means(model, table.input_means,
                                                     table.num_samples, settings)

        smoothed: dict[str, SmoothResult] = {}

        def build(alpha: float, smooth: bool) -> onnx.ModelProto | None:
            blended, scored = with_alpha(table, alpha), corrected
            if smooth:
                scored = model
                # the smoothed model does not depend on the blend: smoothed once
                done = smooth_from_table(model, blended, DEFAULT_ALPHA,
                                         smoothed=smoothed.get("result"))
                if done is not None:
                    smoothed["result"] = done[0]
                    scored, blended = done[0].model, done[1]
            try:
                result, _ = quantize_int8(scored, blended.ranges, settings,
                                          skipped=blended.skipped)
            except LowbitError as err:  # a blend deploy cannot build is not chosen
                log.warning("auto output check: α=%g failed: %s", alpha, err)
                return None
            return result.model

        def score(smooth: bool) -> _Rounds:
            first: dict[float, _Pooled] = {}
            # The INT8 models that may still be finalists (the best so far, and minmax)
            # are kept for the second round while they fit an eighth of the memory
            # budget; past that a finalist is built again.
            kept: dict[float, bytes] = {}
            for alpha in alphas:
                quantized = build(alpha, smooth)
                if quantized is None:
                    continue
                serialized = quantized.SerializeToString()
                del quantized
                first[alpha] = reference.score(serialized, 0)
                if reference.rest:
                    kept[alpha] = serialized
                    leading = sorted(first, key=lambda a: (-first[a].db, a))[:FINALISTS]
                    kept = {a: m for a, m in kept.items() if a in leading or a == 1.0}
                    if sum(map(len, kept.values())) > budget.bytes // 8:
                        kept.pop(alpha, None)
                del serialized
            rounds = _Rounds({a: p.db for a, p in first.items()})
            if reference.rest == 0:
                rounds.full.update(rounds.first)
                return rounds
            ranked = sorted(first, key=lambda a: (-first[a].db, a))
            finalists = set(ranked[:FINALISTS]) | ({1.0} & set(first))
            kept = {a: m for a, m in kept.items() if a in finalists}
            for alpha in alphas:
                if alpha in finalists:
                    model_bytes = kept.pop(alpha, None)
                    if model_bytes is None:  # deterministic: the same model again
                        rebuilt = build(alpha, smooth)
                        assert rebuilt is not None
                        model_bytes = rebuilt.SerializeToString()
                        del rebuilt
                    rounds.full[alpha] = (first[alpha] + reference.score(model_bytes, 1)).db
                    del model_bytes
            # a finalist's place the round did not need is counted done on the bar
            advance(reference.rest * (min(len(alphas), FINALISTS + 1) - len(finalists)))
            return rounds

        unsmoothed = False
        rounds = _Rounds({})
        if smoothing:
            # Built one at a time and known by their bytes' digest, so neither is held.
            first, last = min(alphas), max(alphas)
            digests = {}
            for alpha in (first, last):  # seconds each on a transformer: counted on the bar
                digests[alpha] = _digest(build(alpha, True))
                advance(1)
            if first != last and None not in digests.values() and \
                    digests[first] == digests[last]:
                unsmoothed = True  # the blend changes nothing in the smoothed default
            else:
                rounds = score(True)
                unsmoothed = len(set(rounds.first.values())) <= 1
        if unsmoothed and not check_unsmoothed:
            # Smoothing derived every range the default model uses (all-MatMul transformers):
            # the blend only matters to a deploy with --smooth off, scored when asked.
            advance(max(0, (total or 0) - len(feeds) - 2) if isinstance(feeds, Sized) else 0)
            check = AutoCheck(0.0, {}, reference.samples, True, unscored=True)
            log.info(check.summary())
            return check
        if unsmoothed:
            log.info("auto output check: the smoothed default does not depend on the blend; "
                     "scoring the unsmoothed model (--smooth off)")
            if table.input_means:
                corrected, _ = correct_biases_from_means(model, table.input_means,
                                                         table.num_samples, settings)
            rounds = score(False)
        elif not smoothing:
            rounds = score(False)
    scores = rounds.full
    if not scores:
        return None
    best = max(scores, key=lambda a: (scores[a], -a))  # a tie keeps the smaller α
    check = AutoCheck(best, scores, reference.samples, unsmoothed, rounds.first,
                      reference.samples - reference.rest)
    log.info(check.summary())
    return check


@dataclass(frozen=True)
class _Pooled:
    """Output energy and error energy summed over samples (their ratio is the SQNR)."""

    signal: float
    noise: float

    def __add__(self, other: _Pooled) -> _Pooled:
        return _Pooled(self.signal + other.signal, self.noise + other.noise)

    @property
    def db(self) -> float:
        if self.noise > 0 and self.signal > 0:
            return 10 * math.log10(self.signal / self.noise)
        return math.inf


@dataclass
class _Rounds:
    first: dict[float, float]  # every blend's SQNR on the first round's samples
    full: dict[float, float] = field(default_factory=dict)  # the finalists' on all


class _Reference:
    """The float model's outputs on the check samples, in batches (round 0: the first
    FIRST_ROUND samples, round 1: the rest); each INT8 model is scored against them on
    one round (pooled SQNR, padded tokens left out)."""

    def __init__(self, model: onnx.ModelProto, feeds: Iterable[Mapping[str, np.ndarray]],
                 threads: int | None, budget: MemoryBudget, advance: Callable[[int], None],
                 kept: Sequence[Mapping[str, np.ndarray]] | None = None) -> None:
        self.feeds, self.threads, self.budget, self.advance = feeds, threads, budget, advance
        self.model = model
        constant = {init.name for init in model.graph.initializer}
        self.names = [o.name for o in model.graph.output]
        self.inputs = {i.name for i in model.graph.input} - constant
        self.mask_input = attention_mask_input(model)  # padded positions are not scored
        first = next(iter(feeds), None)
        self.batch = 1 if first is None else choose_batch(model, self._inputs(first), budget)
        self.samples = self.rest = 0
        self.float_outputs = True
        self.cache: list[tuple[int, dict[str, np.ndarray], list[np.ndarray]]] | None = []
        self._runner: OrtRunner | None = None
        usable = kept is not None and isinstance(feeds, Sized) and len(kept) == len(feeds) \
            and not self.inputs & set(self.names)
        held = 0
        passes = self._kept_passes(kept) if kept is not None and usable else self._passes()
        for part, run, expected in passes:
            if self.samples == 0 and not all(np.asarray(v).dtype.kind == "f"
                                             for v in expected):
                self.float_outputs = False
                return
            self.samples += _batch_size(run)
            self.rest += _batch_size(run) if part == 1 else 0
            held += sum(np.asarray(v).nbytes for v in [*run.values(), *expected])
            if self.cache is not None and held <= budget.bytes // 2:
                self.cache.append((part, run, expected))
            else:
                self.cache = None  # too large to keep: run the float model once per round
        # The float session is kept only to run again; with the outputs kept, it goes.
        if self.cache is not None:
            self._runner = None

    @property
    def runner(self) -> OrtRunner:
        """The float model's session, made when first needed."""
        if self._runner is None:
            self._runner = OrtRunner(self.model, threads=self.threads, memory_pattern=False)
        return self._runner

    def score(self, quantized: onnx.ModelProto | bytes, part: int) -> _Pooled:
        """The output energy and error of ``quantized`` against the float outputs on round
        ``part``'s samples."""
        runner = OrtRunner(quantized, threads=self.threads, memory_pattern=False)
        if self.cache is not None:
            batches: Iterable[tuple[int, dict[str, np.ndarray], list[np.ndarray]]] = \
                self.cache
        else:
            batches = self._passes(False, part)
        signal = noise = 0.0
        for round_, run, want in batches:
            if round_ != part:
                continue
            got = runner.run(run, self.names)
            mask = None if self.mask_input is None or self.mask_input not in run else \
                np.asarray(run[self.mask_input]).astype(bool)
            for a, b in zip(want, got.values(), strict=True):
                a64, b64 = real_tokens(a, mask), real_tokens(b, mask)
                finite = np.isfinite(a64) & np.isfinite(b64)
                signal += float((a64[finite] ** 2).sum())
                noise += float(((a64[finite] - b64[finite]) ** 2).sum())
            self.advance(_batch_size(run))
        return _Pooled(signal, noise)

    def _passes(self, count: bool = True, part: int | None = None
                ) -> Iterator[tuple[int, dict[str, np.ndarray], list[np.ndarray]]]:
        """(round, inputs, float outputs) per batch, of both rounds or of ``part``'s; a
        batch never spans the two rounds."""
        feeds = iter(self.feeds)
        rounds = [itertools.islice(feeds, FIRST_ROUND), feeds]
        for index, samples in enumerate(rounds):
            if part is not None and index > part:
                break
            if part is not None and index < part:
                for _ in samples:  # read past, not run
                    pass
                continue
            for run in stacked_batches((self._inputs(f) for f in samples), self.batch):
                yield index, run, list(self.runner.run(run, self.names).values())
                if count:
                    self.advance(_batch_size(run))

    def _kept_passes(self, kept: Sequence[Mapping[str, np.ndarray]]
                     ) -> Iterator[tuple[int, dict[str, np.ndarray], list[np.ndarray]]]:
        """As :meth:`_passes` of both rounds, the float outputs taken from ``kept`` (one per
        feed, batch-1) and stacked as the inputs are: no float run."""
        feeds, outputs = iter(self.feeds), iter(kept)
        rounds = [itertools.islice(feeds, FIRST_ROUND), feeds]
        for index, samples in enumerate(rounds):
            joined = ({**self._inputs(f), **next(outputs)} for f in samples)
            for run in stacked_batches(joined, self.batch):
                yield index, {k: v for k, v in run.items() if k in self.inputs}, \
                    [run[name] for name in self.names]
                self.advance(_batch_size(run))

    def _inputs(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: v for k, v in feed.items() if k in self.inputs}


def _digest(model: onnx.ModelProto | None) -> str | None:
    return None if model is None else hashlib.sha256(model.SerializeToString()).hexdigest()


def _batch_size(run: Mapping[str, np.ndarray]) -> int:
    head = next(iter(run.values()), None)
    return int(np.shape(head)[0]) if head is not None and np.ndim(head) else 1
