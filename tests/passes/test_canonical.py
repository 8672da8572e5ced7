"""canonicalize: constants lifted, Identity/Dropout removed, opset upgraded, input shapes fixed.

Every rewritten model must pass the ONNX checker and compute what the original did (ONNX
Runtime with graph optimizations off, so ORT's own clean-up hides nothing).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from lowbit.errors import UsageError
from lowbit.passes import canonicalize
from lowbit.runtime import create_session
from tests.models import init, make_model, small_resnet


def _float(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = create_session(model, graph_optimization=False)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def ops(model: onnx.ModelProto) -> list[str]:
    return [node.op_type for node in model.graph.node]


def assert_same_function(original: onnx.ModelProto, rewritten: onnx.ModelProto,
                         feeds: dict[str, np.ndarray]) -> None:
    onnx.checker.check_model(rewritten, full_check=True)
    want, got = run(original, feeds), run(rewritten, feeds)
    assert list(got) == list(want)  # same output names, same order
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5, err_msg=name)


def vi(name: str, shape: list[int | str] | None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_constant_weights_are_lifted_to_initializers() -> None:
    weight = _float(4, 3, 3, 3, seed=1)
    nodes = [helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(weight)),
             helper.make_node("Constant", [], ["b"],
                              value=numpy_helper.from_array(_float(4, seed=2))),
             helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])]
    model = make_model(nodes, [vi("x", ["N", 3, 8, 8])], [vi("y", ["N", 4, 8, 8])], [])
    out, report = canonicalize(model)
    assert ops(out) == ["Conv"]
    initializers = {i.name: numpy_helper.to_array(i) for i in out.graph.initializer}
    conv = out.graph.node[0]
    np.testing.assert_array_equal(initializers[conv.input[1]], weight)
    assert conv.input[2] in initializers
    assert report.changes["constants lifted"] == 2
    assert_same_function(model, out, {"x": _float(2, 3, 8, 8)})


def test_identity_and_dropout_are_removed() -> None:
    nodes = [helper.make_node("Identity", ["x"], ["i"]),
             helper.make_node("Relu", ["i"], ["r"]),
             helper.make_node("Dropout", ["r"], ["d"], name="drop"),
             helper.make_node("Identity", ["d"], ["i2"]),
             helper.make_node("Sigmoid", ["i2"], ["y"])]
    model = make_model(nodes, [vi("x", ["N", 5])], [vi("y", ["N", 5])], [])
    out, report = canonicalize(model)
    assert ops(out) == ["Relu", "Sigmoid"]
    assert report.changes["Identity removed"] == 2 and report.changes["Dropout removed"] == 1
    assert_same_function(model, out, {"x": _float(3, 5)})


def test_dropout_whose_output_is_a_graph_output_is_removed_and_the_name_kept() -> None:
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Dropout", ["r"], ["y"], name="drop"),
             helper.make_node("Neg", ["r"], ["z"])]
    model = make_model(nodes, [vi("x", ["N", 5])], [vi("y", ["N", 5]), vi("z", ["N", 5])], [])
    out, _ = canonicalize(model)
    assert "Dropout" not in ops(out)
    assert [o.name for o in out.graph.output] == ["y", "z"]
    assert_same_function(model, out, {"x": _float(3, 5)})


def test_dropout_whose_input_is_also_a_graph_output_keeps_both_outputs() -> None:
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Dropout", ["r"], ["y"])]
    model = make_model(nodes, [vi("x", ["N", 5])], [vi("r", ["N", 5]), vi("y", ["N", 5])], [])
    out, _ = canonicalize(model)
    assert "Dropout" not in ops(out)
    assert [o.name for o in out.graph.output] == ["r", "y"]
    assert_same_function(model, out, {"x": _float(3, 5)})


def test_identity_feeding_a_graph_output_is_removed_and_the_name_kept() -> None:
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Identity", ["r"], ["y"])]
    model = make_model(nodes, [vi("x", ["N", 5])], [vi("y", ["N", 5])], [])
    out, _ = canonicalize(model)
    assert ops(out) == ["Relu"]
    assert [o.name for o in out.graph.output] == ["y"]
    assert_same_function(model, out, {"x": _float(3, 5)})


def test_dropout_with_a_used_mask_is_kept() -> None:
    nodes = [helper.make_node("Dropout", ["x"], ["d", "mask"]),
             helper.make_node("Cast", ["mask"], ["m"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["d", "m"], ["y"])]
    model = make_model(nodes, [vi("x", ["N", 5])], [vi("y", ["N", 5])], [])
    out, report = canonicalize(model)
    assert "Dropout" in ops(out) and report.changes["Dropout removed"] == 0
    assert_same_function(model, out, {"x": _float(3, 5)})


def test_dropout_between_graph_input_and_output_keeps_both_names() -> None:
    model = make_model([helper.make_node("Dropout", ["x"], ["y"])], [vi("x", ["N", 5])],
                       [vi("y", ["N", 5])], [])
    out, _ = canonicalize(model)
    assert "Dropout" not in ops(out)
    assert [i.name for i in out.graph.input] == ["x"] and [o.name for o in out.graph.output] == [
        "y"]
    assert_same_function(model, out, {"x": _float(3, 5)})


def test_opset_11_is_upgraded_to_13_and_still_runs() -> None:
    # Squeeze/Unsqueeze take axes as an attribute before opset 13 and as an input after it.
    nodes = [helper.make_node("Unsqueeze", ["x"], ["u"], axes=[1]),
             helper.make_node("Relu", ["u"], ["r"]),
             helper.make_node("Squeeze", ["r"], ["s"], axes=[1]),
             helper.make_node("Gemm", ["s", "w", "b"], ["y"], transB=1)]
    inits = [init("w", _float(3, 6, seed=1)), init("b", _float(3, seed=2))]
    model = make_model(nodes, [vi("x", ["N", 6])], [vi("y", ["N", 3])], inits, opset=11)
    out, report = canonicalize(model)
    assert report.opset_before == 11 and report.opset_after == 13
    assert {o.version for o in out.opset_import if o.domain in ("", "ai.onnx")} == {13}
    squeeze = next(n for n in out.graph.node if n.op_type == "Squeeze")
    assert len(squeeze.input) == 2 and not squeeze.attribute  # axes became an input
    assert "opset 11 → 13" in report.summary()
    assert_same_function(model, out, {"x": _float(4, 6)})


def test_conv_bn_ending_the_graph_folds_and_keeps_the_output_name() -> None:
    rng = np.random.default_rng(4)
    bn = [init(f"bn_{p}", rng.uniform(0.5, 1.5, 4).astype(np.float32))
          for p in ("g", "b", "m", "v")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", *(t.name for t in bn)], ["y"])]
    model = make_model(nodes, [vi("x", ["N", 3, 8, 8])], [vi("y", ["N", 4, 8, 8])],
                       [init("w", _float(4, 3, 3, 3, seed=5)), *bn])
    out, _ = canonicalize(model)
    assert ops(out) == ["Conv"]
    assert [o.name for o in out.graph.output] == ["y"]
    assert {i.name for i in out.graph.initializer}.isdisjoint({"w", *(t.name for t in bn)})
    assert_same_function(model, out, {"x": _float(2, 3, 8, 8)})


def test_opset_13_and_newer_is_left_as_is() -> None:
    _, report = canonicalize(small_resnet())
    assert report.opset_before == report.opset_after == 17
    assert report.changes["BatchNormalization folded"] == 3
    assert report.nodes_after == report.nodes_before - 3


def _input_dims(model: onnx.ModelProto) -> list[int | str]:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]


def _output_dims(model: onnx.ModelProto) -> list[int | str]:
    dims = model.graph.output[0].type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]


@pytest.mark.parametrize("shapes", [{"input": (2, 3, 16, 16)}, [(2, 3, 16, 16)]],
                         ids=["dict", "list"])
def test_input_shapes_fix_the_input_and_propagate(shapes: object) -> None:
    model = small_resnet()
    assert _input_dims(model) == ["N", 3, 16, 16]
    out, _ = canonicalize(model, input_shapes=shapes)  # type: ignore[arg-type]
    assert _input_dims(out) == [2, 3, 16, 16]
    assert _output_dims(out) == [2, 10]
    x = _float(2, 3, 16, 16)
    np.testing.assert_allclose(run(out, {"input": x})["logits"],
                               run(model, {"input": x})["logits"], rtol=1e-4, atol=1e-5)


def test_input_shapes_do_not_touch_the_callers_model() -> None:
    model = small_resnet()
    canonicalize(model, input_shapes={"input": (1, 3, 16, 16)})
    assert _input_dims(model) == ["N", 3, 16, 16]


@pytest.mark.parametrize(("shapes", "named"), [
    ({"image": (1, 3, 16, 16)}, "image"),
    ({"input": (1, 3, 16)}, "rank"),
    ([(1, 3, 16, 16), (1, 3, 16, 16)], "2 shape(s)"),
], ids=["unknown-name", "wrong-rank", "too-many"])
def test_bad_input_shapes_raise_usage_error(shapes: object, named: str) -> None:
    with pytest.raises(UsageError, match=named.replace("(", r"\(").replace(")", r"\)")):
        canonicalize(small_resnet(), input_shapes=shapes)  # type: ignore[arg-type]


def test_canonicalize_is_idempotent() -> None:
    once, _ = canonicalize(small_resnet())
    twice, report = canonicalize(once)
    assert ops(twice) == ops(once)
    assert not any(report.changes.values())
