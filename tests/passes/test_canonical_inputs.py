"""canonicalize on the inputs and outputs real exporters write: paddle2onnx's
``dim_value: -1``, symbolic dims with shapeless value_info, a scalar input. The result
passes the ONNX checker and computes what the original computes in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from lowbit.errors import UsageError
from lowbit.io.model import input_specs
from lowbit.passes import canonicalize
from tests.feed_models import paddle_classifier, scalar_input_model


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def dims(value: onnx.ValueInfoProto) -> list[int | str | None]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in value.type.tensor_type.shape.dim]


X = np.random.default_rng(0).normal(size=(2, 3, 48, 192)).astype(np.float32)


def test_minus_one_dims_become_dynamic_before_shape_inference() -> None:
    source = paddle_classifier()
    model, report = canonicalize(source)
    onnx.checker.check_model(model, full_check=True)
    assert report.opset_before == 11 and report.opset_after == 13
    assert dims(model.graph.input[0]) == [None, 3, None, None]
    batch, classes = dims(model.graph.output[0])
    assert not isinstance(batch, int) and classes == 10   # inference may name the batch dim
    # Inference no longer computes with -1: the Conv's output height is not 0.
    inner = {v.name: dims(v) for v in model.graph.value_info}
    assert all(d != 0 and (not isinstance(d, int) or d > 0)
               for shape in inner.values() for d in shape), inner
    np.testing.assert_allclose(run(model, {"x": X})[0], run(source, {"x": X})[0],
                               rtol=1e-5, atol=1e-6)
    assert dims(source.graph.input[0]) == [-1, 3, -1, -1]  # the caller's model is unchanged


def test_a_graph_output_keeps_its_declared_shape_where_inference_finds_none() -> None:
    """The classifier ends in Reshape(to a computed shape) → Softmax → Identity, with every
    inner tensor declared without a shape: removing the Identity hands the output's name
    to a tensor inference cannot shape. Before, the output lost its shape and deploy's
    model failed the ONNX checker ("Field 'shape' of 'type' is required but missing")."""
    source = paddle_classifier(("N", 3, "H", "W"), ("N", 10), computed_flatten=True,
                               shapeless_value_info=True)
    model, report = canonicalize(source)
    assert report.changes["Identity removed"] == 1
    assert dims(model.graph.output[0]) == ["N", 10]
    onnx.checker.check_model(model, full_check=True)
    np.testing.assert_allclose(run(model, {"x": X})[0], run(source, {"x": X})[0],
                               rtol=1e-5, atol=1e-6)


def test_input_shapes_fix_minus_one_dims() -> None:
    model, _ = canonicalize(paddle_classifier(), input_shapes={"x": (1, 3, 48, 192)})
    assert input_specs(model)[0].shape == (1, 3, 48, 192)
    assert dims(model.graph.output[0]) == [1, 10]


def test_input_shapes_for_a_scalar_input() -> None:
    model, _ = canonicalize(scalar_input_model(), input_shapes=[(1, 8), ()])
    assert [spec.shape for spec in input_specs(model)] == [(1, 8), ()]
    with pytest.raises(UsageError, match=r"input 'sr' has rank 0, input_shapes gives \[1\] "
                                         r"\(rank 1\)"):
        canonicalize(scalar_input_model(), input_shapes={"sr": (1,)})
