"""fuse_pad_into_conv alone."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from tests.models import init, make_model
from tests.passes.checks import assert_invariants, assert_same_outputs, ops, run_pass
from tests.passes.zoo import vi

RNG = np.random.default_rng(7)
X = {"x": RNG.normal(size=(2, 3, 7, 7)).astype(np.float32)}


def _pad_conv(pads: list[int], mode: str = "constant", fill: float | None = None,
              conv_pads: list[int] | None = None):  # type: ignore[no-untyped-def]
    inits = [init("pads", np.asarray(pads, np.int64)),
             init("w", RNG.normal(size=(4, 3, 3, 3)).astype(np.float32))]
    pad_inputs = ["x", "pads"]
    if fill is not None:
        inits.append(init("fill", np.float32(fill)))
        pad_inputs.append("fill")
    conv_attrs = {} if conv_pads is None else {"pads": conv_pads}
    h = 7 + pads[2] + pads[6] + (conv_pads or [0] * 4)[0] + (conv_pads or [0] * 4)[2] - 2
    w = 7 + pads[3] + pads[7] + (conv_pads or [0] * 4)[1] + (conv_pads or [0] * 4)[3] - 2
    return make_model([helper.make_node("Pad", pad_inputs, ["p"], mode=mode, name="pad"),
                       helper.make_node("Conv", ["p", "w"], ["y"], name="conv", **conv_attrs)],
                      [vi("x", ["N", 3, 7, 7])], [vi("y", ["N", 4, h, w])], inits)


@pytest.mark.parametrize(("pads", "fill", "conv_pads"), [
    ([0, 0, 0, 0, 0, 0, 1, 1], None, None),
    ([0, 0, 1, 2, 0, 0, 2, 1], 0.0, [1, 1, 1, 1]),
])
def test_zero_spatial_pad_folds_into_the_conv(pads: list[int], fill: float | None,
                                              conv_pads: list[int] | None) -> None:
    model = _pad_conv(pads, fill=fill, conv_pads=conv_pads)
    out, count = run_pass(model, "fuse_pad_into_conv")
    assert count == 1 and ops(out) == ["Conv"]
    conv = out.graph.node[0]
    got = next(list(a.ints) for a in conv.attribute if a.name == "pads")
    base = conv_pads or [0, 0, 0, 0]
    assert got == [base[0] + pads[2], base[1] + pads[3], base[2] + pads[6], base[3] + pads[7]]
    assert conv.name == "conv"
    assert_invariants(out)
    assert_same_outputs(model, out, X)


@pytest.mark.parametrize(("pads", "mode", "fill"), [
    ([0, 0, 1, 1, 0, 0, 1, 1], "reflect", None),
    ([0, 0, 1, 1, 0, 0, 1, 1], "constant", 1.0),
    ([0, 1, 0, 0, 0, 0, 0, 0], "constant", None),    # pads a channel
])
def test_other_pads_stay(pads: list[int], mode: str, fill: float | None) -> None:
    if pads[1]:  # a channel pad changes the Conv's input channels: give it a matching weight
        model = make_model([helper.make_node("Pad", ["x", "pads"], ["p"]),
                            helper.make_node("Conv", ["p", "w"], ["y"])],
                           [vi("x", ["N", 3, 7, 7])], [vi("y", ["N", 4, 5, 5])],
                           [init("pads", np.asarray(pads, np.int64)),
                            init("w", RNG.normal(size=(4, 4, 3, 3)).astype(np.float32))])
    else:
        model = _pad_conv(pads, mode=mode, fill=fill)
    out, count = run_pass(model, "fuse_pad_into_conv")
    assert count == 0 and ops(out) == ["Pad", "Conv"]
