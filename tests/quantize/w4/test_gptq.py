"""GPTQ lowers a layer's output error below round-to-nearest; Hessians come from one ORT pass."""

import numpy as np
import pytest
from onnx import TensorProto, helper

from lowbit.errors import DatasetError, UsageError
from lowbit.quantize.w4.blockwise import quantize_blocks
from lowbit.quantize.w4.gptq import gptq_quantize
from lowbit.quantize.w4.hessian import collect_hessians
from lowbit.runtime.memory import MemoryBudget
from tests.models import init, make_model


def correlated_inputs(rows: int, k: int, seed: int) -> np.ndarray:
    """Inputs with a few strong shared directions and unequal channel energy, as a
    transformer's hidden states have."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(100).normal(size=(12, k))
    gains = np.random.default_rng(101).uniform(0.2, 3.0, size=k)
    x = rng.normal(size=(rows, 12)) @ mixing + 0.2 * rng.normal(size=(rows, k))
    return (x * gains).astype(np.float32)


def output_error(x: np.ndarray, w: np.ndarray, w_hat: np.ndarray) -> float:
    return float(np.linalg.norm(x @ w - x @ w_hat) / np.linalg.norm(x @ w))


@pytest.mark.parametrize(("block", "symmetric", "act_order"), [
    (32, False, False), (64, True, False), (32, False, True), (128, False, True)])
def test_gptq_has_less_output_error_than_rtn(block, symmetric, act_order):
    k, n = 192, 48
    w = np.random.default_rng(0).normal(size=(k, n)).astype(np.float32) * 0.05
    x = correlated_inputs(1024, k, seed=1)
    hessian = 2 * x.astype(np.float64).T @ x / len(x)
    rtn = quantize_blocks(w, block, symmetric=symmetric)
    gptq = gptq_quantize(w, hessian, block, symmetric=symmetric, act_order=act_order)
    assert gptq.q.shape == (k, n) and gptq.scale.shape == rtn.scale.shape
    held_out = correlated_inputs(512, k, seed=2)  # not the data the Hessian came from
    rtn_error = output_error(held_out, w, rtn.dequantize())
    gptq_error = output_error(held_out, w, gptq.dequantize())
    assert gptq_error < 0.6 * rtn_error
    # GPTQ trades weight error for output error: the weights themselves move more.
    assert np.abs(gptq.dequantize() - w).mean() > np.abs(rtn.dequantize() - w).mean()


def test_gptq_on_white_inputs_is_close_to_rtn():
    # With H ∝ I no row's error can be compensated by another: GPTQ is RTN.
    w = np.random.default_rng(4).normal(size=(64, 8)).astype(np.float32)
    gptq = gptq_quantize(w, np.eye(64), 32)
    np.testing.assert_array_equal(gptq.q, quantize_blocks(w, 32).q)


def test_dead_inputs_quantize_to_zero():
    k = 48
    w = np.random.default_rng(5).normal(size=(k, 4)).astype(np.float32)
    x = correlated_inputs(256, k, seed=6)
    x[:, 7] = 0.0
    quant = gptq_quantize(w, 2 * x.T.astype(np.float64) @ x / len(x), 16)
    assert np.all(quant.dequantize()[7] == 0)


def test_gptq_rejects_a_hessian_of_the_wrong_size():
    with pytest.raises(UsageError, match="Hessian"):
        gptq_quantize(np.ones((32, 2), np.float32), np.eye(16), 16)


def test_hessians_are_2_xtx_over_rows_streamed_over_samples():
    k = 6
    nodes = [helper.make_node("Relu", ["x"], ["h"], name="relu"),
             helper.make_node("MatMul", ["h", "w1"], ["y1"], name="mm1"),
             helper.make_node("MatMul", ["x", "w2"], ["y"], name="mm2")]
    rng = np.random.default_rng(7)
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                             [1, 3, k])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 2])],
                       [init("w1", rng.normal(size=(k, 2)).astype(np.float32)),
                        init("w2", rng.normal(size=(k, 2)).astype(np.float32))])
    xs = rng.normal(size=(5, 1, 3, k)).astype(np.float32)
    result = collect_hessians(model, ["h", "x", "h"], ({"x": x} for x in xs), progress=False)
    assert result.samples == 5 and result.rows == {"h": 15, "x": 15}
    flat = xs.reshape(-1, k).astype(np.float64)
    np.testing.assert_allclose(result.hessians["x"], 2 * flat.T @ flat / 15, rtol=1e-6)
    relu = np.maximum(flat, 0)
    np.testing.assert_allclose(result.hessians["h"], 2 * relu.T @ relu / 15, rtol=1e-6)
    with pytest.raises(DatasetError, match="no"):
        collect_hessians(model, ["h"], [], progress=False)


def test_hessians_of_batched_samples_equal_one_sample_at_a_time():
    """XᵀX is summed over a batch's rows inside the run: batching changes nothing."""
    k = 5
    nodes = [helper.make_node("Relu", ["x"], ["h"], name="relu"),
             helper.make_node("MatMul", ["h", "w"], ["y"], name="mm")]
    rng = np.random.default_rng(3)
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                             ["N", 4, k])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 2])],
                       [init("w", rng.normal(size=(k, 2)).astype(np.float32))])
    xs = [{"x": rng.normal(size=(1, 4, k)).astype(np.float32)} for _ in range(7)]
    batched = collect_hessians(model, ["h"], xs, progress=False)
    single = collect_hessians(model, ["h"], xs, progress=False,
                              memory_budget=MemoryBudget(1))  # one sample per run
    assert batched.samples == single.samples == 7 and batched.rows == single.rows == {"h": 28}
    np.testing.assert_allclose(batched.hessians["h"], single.hessians["h"], rtol=1e-6)
