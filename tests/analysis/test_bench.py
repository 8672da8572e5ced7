"""bench_models: structure of results, interleaving, fixed-batch models, input errors."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from lowbit.analysis.bench import (
    BLOCK_SECONDS,
    SETTLE_SECONDS,
    BatchTiming,
    BenchComparison,
    BenchResult,
    BenchSettings,
    BenchVariant,
    bench_models,
    model_size_bytes,
    summarize,
    time_interleaved,
)
from lowbit.errors import UsageError

FAST = BenchSettings(batches=(1, 4), threads=1, warmup=1, repeats=3)


def _matmul_model(path: Path, batch: int | str = "N", second_dim: int | str = 8) -> Path:
    weight = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, second_dim])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 16])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_bench_models_returns_sane_timings(tmp_path: Path) -> None:
    a = _matmul_model(tmp_path / "a.onnx")
    b = _matmul_model(tmp_path / "b.onnx")
    comparison = bench_models([a, b], FAST, progress=False)
    assert [r.model for r in comparison.results] == ["a.onnx", "b.onnx"]
    for result in comparison.results:
        assert result.size_bytes == a.stat().st_size
        assert [t.batch for t in result.timings] == [1, 4]
        for timing in result.timings:
            assert timing.median_ms > 0
            assert timing.p90_ms >= timing.median_ms
            assert timing.throughput == pytest.approx(timing.batch / timing.median_ms * 1000)
            assert not timing.sequential
    expected = (comparison.results[0].timing(4).throughput
                / comparison.results[1].timing(4).throughput)
    assert comparison.ratio(4) == pytest.approx(expected)


class _Clock:
    """A stand-in clock: each runner made by ``runner`` moves it on by its run's seconds."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[str] = []

    def __call__(self) -> float:
        return self.now

    def runner(self, name: str, seconds: float) -> Callable[[], None]:
        def run() -> None:
            self.calls.append(name)
            self.now += seconds
        return run


def test_interleaves_runs_and_warms_up_all_first() -> None:
    clock = _Clock()
    runners = [clock.runner("A", 0.05), clock.runner("B", 0.05)]
    times = time_interleaved(runners, warmup=2, repeats=3, clock=clock)
    # Warm-up in order, then rounds alternating direction; a run as long as a block is
    # one turn, timed.
    assert clock.calls == ["A", "B"] * 2 + ["A", "B", "B", "A", "A", "B"]
    assert times == [[pytest.approx(0.05)] * 3] * 2


def test_short_runs_settle_untimed_then_run_a_block() -> None:
    """After a switch of sessions the first runs are not timed (the other session's
    threads and weights are still in the way); then a block of timed runs."""
    clock = _Clock()
    a, b = 2.0 ** -10, 2.0 ** -8  # about 1 ms and 4 ms, exact in binary
    runners = [clock.runner("A", a), clock.runner("B", b)]
    times = time_interleaved(runners, warmup=0, repeats=1, clock=clock)
    settle_a = math.ceil(SETTLE_SECONDS / a)
    block_a = math.ceil(BLOCK_SECONDS / a)
    block_b = math.ceil(BLOCK_SECONDS / b)
    assert clock.calls == ["A"] * (settle_a + block_a) + ["B"] * (1 + block_b)
    assert [len(t) for t in times] == [block_a, block_b]


def test_times_come_from_the_clock_around_each_run() -> None:
    ticks = itertools.count()
    # Each run spans one tick of the fake clock: start=k, end=k+1.
    times = time_interleaved([lambda: None, lambda: None], warmup=0, repeats=2,
                             clock=lambda: float(next(ticks)))
    assert times == [[1.0, 1.0], [1.0, 1.0]]


def test_min_seconds_extends_repeats() -> None:
    ticks = itertools.count()
    times = time_interleaved([lambda: None], warmup=0, repeats=1, min_seconds=5.0,
                             clock=lambda: float(next(ticks)))
    assert len(times[0]) == 5


