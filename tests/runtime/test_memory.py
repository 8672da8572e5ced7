"""The memory budget: sizes parsed, bytes per sample from shape inference, batches chosen."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from lowbit.errors import UsageError
from lowbit.graph import schedule_probes
from lowbit.runtime.memory import (
    MemoryBudget,
    RowStore,
    choose_batch,
    ort_order,
    parse_size,
    rss_growth,
    sample_cost,
    stacked_batches,
)
from tests.models import init, make_model


def _convs(channels: int = 8) -> onnx.ModelProto:
    """x [N, 3, H, W] -> Conv -> Relu -> Conv -> y: dynamic H and W."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c0"], pads=[1, 1, 1, 1], name="conv0"),
             helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
             helper.make_node("Conv", ["r0", "w1"], ["y"], pads=[1, 1, 1, 1], name="conv1")]
    inits = [init("w0", rng.normal(size=(channels, 3, 3, 3)).astype(np.float32)),
             init("w1", rng.normal(size=(4, channels, 3, 3)).astype(np.float32))]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                            ["N", 3, "H", "W"])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, "H", "W"])],
                      inits)


@pytest.mark.parametrize(("text", "size"), [
    ("512M", 512 << 20), ("2G", 2 << 30), ("1.5GB", 3 << 29), ("800MiB", 800 << 20),
    ("64m", 64 << 20), ("3000000", 3000000), (4 << 20, 4 << 20)])
def test_sizes_parse(text: str | int, size: int) -> None:
    assert parse_size(text) == size
    assert MemoryBudget.parse(text).bytes == size


@pytest.mark.parametrize("text", ["", "lots", "-1G", "2X", "1.2.3M", "0", "512K", "G"])
def test_bad_sizes_name_the_option(text: str) -> None:
    with pytest.raises(UsageError, match="memory_budget must be"):
        parse_size(text)


def test_default_budget_is_bounded() -> None:
    budget = MemoryBudget.parse(None)
    assert (1 << 20) <= budget.bytes <= (768 << 20)
    assert str(MemoryBudget(512 << 20)) == "512 MiB"


def test_cost_per_sample_follows_the_input_size() -> None:
    model = _convs()
    small = sample_cost(model, {"x": (1, 3, 32, 32)})
    large = sample_cost(model, {"x": (1, 3, 128, 128)})
    assert small is not None and large is not None
    # the Relu's input and output live together at the peak (x is freed after conv0)
    assert small.peak == 4 * 32 * 32 * (8 + 8)
    assert large.peak == 16 * small.peak
    assert small.sizes["c0"] == 4 * 8 * 32 * 32


def test_chosen_batch_shrinks_as_the_input_grows() -> None:
    model = _convs()
    budget = MemoryBudget(8 << 20)
    batches = []
    for size in (16, 64, 128, 256, 512):
        cost = sample_cost(model, {"x": (1, 3, size, size)})
        assert cost is not None
        batches.append(budget.batch(cost.per_sample, most=8))
    assert batches == sorted(batches, reverse=True)
    assert batches[0] == 8 and batches[-1] == 1
    assert len(set(batches)) >= 3
    # a larger budget never gives a smaller batch
    cost = sample_cost(model, {"x": (1, 3, 128, 128)})
    assert cost is not None
    assert MemoryBudget(64 << 20).batch(cost.per_sample, 8) >= budget.batch(cost.per_sample, 8)


def test_unknown_cost_keeps_the_most_and_exposures_are_grouped() -> None:
    budget = MemoryBudget(10 << 20)
    assert budget.batch(None, most=8) == 8
    sizes = {"a": 4 << 20, "b": 4 << 20, "c": 4 << 20, "d": 30 << 20}
    assert budget.groups(sizes, ["a", "b", "c", "d", "e"]) == [["a", "b"], ["c"], ["d"], ["e"]]
    assert budget.groups(sizes, ["a", "b"], fixed=8 << 20) == [["a"], ["b"]]


def test_probes_run_right_after_their_tensor() -> None:
    """Probes appended in graph order would make ONNX Runtime run the whole model first
    (every probed tensor alive at once); scheduled, each runs after its producer."""
    model = _convs()
    first = len(model.graph.node)
    for name in ("c0", "r0", "y"):
        model.graph.node.append(helper.make_node("ReduceMax", [name], [f"{name}_max"],
                                                 keepdims=0))
        model.graph.output.append(helper.make_tensor_value_info(f"{name}_max",
                                                                TensorProto.FLOAT, []))
    before = [n.op_type for n in ort_order(list(model.graph.node))]
    assert before.index("ReduceMax") > before.index("Conv", 1)
    unscheduled = sample_cost(model, {"x": (1, 3, 64, 64)})
    schedule_probes(model.graph, first)
    onnx.checker.check_model(model)
    order = [n.output[0] for n in ort_order(list(model.graph.node))]
    assert order == ["c0", "c0_max", "r0", "r0_max", "y", "y_max"]
    scheduled = sample_cost(model, {"x": (1, 3, 64, 64)})
    assert unscheduled is not None and scheduled is not None
    assert scheduled.peak < unscheduled.peak


def test_rss_growth_sees_an_allocation() -> None:
    value, grown = rss_growth(lambda: np.ones(64 << 18, np.float32).sum())  # 64 MiB
    assert value == 64 << 18
    if grown is not None:  # Linux
        assert grown >= 48 << 20


def test_rows_past_the_limit_go_to_disk_and_come_back() -> None:
    rows = [{"a": np.full((4, 4), i, np.float32), "b": np.arange(i + 1)} for i in range(5)]
    with RowStore(limit=150) as store:
        for row in rows:
            store.append(row)
        assert len(store) == 5 and store.held <= 150
        folder = store._folder
        assert folder is not None  # some rows were spilled
        for kept, row in zip(store, rows, strict=True):
            assert set(kept) == {"a", "b"}
            np.testing.assert_array_equal(kept["a"], row["a"])
            np.testing.assert_array_equal(kept["b"], row["b"])
    assert store._folder is None


def test_batches_stack_samples_of_one_shape() -> None:
    samples = [{"x": np.full((1, 2), i, np.float32)} for i in range(5)]
    samples.insert(3, {"x": np.zeros((1, 3), np.float32)})
    shapes = [b["x"].shape for b in stacked_batches(samples, 2)]
    assert shapes == [(2, 2), (1, 2), (1, 3), (2, 2)]
    assert choose_batch(_convs(), {"x": np.zeros((1, 3, 64, 64), np.float32)},
                        MemoryBudget(64 << 20)) == 8
    assert choose_batch(_convs(), {"x": np.zeros((1, 3, 512, 512), np.float32)},
                        MemoryBudget(16 << 20)) == 1
