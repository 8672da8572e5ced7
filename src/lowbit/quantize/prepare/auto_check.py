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

Cost: one quantization and one ONNX Runtime session per blend, and len(ALPHAS) + 1
runs over the check samples (32 by default).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import onnx

from lowbit.calibration.observers import TensorRange
from lowbit.calibration.table import CalibrationTable
from lowbit.errors import LowbitError
from lowbit.quantize.int8.scope import real_token_masks, real_tokens, transformer_scope
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.quantize.int8.static import quantize_int8
from lowbit.quantize.prepare.bias_correction import correct_biases_from_means
from lowbit.quantize.prepare.smoothquant import DEFAULT_ALPHA, smooth_from_table
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


def check_auto_table(model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]],
                     table: CalibrationTable, *, settings: QuantizeSettings | None = None,
                     threads: int | None = None, alphas: Sequence[float] = ALPHAS
                     ) -> AutoCheck | None:
    """Score each blend by the output SQNR, on ``feeds``, of the INT8 model deploy would
    build with ``settings`` (default: deploy's defaults); None when there are no samples
    or the outputs are not float."""
    if not feeds:
        return None
    settings = settings or QuantizeSettings()
    corrected = model
    # Deploy smooths a transformer's static INT8 from the table's channel ranges by default
    # (and then corrects no bias from the table): so does the model scored here.
    smoothing = settings.weight_bits == 8 and bool(table.channel_ranges) and \
        transformer_scope(model) is not None
    if table.input_means:
        corrected, _ = correct_biases_from_means(model, table.input_means, table.num_samples,
                                                 settings)
    reference = OrtRunner(model, threads=threads)  # a run ORT refuses: one-line ModelError
    names = reference.output_names
    inputs = set(reference.input_names)
    runs = [{k: v for k, v in f.items() if k in inputs} for f in feeds]
    expected = [list(reference.run(run).values()) for run in runs]
    masks = real_token_masks(model, runs)  # padded positions are not scored
    if not all(np.asarray(v).dtype.kind == "f" for v in expected[0]):
        return None
    def score(smooth: bool) -> dict[float, float]:
        scores: dict[float, float] = {}
        base = model if smooth else corrected
        for alpha in alphas:
            blended, scored = with_alpha(table, alpha), base
            if smooth:
                done = smooth_from_table(base, blended, DEFAULT_ALPHA)
                if done is not None:
                    scored, blended = done[0].model, done[1]
            try:
                result, _ = quantize_int8(scored, blended.ranges, settings,
                                          skipped=blended.skipped)
                runner = OrtRunner(result.model, threads=threads)
            except LowbitError as err:  # a blend deploy cannot build is not chosen
                log.warning("auto output check: α=%g failed: %s", alpha, err)
                continue
            signal = noise = 0.0
            for run, want, mask in zip(runs, expected, masks, strict=True):
                for a, b in zip(want, runner.run(run, names).values(), strict=True):
                    a64, b64 = real_tokens(a, mask), real_tokens(b, mask)
                    finite = np.isfinite(a64) & np.isfinite(b64)
                    signal += float((a64[finite] ** 2).sum())
                    noise += float(((a64[finite] - b64[finite]) ** 2).sum())
            scores[alpha] = 10 * math.log10(signal / noise) if noise > 0 and signal > 0 \
                else math.inf
        return scores

    scores = score(smoothing)
    if smoothing and len(set(scores.values())) <= 1:
        # Smoothing derived every range the default model uses (all-MatMul transformers):
        # the blend only matters to a deploy with --smooth off, so score that one.
        log.info("auto output check: the smoothed default does not depend on the blend; "
                 "scoring the unsmoothed model (--smooth off)")
        scores = score(False)
        unsmoothed = True
    else:
        unsmoothed = False
    if not scores:
        return None
    best = max(scores, key=lambda a: (scores[a], -a))  # a tie keeps the smaller α
    check = AutoCheck(best, scores, len(feeds), unsmoothed)
    log.info(check.summary())
    return check
