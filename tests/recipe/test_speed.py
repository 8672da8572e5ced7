"""The speed guard: INT8 islands split where ONNX Runtime runs float, the fewest float
islands found by galloping and bisection, and what deploy keeps float and says — timed by
a stand-in clock, since real timings on a shared test machine mean nothing."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import lowbit
from lowbit.quantize.int8.islands import find_islands, float_ops_for
from lowbit.recipe.steps import speed
from tests.models import init, make_model


def prelu_chain(blocks: int = 3, channels: int = 8) -> onnx.ModelProto:
    """Conv → PRelu → Conv → PRelu …: PRelu has no integer kernel in ONNX Runtime, so every
    conv is an island of its own (as in MTCNN)."""
    rng = np.random.default_rng(0)
    nodes, inits, current = [], [], "input"
    cin = 3
    for i in range(blocks):
        w = (rng.normal(size=(channels, cin, 3, 3)) * np.sqrt(2 / (9 * cin))).astype(np.float32)
        inits += [init(f"w{i}", w), init(f"b{i}", np.zeros(channels, np.float32)),
                  init(f"slope{i}", np.full((channels, 1, 1), 0.25, np.float32))]
        nodes += [helper.make_node("Conv", [current, f"w{i}", f"b{i}"], [f"c{i}"],
                                   pads=[1, 1, 1, 1], name=f"conv{i}"),
                  helper.make_node("PRelu", [f"c{i}", f"slope{i}"], [f"p{i}"], name=f"prelu{i}")]
        current, cin = f"p{i}", channels
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 16, 16])]
    outputs = [helper.make_tensor_value_info(current, TensorProto.FLOAT, ["N", channels, 16, 16])]
    return make_model(nodes, inputs, outputs, inits)


def test_islands_split_at_ops_onnx_runtime_runs_in_float() -> None:
    model = prelu_chain()
    quantized = ["conv0", "prelu0", "conv1", "prelu1", "conv2", "prelu2"]
    islands = find_islands(model, quantized)
    assert [island.nodes for island in islands] == [("conv0",), ("conv1",), ("conv2",)]
    assert all(island.macs == 16 * 16 * 8 * 9 * (3 if i == 0 else 8)
               for i, island in enumerate(islands))
    # every island leaves to a float PRelu: its output (and input) elements are edges
    assert islands[1].edge_elements == 2 * 8 * 16 * 16
    # conv1 float: the PRelu between conv0 and conv1 still touches conv0's island, the one
    # after conv1 touches conv2's: nothing more goes float
    assert float_ops_for(model, islands[1:2], islands, quantized) == {"conv1"}
    # every island float: the PRelus' Q/DQ pairs would stay for nothing
    assert float_ops_for(model, islands, islands, quantized) == set(quantized)


@pytest.mark.parametrize(("count", "first_ok", "expected"), [
    (10, 1, 1), (10, 3, 3), (10, 7, 7), (10, 10, 10), (10, 11, None), (1, 1, 1), (0, 1, None)])
def test_fewest_gallops_then_bisects(count: int, first_ok: int, expected: int | None) -> None:
    asked: list[int] = []

    def fast_enough(k: int) -> bool:
        asked.append(k)
        return k >= first_ok

    assert speed._fewest(count, fast_enough) == expected
    assert len(asked) <= 2 * max(count, 1).bit_length() + 1


@pytest.fixture()
def flow(tmp_path: Path) -> Path:
    onnx.save(prelu_chain(blocks=4), tmp_path / "model.onnx")
    x = np.random.default_rng(1).normal(size=(8, 3, 16, 16)).astype(np.float32)
    np.savez(tmp_path / "x.npz", input=x)
    lowbit.calibrate(tmp_path / "model.onnx", tmp_path / "x.npz", output=tmp_path / "m.calib",
                     method="minmax", progress=False)
    return tmp_path


def _clock(monkeypatch: pytest.MonkeyPatch, ratio_for_float_convs: dict[int, float]
           ) -> list[int]:
    """Speed-up over float as a function of how many convs stay float; returns the list
    of float-conv counts timed, in order."""
    timed: list[int] = []

    def fake(self: Any, model: onnx.ModelProto) -> speed.Speed:
        floats = sum(not _reads_dq(model, n) for n in model.graph.node if n.op_type == "Conv")
        timed.append(floats)
        self.advance(1)
        return speed.Speed({1: ratio_for_float_convs.get(floats, 0.5), 8: 2.0})

    def init(self: Any, model: onnx.ModelProto, feeds: object,
             advance: Callable[[int], None]) -> None:
        self.advance = advance

    monkeypatch.setattr(speed._Timer, "speed", fake)
    monkeypatch.setattr(speed._Timer, "__init__", init)
    return timed


def _reads_dq(model: onnx.ModelProto, node: onnx.NodeProto) -> bool:
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    return producers.get(node.input[0]) == "DequantizeLinear"


def test_deploy_keeps_float_the_fewest_islands_that_make_it_as_fast_as_float(
        flow: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _clock(monkeypatch, {0: 0.6, 1: 0.7, 2: 1.05, 3: 1.1, 4: 1.0})
    result = lowbit.deploy(flow / "model.onnx", calibration_table=flow / "m.calib",
                           output=flow / "m.int8.onnx", speed="guard")
    note = next(n for n in result.notes if n.startswith("speed:"))
    assert "all-INT8 ran 0.60x at batch 1" in note and "2 of 4 INT8 islands" in note, note
    model = onnx.load(result.path)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert sum(not _reads_dq(model, n) for n in convs) == 2
    assert "speed" in result.steps


def test_no_gain_is_said_plainly(flow: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _clock(monkeypatch, {0: 0.6, 1: 0.7, 2: 0.8, 3: 0.9, 4: 0.92})
    result = lowbit.deploy(flow / "model.onnx", calibration_table=flow / "m.calib",
                           output=flow / "m.int8.onnx", speed="guard")
    note = next(n for n in result.notes if n.startswith("speed:"))
    # galloping tried 1, 2 and 4 islands float: 2 was the fastest INT8 configuration, but
    # slower than float, so nothing stays INT8 (no deployed model runs below float speed)
    assert "no INT8 gain on this CPU" in note and "2 of 4 islands float, ran 0.80x" in note, note
    assert not result.quantized and result.problem is None


def test_fast_int8_is_left_alone_and_its_speed_noted(flow: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _clock(monkeypatch, {0: 1.8})
    result = lowbit.deploy(flow / "model.onnx", calibration_table=flow / "m.calib",
                           output=flow / "m.int8.onnx", speed="guard")
    assert any(n.startswith("speed: INT8 runs 1.80x at batch 1, 2.00x at batch 8 F32 here")
               for n in result.notes), result.notes
    plain = lowbit.deploy(flow / "model.onnx", calibration_table=flow / "m.calib",
                          output=flow / "plain.onnx", speed="off")
    assert onnx.load(result.path).graph == onnx.load(plain.path).graph  # measured, not changed


def test_the_guard_times_for_real_and_off_skips_it(flow: Path) -> None:
    timed = lowbit.deploy(flow / "model.onnx", calibration_table=flow / "m.calib",
                          output=flow / "a.onnx", speed="guard", test_input=flow / "x.npz")
    assert any(n.startswith("speed:") for n in timed.notes) and timed.validation is not None
    off = lowbit.deploy(flow / "model.onnx", calibration_table=flow / "m.calib",
                        output=flow / "b.onnx", speed="off")
    assert not any(n.startswith("speed:") for n in off.notes)


def test_every_island_slower_keeps_f32_and_says_so_without_failing(
        flow: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    timed = _clock(monkeypatch, {0: 0.6, 1: 0.7, 2: 0.8, 3: 0.9, 4: 1.0})
    result = lowbit.deploy(flow / "model.onnx", calibration_table=flow / "m.calib",
                           output=flow / "m.int8.onnx", speed="guard")
    note = next(n for n in result.notes if n.startswith("speed:"))
    # every island float is the float model itself: it is not timed against itself
    assert timed and 4 not in timed, timed
    assert "no INT8 configuration tried reached the float model's speed" in note, note
    assert "so the model stays F32" in note, note
    assert not result.quantized and result.passed and result.problem is None


def test_a_model_with_free_spatial_dims_is_timed_at_its_calibration_shape(
        flow: Path, tmp_path: Path) -> None:
    """No data at deploy: the table says the shape the model was calibrated on."""
    from lowbit.calibration.table import read_table
    from lowbit.recipe.pipeline import DeployContext

    model = prelu_chain()
    for dim in model.graph.input[0].type.tensor_type.shape.dim[2:]:
        dim.dim_param = "size"
    onnx.save(model, tmp_path / "free.onnx")
    x = np.random.default_rng(3).normal(size=(4, 3, 20, 24)).astype(np.float32)
    np.savez(tmp_path / "x.npz", input=x)
    lowbit.calibrate(tmp_path / "free.onnx", tmp_path / "x.npz", output=tmp_path / "f.calib",
                     method="minmax", progress=False)
    table = read_table(tmp_path / "f.calib")
    assert table.input_shapes == {"input": (1, 3, 20, 24)}
    recipe = lowbit.plan(calibration_table=tmp_path / "f.calib", speed="guard")
    feeds = speed._all_feeds(DeployContext.for_model(recipe, onnx.load(tmp_path / "free.onnx")))
    assert feeds[1]["input"].shape == (1, 3, 20, 24) and feeds[8]["input"].shape[0] == 8


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_guard_shows_its_timings_on_a_terminal_and_in_the_log(
        flow: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Each timing takes a second or more on a real model: a bar counts them on a
    terminal, and each is a log line."""
    _clock(monkeypatch, {0: 0.6, 1: 0.7, 2: 1.05, 3: 1.1, 4: 1.0})
    screen = _Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    with caplog.at_level(logging.INFO, logger="lowbit.recipe.steps.speed"):
        lowbit.deploy(flow / "model.onnx", calibration_table=flow / "m.calib",
                      output=flow / "shown.onnx", speed="guard")
    assert "speed guard" in screen.getvalue()
    lines = [r.getMessage() for r in caplog.records if r.name == "lowbit.recipe.steps.speed"]
    assert lines[0] == "speed: all-INT8 0.60x at batch 1, 2.00x at batch 8"
    assert any(line.startswith("speed: 2 island(s) float: 1.05x") for line in lines), lines


