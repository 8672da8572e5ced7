"""Evaluation as shards of samples on an executor (lowbit.parallel), merged into one score.

    job = EvalJob(new_key(), DatasetRef("val/"), ("m.int8.onnx", "m.f32.onnx"), ...)
    sums = merge_sums(executor.run(score_shard, job, split_samples(n, executor.parts), ...))
    sums.metrics(0, job.wanted)

A worker opens the models and the data set by path (readable where it runs; nothing
but paths, options and the shard's range crosses to it), runs every model over its
shard's samples in batches of at most :data:`CHUNK`, and keeps only running sums
(lowbit.analysis.eval_sums): memory holds one batch of outputs per model, never the
outputs of all samples. Labels and ``target`` arrays are read in the worker too, by
path, once per job. SSIM needs the reference's whole range first: :func:`range_shard`
is that pass (the reference alone), and its merged min/max go into the job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path

import numpy as np

from lowbit.analysis.eval_sums import EvalSums, MetricSet
from lowbit.analysis.labels import load_labels, load_targets
from lowbit.data import Dataset, check_finite
from lowbit.data.refs import DatasetRef
from lowbit.errors import DatasetError
from lowbit.io.model import input_specs, load_model
from lowbit.parallel import Advance, Shard, worker_cache
from lowbit.runtime.backends import Runner, make_runner
from lowbit.runtime.memory import MemoryBudget, choose_batch, stacked_batches

log = logging.getLogger(__name__)

CHUNK = 8  # samples read per step of a shard: lowbit.runtime.memory.choose_batch's most


@dataclass(frozen=True)
class Scored:
    """A model a job runs, by path, and the output it scores."""

    path: str
    output: str


@dataclass(frozen=True)
class EvalJob:
    """What every shard of one evaluation needs: small, picklable, by reference.

    ``models`` are scored in order (the first two give the argmax agreement when
    ``agreement``); ``reference`` is a model whose outputs psnr/ssim/cos compare against,
    unless ``targets`` (the ``target`` array of the labels or data-set .npz) is set."""

    key: str
    dataset: DatasetRef
    total: int  # samples in the data set (what labels and targets are checked against)
    models: tuple[Scored, ...]
    wanted: MetricSet
    labels: str | None = None  # None: the data set's own labels, when top-k is wanted
    reference: Scored | None = None
    targets: bool = False
    agreement: bool = False
    threads: int | None = None
    backend: str = "ort"
    memory_budget: int = 1 << 28
    ssim_range: float | None = None  # R of the whole reference (the range pass's)


@dataclass
class _Worker:
    """One worker's sessions, data sets and label arrays for a job (kept across shards)."""

    job: EvalJob
    runners: dict[str, Runner] = field(default_factory=dict)
    datasets: dict[str, Dataset] = field(default_factory=dict)
    batches: dict[str, int] = field(default_factory=dict)
    labels: np.ndarray | None = None
    targets: np.ndarray | None = None

    @classmethod
    def open(cls, job: EvalJob) -> _Worker:
        worker = cls(job)
        for scored in _sources(job):
            model = load_model(Path(scored.path), check=False)
            worker.datasets[scored.path] = job.dataset.open(input_specs(model))
            worker.runners[scored.path] = make_runner(Path(scored.path), backend=job.backend,
                                                      threads=job.threads)
        first = worker.datasets[job.models[0].path]
        if job.wanted.ks:
            worker.labels = load_labels(job.labels, job.dataset.path, job.total,
                                        sample_paths=getattr(first, "paths", None))
        if job.targets:
            worker.targets = load_targets(job.labels, job.dataset.path, job.total)
        return worker

    def outputs(self, scored: Scored, start: int, stop: int) -> np.ndarray:
        """``scored``'s output for samples ``start`` .. ``stop`` - 1 (axis 0 = samples)."""
        data, runner = self.datasets[scored.path], self.runners[scored.path]
        samples = _checked(data, start, stop, runner.input_names)
        first = next(samples)
        if scored.path not in self.batches:
            model = load_model(Path(scored.path), check=False)
            self.batches[scored.path] = choose_batch(
                model, first, MemoryBudget(self.job.memory_budget))
        size = self.batches[scored.path]
        rows = []
        for feeds in stacked_batches(_chain(first, samples), size):
            row = runner.run(feeds, [scored.output])[scored.output]
            rows.append(row if size > 1 or (row.ndim >= 1 and row.shape[0] == 1)
                        else row[None])
        return np.concatenate(rows, axis=0)

    def run_once(self, scored: Scored, start: int, stop: int,
                 cache: dict[Scored, np.ndarray]) -> np.ndarray:
        """``outputs``, run once per step (the reference may also be a scored model)."""
        if scored not in cache:
            cache[scored] = self.outputs(scored, start, stop)
        return cache[scored]

    def reference(self, start: int, stop: int,
                  cache: dict[Scored, np.ndarray]) -> np.ndarray | None:
        """The reference for samples ``start`` .. ``stop`` - 1: the target arrays' rows or
        the reference model's outputs (None when neither is asked for)."""
        if self.targets is not None:
            return self.targets[start:stop]
        model = self.job.reference
        if model is None:
            return None
        return self.run_once(model, start, stop, cache)


