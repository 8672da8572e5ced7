"""profile_model: ORT's per-op profile of the optimised graph, per run, warm-up left out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from lowbit.analysis.explain import optimized_graph
from lowbit.analysis.profile import (
    NodeEvent,
    aggregate,
    parse_trace,
    profile_model,
    timed_events,
)
from lowbit.errors import UsageError
from lowbit.passes import canonicalize
from lowbit.quantize.int8.qdq import quantize_qdq
from lowbit.quantize.int8.settings import QuantizeSettings
from tests.models import make_model, minmax_ranges, small_resnet


def _elementwise(path: Path, batch: int | str = "N") -> Path:
    """Sin -> Cos -> Abs: three nodes ORT neither fuses nor folds."""
    nodes = [helper.make_node("Sin", ["x"], ["a"], name="sin"),
             helper.make_node("Cos", ["a"], ["b"], name="cos"),
             helper.make_node("Abs", ["b"], ["y"], name="abs")]
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 8])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 8])], [])
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def int8_resnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, _ = canonicalize(small_resnet())
    feeds = {"input": np.random.default_rng(0).normal(size=(4, 3, 16, 16)).astype(np.float32)}
    result = quantize_qdq(model, minmax_ranges(model, feeds), QuantizeSettings())
    path = tmp_path_factory.mktemp("profile") / "resnet.int8.onnx"
    onnx.save(result.model, str(path))
    return path


def test_quantized_model_profile_shows_qlinearconv(int8_resnet: Path) -> None:
    profile = profile_model(int8_resnet, runs=5, threads=1)
    ops = {row.op_type: row for row in profile.rows}
    assert ops["QLinearConv"].calls == 3
    assert ops["QGemm"].calls == 1
    assert "Conv" not in ops and "DequantizeLinear" not in ops
    assert sum(row.share for row in profile.rows) == pytest.approx(1.0)
    assert [r.total_ms for r in profile.rows] == sorted((r.total_ms for r in profile.rows),
                                                        reverse=True)
    # every node of ORT's optimised graph runs once per run, under its own name
    graph = optimized_graph(int8_resnet, threads=1)
    assert sum(row.calls for row in profile.rows) == len(graph.node)
    assert set(profile.node_times) == {n.name for n in graph.node}
    assert sum(profile.node_times.values()) == pytest.approx(profile.total_ms)
    assert profile.share_of({"QLinearConv"}) == pytest.approx(ops["QLinearConv"].share)
    assert "QLinearConv" in profile.table()


def test_calls_per_run_and_trace_file_removed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # ORT writes its trace into the working directory
    profile = profile_model(_elementwise(tmp_path / "e.onnx"), batch=2, runs=4, threads=1)
    assert {(r.op_type, r.calls) for r in profile.rows} == {("Sin", 1), ("Cos", 1), ("Abs", 1)}
    assert profile.runs == 4 and profile.batch == 2
    assert set(profile.node_times) == {"sin", "cos", "abs"}
    assert not list(tmp_path.glob("onnxruntime_profile*"))


def test_fixed_batch_model_runs_several_times_per_batch(tmp_path: Path) -> None:
    profile = profile_model(_elementwise(tmp_path / "e1.onnx", batch=1), batch=3, runs=2,
                            threads=1)
    assert all(row.calls == 3 for row in profile.rows)


def test_bad_settings_raise_usage_error(tmp_path: Path) -> None:
    path = _elementwise(tmp_path / "e.onnx")
    with pytest.raises(UsageError, match="runs"):
        profile_model(path, runs=0)
    with pytest.raises(UsageError, match="batch"):
        profile_model(path, batch=0)


def test_parse_and_aggregate_a_trace() -> None:
    trace = [
        {"cat": "Session", "name": "model_run", "ts": 0, "dur": 50},
        {"cat": "Node", "name": "c_kernel_time", "ts": 10, "dur": 300,
         "args": {"op_name": "Conv"}},
        {"cat": "Node", "name": "c_fence_before", "ts": 9, "dur": 0, "args": {"op_name": "Conv"}},
        {"cat": "Node", "name": "q_kernel_time", "ts": 20, "dur": 100,
         "args": {"op_name": "QuantizeLinear"}},
        {"cat": "Node", "name": "c_kernel_time", "ts": 60, "dur": 500,
         "args": {"op_name": "Conv"}},
        {"cat": "Node", "name": "q_kernel_time", "ts": 80, "dur": 100,
         "args": {"op_name": "QuantizeLinear"}},
    ]
    events = parse_trace(trace)
    assert events[0] == NodeEvent(node="c", op_type="Conv", start_us=10.0, dur_us=300.0)
    assert len(events) == 4
    profile = aggregate(events, runs=2, batch=1)
    assert [(r.op_type, r.calls) for r in profile.rows] == [("Conv", 1), ("QuantizeLinear", 1)]
    assert profile.rows[0].total_ms == pytest.approx(0.4)
    assert profile.rows[0].share == pytest.approx(800 / 1000)
    assert profile.node_times == pytest.approx({"c": 0.4, "q": 0.1})


def test_warm_up_runs_are_left_out() -> None:
    def run(start: int) -> list[dict]:
        return [{"cat": "Node", "name": "n_kernel_time", "ts": start + 1, "dur": start + 5,
                 "args": {"op_name": "Relu"}},
                {"cat": "Session", "name": "model_run", "ts": start, "dur": 10}]
    trace = run(0) + run(100) + run(200)
    assert [e.dur_us for e in timed_events(trace, skip_runs=1)] == [105.0, 205.0]
    assert len(timed_events(trace, skip_runs=3)) == 3  # no markers left: keep everything
