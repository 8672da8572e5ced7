"""Evaluation metrics as running sums: what one shard of samples returns, merged exactly.

    wanted = MetricSet(("top1", "psnr"))
    sums = EvalSums.start(models=2)
    sums.add_reference(reference)                             # R's min and max
    sums.add(0, outputs, wanted, labels=labels, reference=reference, first_index=128)
    sums.add_agreement(outputs_model, outputs_vs)
    total = functools.reduce(EvalSums.merge, shard_sums)     # any split: the same sums
    total.metrics(0, wanted)                                  # {"top1": 97.9, "psnr": 31.2}

Every metric of lowbit.analysis.evaluate is a sum over samples, so a shard keeps only
counts and sums (a few numbers per model, whatever the number of samples) and the merge
adds them: top-k hits, argmax agreements, Σ cosine, Σ SSIM, and for PSNR Σ 10·log10(MSE)
over the samples that differ plus the reference's min and max, since

    mean_i 10·log10(R² / MSE_i) = 20·log10(R) − mean_i 10·log10(MSE_i),  R = max − min.

SSIM's constants depend on R inside every window, so a sharded SSIM needs R first
(``ssim_range``: lowbit.analysis.eval_shards runs a range pass over the reference).
The merged metrics equal the one-process ones (lowbit.analysis.metrics on all outputs)
up to float rounding.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from lowbit.analysis.metrics import (
    agreeing_rows,
    data_range_between,
    sample_cosines,
    sample_mse,
    sample_ssim,
    topk_hits,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricSet:
    """The metric names asked for (lowbit.analysis.evaluate.parse_metrics's), in order."""

    names: tuple[str, ...]

    @property
    def ks(self) -> tuple[int, ...]:
        """The k of each top-k metric."""
        return tuple(int(name[3:]) for name in self.names if name.startswith("top"))

    @property
    def against_reference(self) -> bool:
        """Whether any metric compares with a reference output (psnr, ssim, cos)."""
        return any(not name.startswith("top") for name in self.names)


@dataclass
class ModelSums:
    """One model's running sums over the samples seen so far."""

    samples: int = 0
    hits: dict[int, int] = field(default_factory=dict)  # k -> samples with the label in top k
    cosine: float = 0.0
    ssim: float = 0.0
    log_mse: float = 0.0  # Σ 10·log10(MSE) over the samples that differ from the reference
    differing: int = 0

    def merge(self, other: ModelSums) -> ModelSums:
        hits = {k: self.hits.get(k, 0) + other.hits.get(k, 0)
                for k in self.hits.keys() | other.hits.keys()}
        return ModelSums(self.samples + other.samples, hits, self.cosine + other.cosine,
                         self.ssim + other.ssim, self.log_mse + other.log_mse,
                         self.differing + other.differing)


@dataclass
class EvalSums:
    """Every scored model's sums, the argmax agreements of the first two models, and the
    reference's value range (R for PSNR)."""

    models: list[ModelSums]
    agreeing: int = 0
    agreement: bool = True  # False once a batch was not score vectors: no agreement
    compared: int = 0
    low: float = math.inf
    high: float = -math.inf

    @classmethod
    def start(cls, models: int) -> EvalSums:
        return cls([ModelSums() for _ in range(models)])

    def add(self, index: int, outputs: np.ndarray, wanted: MetricSet, *,
            labels: np.ndarray | None, reference: np.ndarray | None, first_index: int,
            ssim_range: float | None = None) -> None:
        """One batch of model ``index``'s outputs (axis 0 = samples ``first_index`` ..):
        top-k against ``labels``, cos/psnr against ``reference``, SSIM given the whole
        reference's R (``ssim_range``)."""
        sums = self.models[index]
        sums.samples += int(outputs.shape[0])
        for k in wanted.ks:
            assert labels is not None
            sums.hits[k] = sums.hits.get(k, 0) + topk_hits(outputs, labels, k,
                                                            first_index=first_index)
        if reference is None:
            return
        if "cos" in wanted.names:
            sums.cosine += float(np.sum(sample_cosines(reference, outputs)))
        if "psnr" in wanted.names:
            mse = sample_mse(reference, outputs)
            differ = mse[mse > 0]
            sums.log_mse += float(np.sum(10.0 * np.log10(differ)))
            sums.differing += int(differ.size)
        if "ssim" in wanted.names:
            assert ssim_range is not None
            sums.ssim += float(np.sum(sample_ssim(reference, outputs, ssim_range)))

    def add_reference(self, reference: np.ndarray) -> None:
        """The reference's batch: its min and max (R = max − min over all samples)."""
        if reference.size:
            self.low = min(self.low, float(reference.min()))
            self.high = max(self.high, float(reference.max()))

    def add_agreement(self, first: np.ndarray, second: np.ndarray) -> None:
        """The samples of one batch where the first two models' argmax agree."""
        agreeing = agreeing_rows(first, second)
        if agreeing is None:
            self.agreement = False
            return
        self.agreeing += agreeing
        self.compared += int(first.shape[0])

    def merge(self, other: EvalSums) -> EvalSums:
        """Both shards' sums as one (any order: the same sums up to float rounding)."""
        return EvalSums([a.merge(b) for a, b in zip(self.models, other.models, strict=True)],
                        self.agreeing + other.agreeing, self.agreement and other.agreement,
                        self.compared + other.compared, min(self.low, other.low),
                        max(self.high, other.high))

    @property
    def data_range(self) -> float:
        """R = max − min of the reference (1.0 when constant, with a warning)."""
        if self.low > self.high:
            return data_range_between(0.0, 0.0)
        return data_range_between(self.low, self.high)

    def metrics(self, index: int, wanted: MetricSet) -> dict[str, float]:
        """Model ``index``'s metrics (% for top-k, dB for PSNR) in ``wanted``'s order."""
        sums, values = self.models[index], {}
        for metric in wanted.names:
            if metric.startswith("top"):
                values[metric] = 100.0 * sums.hits[int(metric[3:])] / sums.samples
            elif metric == "cos":
                values[metric] = sums.cosine / sums.samples
            elif metric == "ssim":
                values[metric] = sums.ssim / sums.samples
            else:
                values[metric] = self._psnr(sums)
        return values

    def _psnr(self, sums: ModelSums) -> float:
        if sums.differing == 0:
            return math.inf
        if sums.differing < sums.samples:
            log.info("psnr: %d of %d samples equal their reference and are left out of the "
                     "mean", sums.samples - sums.differing, sums.samples)
        return 20.0 * math.log10(self.data_range) - sums.log_mse / sums.differing

    def agreement_percent(self) -> float | None:
        """% of samples where the first two models' argmax agree (None: not score vectors)."""
        if not self.agreement or self.compared == 0:
            return None
        return 100.0 * self.agreeing / self.compared