def test_fixed_batch_one_model_runs_larger_batches_sequentially(tmp_path: Path) -> None:
    model = _matmul_model(tmp_path / "fixed.onnx", batch=1)
    result = bench_models([model], FAST, progress=False).results[0]
    assert result.timing(1).sequential is False
    assert result.timing(4).sequential is True
    assert result.timing(4).throughput == pytest.approx(4 / result.timing(4).median_ms * 1000)


def test_dynamic_non_batch_dim_names_the_input(tmp_path: Path) -> None:
    model = _matmul_model(tmp_path / "dyn.onnx", second_dim="K")
    with pytest.raises(UsageError, match="'x'.*axis 1"):
        bench_models([model], FAST, progress=False)


def test_summarize_percentiles() -> None:
    timing = summarize(2, [0.001, 0.002, 0.003, 0.004, 0.010])
    assert timing.median_ms == pytest.approx(3.0)
    assert timing.p90_ms == pytest.approx(7.6)
    assert timing.throughput == pytest.approx(2 / 0.003)


@pytest.mark.parametrize("kwargs", [
    {"batches": ()}, {"batches": (0,)}, {"threads": 0}, {"warmup": -1}, {"repeats": 0},
    {"min_seconds": -1.0}, {"min_seconds": float("nan")},
])
def test_settings_reject_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        BenchSettings(**kwargs)  # type: ignore[arg-type]


def test_ratio_of_missing_batch_or_model_is_a_usage_error() -> None:
    result = BenchResult("a", 1, (BatchTiming(1, 1.0, 1.0, 1000.0),))
    with pytest.raises(UsageError, match="batch 32"):
        BenchComparison((result, result)).ratio(32)
    with pytest.raises(UsageError, match="1 model"):
        BenchComparison((result,)).ratio(1)


def test_size_includes_external_data(tmp_path: Path) -> None:
    path = _matmul_model(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    ext = tmp_path / "ext.onnx"
    onnx.save_model(model, str(ext), save_as_external_data=True, location="ext.onnx.data",
                    size_threshold=0)
    data = tmp_path / "ext.onnx.data"
    assert data.exists()
    assert model_size_bytes(ext) == ext.stat().st_size + data.stat().st_size


@pytest.mark.parametrize("level", ["disable", "basic", "extended", "all"])
def test_ort_optimization_level_is_applied(tmp_path: Path, level: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from lowbit.runtime import ort as bench  # the timing session comes from the registry's ORT

    seen: list[str | None] = []
    real = bench.create_session

    def spy(model: object, **kwargs: object):  # type: ignore[no-untyped-def]
        seen.append(kwargs.get("optimization_level"))  # type: ignore[arg-type]
        return real(model, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(bench, "create_session", spy)
    settings = BenchSettings(batches=(1,), threads=1, warmup=0, repeats=1, ort_optimization=level)
    comparison = bench_models([_matmul_model(tmp_path / "m.onnx")], settings, progress=False)
    assert seen == [level] and comparison.results[0].timing(1).median_ms > 0


def test_unknown_ort_optimization_level_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="ort_optimization must be one of disable, basic"):
        BenchSettings(ort_optimization="max")


def test_a_variant_can_set_its_own_ort_level(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from lowbit.runtime import ort as bench  # the timing session comes from the registry's ORT

    seen: list[str | None] = []
    real = bench.create_session

    def spy(model: object, **kwargs: object):  # type: ignore[no-untyped-def]
        seen.append(kwargs.get("optimization_level"))  # type: ignore[arg-type]
        return real(model, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(bench, "create_session", spy)
    path = _matmul_model(tmp_path / "m.onnx")
    settings = BenchSettings(batches=(1,), threads=1, warmup=0, repeats=1)
    bench_models([BenchVariant(path, ort_optimization="disable"), BenchVariant(path)], settings,
                 progress=False)
    assert seen == ["disable", "all"]
    with pytest.raises(UsageError, match="ort_optimization"):
        BenchVariant(path, ort_optimization="none")
