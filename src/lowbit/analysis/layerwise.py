"""Layer-by-layer compare: which layer lost the accuracy?

    report = compare_layers("model.f32.onnx", "model.int8.onnx", samples, Tolerance(0.99, 0.90))
    report.first_failure          # LayerDiff of the first FAILED tensor in graph order, or None
    report.summary()              # "12 compared, 11 passed, 1 failed, min cos ..."
    write_csv(report, "layers.csv")

Both models run on ONNX Runtime, one session each, with every paired tensor (see
:mod:`lowbit.analysis.pairing`) exposed as an extra output; for a QDQ test model that
is the DequantizeLinear output, i.e. the quantized value the next layer reads. Exposing
a DequantizeLinear output keeps ORT from fusing that Q/DQ pair into an integer kernel,
so the test values are the float emulation of the integer kernel (equal up to rounding).

Values are compared as they are produced, sample by sample: each pair keeps only running
sums (Σa·b, Σa², Σb², Σ(a−b)², Σ((a+b)/2)², max|a−b|, and whether every sample was
bit-identical / allclose), so memory does not grow with the number of samples. Nor with
the input size: when the exposed tensors of one sample do not fit the memory budget
(lowbit.runtime.memory, sizes from shape inference at the data's shape), the pairs are
split into groups and the samples run once per group (``samples`` must then be
re-iterable, e.g. a lowbit.data.samples.SampleWindow; an iterator is read once). Cosine,
euclidean similarity and SQNR are therefore the POOLED values over all samples — the
metric of all samples concatenated — not a mean of per-sample values.

Status, as tpu-mlir defines it: EQUAL (bit-identical in every sample), CLOSE
(``allclose(test, ref, rtol=1e-5, atol=1e-6)`` in every sample), SIMILAR (pooled cosine and
euclidean similarity reach the tolerance), FAILED (otherwise).

``dump_dir`` receives ``reference.npz`` and ``test.npz``; both are keyed ``"{name}:{i}"``
with ``name`` the REFERENCE tensor name (test.npz holds the paired test tensor's value under
it, so the same key compares the same thing) and ``i`` the sample index; split a key with
``key.rsplit(":", 1)``. The files are written as the samples arrive.
"""

from __future__ import annotations

import csv
import itertools
import logging
import math
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import onnx

from lowbit.analysis.pairing import TensorPair, check_pairs, pair_model_tensors
from lowbit.analysis.validate import Tolerance
from lowbit.atomic import atomic_path
from lowbit.errors import DatasetError, ModelError
from lowbit.graph import with_outputs
from lowbit.io.model import load_model
from lowbit.progress import progress_bar
from lowbit.runtime.memory import MemoryBudget, sample_cost
from lowbit.runtime.ort import create_session

log = logging.getLogger(__name__)

ModelLike = str | Path | onnx.ModelProto
CLOSE_RTOL = 1e-5
CLOSE_ATOL = 1e-6


class Status(StrEnum):
    EQUAL = "EQUAL"
    CLOSE = "CLOSE"
    SIMILAR = "SIMILAR"
    FAILED = "FAILED"


@dataclass(frozen=True)
class LayerDiff:
    """Pooled comparison of one reference tensor with its test partner over all samples."""

    name: str
    op_type: str
    shape: tuple[int, ...]
    cosine: float
    euclid: float
    sqnr_db: float
    max_abs_error: float
    status: Status
    test_tensor: str = ""

    @property
    def passed(self) -> bool:
        return self.status is not Status.FAILED


@dataclass(frozen=True)
class LayerReport:
    diffs: tuple[LayerDiff, ...]
    unpaired: int
    tolerance: Tolerance
    samples: int = 0

    @property
    def first_failure(self) -> LayerDiff | None:
        return next((d for d in self.diffs if not d.passed), None)

    @property
    def failed(self) -> list[LayerDiff]:
        return [d for d in self.diffs if not d.passed]

    @property
    def passed(self) -> bool:
        return self.first_failure is None

    def summary(self) -> str:
        failed = len(self.failed)
        text = f"{len(self.diffs)} compared, {len(self.diffs) - failed} passed, {failed} failed"
        if self.diffs:
            text += (f", min cos {min(d.cosine for d in self.diffs):.6f}"
                     f", min euclid {min(d.euclid for d in self.diffs):.6f}"
                     f", min sqnr {min(d.sqnr_db for d in self.diffs):.2f} dB")
        return text


