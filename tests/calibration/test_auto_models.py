"""Method auto against minmax (and KL) on whole built models: output SQNR on held-out data.

auto's promise: never worse than minmax on any model, and never KL's collapse. auto
(as ``lowbit calibrate`` runs it, with its output check) picks the blend between its
per-tensor thresholds and minmax with the best output on the first 32 calibration
samples, minmax among them: there it is never worse, by construction. Held out, blends
within a few tenths of a dB can swap order (with 8-bit weights the MLP's auto and
minmax land 0.12 dB apart), so "never worse" held out is checked with a 0.2 dB
allowance, against KL's collapse of 5–16 dB.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from lowbit.calibration.collect import collect_ranges
from lowbit.calibration.observers import CalibrationSettings
from lowbit.passes import canonicalize
from lowbit.quantize.int8.qdq import quantize_qdq
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.quantize.prepare.auto_check import check_auto_table, with_alpha
from lowbit.runtime.ort import create_session
from tests.models import init, make_model, small_resnet

NOISE_DB = 0.2


def _vi(name: str, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def relu6_net(seed: int = 0) -> onnx.ModelProto:
    """MobileNet-style: conv → ReLU6 (many outputs saturate at 6) → depthwise → ReLU6 →
    pointwise → pool → fc: the model whose ReLU6 spikes KL clips."""
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], pads=[1] * 4),
             helper.make_node("Clip", ["c0", "lo", "hi"], ["r0"]),
             helper.make_node("Conv", ["r0", "dw"], ["c1"], pads=[1] * 4, group=16),
             helper.make_node("Clip", ["c1", "lo", "hi"], ["r1"]),
             helper.make_node("Conv", ["r1", "pw"], ["c2"]),
             helper.make_node("GlobalAveragePool", ["c2"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1)]
    inits = [init("w0", rng.normal(0, 1.0, (16, 3, 3, 3)).astype(np.float32)),
             init("b0", rng.normal(1.5, 1.0, 16).astype(np.float32)),
             init("dw", rng.normal(0, 0.5, (16, 1, 3, 3)).astype(np.float32)),
             init("pw", rng.normal(0, 0.3, (24, 16, 1, 1)).astype(np.float32)),
             init("fc", rng.normal(0, 0.3, (10, 24)).astype(np.float32)),
             init("lo", np.array(0, np.float32)), init("hi", np.array(6, np.float32))]
    return make_model(nodes, [_vi("x", ["N", 3, 12, 12])], [_vi("y", ["N", 10])], inits)


def binary_input_net(seed: int = 0) -> onnx.ModelProto:
    """Conv → ReLU → conv → ReLU → pool → fc on near-binary pixels (as MNIST's): first-layer
    outputs crowd at a few values, where a finer step can round worse."""
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], pads=[1] * 4),
             helper.make_node("Relu", ["c0"], ["r0"]),
             helper.make_node("Conv", ["r0", "w1"], ["c1"], pads=[1] * 4),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("GlobalAveragePool", ["r1"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1)]
    inits = [init("w0", rng.normal(0, 0.5, (8, 1, 3, 3)).astype(np.float32)),
             init("b0", rng.normal(0, 0.2, 8).astype(np.float32)),
             init("w1", rng.normal(0, 0.3, (16, 8, 3, 3)).astype(np.float32)),
             init("fc", rng.normal(0, 0.3, (10, 16)).astype(np.float32))]
    return make_model(nodes, [_vi("x", ["N", 1, 14, 14])], [_vi("y", ["N", 10])], inits)


def mlp(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], transB=1)]
    inits = [init("w1", (rng.normal(size=(64, 32)) / 6).astype(np.float32)),
             init("b1", rng.normal(0, 0.1, 64).astype(np.float32)),
             init("w2", (rng.normal(size=(10, 64)) / 8).astype(np.float32)),
             init("b2", np.zeros(10, np.float32))]
    return make_model(nodes, [_vi("x", ["N", 32])], [_vi("y", ["N", 10])], inits)


def _data(kind: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "binary":
        x = (rng.uniform(size=(n, 1, 14, 14)) < 0.3).astype(np.float32)
        grey = rng.uniform(size=x.shape) < 0.1  # a few anti-aliased edge pixels
        return np.where(grey, rng.uniform(size=x.shape), x).astype(np.float32)
    shapes = {"image": (3, 16, 16), "relu6": (3, 12, 12), "vector": (32,)}
    return rng.normal(size=(n, *shapes[kind])).astype(np.float32)


MODELS = {"small_resnet": (small_resnet, "image"), "relu6_net": (relu6_net, "relu6"),
          "binary_input_net": (binary_input_net, "binary"), "mlp": (mlp, "vector")}


def _sqnr_by_method(model: onnx.ModelProto, calib: np.ndarray, held_out: np.ndarray,
                    methods: tuple[str, ...]) -> dict[str, float]:
    model, _ = canonicalize(model)
    name = model.graph.input[0].name
    reference = create_session(model).run(None, {name: held_out})[0].astype(np.float64)
    samples = [{name: calib[i:i + 1]} for i in range(len(calib))]
    result = {}
    for method in methods:
        table = collect_ranges(model, samples, CalibrationSettings(method=method),
                               progress=False)
        if method == "auto":  # with its output check, as lowbit calibrate runs it
            check = check_auto_table(model, samples[:32], table)
            assert check is not None
            assert check.sqnr[check.alpha] >= check.sqnr[1.0]  # in-sample: minmax at best
            table = with_alpha(table, check.alpha)
        quantized = quantize_qdq(model, table.ranges, QuantizeSettings(),
                                 skipped=table.skipped).model
        out = create_session(quantized).run(None, {name: held_out})[0].astype(np.float64)
        result[method] = 10 * np.log10((reference ** 2).sum() / ((reference - out) ** 2).sum())
    return result


@pytest.mark.parametrize("name", MODELS)
def test_auto_is_never_worse_than_minmax_nor_kl(name: str) -> None:
    build, kind = MODELS[name]
    sqnr = _sqnr_by_method(build(), _data(kind, 64, 1), _data(kind, 256, 2),
                           ("minmax", "auto", "kl"))
    assert sqnr["auto"] >= sqnr["minmax"] - NOISE_DB, sqnr
    assert sqnr["auto"] >= sqnr["kl"] - NOISE_DB, sqnr
    assert sqnr["auto"] > 25, sqnr  # and INT8 works at all on these models


def test_auto_avoids_the_kl_collapse() -> None:
    """small_resnet's pooled outputs are where KL clips far too much (10 dB lost)."""
    sqnr = _sqnr_by_method(small_resnet(), _data("image", 64, 1), _data("image", 256, 2),
                           ("auto", "kl"))
    assert sqnr["auto"] > sqnr["kl"] + 5, sqnr
