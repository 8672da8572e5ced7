"""How many samples a stage runs at once: a batch chosen from a memory budget.

    budget = MemoryBudget.parse("512M")              # or MemoryBudget.default(), "2G", bytes
    cost = sample_cost(probe, {"input": (1, 3, 640, 640)})   # from shape inference; None: unknown
    batch = budget.batch(cost.per_sample, most=8)    # 1 ... 8 samples per run
    groups = budget.groups(cost.sizes, ["t1", "t2", ...])    # tensors to expose per run
    value, grown = rss_growth(lambda: session.run(None, feeds))  # measured instead
    size = choose_batch(model, sample, budget)       # for a stage that runs a model as it is
    for feeds in stacked_batches(samples, size): ... # batch-1 samples concatenated
    with RowStore(budget.bytes // 2) as rows: ...     # per-sample arrays, spilled past it

Every stage that runs a model over a data set holds, per run, the activations of one
batch (and whatever tensors it reads back). Their bytes per sample follow from ONNX
shape inference at the data's shape (:func:`sample_cost`: the peak of live tensors in
the order ONNX Runtime runs the graph, plus the tensors read back, which live to the
end of the run); where shape inference cannot size them, a first run of one sample is
measured (:func:`rss_growth`). The batch is then what fits the budget: never below one
sample, so the floor is plain float inference at batch 1.

The default budget is :data:`DEFAULT_BUDGET` (768 MiB, so that the batch, lowbit's own
imports and its model copies stay within about 1 GB above plain inference), and at
most half the memory the machine has available.
"""

from __future__ import annotations

import logging
import math
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, TypeVar

import numpy as np
import onnx
from onnx import TensorProto

from lowbit.errors import ArgumentError, UsageError
from lowbit.graph import infer_shapes_light

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_BUDGET = 768 << 20
MIN_BUDGET = 1 << 20
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)
_ELEMENT_BYTES: dict[int, int] = {TensorProto.FLOAT: 4, TensorProto.DOUBLE: 8, TensorProto.FLOAT16: 2,
                  TensorProto.BFLOAT16: 2, TensorProto.INT64: 8, TensorProto.UINT64: 8,
                  TensorProto.INT32: 4, TensorProto.UINT32: 4, TensorProto.INT16: 2,
                  TensorProto.UINT16: 2, TensorProto.INT8: 1, TensorProto.UINT8: 1,
                  TensorProto.BOOL: 1}
# A graph whose tensors shape inference sizes less often than this is measured instead.
_KNOWN_FRACTION = 0.75
# ONNX Runtime holds more than the live tensors: layout copies (its NCHWc reorders of a
# probed tensor), kernel scratch, arena rounding. Measured on MobileNetV2 at 640x640:
# 127 MB per sample in the calibration run against 94 MB of live tensors.
ENGINE_OVERHEAD = 1.5


def parse_size(text: str | int, *, option: str = "{memory_budget}") -> int:
    """Bytes from ``512M``, ``2G``, ``1.5GB``, ``800MiB`` or a plain number of bytes;
    anything else, or less than 1 MiB, is a UsageError naming ``option``."""
    if isinstance(text, int) and not isinstance(text, bool):
        size = text
    else:
        found = _SIZE.match(str(text))
        if found is None:
            raise ArgumentError(f"{option} must be a size such as 512M or 2G, got "
                                f"{str(text)[:60]!r}")
        size = int(float(found.group(1)) * _UNITS[found.group(2).upper()])
    if size < MIN_BUDGET:
        raise ArgumentError(f"{option} must be at least 1M, got {str(text)[:60]!r}")
    return size


def format_size(size: int) -> str:
    """``805306368`` -> ``768 MiB``."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} B"


def available_memory() -> int | None:
    """What the machine has available now (Linux MemAvailable), None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) << 10
    except OSError:
        pass
    return None


