"""fold_affine alone: Mul/Add/Sub/Div by per-channel constants into Conv, ConvTranspose, Gemm,
MatMul; what must stay."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from tests.models import init, make_model
from tests.passes.checks import assert_invariants, assert_same_outputs, ops, run_pass
from tests.passes.zoo import vi

RNG = np.random.default_rng(5)
XC = {"x": RNG.normal(size=(2, 3, 6, 6)).astype(np.float32)}
XG = {"x": RNG.normal(size=(3, 5)).astype(np.float32)}


def _conv_then(op: str, shape: tuple[int, ...], conv_first: bool = True, bias: bool = True,
               producer: str = "Conv"):  # type: ignore[no-untyped-def]
    weight = (RNG.normal(size=(4, 3, 3, 3) if producer == "Conv" else (3, 4, 3, 3))
              .astype(np.float32))
    inits = [init("w", weight), init("k", RNG.uniform(0.5, 2, shape).astype(np.float32))]
    if bias:
        inits.append(init("b", RNG.normal(size=4).astype(np.float32)))
    inputs = ["c", "k"] if conv_first else ["k", "c"]
    model = make_model([helper.make_node(producer, ["x", "w"] + (["b"] if bias else []), ["c"],
                                         pads=[1, 1, 1, 1], name="conv"),
                        helper.make_node(op, inputs, ["y"], name="affine")],
                       [vi("x", ["N", 3, 6, 6])], [vi("y", ["N", 4, 6, 6])], inits)
    return model


@pytest.mark.parametrize("op", ["Mul", "Add", "Sub", "Div"])
@pytest.mark.parametrize("shape", [(1, 4, 1, 1), (4, 1, 1), (1,), ()], ids=str)
def test_per_channel_constant_after_conv_folds(op: str, shape: tuple[int, ...]) -> None:
    model = _conv_then(op, shape)
    out, count = run_pass(model, "fold_affine")
    assert count == 1 and ops(out) == ["Conv"]
    assert out.graph.node[0].name == "conv" and out.graph.output[0].name == "y"
    assert_invariants(out)
    assert_same_outputs(model, out, XC)


@pytest.mark.parametrize("op", ["Mul", "Add", "Sub"])
def test_constant_first_operand_folds(op: str) -> None:
    model = _conv_then(op, (4, 1, 1), conv_first=False, bias=False)
    out, count = run_pass(model, "fold_affine")
    assert count == 1 and ops(out) == ["Conv"]
    assert_same_outputs(model, out, XC)


def test_conv_transpose_takes_a_per_channel_scale() -> None:
    model = _conv_then("Mul", (1, 4, 1, 1), producer="ConvTranspose")
    out, count = run_pass(model, "fold_affine")
    assert count == 1 and ops(out) == ["ConvTranspose"]
    assert_same_outputs(model, out, XC)


@pytest.mark.parametrize(("op", "shape", "conv_first"), [
    ("Mul", (1, 1, 1, 6), True),      # varies along the width
    ("Add", (2, 4, 1, 1), True),      # would broadcast the batch up
    ("Div", (4, 1, 1), False),        # c / conv(x) is not affine
])
def test_constants_that_are_not_per_channel_stay(op: str, shape: tuple[int, ...],
                                                 conv_first: bool) -> None:
    model = _conv_then(op, shape, conv_first=conv_first)
    out, count = run_pass(model, "fold_affine")
    assert count == 0 and len(out.graph.node) == 2


def test_conv_output_read_elsewhere_stays() -> None:
    model = _conv_then("Mul", (4, 1, 1))
    model.graph.output.append(vi("c", ["N", 4, 6, 6]))
    out, count = run_pass(model, "fold_affine")
    assert count == 0 and ops(out) == ["Conv", "Mul"]


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_scale_and_bias_fold(trans_b: int) -> None:
    w = RNG.normal(size=(4, 5) if trans_b else (5, 4)).astype(np.float32)
    model = make_model([helper.make_node("Gemm", ["x", "w", "c"], ["g"], transB=trans_b,
                                         alpha=0.5, beta=2.0, name="fc"),
                        helper.make_node("Mul", ["g", "s"], ["m"]),
                        helper.make_node("Add", ["m", "t"], ["y"])],
                       [vi("x", ["N", 5])], [vi("y", ["N", 4])],
                       [init("w", w), init("c", RNG.normal(size=(1, 4)).astype(np.float32)),
                        init("s", RNG.uniform(0.5, 2, 4).astype(np.float32)),
                        init("t", RNG.normal(size=(1, 4)).astype(np.float32))])
    out, count = run_pass(model, "fold_affine")
    assert count == 2 and ops(out) == ["Gemm"]
    assert_same_outputs(model, out, XG)


def test_matmul_takes_a_scale_but_not_a_shift() -> None:
    model = make_model([helper.make_node("MatMul", ["x", "w"], ["h"]),
                        helper.make_node("Mul", ["h", "s"], ["m"]),
                        helper.make_node("MatMul", ["m", "w2"], ["h2"]),
                        helper.make_node("Add", ["h2", "t"], ["y"])],
                       [vi("x", ["N", 5])], [vi("y", ["N", 2])],
                       [init("w", RNG.normal(size=(5, 4)).astype(np.float32)),
                        init("s", RNG.uniform(0.5, 2, 4).astype(np.float32)),
                        init("w2", RNG.normal(size=(4, 2)).astype(np.float32)),
                        init("t", RNG.normal(size=2).astype(np.float32))])
    out, count = run_pass(model, "fold_affine")
    assert count == 1 and ops(out) == ["MatMul", "MatMul", "Add"]
    assert_same_outputs(model, out, XG)
