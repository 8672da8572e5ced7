"""Models whose inputs take what ONNX Runtime takes and lowbit once refused, built with
onnx.helper: a paddle2onnx-style classifier at opset 11 (``dim_value: -1`` dims, or
symbolic ones with shapeless value_info), a scalar input, an int32 input, a symbolic
dim shared by two inputs, and an input with a default (an initializer of its name)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper

from tests.models import init


def paddle_classifier(dims: Sequence[int | str] = (-1, 3, -1, -1),
                      out_dims: Sequence[int | str] = (-1, 10), *,
                      computed_flatten: bool = False, shapeless_value_info: bool = False,
                      seed: int = 0) -> onnx.ModelProto:
    """Conv-BN-Relu, global pooling, flatten by Reshape, MatMul+Add, Softmax, at opset 11
    as paddle2onnx writes it. ``computed_flatten`` reshapes to a shape computed from the
    tensor (Shape → Slice → Concat) and ends in an Identity (paddle's final scale op);
    ``shapeless_value_info`` declares every inner tensor with a type and no shape."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["conv"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["conv", "g", "b", "m", "v"], ["bn"]),
        helper.make_node("Relu", ["bn"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
    ]
    inits = [init("w", (rng.normal(size=(8, 3, 3, 3)) * 0.3).astype(np.float32)),
             init("g", rng.uniform(0.5, 1.5, 8).astype(np.float32)),
             init("b", rng.normal(0, 0.1, 8).astype(np.float32)),
             init("m", rng.normal(0, 0.1, 8).astype(np.float32)),
             init("v", rng.uniform(0.5, 1.5, 8).astype(np.float32)),
             init("fc_w", (rng.normal(size=(8, 10)) * 0.3).astype(np.float32)),
             init("fc_b", rng.normal(0, 0.1, 10).astype(np.float32))]
    if computed_flatten:
        nodes += [helper.make_node("Shape", ["pool"], ["pool_shape"]),
                  helper.make_node("Slice", ["pool_shape", "zero", "one"], ["batch"]),
                  helper.make_node("Concat", ["batch", "minus_one"], ["flat_shape"], axis=0),
                  helper.make_node("Reshape", ["pool", "flat_shape"], ["flat"])]
        inits += [init("zero", np.array([0], np.int64)), init("one", np.array([1], np.int64)),
                  init("minus_one", np.array([-1], np.int64))]
    else:
        nodes.append(helper.make_node("Reshape", ["pool", "flat_shape"], ["flat"]))
        inits.append(init("flat_shape", np.array([0, -1], np.int64)))
    last = "softmax" if computed_flatten else "prob"
    nodes += [helper.make_node("MatMul", ["flat", "fc_w"], ["mm"]),
              helper.make_node("Add", ["mm", "fc_b"], ["logits"]),
              helper.make_node("Softmax", ["logits"], [last], axis=1)]
    if computed_flatten:
        nodes.append(helper.make_node("Identity", ["softmax"], ["prob"]))
    value_info = []
    if shapeless_value_info:
        for name in ("conv", "bn", "relu", "pool", "flat", "mm", "logits", last):
            info = onnx.ValueInfoProto(name=name)
            info.type.tensor_type.elem_type = TensorProto.FLOAT
            value_info.append(info)
    graph = helper.make_graph(
        nodes, "paddle", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, list(out_dims))], inits,
        value_info=value_info)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)],
                              ir_version=6, producer_name="PaddlePaddle")
    onnx.checker.check_model(model)
    return model


def _model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto],
           outputs: list[onnx.ValueInfoProto], inits: list[onnx.TensorProto]) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "feeds", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def _weight(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    return (rng.normal(size=(rows, cols)) * 0.5).astype(np.float32)


def scalar_input_model(seed: int = 0) -> onnx.ModelProto:
    """y = MatMul(x * sr, W): ``sr`` a rank-0 input (a sample rate, a temperature)."""
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Mul", ["x", "sr"], ["scaled"]),
             helper.make_node("MatMul", ["scaled", "w"], ["y"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8]),
              helper.make_tensor_value_info("sr", TensorProto.FLOAT, [])]
    return _model(nodes, inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                                ["N", 4])],
                  [init("w", _weight(rng, 8, 4))])


def int32_ids_model(seed: int = 0) -> onnx.ModelProto:
    """y = MatMul(Gather(table, ids), W) with ``ids`` declared int32 [N, 6]."""
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Gather", ["table", "ids"], ["embedded"]),
             helper.make_node("MatMul", ["embedded", "w"], ["y"])]
    inputs = [helper.make_tensor_value_info("ids", TensorProto.INT32, ["N", 6])]
    return _model(nodes, inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                                ["N", 6, 4])],
                  [init("table", _weight(rng, 20, 8)), init("w", _weight(rng, 8, 4))])


def shared_dim_model(add: bool = False, seed: int = 0) -> onnx.ModelProto:
    """Inputs ``a`` and ``b``, both [N, 8] (one symbolic N): two independent MatMuls, or
    with ``add`` their sum (which only runs where the two N agree or one is 1)."""
    rng = np.random.default_rng(seed)
    if add:
        nodes = [helper.make_node("Add", ["a", "b"], ["ab"]),
                 helper.make_node("MatMul", ["ab", "w"], ["y"])]
        outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])]
    else:
        nodes = [helper.make_node("MatMul", ["a", "w"], ["ya"]),
                 helper.make_node("MatMul", ["b", "w"], ["yb"])]
        outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 4])
                   for name in ("ya", "yb")]
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 8])
              for name in ("a", "b")]
    return _model(nodes, inputs, outputs, [init("w", _weight(rng, 8, 4))])


def default_input_model(seed: int = 0) -> onnx.ModelProto:
    """y = MatMul(x * scale, W) where ``scale`` is a graph input with an initializer of the
    same name: a default that a feed may override."""
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Mul", ["x", "scale"], ["scaled"]),
             helper.make_node("MatMul", ["scaled", "w"], ["y"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8]),
              helper.make_tensor_value_info("scale", TensorProto.FLOAT, [8])]
    return _model(nodes, inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                                ["N", 4])],
                  [init("scale", np.full(8, 0.5, np.float32)), init("w", _weight(rng, 8, 4))])