@dataclass(frozen=True)
class MemoryBudget:
    """The bytes a stage's runs may hold at once beyond the model itself."""

    bytes: int

    def __post_init__(self) -> None:
        # A user's size is at least 1M (parse_size); smaller ones are for tests.
        if isinstance(self.bytes, bool) or not isinstance(self.bytes, int) or self.bytes < 1:
            raise UsageError(f"a memory budget is a positive number of bytes, got "
                             f"{self.bytes!r}")

    @classmethod
    def default(cls) -> MemoryBudget:
        """:data:`DEFAULT_BUDGET`, or half the available memory where that is less."""
        available = available_memory()
        size = DEFAULT_BUDGET if available is None else min(DEFAULT_BUDGET, available // 2)
        return cls(max(size, MIN_BUDGET))

    @classmethod
    def parse(cls, value: str | int | MemoryBudget | None) -> MemoryBudget:
        """A budget from a size (:func:`parse_size`); None gives the default."""
        if value is None:
            return cls.default()
        if isinstance(value, MemoryBudget):
            return value
        return cls(parse_size(value))

    def batch(self, per_sample: int | None, most: int) -> int:
        """Samples per run: as many as fit (at least 1, at most ``most``); ``most`` when
        the cost per sample is unknown."""
        if per_sample is None:
            return max(1, most)
        return max(1, min(most, self.bytes // max(per_sample, 1)))

    def groups(self, sizes: Mapping[str, int], tensors: Sequence[str], *,
               fixed: int = 0) -> list[list[str]]:
        """``tensors`` split, in order, into groups whose bytes per sample (``sizes``; an
        unknown one counts as the largest known) fit the budget beside ``fixed`` bytes
        (what the run holds anyway); one tensor per group at the least."""
        largest = max(sizes.values(), default=0)
        room = max(self.bytes - fixed, 0)
        groups: list[list[str]] = []
        used = 0
        for name in tensors:
            size = sizes.get(name, largest)
            if groups and groups[-1] and used + size <= room:
                groups[-1].append(name)
                used += size
            else:
                groups.append([name])
                used = size
        return groups

    def __str__(self) -> str:
        return format_size(self.bytes)


@dataclass(frozen=True)
class SampleCost:
    """What one sample costs a run of a model: the peak bytes of its live tensors and
    each tensor's bytes (the ones shape inference could size)."""

    peak: int
    sizes: Mapping[str, int]

    @property
    def per_sample(self) -> int:
        """What a batch grows by per sample: the peak with :data:`ENGINE_OVERHEAD`."""
        return int(self.peak * ENGINE_OVERHEAD)


def sample_cost(model: onnx.ModelProto, shapes: Mapping[str, Sequence[int]]
                ) -> SampleCost | None:
    """The cost of running ``model`` on one sample of ``shapes`` (input name -> shape),
    from shape inference; None where it cannot size most of the tensors.

    The peak follows ONNX Runtime's order (a depth-first walk back from the leaves) and
    frees each tensor after its last reader; graph outputs live to the end. Kernel
    scratch space and ORT's in-place reuse are left out: what it gains in one it mostly
    spends on the other."""
    try:
        inferred = infer_shapes_light(model, shapes)
    except Exception as err:  # noqa: BLE001 - onnx raises several types; then measure
        log.debug("shape inference failed for the memory estimate: %s", err)
        return None
    graph = inferred.graph
    sizes: dict[str, int] = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        size = _tensor_bytes(value)
        if size is not None:
            sizes[value.name] = size
    initializers = {init.name for init in model.graph.initializer}
    outputs = [name for node in graph.node for name in node.output if name]
    if outputs and sum(name in sizes for name in outputs) < _KNOWN_FRACTION * len(outputs):
        return None
    order = ort_order(list(graph.node))
    last_read: dict[str, int] = {}
    for step, node in enumerate(order):
        for name in node.input:
            last_read[name] = step
    kept = {value.name for value in graph.output}
    live = {value.name for value in graph.input if value.name not in initializers}
    current = sum(sizes.get(name, 0) for name in live)
    peak = current
    for step, node in enumerate(order):
        for name in node.output:
            if name and name not in live:
                live.add(name)
                current += sizes.get(name, 0)
        peak = max(peak, current)
        for name in {*node.input, *node.output}:
            if name in live and name not in kept and last_read.get(name, -1) <= step:
                live.discard(name)
                current -= sizes.get(name, 0)
    return SampleCost(peak, {k: v for k, v in sizes.items() if k not in initializers})


def ort_order(nodes: Sequence[onnx.NodeProto]) -> list[onnx.NodeProto]:
    """The order ONNX Runtime's default execution plan runs ``nodes`` in (before its graph
    optimizations): post-order of a depth-first walk back from the leaf nodes, the
    last leaf first, inputs visited in node-list order."""
    producer = {name: index for index, node in enumerate(nodes) for name in node.output}
    readers: set[int] = set()
    inputs: list[list[int]] = []
    for node in nodes:
        found = sorted({producer[name] for name in node.input if name in producer})
        inputs.append(found)
        readers.update(found)
    stack = [(index, False) for index in range(len(nodes)) if index not in readers]
    visited = [False] * len(nodes)
    order: list[onnx.NodeProto] = []
    while stack:
        index, leave = stack.pop()
        if leave:
            order.append(nodes[index])
            continue
        if visited[index]:
            continue
        visited[index] = True
        stack.append((index, True))
        stack.extend((i, False) for i in inputs[index] if not visited[i])
    return order


def batchable(model: onnx.ModelProto) -> bool:
    """Whether every graph input (initializers aside) has a dynamic first axis: samples
    concatenated along it are a batch."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    return bool(inputs) and all(
        value.type.HasField("tensor_type") and len(value.type.tensor_type.shape.dim) > 0
        and not value.type.tensor_type.shape.dim[0].HasField("dim_value")
        for value in inputs)


def choose_batch(model: onnx.ModelProto, sample: Mapping[str, np.ndarray],
                 budget: MemoryBudget, *, most: int = 8) -> int:
    """Samples per run of ``model`` on samples shaped like ``sample`` (batch-1 arrays):
    what ``budget`` allows by shape inference; 1 where the model takes no batch, a sample
    is not a batch-1 slice, or the cost is unknown."""
    if most <= 1 or not batchable(model) or any(
            np.ndim(value) == 0 or np.shape(value)[0] != 1 for value in sample.values()):
        return 1
    shapes = {name: (1, *np.shape(value)[1:]) for name, value in sample.items()}
    cost = sample_cost(model, shapes)
    batch = 1 if cost is None else budget.batch(cost.per_sample, most)
    log.debug("batch %d for %s (%s per sample, budget %s)", batch, shapes,
              "unknown" if cost is None else format_size(cost.per_sample), budget)
    return batch


def stacked_batches(samples: Iterable[Mapping[str, np.ndarray]], size: int
                    ) -> Iterator[dict[str, np.ndarray]]:
    """Up to ``size`` consecutive batch-1 samples concatenated along axis 0, a new batch
    where the shapes past axis 0 change."""
    group: list[Mapping[str, np.ndarray]] = []
    for sample in samples:
        if group and (len(group) >= size or any(
                np.shape(sample[k])[1:] != np.shape(group[0][k])[1:] for k in sample)):
            yield _stack(group)
            group = []
        group.append(sample)
    if group:
        yield _stack(group)


def _stack(group: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(group) == 1:
        return dict(group[0])
    return {name: np.concatenate([np.asarray(s[name]) for s in group]) for name in group[0]}


class RowStore:
    """Per-sample rows (dicts of arrays) for a stage that reads them again and again: held
    in memory up to ``limit`` bytes, the rest written to a temporary folder and read back
    one row at a time, so memory stays bounded however many or large the rows are."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.rows: list[dict[str, np.ndarray] | Path] = []
        self._folder: tempfile.TemporaryDirectory[str] | None = None

    def append(self, row: Mapping[str, np.ndarray]) -> None:
        size = sum(np.asarray(value).nbytes for value in row.values())
        if self.held + size <= self.limit:
            self.rows.append(dict(row))
            self.held += size
            return
        if self._folder is None:
            self._folder = tempfile.TemporaryDirectory(prefix="lowbit-rows-")
            log.info("holding more than %s of per-sample values: the rest go to %s",
                     format_size(self.limit), self._folder.name)
        path = Path(self._folder.name) / f"{len(self.rows)}.npz"
        arrays: dict[str, Any] = {f"a{i}": value for i, value in enumerate(row.values())}
        np.savez(path, **arrays)
        self.rows.append(path)
        self._names = list(row)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        row = self.rows[index]
        if isinstance(row, dict):
            return row
        with np.load(row) as stored:
            return {name: stored[f"a{i}"] for i, name in enumerate(self._names)}

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return (self[index] for index in range(len(self.rows)))

    def close(self) -> None:
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rss_growth(run: Callable[[], T]) -> tuple[T, int | None]:
    """``run()``'s result and how far it raised this process's peak resident memory above
    what was resident before (None where the system does not say)."""
    before = _status_bytes("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to now
    except OSError:
        pass
    value = run()
    after = _status_bytes("VmHWM")
    if before is None or after is None:
        return value, None
    return value, max(after - before, 0)


def _status_bytes(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) << 10
    except OSError:
        pass
    return None


def _tensor_bytes(value: onnx.ValueInfoProto) -> int | None:
    if not value.type.HasField("tensor_type"):
        return None
    tensor = value.type.tensor_type
    element = _ELEMENT_BYTES.get(tensor.elem_type)
    if element is None or not tensor.HasField("shape"):
        return None
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
    if any(d < 0 for d in dims):
        return None
    return element * math.prod(dims)