def _sources(job: EvalJob) -> list[Scored]:
    """Every model a worker runs (a path once)."""
    seen: dict[str, Scored] = {}
    for scored in (*job.models, *([job.reference] if job.reference else [])):
        seen.setdefault(scored.path, scored)
    return list(seen.values())


def _chain(first: dict[str, np.ndarray], rest: Iterator[dict[str, np.ndarray]]
           ) -> Iterator[dict[str, np.ndarray]]:
    yield first
    yield from rest


def _checked(data: Dataset, start: int, stop: int, inputs: list[str] | tuple[str, ...]
             ) -> Iterator[dict[str, np.ndarray]]:
    for index, sample in enumerate(data.take_range(start, stop), start):
        check_finite(sample, index, data.source)
        yield {k: v for k, v in sample.items() if k in inputs}


def matching(reference: np.ndarray, outputs: np.ndarray, scored: Scored | None) -> np.ndarray:
    """The reference in the outputs' shape; same sample count and per-sample size required."""
    if reference.shape == outputs.shape:
        return reference
    if reference.shape[:1] == outputs.shape[:1] and reference.size == outputs.size:
        return reference.reshape(outputs.shape)
    name = "target arrays" if scored is None else Path(scored.path).name
    raise DatasetError(f"the reference ({name}) has {list(reference.shape[1:])} values per "
                       f"sample, but the output scored has {list(outputs.shape[1:])}; they "
                       f"must hold the same samples of the same size")


def _steps(shard: Shard) -> Iterator[tuple[int, int]]:
    for start in range(shard.start, shard.stop, CHUNK):
        yield start, min(start + CHUNK, shard.stop)


def score_shard(job: EvalJob, shard: Shard, advance: Advance) -> EvalSums:
    """The running sums of one shard's samples (in a worker)."""
    worker = worker_cache(job.key, "evaluation", lambda: _Worker.open(job))
    sums = EvalSums.start(len(job.models))
    for start, stop in _steps(shard):
        cache: dict[Scored, np.ndarray] = {}
        wants_reference = job.wanted.against_reference
        raw = worker.reference(start, stop, cache) if wants_reference else None
        if raw is not None:
            sums.add_reference(np.asarray(raw))
        outputs = []
        for index, scored in enumerate(job.models):
            output = worker.run_once(scored, start, stop, cache)
            labels = worker.labels[start:stop] if worker.labels is not None else None
            reference = None if raw is None else matching(raw, output, job.reference)
            sums.add(index, output, job.wanted, labels=labels, reference=reference,
                     first_index=start, ssim_range=job.ssim_range)
            outputs.append(output)
        if job.agreement:
            sums.add_agreement(outputs[0], outputs[1])
        advance(stop - start)
    return sums


def range_shard(job: EvalJob, shard: Shard, advance: Advance) -> EvalSums:
    """The reference's min and max over one shard's samples (SSIM's range pass; the
    worker keeps its sessions for the scoring pass, a job of the same key)."""
    worker = worker_cache(job.key, "evaluation", lambda: _Worker.open(job))
    sums = EvalSums.start(len(job.models))
    for start, stop in _steps(shard):
        reference = worker.reference(start, stop, {})
        if reference is not None:
            sums.add_reference(np.asarray(reference))
        advance(stop - start)
    return sums


def merge_sums(states: list[EvalSums]) -> EvalSums:
    """The shards' sums as one (in shard order)."""
    started = time.perf_counter()
    merged = reduce(EvalSums.merge, states)
    log.info("merged %d evaluation shard(s) in %.3f s", len(states),
             time.perf_counter() - started)
    return merged

