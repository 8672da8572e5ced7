"""fold_batchnorm on tiny Conv/Gemm + BatchNormalization models.

Both models run on ONNX Runtime with graph optimizations off, so ORT's own Conv+BN fusion
cannot hide a wrong fold.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper

from lowbit.passes import fold_batchnorm
from lowbit.runtime import create_session
from tests.models import init, make_model

RNG = np.random.default_rng(3)


@pytest.fixture(autouse=True)
def _same_numbers_in_any_order() -> None:
    global RNG
    RNG = np.random.default_rng(3)


def _bn_params(prefix: str, c: int) -> tuple[list[str], list[onnx.TensorProto]]:
    names = [f"{prefix}_{p}" for p in ("gamma", "beta", "mean", "var")]
    values = [RNG.uniform(0.5, 2.0, c), RNG.normal(0, 0.5, c), RNG.normal(0, 0.5, c),
              RNG.uniform(0.2, 2.0, c)]
    return names, [init(n, v.astype(np.float32)) for n, v in zip(names, values, strict=True)]


def _float(*shape: int) -> np.ndarray:
    return RNG.normal(size=shape).astype(np.float32)


def conv_bn_model(with_bias: bool, group: int = 1) -> onnx.ModelProto:
    cin, cout = 4, 6
    bn_names, bn_inits = _bn_params("bn", cout)
    conv_inputs = ["x", "w"] + (["b"] if with_bias else [])
    inits = [init("w", _float(cout, cin // group, 3, 3))] + bn_inits
    if with_bias:
        inits.append(init("b", _float(cout)))
    nodes = [helper.make_node("Conv", conv_inputs, ["c"], pads=[1, 1, 1, 1], group=group,
                              name="conv"),
             helper.make_node("BatchNormalization", ["c", *bn_names], ["y"], epsilon=1e-3,
                              name="bn")]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                            ["N", cin, 8, 8])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", cout, 8, 8])],
                      inits)


def gemm_bn_model(trans_b: int, alpha: float = 1.0, beta: float = 1.0,
                  bias_shape: tuple[int, ...] | None = (5,)) -> onnx.ModelProto:
    k, n = 7, 5
    bn_names, bn_inits = _bn_params("bn", n)
    inits = [init("w", _float(n, k) if trans_b else _float(k, n))] + bn_inits
    gemm_inputs = ["x", "w"]
    if bias_shape is not None:
        inits.append(init("c", _float(*bias_shape)))
        gemm_inputs.append("c")
    nodes = [helper.make_node("Gemm", gemm_inputs, ["g"], transB=trans_b, alpha=alpha,
                              beta=beta, name="fc"),
             helper.make_node("BatchNormalization", ["g", *bn_names], ["y"], name="bn")]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", k])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n])], inits)


def fold(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    ir_model = ir.from_proto(model)
    count = fold_batchnorm(ir_model)
    folded = ir.to_proto(ir_model)
    onnx.checker.check_model(folded, full_check=True)
    return folded, count


def run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    session = create_session(model, graph_optimization=False)
    return session.run(None, {"x": x})


def ops(model: onnx.ModelProto) -> list[str]:
    return [node.op_type for node in model.graph.node]


def assert_same_function(original: onnx.ModelProto, folded: onnx.ModelProto,
                         x: np.ndarray) -> None:
    assert [o.name for o in folded.graph.output] == [o.name for o in original.graph.output]
    for want, got in zip(run(original, x), run(folded, x), strict=True):
        # float32 rounding of the folded weights, relative to the output's magnitude
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("with_bias", [False, True])
def test_folds_into_conv(with_bias: bool) -> None:
    model = conv_bn_model(with_bias)
    folded, count = fold(model)
    assert count == 1
    assert ops(folded) == ["Conv"]
    assert len(folded.graph.node[0].input) == 3  # a bias was added when there was none
    assert_same_function(model, folded, _float(2, 4, 8, 8))


def test_folds_into_grouped_conv() -> None:
    model = conv_bn_model(with_bias=True, group=2)
    folded, count = fold(model)
    assert count == 1 and ops(folded) == ["Conv"]
    assert_same_function(model, folded, _float(2, 4, 8, 8))


@pytest.mark.parametrize("trans_b", [0, 1])
def test_folds_into_gemm(trans_b: int) -> None:
    model = gemm_bn_model(trans_b)
    folded, count = fold(model)
    assert count == 1 and ops(folded) == ["Gemm"]
    assert_same_function(model, folded, _float(3, 7))


@pytest.mark.parametrize(("alpha", "beta", "bias_shape"),
                         [(2.0, 0.5, (5,)), (1.0, 1.0, None), (0.5, 3.0, (1, 5)),
                          (1.0, 2.0, (1,))])
def test_folds_into_gemm_with_alpha_beta_and_bias_forms(
    alpha: float, beta: float, bias_shape: tuple[int, ...] | None
) -> None:
    model = gemm_bn_model(trans_b=1, alpha=alpha, beta=beta, bias_shape=bias_shape)
    folded, count = fold(model)
    assert count == 1 and ops(folded) == ["Gemm"]
    assert_same_function(model, folded, _float(3, 7))


def test_bn_whose_input_has_two_consumers_is_not_folded() -> None:
    model = conv_bn_model(with_bias=True)
    model.graph.node.append(helper.make_node("Relu", ["c"], ["side"], name="side"))
    model.graph.output.append(helper.make_tensor_value_info("side", TensorProto.FLOAT, ["N", 6, 8, 8]))
    folded, count = fold(model)
    assert count == 0
    assert ops(folded).count("BatchNormalization") == 1
    assert_same_function(model, folded, _float(2, 4, 8, 8))


def test_bn_whose_input_is_a_graph_output_is_not_folded() -> None:
    model = conv_bn_model(with_bias=False)
    model.graph.output.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, ["N", 6, 8, 8]))
    folded, count = fold(model)
    assert count == 0
    assert_same_function(model, folded, _float(1, 4, 8, 8))


def test_bn_after_a_non_weight_op_is_left_alone() -> None:
    model = conv_bn_model(with_bias=False)
    model.graph.node[0].op_type = "Relu"  # Relu(x) -> BN: nothing to fold into
    del model.graph.node[0].input[1:]
    del model.graph.node[0].attribute[:]
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 6
    folded, count = fold(model)
    assert count == 0 and "BatchNormalization" in ops(folded)


def test_bn_with_non_constant_weight_is_not_folded() -> None:
    model = conv_bn_model(with_bias=False)
    weight = next(i for i in model.graph.initializer if i.name == "w")
    model.graph.initializer.remove(weight)
    model.graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT,
                                                           [6, 4, 3, 3]))
    folded, count = fold(model)
    assert count == 0 and "BatchNormalization" in ops(folded)


def test_chain_of_conv_bn_pairs_all_fold() -> None:
    first = conv_bn_model(with_bias=True)
    bn_names, bn_inits = _bn_params("bn2", 6)
    nodes = list(first.graph.node) + [
        helper.make_node("Relu", ["y"], ["r"]),
        helper.make_node("Conv", ["r", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c2", *bn_names], ["z"]),
    ]
    inits = list(first.graph.initializer) + [init("w2", _float(6, 6, 3, 3))] + bn_inits
    model = make_model(nodes, list(first.graph.input),
                       [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 6, 8, 8])], inits)
    folded, count = fold(model)
    assert count == 2
    assert ops(folded) == ["Conv", "Relu", "Conv"]
    assert_same_function(model, folded, _float(2, 4, 8, 8))


@pytest.mark.parametrize("group", [1, 2])
def test_folds_into_conv_transpose(group: int) -> None:
    cin, cout = 4, 6
    bn_names, bn_inits = _bn_params("bn", cout)
    nodes = [helper.make_node("ConvTranspose", ["x", "w", "b"], ["c"], strides=[2, 2],
                              group=group, name="up"),
             helper.make_node("BatchNormalization", ["c", *bn_names], ["y"], name="bn")]
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                             ["N", cin, 5, 5])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                      ["N", cout, 11, 11])],
                       [init("w", _float(cin, cout // group, 3, 3)), init("b", _float(cout)),
                        *bn_inits])
    folded, count = fold(model)
    assert count == 1 and ops(folded) == ["ConvTranspose"]
    assert folded.graph.node[0].name == "up"
    assert_same_function(model, folded, _float(2, cin, 5, 5))


def test_folded_conv_keeps_its_node_name_and_takes_the_bn_output_name() -> None:
    model = conv_bn_model(with_bias=True)
    model.graph.node.append(helper.make_node("Relu", ["y"], ["z"], name="relu"))
    model.graph.output[0].name = "z"
    folded, _ = fold(model)
    conv = folded.graph.node[0]
    assert conv.name == "conv" and list(conv.output) == ["y"]
    assert_same_function(model, folded, _float(2, 4, 8, 8))
