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
table's channel ranges; when smoothing derives every range that model uses, as on an
all-MatMul transformer, the blends are scored without it, for ``--smooth off``), and keeps the one whose outputs have the best
SQNR against float on the first samples (a transformer's padded positions, where its
attention mask is 0, are not scored: nothing downstream reads them). α = 1 is among them, so on those samples auto
is never worse than minmax.

Cost: the float model runs once over the check samples (its outputs kept when they fit
the memory budget, else run again per blend), then one quantization, one ONNX Runtime
session and one pass per blend, in batches the memory budget allows
(lowbit.runtime.memory). For a transformer the smoothed blends at α = 0 and 1 are built
first: when they are the same model, smoothing derived every range the default uses and
the blends are scored unsmoothed at once, without scoring five identical models.
A progress bar shows the passes.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass, replace

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
from lowbit.quantize.prepare.smoothquant import DEFAULT_ALPHA, smooth_from_table
from lowbit.runtime.memory import MemoryBudget, choose_batch, stacked_batches
from lowbit.runtime.ort import OrtRunner

log = logging.getLogger(__name__)

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
CHECK_SAMPLES = 32


@dataclass(frozen=True)
class AutoCheck:
    """The blend chosen and the output SQNR (dB, pooled over outputs and samples) of each."""

    alpha: float
    sqnr: Mapping[float, float]
    samples: int
    unsmoothed: bool = False  # scored without SmoothQuant (the default did not depend on α)

    def summary(self) -> str:
        scores = ", ".join(f"{a:g}: {s:.1f}" for a, s in self.sqnr.items())
        text = (f"auto output check on {self.samples} samples chose α={self.alpha:g} "
                f"(INT8 output SQNR dB by α {scores}; α=1 is minmax)")
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
                     progress: bool = False, memory_budget: MemoryBudget | None = None
                     ) -> AutoCheck | None:
    """Score each blend by the output SQNR, on ``feeds`` (batch-1 samples; read once per
    pass when they do not fit the memory budget, so a sequence or a re-iterable), of the
    INT8 model deploy would build with ``settings`` (default: deploy's defaults); None when
    there are no samples or the outputs are not float."""
    settings = settings or QuantizeSettings()
    budget = memory_budget or MemoryBudget.default()
    total = len(feeds) * (1 + len(alphas)) if isinstance(feeds, Sized) else None
    with progress_bar("auto output check", progress, total) as advance:
        reference = _Reference(model, feeds, threads, budget, advance)
        if reference.samples == 0 or not reference.float_outputs:
            return None
        corrected = model
        # Deploy smooths a transformer's static INT8 from the table's channel ranges by default
        # (and then corrects no bias from the table): so does the model scored here.
        smoothing = settings.weight_bits == 8 and bool(table.channel_ranges) and \
            transformer_scope(model) is not None
        if table.input_means and not smoothing:
            corrected, _ = correct_biases_from_means(model, table.input_means,
                                                     table.num_samples, settings)

        def build(alpha: float, smooth: bool) -> onnx.ModelProto | None:
            blended, scored = with_alpha(table, alpha), corrected
            if smooth:
                scored = model
                done = smooth_from_table(model, blended, DEFAULT_ALPHA)
                if done is not None:
                    scored, blended = done[0].model, done[1]
            try:
                result, _ = quantize_int8(scored, blended.ranges, settings,
                                          skipped=blended.skipped)
            except LowbitError as err:  # a blend deploy cannot build is not chosen
                log.warning("auto output check: α=%g failed: %s", alpha, err)
                return None
            return result.model

        def score(smooth: bool) -> dict[float, float]:
            scores: dict[float, float] = {}
            for alpha in alphas:
                quantized = build(alpha, smooth)
                if quantized is not None:
                    scores[alpha] = reference.score(quantized)
                del quantized  # one INT8 model held at a time
            return scores

        unsmoothed = False
        if smoothing:
            # Built one at a time and known by their bytes' digest, so neither is held.
            first, last = min(alphas), max(alphas)
            digests = {alpha: _digest(build(alpha, True)) for alpha in (first, last)}
            if first != last and None not in digests.values() and \
                    digests[first] == digests[last]:
                unsmoothed = True  # the blend changes nothing in the smoothed default
            else:
                scores = score(True)
                unsmoothed = len(set(scores.values())) <= 1
        if unsmoothed:
            # Smoothing derived every range the default model uses (all-MatMul transformers):
            # the blend only matters to a deploy with --smooth off, so score that one.
            log.info("auto output check: the smoothed default does not depend on the blend; "
                     "scoring the unsmoothed model (--smooth off)")
            if table.input_means:
                corrected, _ = correct_biases_from_means(model, table.input_means,
                                                         table.num_samples, settings)
            scores = score(False)
        elif not smoothing:
            scores = score(False)
    if not scores:
        return None
    best = max(scores, key=lambda a: (scores[a], -a))  # a tie keeps the smaller α
    check = AutoCheck(best, scores, reference.samples, unsmoothed)
    log.info(check.summary())
    return check