@dataclass(slots=True)
class LayerAccumulator:
    """Running sums for one pair; a fixed handful of scalars whatever the sample count."""

    shape: tuple[int, ...] = ()
    dot: float = 0.0          # Σ a·b
    ref_sq: float = 0.0       # Σ a²
    test_sq: float = 0.0      # Σ b²
    diff_sq: float = 0.0      # Σ (a−b)²
    mean_sq: float = 0.0      # Σ ((a+b)/2)²
    max_abs: float = 0.0      # max |a−b|
    equal: bool = True        # bit-identical in every sample so far
    close: bool = True        # allclose in every sample so far

    def add(self, ref: np.ndarray, test: np.ndarray) -> None:
        # float32 work, float64 sums: each dot runs over chunks short enough that its
        # float32 rounding stays far below the 6 decimals reported.
        if not self.shape:
            self.shape = tuple(int(d) for d in ref.shape)
        a = np.ascontiguousarray(ref, dtype=np.float32).reshape(-1)
        b = np.ascontiguousarray(test, dtype=np.float32).reshape(-1)
        diff = a - b
        dot, ref_sq, test_sq = _dot(a, b), _dot(a, a), _dot(b, b)
        self.dot += dot
        self.ref_sq += ref_sq
        self.test_sq += test_sq
        self.diff_sq += _dot(diff, diff)
        self.mean_sq += (ref_sq + test_sq + 2.0 * dot) / 4.0  # Σ((a+b)/2)²
        largest = float(max(diff.max(), -diff.min())) if a.size else 0.0
        if math.isnan(largest) and a.size:
            largest = math.inf
        self.max_abs = max(self.max_abs, largest)
        self.equal = self.equal and largest == 0.0
        if self.close and largest > CLOSE_ATOL:  # np.allclose(test, ref), without the copies
            self.close = not bool(np.any(np.abs(diff) > CLOSE_ATOL + CLOSE_RTOL * np.abs(a)))

    def merge(self, other: LayerAccumulator) -> LayerAccumulator:
        """The sums of two disjoint sets of samples as one (a shard's, lowbit.parallel)."""
        return LayerAccumulator(self.shape or other.shape, self.dot + other.dot,
                                self.ref_sq + other.ref_sq, self.test_sq + other.test_sq,
                                self.diff_sq + other.diff_sq, self.mean_sq + other.mean_sq,
                                max(self.max_abs, other.max_abs), self.equal and other.equal,
                                self.close and other.close)

    def cosine(self) -> float:
        if self.ref_sq == 0.0 and self.test_sq == 0.0:
            return 1.0
        if self.ref_sq == 0.0 or self.test_sq == 0.0:
            return 0.0
        return self.dot / math.sqrt(self.ref_sq * self.test_sq)

    def euclid(self) -> float:
        if self.mean_sq == 0.0:
            return 1.0 if self.diff_sq == 0.0 else 0.0
        return 1.0 - math.sqrt(self.diff_sq) / math.sqrt(self.mean_sq)

    def sqnr_db(self) -> float:
        if self.diff_sq == 0.0:
            return math.inf
        if self.ref_sq == 0.0:
            return -math.inf
        return 10.0 * math.log10(self.ref_sq / self.diff_sq)

    def status(self, tolerance: Tolerance) -> Status:
        if self.equal:
            return Status.EQUAL
        if self.close:
            return Status.CLOSE
        if self.cosine() >= tolerance.cosine and self.euclid() >= tolerance.euclid:
            return Status.SIMILAR
        return Status.FAILED


_CHUNK = 1 << 15


