"""Block-wise INT4: rounding error, and MatMulNBits packing that ORT reads as lowbit means it."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from lowbit.errors import UsageError
from lowbit.quantize.w4.blockwise import (
    SYMMETRIC_ZERO,
    n_blocks,
    pack_nbits,
    quantize_blocks,
    unpack_nbits,
)
from lowbit.runtime.ort import create_session
from tests.models import make_model


@settings(max_examples=40, deadline=None)
@given(k=st.integers(1, 80), n=st.integers(1, 9), block=st.sampled_from([16, 32, 64]),
       symmetric=st.booleans(), seed=st.integers(0, 2**16), spread=st.floats(1e-3, 1e3))
def test_rtn_error_is_at_most_half_a_step(k, n, block, symmetric, seed, spread):
    rng = np.random.default_rng(seed)
    w = (rng.normal(size=(k, n)) * spread + rng.normal() * spread).astype(np.float32)
    quant = quantize_blocks(w, block, symmetric=symmetric)
    assert quant.q.max() <= 15 and quant.scale.shape == (n_blocks(k, block), n)
    scale = np.repeat(quant.scale, block, axis=0)[:k]
    error = np.abs(quant.dequantize() - w)
    assert np.all(error <= scale / 2 * (1 + 1e-5) + 1e-12 * spread)
    if symmetric:
        assert np.all(quant.zero == SYMMETRIC_ZERO)
        assert np.all(np.abs(quant.q.astype(int) - SYMMETRIC_ZERO) <= 7)


def test_rtn_uses_the_extremes_of_each_block():
    w = np.linspace(-1.0, 2.0, 64, dtype=np.float32).reshape(32, 2)
    quant = quantize_blocks(w, 16)
    # Asymmetric: a block's range is [min, max] widened to include 0, in 16 levels.
    first, second = quant.q[:16], quant.q[16:]
    assert first.min() == 0 and first.max() == 15 and np.all(quant.zero[0] > 0)
    assert second.max() == 15 and np.all(quant.zero[1] == 0)  # all positive: 0 is code 0


def test_zero_block_and_zero_weights_stay_zero():
    w = np.zeros((40, 3), np.float32)
    w[:16, 1] = np.linspace(-1, 1, 16)
    for symmetric in (False, True):
        back = quantize_blocks(w, 16, symmetric=symmetric).dequantize()
        assert np.all(back[16:] == 0) and np.all(back[:, [0, 2]] == 0)


def test_bad_block_size_and_shape_are_usage_errors():
    with pytest.raises(UsageError, match="block size 48"):
        quantize_blocks(np.ones((64, 2), np.float32), 48)
    with pytest.raises(UsageError, match="2-D"):
        quantize_blocks(np.ones((2, 64, 2), np.float32), 32)


@pytest.mark.parametrize("symmetric", [False, True])
def test_pack_then_unpack_is_the_dequantized_weight(symmetric):
    rng = np.random.default_rng(3)
    w = rng.normal(size=(70, 5)).astype(np.float32)
    quant = quantize_blocks(w, 32, symmetric=symmetric)
    packed = pack_nbits(quant)
    assert packed.b.shape == (5, 3, 16) and packed.b.dtype == np.uint8
    assert packed.scales.shape == (15,)
    assert (packed.zeros is None) == symmetric
    if packed.zeros is not None:
        assert packed.zeros.shape == (5, 2)
    back = unpack_nbits(packed.b, packed.scales, packed.zeros, K=70, N=5, block_size=32)
    np.testing.assert_array_equal(back, quant.dequantize())


def _nbits_model(packed, k: int, n: int, block: int):
    inits = [numpy_helper.from_array(packed.b, "B"),
             numpy_helper.from_array(packed.scales, "scales")]
    inputs = ["A", "B", "scales"]
    if packed.zeros is not None:
        inits.append(numpy_helper.from_array(packed.zeros, "zeros"))
        inputs.append("zeros")
    node = helper.make_node("MatMulNBits", inputs, ["Y"], domain="com.microsoft", K=k, N=n,
                            bits=4, block_size=block)
    model = make_model([node], [helper.make_tensor_value_info("A", TensorProto.FLOAT,
                                                              ["M", k])],
                       [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", n])], inits,
                       check=False)
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return model


@pytest.mark.parametrize(("k", "n", "block", "symmetric"), [
    (64, 8, 32, False),     # K a multiple of the block
    (100, 7, 32, False),    # K not a multiple, N odd
    (100, 7, 32, True),
    (384, 33, 128, False),
    (40, 1, 16, True),
    (130, 3, 64, False),
    (20, 5, 256, False),    # one padded block longer than K
])
def test_ort_matmulnbits_matches_the_numpy_reference(k, n, block, symmetric):
    rng = np.random.default_rng(k * n)
    w = rng.normal(size=(k, n)).astype(np.float32)
    packed = pack_nbits(quantize_blocks(w, block, symmetric=symmetric))
    a = rng.normal(size=(6, k)).astype(np.float32)
    got = create_session(_nbits_model(packed, k, n, block)).run(None, {"A": a})[0]
    reference = a @ unpack_nbits(packed.b, packed.scales, packed.zeros, K=k, N=n,
                                 block_size=block)
    np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())