class _Reference:
    """The float model's outputs on the check samples, in batches; each INT8 model is
    scored against them (pooled SQNR, padded tokens left out)."""

    def __init__(self, model: onnx.ModelProto, feeds: Iterable[Mapping[str, np.ndarray]],
                 threads: int | None, budget: MemoryBudget, advance: Callable[[int], None]
                 ) -> None:
        self.feeds, self.threads, self.budget, self.advance = feeds, threads, budget, advance
        runner = OrtRunner(model, threads=threads, memory_pattern=False)
        self.names = runner.output_names
        self.inputs = set(runner.input_names)
        self.mask_input = attention_mask_input(model)  # padded positions are not scored
        first = next(iter(feeds), None)
        self.batch = 1 if first is None else choose_batch(model, self._inputs(first), budget)
        self.samples = 0
        self.float_outputs = True
        self.cache: list[tuple[dict[str, np.ndarray], list[np.ndarray]]] | None = []
        held = 0
        for run, expected in self._passes(runner):
            if self.samples == 0 and not all(np.asarray(v).dtype.kind == "f"
                                             for v in expected):
                self.float_outputs = False
                return
            self.samples += _batch_size(run)
            held += sum(np.asarray(v).nbytes for v in [*run.values(), *expected])
            if self.cache is not None and held <= budget.bytes // 2:
                self.cache.append((run, expected))
            else:
                self.cache = None  # too large to keep: run the float model once per blend
        # The float session is kept only to run again; with the outputs kept, it goes.
        self.runner = runner if self.cache is None else None

    def score(self, quantized: onnx.ModelProto) -> float:
        """The pooled output SQNR (dB) of ``quantized`` against the float outputs."""
        runner = OrtRunner(quantized, threads=self.threads, memory_pattern=False)
        if self.cache is not None:
            batches: Iterable[tuple[dict[str, np.ndarray], list[np.ndarray]]] = self.cache
        else:
            assert self.runner is not None
            batches = self._passes(self.runner, False)
        signal = noise = 0.0
        for run, want in batches:
            got = runner.run(run, self.names)
            mask = None if self.mask_input is None or self.mask_input not in run else \
                np.asarray(run[self.mask_input]).astype(bool)
            for a, b in zip(want, got.values(), strict=True):
                a64, b64 = real_tokens(a, mask), real_tokens(b, mask)
                finite = np.isfinite(a64) & np.isfinite(b64)
                signal += float((a64[finite] ** 2).sum())
                noise += float(((a64[finite] - b64[finite]) ** 2).sum())
            self.advance(_batch_size(run))
        return 10 * math.log10(signal / noise) if noise > 0 and signal > 0 else math.inf

    def _passes(self, runner: OrtRunner, count: bool = True
                ) -> Iterator[tuple[dict[str, np.ndarray], list[np.ndarray]]]:
        for run in stacked_batches((self._inputs(f) for f in self.feeds), self.batch):
            yield run, list(runner.run(run).values())
            if count:
                self.advance(_batch_size(run))

    def _inputs(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: v for k, v in feed.items() if k in self.inputs}


def _digest(model: onnx.ModelProto | None) -> str | None:
    return None if model is None else hashlib.sha256(model.SerializeToString()).hexdigest()


def _batch_size(run: Mapping[str, np.ndarray]) -> int:
    head = next(iter(run.values()), None)
    return int(np.shape(head)[0]) if head is not None and np.ndim(head) else 1