def _dot(x: np.ndarray, y: np.ndarray) -> float:
    """Σ x·y of two float32 vectors, summed in float64 over chunks."""
    if x.size <= _CHUNK:
        return float(np.dot(x, y))
    return float(sum(float(np.dot(x[i:i + _CHUNK], y[i:i + _CHUNK]))
                     for i in range(0, x.size, _CHUNK)))


class LayerComparer:
    """Streams pairs of value dicts into one accumulator per tensor pair.

        comparer = LayerComparer(pairs)
        comparer.add(reference_values, test_values)   # per sample; dicts name -> array
        diffs = comparer.diffs(tolerance)
    """

    def __init__(self, pairs: Sequence[TensorPair]) -> None:
        self.pairs = tuple(pairs)
        self.accumulators = {pair.name: LayerAccumulator() for pair in self.pairs}
        self.samples = 0

    def add(self, reference: Mapping[str, np.ndarray], test: Mapping[str, np.ndarray], *,
            pairs: Sequence[TensorPair] | None = None) -> None:
        """One sample's values of ``pairs`` (default: every pair, and the sample counted)."""
        for pair in self.pairs if pairs is None else pairs:
            ref, out = reference[pair.name], test[pair.test_tensor]
            if ref.size != out.size:
                raise ModelError(
                    f"tensor '{pair.name}' has shape {list(ref.shape)} in the reference model "
                    f"but its partner '{pair.test_tensor}' has shape {list(out.shape)} in the "
                    "test model")
            self.accumulators[pair.name].add(ref, out)
        if pairs is None:
            self.samples += 1

    def merge(self, other: LayerComparer) -> LayerComparer:
        """Two comparers of the same pairs over disjoint samples as one."""
        merged = LayerComparer(self.pairs)
        merged.accumulators = {name: acc.merge(other.accumulators[name])
                               for name, acc in self.accumulators.items()}
        merged.samples = self.samples + other.samples
        return merged

    def diffs(self, tolerance: Tolerance) -> tuple[LayerDiff, ...]:
        result = []
        for pair in self.pairs:
            acc = self.accumulators[pair.name]
            result.append(LayerDiff(pair.name, pair.op_type, acc.shape, acc.cosine(),
                                    acc.euclid(), acc.sqnr_db(), acc.max_abs,
                                    acc.status(tolerance), pair.test_tensor))
        return tuple(result)


def compare_layers(
    reference: ModelLike,
    test: ModelLike,
    samples: Iterable[Mapping[str, np.ndarray]],
    tolerance: Tolerance,
    *,
    dump_dir: Path | None = None,
    progress: bool = True,
    threads: int | None = None,
    memory_budget: MemoryBudget | None = None,
) -> LayerReport:
    """Run both models on every sample and compare every paired tensor (see the module doc)."""
    ref_model, test_model = _as_model(reference), _as_model(test)
    pairing = pair_model_tensors(ref_model, test_model)
    check_pairs(pairing.pairs, "layer compare")
    comparer = compare_samples(ref_model, test_model, pairing.pairs, samples,
                               dump_dir=dump_dir, progress=progress, threads=threads,
                               memory_budget=memory_budget)
    return layer_report(comparer, len(pairing.unpaired), tolerance)


def layer_report(comparer: LayerComparer, unpaired: int, tolerance: Tolerance) -> LayerReport:
    """The comparer's diffs as a report (every sample's sums in it)."""
    if comparer.samples == 0:
        raise DatasetError("layer compare: the data set has no samples")
    report = LayerReport(comparer.diffs(tolerance), unpaired, tolerance, comparer.samples)
    log.info("layer compare over %d sample(s): %s", comparer.samples, report.summary())
    return report


