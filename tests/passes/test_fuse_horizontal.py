"""fuse_horizontal alone: sibling Convs and MatMuls become one op and a Split."""

from __future__ import annotations

import numpy as np
from onnx import helper

from tests.models import init, make_model
from tests.passes.checks import assert_invariants, assert_same_outputs, ops, run_pass
from tests.passes.zoo import inception_branches, transformer_block, vi

RNG = np.random.default_rng(6)


def test_sibling_convs_fuse_by_kernel_and_the_concat_reads_the_parts() -> None:
    model, feeds = inception_branches()
    out, count = run_pass(model, "fuse_horizontal")
    assert count == 2  # the four 1x1 Convs, the two 3x3 Convs
    assert ops(out).count("Conv") == 2 and ops(out).count("Split") == 2
    split = next(n for n in out.graph.node if n.op_type == "Split")
    assert list(split.output) == ["a", "b", "c", "c2"]  # the replaced outputs' names
    assert_invariants(out)
    assert_same_outputs(model, out, feeds)


def test_qkv_matmuls_fuse() -> None:
    model, feeds = transformer_block()
    out, count = run_pass(model, "fuse_horizontal")
    assert count == 1
    assert ops(out).count("MatMul") == ops(model).count("MatMul") - 2
    assert_invariants(out)
    assert_same_outputs(model, out, feeds)


def test_convs_with_other_strides_or_groups_stay_apart() -> None:
    w = [init(f"w{i}", RNG.normal(size=(4, 4, 1, 1)).astype(np.float32)) for i in range(3)]
    dw = [init(f"d{i}", RNG.normal(size=(4, 1, 3, 3)).astype(np.float32)) for i in range(2)]
    model = make_model([helper.make_node("Conv", ["x", "w0"], ["a"], strides=[2, 2]),
                        helper.make_node("Conv", ["x", "w1"], ["b"], strides=[1, 1]),
                        helper.make_node("Conv", ["x", "d0"], ["c"], group=4, pads=[1, 1, 1, 1]),
                        helper.make_node("Conv", ["x", "d1"], ["d"], group=4, pads=[1, 1, 1, 1]),
                        helper.make_node("Conv", ["x", "w2"], ["e"], strides=[2, 2],
                                         dilations=[2, 2])],
                       [vi("x", ["N", 4, 6, 6])],
                       [vi(n, ["N", 4, s, s]) for n, s in (("a", 3), ("b", 6), ("c", 6),
                                                            ("d", 6), ("e", 3))],
                       [*w, *dw])
    out, count = run_pass(model, "fuse_horizontal")
    assert count == 0 and ops(out) == ["Conv"] * 5


def test_matmuls_with_a_non_constant_operand_stay_apart() -> None:
    model = make_model([helper.make_node("MatMul", ["x", "w"], ["a"]),
                        helper.make_node("MatMul", ["x", "z"], ["b"]),
                        helper.make_node("Add", ["a", "b"], ["y"])],
                       [vi("x", ["N", 3]), vi("z", [3, 2])], [vi("y", ["N", 2])],
                       [init("w", RNG.normal(size=(3, 2)).astype(np.float32))])
    out, count = run_pass(model, "fuse_horizontal")
    assert count == 0 and ops(out) == ["MatMul", "MatMul", "Add"]
