"""eliminate_concat alone."""

from __future__ import annotations

import numpy as np
from onnx import helper

from tests.models import init, make_model
from tests.passes.checks import assert_invariants, assert_same_outputs, ops, run_pass
from tests.passes.zoo import vi

RNG = np.random.default_rng(2)
FEEDS = {"x": RNG.normal(size=(2, 3)).astype(np.float32),
         "z": RNG.normal(size=(2, 5)).astype(np.float32)}


def test_concat_of_one_input_is_removed() -> None:
    model = make_model([helper.make_node("Relu", ["x"], ["r"]),
                        helper.make_node("Concat", ["r"], ["y"], axis=1)],
                       [vi("x", ["N", 3])], [vi("y", ["N", 3])], [])
    out, count = run_pass(model, "eliminate_concat")
    assert count == 1 and ops(out) == ["Relu"]
    assert_same_outputs(model, out, {"x": FEEDS["x"]})


def _concat_split(sizes: list[int], split_axis: int = 1):  # type: ignore[no-untyped-def]
    return make_model([helper.make_node("Relu", ["x"], ["a"]),
                       helper.make_node("Neg", ["z"], ["b"]),
                       helper.make_node("Concat", ["a", "b"], ["cat"], axis=1),
                       helper.make_node("Split", ["cat", "sizes"], ["s0", "s1"], axis=split_axis),
                       helper.make_node("Sigmoid", ["s0"], ["y0"]),
                       helper.make_node("Tanh", ["s1"], ["y1"])],
                      [vi("x", [2, 3]), vi("z", [2, 5])], [vi("y0", [2, sizes[0]]),
                                                           vi("y1", [2, sizes[1]])],
                      [init("sizes", np.asarray(sizes, np.int64))])


def test_split_undoing_a_concat_reads_the_parts() -> None:
    model = _concat_split([3, 5])
    out, count = run_pass(model, "eliminate_concat")
    assert count == 1 and ops(out) == ["Relu", "Neg", "Sigmoid", "Tanh"]
    assert_invariants(out)
    assert_same_outputs(model, out, FEEDS)


def test_split_at_other_sizes_stays() -> None:
    model = _concat_split([4, 4])
    out, count = run_pass(model, "eliminate_concat")
    assert count == 0 and "Split" in ops(out)
    assert_same_outputs(model, out, FEEDS)


def test_concat_of_a_whole_split_reads_the_split_input() -> None:
    model = make_model([helper.make_node("Relu", ["x"], ["r"]),
                        helper.make_node("Split", ["r", "sizes"], ["p", "q"], axis=-1),
                        helper.make_node("Neg", ["z"], ["n"]),
                        helper.make_node("Concat", ["n", "p", "q"], ["y"], axis=1)],
                       [vi("x", [2, 3]), vi("z", [2, 5])], [vi("y", [2, 8])],
                       [init("sizes", np.asarray([1, 2], np.int64))])
    out, count = run_pass(model, "eliminate_concat")
    assert count == 1 and ops(out) == ["Relu", "Neg", "Concat"]
    assert list(out.graph.node[-1].input) == ["n", "r"]
    assert_same_outputs(model, out, FEEDS)