def compare_samples(
    ref_model: onnx.ModelProto,
    test_model: onnx.ModelProto,
    pairs: Sequence[TensorPair],
    samples: Iterable[Mapping[str, np.ndarray]],
    *,
    dump_dir: Path | None = None,
    progress: bool = True,
    threads: int | None = None,
    memory_budget: MemoryBudget | None = None,
    sessions: ExposedSessions | None = None,
) -> LayerComparer:
    """The running sums of every pair over ``samples`` (one shard's, or all of them).

    ``sessions`` runs both models (a worker's, kept across its shards); None builds them
    from the two models and ``threads`` for this call only."""
    once = iter(samples)
    first = next(once if once is samples else iter(samples), None)
    if first is None:
        raise DatasetError("layer compare: the data set has no samples")
    groups = [list(pairs)]
    if once is samples:  # an iterator is read once, every pair exposed in that pass
        samples = itertools.chain([first], once)
    else:  # re-iterable: as many passes as the budget needs
        groups = _pair_groups(ref_model, pairs, first, memory_budget or MemoryBudget.default())
    comparer = LayerComparer(pairs)
    if sessions is None:
        sessions = ExposedSessions(ref_model, test_model, threads)
    total = len(samples) * len(groups) if isinstance(samples, Sized) else None
    with _dumps(dump_dir) as dump, progress_bar("comparing layers", progress, total) as advance:
        for number, group in enumerate(groups):
            run = sessions.open(group)
            for index, sample in enumerate(samples):
                ref_values, test_values = run.reference.run(sample), run.test.run(sample)
                comparer.add(ref_values, test_values, pairs=group)
                if number == 0:
                    comparer.samples += 1
                dump(index, group, ref_values, test_values)
                advance(1)
            del run  # one group's sessions at a time (unless ``sessions`` keeps them)
    return comparer


def _pair_groups(model: onnx.ModelProto, pairs: Sequence[TensorPair],
                 sample: Mapping[str, np.ndarray], budget: MemoryBudget
                 ) -> list[list[TensorPair]]:
    """``pairs`` in graph order, in groups whose exposed tensors (reference and test, one
    sample) fit ``budget`` beside the model's own activations; one group when the sizes are
    unknown."""
    cost = sample_cost(model, {name: np.shape(value) for name, value in sample.items()})
    if cost is None:
        return [list(pairs)]
    sizes = {pair.name: 2 * cost.sizes.get(pair.name, 0) for pair in pairs}
    names = budget.groups(sizes, [pair.name for pair in pairs], fixed=2 * cost.per_sample)
    by_name = {pair.name: pair for pair in pairs}
    if len(names) > 1:
        log.info("layer compare in %d passes over the samples (memory budget %s)",
                 len(names), budget)
    return [[by_name[name] for name in group] for group in names]


CSV_COLUMNS = ("name", "op", "shape", "cosine", "euclid", "sqnr_db", "max_abs_error", "status",
               "test_tensor")


def write_csv(report: LayerReport, path: str | Path) -> Path:
    """One row per compared tensor, in graph order; shape written as 1x16x8x8."""
    path = Path(path)
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for d in report.diffs:
            writer.writerow([d.name, d.op_type, "x".join(str(s) for s in d.shape),
                             f"{d.cosine:.8f}", f"{d.euclid:.8f}", f"{d.sqnr_db:.4f}",
                             f"{d.max_abs_error:.8g}", d.status.value, d.test_tensor])
    return path