def _counting_clock(monkeypatch: pytest.MonkeyPatch, ratio: Callable[[int, int], float]
                    ) -> dict[int, int]:
    """Batch-1 speed-up as ``ratio(float convs, how many times that count was timed)``;
    returns the timings per float-conv count, filled in as the guard runs."""
    calls: dict[int, int] = {}

    def fake(self: Any, model: onnx.ModelProto) -> speed.Speed:
        floats = sum(not _reads_dq(model, n) for n in model.graph.node if n.op_type == "Conv")
        calls[floats] = calls.get(floats, 0) + 1
        return speed.Speed({1: ratio(floats, calls[floats])})

    monkeypatch.setattr(speed._Timer, "speed", fake)
    monkeypatch.setattr(speed._Timer, "__init__", lambda self, *args, **kwargs: None)
    return calls


def test_a_count_that_passes_once_by_chance_is_timed_again(
        flow: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One float island measures 1.05x once (the float model had a slow window), then
    0.8x: the guard times a passing count again, keeps the lower ratio and goes on to
    two float islands, which pass both times."""
    calls = _counting_clock(monkeypatch, lambda floats, call: {
        0: 0.6, 1: 1.05 if call == 1 else 0.8}.get(floats, 1.1))
    result = lowbit.deploy(flow / "model.onnx", calibration_table=flow / "m.calib",
                           output=flow / "again.onnx", speed="guard")
    note = next(n for n in result.notes if n.startswith("speed:"))
    assert "2 of 4 INT8 islands" in note and "1.10x at batch 1" in note, note
    assert calls[1] == 2 and calls[2] == 2  # each passing count timed twice


def _timer_on_a_stand_in_clock(monkeypatch: pytest.MonkeyPatch, int8_seconds: float
                               ) -> tuple[speed._Timer, onnx.ModelProto, list[int]]:
    """The guard's timer with real sessions and a stand-in clock: float 1 ms a run, the
    candidate ``int8_seconds``; ``timed`` counts the interleaved timings."""
    model = prelu_chain()
    feeds = {b: {"input": np.zeros((b, 3, 16, 16), np.float32)} for b in (1, 8)}
    timed: list[int] = []

    def clock(runners: list[Callable[[], object]], warmup: int, repeats: int,
              min_seconds: float = 0.0) -> list[list[float]]:
        for run in runners:
            run()
        if len(runners) == 1:  # the timer's first look: one float sample is quick
            return [[0.001] * repeats]
        timed.append(len(runners))
        return [[0.001] * repeats, [int8_seconds] * repeats]

    monkeypatch.setattr(speed, "time_interleaved", clock)
    return speed._Timer(model, feeds), model, timed


@pytest.mark.parametrize(("int8_seconds", "timed_batches"), [(0.002, [1]), (0.0008, [1, 8])])
def test_a_model_slower_at_batch_1_is_not_timed_at_the_larger_batch(
        int8_seconds: float, timed_batches: list[int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Slower than float at batch 1 fails the guard whatever batch 8 says: batch 8 (the
    costly timing) is then skipped; a model at 1.25x float is timed at both."""
    timer, model, timed = _timer_on_a_stand_in_clock(monkeypatch, int8_seconds)
    result = timer.speed(model)
    assert sorted(result.ratios) == timed_batches
    assert len(timed) == len(timed_batches)


@pytest.mark.parametrize(("int8_seconds", "timed_batches", "clear"),
                         [(0.0005, [1], True), (0.0008, [1, 8], False)])
def test_a_clear_win_at_batch_1_is_not_timed_at_the_larger_batch(
        int8_seconds: float, timed_batches: list[int], clear: bool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """2x float at batch 1 is past CLEAR_WIN: batch 8 is skipped and the note says why;
    1.25x is timed at both."""
    timer, model, timed = _timer_on_a_stand_in_clock(monkeypatch, int8_seconds)
    result = timer.speed(model)
    assert sorted(result.ratios) == timed_batches and len(timed) == len(timed_batches)
    assert result.clear_win == clear
    assert ("batch 8 not timed: 1.6x or more at batch 1" in result.text()) == clear
    again = speed._confirmed(timer, model, result)
    assert sorted(again.ratios) == timed_batches and again.clear_win == clear


def test_a_confirmation_keeps_every_batch_either_timing_measured() -> None:
    first = speed.Speed({1: 2.0}, clear_win=True)
    class Again:
        def speed(self, model):
            return speed.Speed({1: 1.5, 8: 1.2})
    merged = speed._confirmed(Again(), None, first)  # type: ignore[arg-type]
    assert merged.ratios == {1: 1.5, 8: 1.2} and not merged.clear_win


def test_all_int8_is_timed_again_before_the_model_is_kept_float(
        flow: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """All-INT8's first timing fell in a busy window (0.6x) and no island count reached
    float's speed: before keeping every op float the guard times all-INT8 again, and two
    more timings at 1.5x keep it INT8, saying what happened."""
    calls = _counting_clock(monkeypatch,
                            lambda floats, call: 0.6 if floats or call == 1 else 1.5)
    result = lowbit.deploy(flow / "model.onnx", calibration_table=flow / "m.calib",
                           output=flow / "again.onnx", speed="guard")
    note = next(n for n in result.notes if n.startswith("speed:"))
    assert "ran 0.60x at batch 1 F32 at first" in note and "INT8 runs 1.50x" in note, note
    assert calls[0] == 3 and result.quantized
    model = onnx.load(result.path)
    assert all(_reads_dq(model, n) for n in model.graph.node if n.op_type == "Conv")


def test_all_int8_just_under_float_speed_is_not_kept(flow: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """All-INT8 at 0.97x float in both timings is slower than float, not within the noise:
    the guard looks for float islands that reach 1.0x (it had kept all-INT8 from 0.95x)."""
    calls = _counting_clock(monkeypatch, lambda floats, call: 0.97 if floats == 0 else 1.1)
    result = lowbit.deploy(flow / "model.onnx", calibration_table=flow / "m.calib",
                           output=flow / "just_under.onnx", speed="guard")
    note = next(n for n in result.notes if n.startswith("speed:"))
    assert "all-INT8 ran 0.97x at batch 1" in note and "1 of 4 INT8 islands" in note, note
    assert calls[0] == 2 and result.quantized  # a second look at all-INT8, then islands


def test_speed_batch_times_at_the_batch_the_model_will_run(
        flow: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--speed-batch 32: the guard's float and INT8 runs get one feed of 32 samples (the 8
    calibration samples repeated), and nothing at batch 1 or 8."""
    seen: dict[int, tuple[int, ...]] = {}

    def init(self: Any, model: onnx.ModelProto, feeds: dict[int, dict[str, np.ndarray]],
             advance: Callable[[int], None]) -> None:
        seen.update({batch: feed["input"].shape for batch, feed in feeds.items()})

    monkeypatch.setattr(speed._Timer, "__init__", init)
    monkeypatch.setattr(speed._Timer, "speed", lambda self, model: speed.Speed({32: 1.3}))
    result = lowbit.deploy(flow / "model.onnx", calibration_table=flow / "m.calib",
                           test_input=flow / "x.npz", speed="guard", speed_batch=32,
                           output=flow / "b32.onnx")
    assert seen == {32: (32, 3, 16, 16)}
    assert any("INT8 runs 1.30x at batch 32" in n for n in result.notes), result.notes


def test_speed_batch_mistakes_are_one_line_and_exit_2(
        flow: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.cli.test_flow import run_cli

    base = ["deploy", flow / "model.onnx", "--calibration-table", flow / "m.calib"]
    mistakes = [(["--speed-batch", "0", "--speed", "guard"],
                 "--speed-batch must be a whole number ≥ 1"),
                (["--speed-batch", "4", "--speed", "off"],
                 "--speed-batch sets the batch the speed guard times at: it needs --speed guard"),
                (["--speed-batch", "four"], "invalid int value")]
    for extra, message in mistakes:
        code, text = run_cli([*base, *extra, "-o", flow / "never.onnx"], capsys)
        assert code == 2 and message in text, text
        assert not (flow / "never.onnx").exists()
    fixed = prelu_chain(blocks=1)
    fixed.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(fixed, flow / "fixed.onnx")
    lowbit.calibrate(flow / "fixed.onnx", flow / "x.npz", output=flow / "f.calib",
                     method="minmax", progress=False)
    code, text = run_cli(["deploy", flow / "fixed.onnx", "--calibration-table", flow / "f.calib",
                          "--speed", "guard", "--speed-batch", "16", "-o", flow / "never.onnx"],
                         capsys)
    assert code == 2, text
    assert "--speed-batch 16: input 'input' has a fixed batch dimension (1)" in text, text
    assert not (flow / "never.onnx").exists()
