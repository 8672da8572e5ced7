"""collect_ranges on tiny models built with onnx.helper, checked against ONNX Runtime."""

from __future__ import annotations

import io
import itertools
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import lowbit.calibration.collect as collect_module
from lowbit.calibration import (
    CalibrationSettings,
    collect_ranges,
    find_activation_tensors,
    read_table,
    write_table,
)
from lowbit.errors import DatasetError, UsageError
from lowbit.runtime.memory import MemoryBudget

ACTIVATIONS = ["x", "conv", "relu", "flat", "mm", "y"]


def _model(batch: int | str) -> onnx.ModelProto:
    """x -> Conv -> Relu -> Flatten -> MatMul(w * 2) -> Add -> y; w * 2 comes from constants."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "conv_w"),
        numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "conv_b"),
        numpy_helper.from_array(rng.standard_normal((256, 10)).astype(np.float32) / 8, "w_raw"),
        numpy_helper.from_array(rng.standard_normal(10).astype(np.float32), "bias"),
    ]
    nodes = [
        helper.make_node("Constant", [], ["two"],
                         value=numpy_helper.from_array(np.array(2.0, np.float32))),
        helper.make_node("Mul", ["w_raw", "two"], ["w2"]),
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("Flatten", ["relu"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w2"], ["mm"]),
        helper.make_node("Add", ["mm", "bias"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 10])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _samples(count: int, seed: int = 1) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": (rng.standard_normal((1, 3, 8, 8)) * (1 + i % 3)).astype(np.float32)}
            for i in range(count)]


def _reference(samples: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Every activation computed by ORT on the stacked data in one run."""
    model = _model("N")
    names = ACTIVATIONS[1:]
    del model.graph.output[:]
    model.graph.output.extend(
        helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    stacked = np.concatenate([s["x"] for s in samples])
    values = dict(zip(names, session.run(names, {"x": stacked}), strict=True))
    return {"x": stacked, **values}


def test_activation_tensors_exclude_constants() -> None:
    found = find_activation_tensors(_model(1))
    assert found.inputs == ["x"]
    assert list(found.outputs) == ACTIVATIONS[1:]  # not "two", not "w2"


def test_minmax_matches_ort_on_stacked_data() -> None:
    samples = _samples(12)
    table = collect_ranges(_model(1), samples, CalibrationSettings(), progress=False,
                           skip_derived=False)
    reference = _reference(samples)
    assert list(table.ranges) == ACTIVATIONS
    assert table.num_samples == 12 and table.method == "minmax" and table.skipped == {}
    for name, value in reference.items():
        rng = table.ranges[name]
        np.testing.assert_allclose([rng.min, rng.max], [value.min(), value.max()], rtol=1e-6)
        assert rng.threshold == pytest.approx(np.abs(value).max(), rel=1e-6)
    assert table.ranges["relu"].min == 0.0


class _CountingSession:
    def __init__(self, session: ort.InferenceSession, sizes: list[int]) -> None:
        self.session, self.sizes = session, sizes

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> Any:
        self.sizes.append(feeds["x"].shape[0])
        return self.session.run(names, feeds)


def test_dynamic_batch_is_batched_and_matches_unbatched(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    create = collect_module.create_session
    monkeypatch.setattr(collect_module, "create_session",
                        lambda *a, **k: _CountingSession(create(*a, **k), sizes))
    samples = _samples(20)
    settings = CalibrationSettings()
    batched = collect_ranges(_model("N"), samples, settings, progress=False, max_batch=16)
    assert sizes == [16, 4]
    sizes.clear()
    single = collect_ranges(_model("N"), samples, settings, progress=False, max_batch=1)
    assert sizes == [1] * 20
    sizes.clear()
    static = collect_ranges(_model(1), samples, settings, progress=False)
    assert sizes == [1] * 20
    assert set(batched.ranges) == set(single.ranges) == set(static.ranges)
    for name in batched.ranges:
        for other in (single, static):
            a, b = batched.ranges[name], other.ranges[name]
            np.testing.assert_allclose([a.threshold, a.min, a.max],
                                       [b.threshold, b.min, b.max], rtol=1e-6)


def _dynamic_convs() -> onnx.ModelProto:
    """x [N, 3, H, W] -> Conv(8) -> Relu -> Conv(4) -> y, dynamic H and W."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c0"], pads=[1, 1, 1, 1], name="conv0"),
             helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
             helper.make_node("Conv", ["r0", "w1"], ["y"], pads=[1, 1, 1, 1], name="conv1")]
    inits = [numpy_helper.from_array(rng.normal(size=(8, 3, 3, 3)).astype(np.float32), "w0"),
             numpy_helper.from_array(rng.normal(size=(4, 8, 3, 3)).astype(np.float32), "w1")]
    graph = helper.make_graph(
        nodes, "convs", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                       ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, "H", "W"])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _images(count: int, side: int, seed: int = 3) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.normal(size=(1, 3, side, side)).astype(np.float32)} for _ in range(count)]


def test_chosen_batch_shrinks_as_the_input_grows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory is bounded by the budget at any input size: the batch gives way."""
    sizes: list[int] = []
    create = collect_module.create_session
    monkeypatch.setattr(collect_module, "create_session",
                        lambda *a, **k: _CountingSession(create(*a, **k), sizes))
    model, settings = _dynamic_convs(), CalibrationSettings()
    chosen = []
    for side in (16, 96, 160, 320):
        collect_ranges(model, _images(9, side), settings, progress=False,
                       memory_budget=MemoryBudget(16 << 20), input_means=True)
        chosen.append(max(sizes))
        sizes.clear()
    assert chosen[0] == 8 and chosen[-1] == 1
    assert chosen == sorted(chosen, reverse=True) and len(set(chosen)) >= 3
    # --memory-budget decides: more room, a larger batch at the same size
    collect_ranges(model, _images(9, 160), settings, progress=False,
                   memory_budget=MemoryBudget(256 << 20))
    assert max(sizes) > chosen[2]


def test_tables_merge_exactly_whatever_the_batch() -> None:
    """minmax: identical at every batch; means: equal to float rounding; a histogram
    method at a fixed seed: the same table for the same batch, whatever chose it."""
    model, samples = _dynamic_convs(), _images(12, 160)  # batches 1, 3 and 8
    tables = [collect_ranges(model, samples, CalibrationSettings(), progress=False,
                             input_means=True, memory_budget=MemoryBudget(budget << 20))
              for budget in (1, 8, 64)]
    assert tables[0].ranges == tables[1].ranges == tables[2].ranges
    for table in tables[1:]:
        for name, means in table.input_means.items():
            np.testing.assert_allclose(means, tables[0].input_means[name], rtol=1e-5,
                                       atol=1e-5 * np.abs(means).max())
    kl = CalibrationSettings(method="kl")
    budgeted = collect_ranges(model, samples, kl, progress=False,
                              memory_budget=MemoryBudget(8 << 20))
    again = collect_ranges(model, samples, kl, progress=False, max_batch=3,
                           memory_budget=MemoryBudget(1 << 30))
    assert budgeted.ranges == again.ranges


def test_histogram_method_and_table_round_trip(tmp_path: Path) -> None:
    samples = _samples(10)
    settings = CalibrationSettings(method="percentile", percentile=99.0, bins=256)
    table = collect_ranges(_model("N"), samples, settings, progress=False,
                           skip_derived=False)
    reference = _reference(samples)
    for name, value in reference.items():
        expected = np.percentile(np.abs(value), 99.0)
        width = 2 * np.abs(value).max() / 512  # at most one doubling of the range
        assert abs(table.ranges[name].threshold - expected) <= width, name
    back = read_table(write_table(table, tmp_path / "m.calib"))
    assert back.ranges == table.ranges and back.bins == 256 and back.percentile == 99.0


def test_non_finite_tensor_is_skipped(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Log", ["r"], ["log"])],
        "log", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("log", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    samples = [{"x": np.array([[-1.0, 0.5, 2.0, 3.0]], np.float32)}]
    table = collect_ranges(model, samples, CalibrationSettings(method="kl", bins=128),
                           progress=False)
    assert set(table.ranges) == {"x", "r"}
    assert table.skipped["log"].startswith("range not finite (min=-inf")
    back = read_table(write_table(table, tmp_path / "t.calib"))
    assert back.skipped == table.skipped


def test_nan_sample_names_input_and_index() -> None:
    samples = _samples(3)
    samples[2]["x"][0, 1, 2, 3] = np.nan
    with pytest.raises(DatasetError, match=r"sample 2: input 'x' contains NaN or Inf"):
        collect_ranges(_model(1), samples, CalibrationSettings(), progress=False)


def test_empty_data_set() -> None:
    with pytest.raises(DatasetError, match="data set has no samples"):
        collect_ranges(_model(1), [], CalibrationSettings(), progress=False)
    with pytest.raises(DatasetError, match="data set has no samples"):
        collect_ranges(_model(1), iter(()), CalibrationSettings(), progress=False)


def test_missing_input_and_wrong_shape() -> None:
    with pytest.raises(DatasetError, match="sample 0 has no input 'x'"):
        collect_ranges(_model(1), [{"y": np.zeros(3)}], CalibrationSettings(), progress=False)
    with pytest.raises(DatasetError, match=r"input 'x' expects \[1,3,8,8\], sample 0 has "
                                           r"\[1,3,4,4\]"):
        collect_ranges(_model(1), [{"x": np.zeros((1, 3, 4, 4), np.float32)}],
                       CalibrationSettings(), progress=False)


def test_num_samples_stops_the_stream() -> None:
    pulled = 0

    def endless() -> Iterator[dict[str, np.ndarray]]:
        nonlocal pulled
        for sample in itertools.cycle(_samples(3)):
            pulled += 1
            yield sample

    table = collect_ranges(_model("N"), endless(), CalibrationSettings(), num_samples=5,
                           progress=False)
    assert table.num_samples == 5 and pulled == 5


def test_bad_max_batch() -> None:
    with pytest.raises(UsageError, match="max_batch"):
        collect_ranges(_model(1), _samples(1), CalibrationSettings(), max_batch=0)


def test_float64_samples_are_cast() -> None:
    samples = [{"x": s["x"].astype(np.float64)} for s in _samples(2)]
    table = collect_ranges(_model(1), samples, CalibrationSettings(), progress=False,
                           skip_derived=False)
    assert table.num_samples == 2


def test_model_that_refuses_batches_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    shape = numpy_helper.from_array(np.array([1, 4], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["r"]),
         helper.make_node("Relu", ["r"], ["y"])],
        "fixed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    samples = [{"x": np.full((1, 4), float(i), np.float32)} for i in range(-3, 4)]
    table = collect_ranges(model, samples, CalibrationSettings(), progress=False,
                           skip_derived=False)
    assert "one sample per run" in caplog.text
    assert table.num_samples == 7
    assert (table.ranges["r"].min, table.ranges["r"].max) == (-3.0, 3.0)
    assert (table.ranges["y"].min, table.ranges["y"].max) == (0.0, 3.0)


def test_tensors_whose_range_follows_from_another_are_not_observed() -> None:
    """conv feeds only a Relu (the Relu's range stands for it); Flatten moves data."""
    samples = _samples(6)
    full = collect_ranges(_model(1), samples, CalibrationSettings(), progress=False,
                          skip_derived=False)
    lean = collect_ranges(_model(1), samples, CalibrationSettings(), progress=False)
    assert set(lean.ranges) < set(full.ranges)
    assert "conv" not in lean.ranges and "relu" in lean.ranges
    for name in lean.ranges:
        assert lean.ranges[name] == full.ranges[name]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_threshold_search_shows_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    """After the samples' bar a histogram method searches every tensor's thresholds (seconds
    on a transformer): a bar of its own counts the tensors, none for minmax or without
    progress."""
    samples = _samples(4)
    for method, progress, shown in (("auto", True, True), ("minmax", True, False),
                                    ("kl", False, False)):
        screen = _Terminal()
        monkeypatch.setattr(sys, "stderr", screen)
        collect_ranges(_model("N"), samples, CalibrationSettings(method), progress=progress)
        assert ("choosing thresholds" in screen.getvalue()) == shown, (method, progress)
        assert ("calibrating" in screen.getvalue()) == progress