class _ExposedModel:
    """One ORT session over a copy of ``model`` with ``names`` added as graph outputs."""

    def __init__(self, model: onnx.ModelProto, names: Sequence[str], threads: int | None,
                 role: str) -> None:
        self.role = role
        graph = model.graph
        initializers = {init.name for init in graph.initializer}
        self.inputs = [v.name for v in graph.input if v.name not in initializers]
        self.fetch = sorted({n for n in names if n not in self.inputs})
        self.session = create_session(with_outputs(model, self.fetch), threads=threads,
                                      memory_pattern=False)

    def run(self, sample: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [name for name in self.inputs if name not in sample]
        if missing:
            raise DatasetError(f"the {self.role} model needs input(s) {missing}; the sample has "
                               f"{sorted(sample)}")
        feeds = {name: np.asarray(sample[name]) for name in self.inputs}
        try:  # nothing to fetch (a group of graph inputs): ORT would return every output
            values = self.session.run(self.fetch, feeds) if self.fetch else []
        except Exception as err:  # ORT raises several unrelated exception types
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelError(f"running the {self.role} model failed: {first}") from err
        result = dict(zip(self.fetch, values, strict=True))
        result.update(feeds)
        return result


@dataclass(frozen=True)
class ExposedGroup:
    """Both models' sessions exposing one group of pairs (reference and test tensors)."""

    names: tuple[str, ...]
    reference: _ExposedModel
    test: _ExposedModel


class ExposedSessions:
    """Opens the sessions of both models for a group of pairs.

        sessions = ExposedSessions(ref_model, test_model, threads=None, keep=True)
        run = sessions.open(pairs)          # built; with keep, the same group's come back
        run.reference.run(sample), run.test.run(sample)

    With ``keep`` the last group's sessions stay for the next ``open`` of the same group:
    a worker runs shard after shard of one compare (lowbit.analysis.compare_shards) and
    would otherwise load and optimize both graphs again for every shard.
    Only the last group is kept, so a compare split into groups by the memory budget
    still holds one group's sessions (and ORT's arenas) at a time."""

    def __init__(self, reference: onnx.ModelProto, test: onnx.ModelProto,
                 threads: int | None, *, keep: bool = False) -> None:
        self.reference, self.test, self.threads, self.keep = reference, test, threads, keep
        self._kept: ExposedGroup | None = None

    def open(self, group: Sequence[TensorPair]) -> ExposedGroup:
        """The sessions exposing ``group``: the kept ones when they expose the same."""
        names = tuple(pair.name for pair in group)
        if self._kept is not None and self._kept.names == names:
            return self._kept
        self._kept = None  # freed before the next group's are built
        run = ExposedGroup(
            names, _ExposedModel(self.reference, names, self.threads, "reference"),
            _ExposedModel(self.test, [pair.test_tensor for pair in group], self.threads,
                          "test"))
        if self.keep:
            self._kept = run
        return run


def _as_model(model: ModelLike) -> onnx.ModelProto:
    return model if isinstance(model, onnx.ModelProto) else load_model(model)


class _NpzStream:
    """An .npz written one array at a time (what numpy.savez does, without holding them all)."""

    def __init__(self, path: Path) -> None:
        self.zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True)

    def write(self, key: str, array: np.ndarray) -> None:
        with self.zip.open(f"{key}.npy", "w", force_zip64=True) as handle:
            np.lib.format.write_array(handle, np.asarray(array), allow_pickle=False)

    def close(self) -> None:
        self.zip.close()


DUMP_FILES = ("reference.npz", "test.npz")

DumpFn = Callable[[int, Sequence[TensorPair], Mapping[str, np.ndarray], Mapping[str, np.ndarray]],
                  None]


@contextmanager
def _dumps(dump_dir: Path | None) -> Iterator[DumpFn]:
    if dump_dir is None:
        yield lambda *_: None
        return
    dump_dir = Path(dump_dir)
    with ExitStack() as stack:  # both files replace the old ones only when the run completes
        streams = []
        for name in DUMP_FILES:
            stream = _NpzStream(stack.enter_context(atomic_path(dump_dir / name)))
            stack.callback(stream.close)
            streams.append(stream)
        ref_file, test_file = streams

        def dump(index: int, pairs: Sequence[TensorPair], ref: Mapping[str, np.ndarray],
                 test: Mapping[str, np.ndarray]) -> None:
            for pair in pairs:
                ref_file.write(f"{pair.name}:{index}", ref[pair.name])
                test_file.write(f"{pair.name}:{index}", test[pair.test_tensor])

        yield dump
    log.info("wrote per-layer values to %s/{reference,test}.npz", dump_dir)


__all__ = ["ExposedGroup", "ExposedSessions", "LayerAccumulator", "LayerComparer", "LayerDiff",
           "LayerReport", "Status", "compare_layers", "compare_samples", "layer_report",
           "write_csv"]
