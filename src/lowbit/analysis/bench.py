"""Time models side by side: latency and throughput per batch size.

    settings = BenchSettings(batches=(1, 32), threads=2, repeats=20)
    comparison = bench_models(["model.int8.onnx", "model.f32.onnx"], settings)
    comparison.ratio(32)                      # speed-up of the first model over the second
    for result in comparison.results:
        for t in result.timings:
            print(result.model, t.batch, t.median_ms, t.p90_ms, t.throughput)

With several models the runs are interleaved in one process (warm up all, then
each repeat runs model A once, model B once, ...), so machine noise (another
process, a frequency change) falls on every model alike and the ratios hold even
when the absolute times drift.

Inputs are random: float inputs standard normal, integer and bool inputs zeros.
The first dimension of each input is the batch. A model whose batch dimension is
fixed (say to 1) runs a larger batch as several sequential runs and its timing is
marked ``sequential``; a dynamic dimension other than the first is an error,
since the bench cannot guess its size.

Engines and precisions: ``BenchSettings(backend="openvino", precision="BF16")``
runs every model on that engine. To time one model several ways side by side,
give :class:`BenchVariant` entries (plain paths may be mixed in; they take the
settings' backend and precision):

    comparison = bench_models([
        BenchVariant("resnet18.f32.onnx"),                                  # F32 on ORT
        BenchVariant("resnet18.f32.onnx", backend="openvino", precision="F32"),
        BenchVariant("resnet18.f32.onnx", backend="openvino", precision="BF16"),
        BenchVariant("resnet18.int8.onnx", backend="openvino"),            # INT8 (QDQ)
    ], BenchSettings(batches=(1, 32), threads=2))
    for result in comparison.results:
        print(result.label, result.precision_used, result.timing(32).throughput)

``precision_used`` is what the engine reports it computes in (see
lowbit.runtime.backends); ORT runs a graph in the precision it declares.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from lowbit import arguments
from lowbit.errors import ArgumentError, UsageError
from lowbit.io.model import input_specs, load_model
from lowbit.runtime.backends import (
    Runner,
    check_backend,
    check_ort_precision,
    check_precision,
    graph_precision,
    make_runner,
)
from lowbit.runtime.ort import ORT_LEVELS, check_run
from lowbit.spec import TensorSpec

log = logging.getLogger(__name__)

Clock = Callable[[], float]
MAX_MIN_SECONDS = 86400.0  # a day of timed runs per batch size
SETTLE_SECONDS = 0.002  # untimed runs after a switch of sessions (time_interleaved)
BLOCK_SECONDS = 0.02  # then timed runs, per turn


@dataclass(frozen=True)
class BenchSettings:
    """What to time: batch sizes, intra-op threads, warm-up runs and timed repeats.

    ``min_seconds`` > 0 keeps repeating (past ``repeats``) until every model has
    spent at least that long in timed runs at the batch size. ``backend`` and
    ``precision`` apply to models given as plain paths (see lowbit.runtime.backends).
    ``ort_optimization`` is ONNX Runtime's graph optimization level for ORT runs:
    "disable", "basic", "extended" or "all" (ORT's default).
    """

    batches: tuple[int, ...] = (1, 32)
    threads: int | None = None
    warmup: int = 3
    repeats: int = 20
    min_seconds: float = 0.0
    backend: str = "ort"
    precision: str | None = None
    ort_optimization: str = "all"

    def __post_init__(self) -> None:
        check_backend(arguments.text(self.backend, "backend"))
        object.__setattr__(self, "precision", check_precision(self.precision))
        arguments.choice(self.ort_optimization, tuple(ORT_LEVELS), "ort_optimization")
        batches = self.batches
        if isinstance(batches, int | np.integer) and not isinstance(batches, bool):
            batches = (batches,)
        if isinstance(batches, str) or not isinstance(batches, Sequence) or not batches:
            raise ArgumentError(f"{{batches}} must be a list of batch sizes; got {batches!r}")
        object.__setattr__(self, "batches", tuple(arguments.count(b, "batches")
                                                  for b in batches))
        arguments.threads(self.threads)
        arguments.count(self.warmup, "warmup", minimum=0)
        arguments.count(self.repeats, "repeats")
        object.__setattr__(self, "min_seconds", arguments.number(
            self.min_seconds, "min_seconds", low=0, high=MAX_MIN_SECONDS))


@dataclass(frozen=True)
class BenchVariant:
    """One entry of bench_models: a model on an engine, with a precision hint (None: default).

    ``ort_optimization`` (ORT only) overrides the settings' ORT graph optimization
    level for this entry, so one model can be timed at several levels interleaved.
    """

    model: str | Path
    backend: str = "ort"
    precision: str | None = None
    ort_optimization: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", arguments.path(self.model, "model"))
        check_backend(arguments.text(self.backend, "backend"))
        object.__setattr__(self, "precision", check_precision(self.precision))
        if self.ort_optimization is not None:
            arguments.choice(self.ort_optimization, tuple(ORT_LEVELS), "ort_optimization")


@dataclass(frozen=True)
class BatchTiming:
    """Timing of one model at one batch size; throughput is samples per second.

    ``sequential`` is True when the model's batch dimension is fixed and the
    batch ran as several smaller runs back to back (timed together).
    """

    batch: int
    median_ms: float
    p90_ms: float
    throughput: float
    sequential: bool = False


@dataclass(frozen=True)
class BenchResult:
    """One model's size on disk and its timings, one per batch size.

    ``backend`` is the engine it ran on and ``precision_used`` what that engine
    reports it computed in ("F32", "BF16", "INT8 (QDQ)", ...).
    """

    model: str
    size_bytes: int
    timings: tuple[BatchTiming, ...]
    backend: str = "ort"
    precision_used: str = ""

    @property
    def label(self) -> str:
        """The file name, with engine and precision when not plain ORT: "m.onnx (openvino BF16)"."""
        if check_backend(self.backend).default:
            return self.model
        return f"{self.model} ({self.backend} {self.precision_used})"

    def timing(self, batch: int) -> BatchTiming:
        for timing in self.timings:
            if timing.batch == batch:
                return timing
        raise UsageError(f"{self.model} was not timed at batch {batch}; "
                         f"timed batches: {[t.batch for t in self.timings]}")


@dataclass(frozen=True)
class BenchComparison:
    """Results of models timed side by side, in the order they were given."""

    results: tuple[BenchResult, ...]

    def ratio(self, batch: int, first: int = 0, second: int = 1) -> float:
        """Throughput of results[first] / throughput of results[second] at ``batch``."""
        if max(first, second) >= len(self.results):
            raise UsageError(f"ratio needs results {first} and {second}, "
                             f"but only {len(self.results)} model(s) were timed")
        return (self.results[first].timing(batch).throughput
                / self.results[second].timing(batch).throughput)


@dataclass(frozen=True)
class _Plan:
    """How to feed one model at one batch size: the feeds and how many runs make the batch."""

    feeds: dict[str, np.ndarray]
    runs: int


def bench_models(
    models: Sequence[str | Path | BenchVariant], settings: BenchSettings | None = None, *,
    progress: bool = True,
) -> BenchComparison:
    """Time every model at every batch size of ``settings`` (default: BenchSettings()),
    interleaved in one process.

    An entry is a path (run on ``settings.backend`` at ``settings.precision``) or a
    :class:`BenchVariant`; results come back in the order given.
    """
    if isinstance(models, str | os.PathLike | BenchVariant) \
            or not isinstance(models, Sequence) or not models:
        raise ArgumentError(f"{{models}} must be a list of model paths (or BenchVariants); "
                            f"got {models!r}"[:300])
    settings = arguments.instance(settings, BenchSettings, "settings",
                                  "a BenchSettings") or BenchSettings()
    arguments.flag(progress, "progress")
    variants = [m if isinstance(m, BenchVariant)
                else BenchVariant(m, settings.backend, settings.precision) for m in models]
    paths = [Path(v.model) for v in variants]
    protos = [load_model(p, check=False) for p in paths]
    engines = [_load_engine(v, proto, settings.threads,
                            v.ort_optimization or settings.ort_optimization)
               for v, proto in zip(variants, protos, strict=True)]
    rng = np.random.default_rng(0)
    per_model: list[list[BatchTiming]] = [[] for _ in paths]
    for batch in settings.batches:
        plans = [plan_batch(proto, batch, rng, name=str(p)) for proto, p in zip(protos, paths, strict=True)]
        for engine, plan, path in zip(engines, plans, paths, strict=True):
            if isinstance(engine, _OrtEngine):  # runners check their own runs
                check_run(engine.session, plan.feeds, str(path))
        runners = [_runner(e, plan) for e, plan in zip(engines, plans, strict=True)]
        if progress:
            log.info("timing %d model(s) at batch %d: %d warm-up runs, then at least %d timed "
                     "runs each, in interleaved blocks",
                     len(paths), batch, settings.warmup, settings.repeats)
        samples = time_interleaved(runners, settings.warmup, settings.repeats,
                                   settings.min_seconds)
        for index, (times, plan) in enumerate(zip(samples, plans, strict=True)):
            timing = summarize(batch, times, sequential=plan.runs > 1)
            per_model[index].append(timing)
            if progress:
                log.info("  %s batch %d: median %.2f ms, p90 %.2f ms, %.1f samples/s%s",
                         _describe(variants[index], engines[index]), batch, timing.median_ms,
                         timing.p90_ms, timing.throughput,
                         " (sequential)" if timing.sequential else "")
    results = tuple(
        BenchResult(model=p.name, size_bytes=model_size_bytes(p), timings=tuple(t),
                    backend=v.backend, precision_used=e.precision_used)
        for p, t, v, e in zip(paths, per_model, variants, engines, strict=True)
    )
    return BenchComparison(results)


@dataclass(frozen=True)
class _OrtEngine:
    """ORT is timed through its session directly, exactly as before backends existed."""

    session: ort.InferenceSession
    precision_used: str


def _load_engine(variant: BenchVariant, proto: onnx.ModelProto,
                 threads: int | None, ort_optimization: str = "all") -> _OrtEngine | Runner:
    backend = check_backend(variant.backend)
    if backend.timed_session is None:
        return make_runner(variant.model, backend=variant.backend, threads=threads,
                           precision=variant.precision)
    declared = graph_precision(proto)
    check_ort_precision(str(variant.model), declared, variant.precision)
    session = backend.timed_session(variant.model, threads, ort_optimization)
    return _OrtEngine(session, declared)  # type: ignore[arg-type]


def _describe(variant: BenchVariant, engine: _OrtEngine | Runner) -> str:
    name = Path(variant.model).name
    if check_backend(variant.backend).default:
        return name
    return f"{name} ({variant.backend} {engine.precision_used})"


def time_interleaved(
    runners: Sequence[Callable[[], object]],
    warmup: int,
    repeats: int,
    min_seconds: float = 0.0,
    clock: Clock = time.perf_counter,
) -> list[list[float]]:
    """Warm up every runner, then time them in turns; returns seconds per run, per runner.

    The order alternates between rounds (A B C, then C B A), so that no runner always runs
    right after the same one (a heavy float model warms or heats the caches and cores for
    whichever model comes next). Each turn is a block (_turn): a switch from one session to
    another costs the first runs after it, so those are not timed. Rounds go on until every
    runner has at least ``repeats`` timed runs and a timed total of ``min_seconds``.
    """
    for _ in range(warmup):
        for run in runners:
            run()
    times: list[list[float]] = [[] for _ in runners]
    order = list(range(len(runners)))
    while True:
        for index in order:
            _turn(runners[index], times[index], clock)
        order.reverse()
        if all(len(t) >= repeats and sum(t) >= min_seconds for t in times):
            return times


def _turn(run: Callable[[], object], times: list[float], clock: Clock) -> None:
    """One runner's turn: untimed runs for SETTLE_SECONDS, then timed runs for BLOCK_SECONDS.

    The session that ran before leaves its thread pool spinning and its weights in the
    caches. Timed one run each in strict alternation, two ONNX Runtime sessions on this
    2-core machine read 0.32-0.75x for an INT8 R-Net over float at batch 32, and 1.9x for
    an INT8 EfficientNet-Lite0 edge map; each alone, in its own process, reads 0.77x and
    1.67x. These blocks, on sessions that stop spinning when a run returns
    (lowbit.runtime.ort.create_session), read 0.81x and 1.63x (BENCHMARKS.md, dense
    outputs). A run of BLOCK_SECONDS or more is its own settling: what the previous
    session leaves is small beside it.
    """
    settled = 0.0
    while settled < SETTLE_SECONDS:
        start = clock()
        run()
        took = clock() - start
        if took >= BLOCK_SECONDS:
            times.append(took)
            return
        settled += took
    spent = 0.0
    while spent < BLOCK_SECONDS:
        start = clock()
        run()
        took = clock() - start
        times.append(took)
        spent += took


def summarize(batch: int, seconds: Sequence[float], *, sequential: bool = False) -> BatchTiming:
    """Median, 90th percentile (ms) and samples/s from per-run times in seconds."""
    values = np.asarray(seconds, dtype=np.float64) * 1000.0
    median = float(np.median(values))
    p90 = max(float(np.percentile(values, 90)), median)
    throughput = batch / (median / 1000.0) if median > 0 else math.inf
    return BatchTiming(batch=batch, median_ms=median, p90_ms=p90, throughput=throughput,
                       sequential=sequential)


def plan_batch(
    model: onnx.ModelProto, batch: int, rng: np.random.Generator, *, name: str = "model",
    keyword: str = "batches",
) -> _Plan:
    """Random feeds for ``batch`` samples, or for a fixed batch size run several times;
    a batch whose feeds cannot fit in memory is refused first (an ArgumentError naming
    ``keyword``)."""
    specs = input_specs(model)
    fixed = _fixed_batch(specs)
    if fixed is None:
        runs, run_batch = 1, batch
    elif batch % fixed == 0:
        runs, run_batch = batch // fixed, fixed
    else:
        raise UsageError(f"{name} has its batch dimension fixed to {fixed}; batch {batch} "
                         f"is not a multiple of it")
    # A float feed is drawn in float64 and then cast: both exist at once.
    need = sum(math.prod(dim if isinstance(dim, int) else run_batch for dim in spec.shape)
               * (spec.dtype.itemsize + (8 if np.issubdtype(spec.dtype, np.floating) else 0))
               for spec in specs)
    arguments.check_memory(need, keyword, f"batch {batch} of {Path(name).name} (its random "
                           "inputs alone)")
    feeds = {spec.name: _random_input(spec, run_batch, rng, name) for spec in specs}
    return _Plan(feeds=feeds, runs=runs)


def model_size_bytes(path: str | Path) -> int:
    """Size of the model file plus any external data files it names."""
    path = Path(path)
    total = path.stat().st_size
    model = onnx.load(str(path), load_external_data=False)
    locations = set()
    for tensor in _all_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            for entry in tensor.external_data:
                if entry.key == "location":
                    locations.add(entry.value)
    for location in locations:
        data = path.parent / location
        if data.exists():
            total += data.stat().st_size
    return total


def _all_tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                tensors.append(attr.t)
    return tensors


def _fixed_batch(specs: Sequence[TensorSpec]) -> int | None:
    """None when some input has a dynamic first dim; else the fixed first dim shared by all."""
    firsts = [spec.shape[0] for spec in specs if spec.shape]
    if not firsts or any(not isinstance(d, int) for d in firsts):
        return None
    sizes = {d for d in firsts if isinstance(d, int)}
    return sizes.pop() if len(sizes) == 1 else None


def _random_input(spec: TensorSpec, batch: int, rng: np.random.Generator, name: str) -> np.ndarray:
    shape: list[int] = []
    for axis, dim in enumerate(spec.shape):
        if isinstance(dim, int):
            shape.append(dim)  # a fixed first dim: the caller already runs at that batch
        elif axis == 0:
            shape.append(batch)
        else:
            raise UsageError(f"{name}: input '{spec.name}' has a dynamic dimension at axis "
                             f"{axis} (shape {spec.shape_text()}); bench only fills the batch "
                             f"axis 0 — fix the other dimensions first (e.g. lowbit transform "
                             f"with fixed input shapes)")
    if np.issubdtype(spec.dtype, np.floating):
        return rng.standard_normal(shape).astype(spec.dtype)
    return np.zeros(shape, dtype=spec.dtype)


def _runner(engine: _OrtEngine | Runner, plan: _Plan) -> Callable[[], None]:
    """A no-argument callable that runs one batch (``plan.runs`` engine runs)."""
    if isinstance(engine, _OrtEngine):
        run = engine.session.run
        feeds = plan.feeds

        def run_batch() -> None:
            for _ in range(plan.runs):
                run(None, feeds)

        return run_batch
    # A runner may offer bind(feeds): one run with the feeds prepared once and no copies.
    bind = getattr(engine, "bind", None)
    once: Callable[[], object] = (bind(plan.feeds) if bind is not None
                                  else lambda: engine.run(plan.feeds))

    def run_engine_batch() -> None:
        for _ in range(plan.runs):
            once()

    return run_engine_batch
