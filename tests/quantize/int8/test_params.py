"""Quantization math: round trip within scale/2, zero exact, saturation."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lowbit.quantize.int8.params import (
    activation_params,
    dequantize,
    limit_pairs,
    quantize,
    quantize_bias,
    quantize_weight,
    quantize_weight_paired,
    weight_kind,
)

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=200, deadline=None)
@given(lo=finite, hi=finite, dtype=st.sampled_from(["uint8", "int8"]),
       symmetric=st.booleans(), data=st.data())
def test_round_trip_within_half_scale(lo, hi, dtype, symmetric, data):
    lo, hi = min(lo, hi), max(lo, hi)
    if max(hi, 0) - min(lo, 0) < 1e-6:
        return
    p = activation_params(lo, hi, dtype, symmetric=symmetric)
    unit = data.draw(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=50))
    x = np.clip(p.rmin + np.array(unit) * (p.rmax - p.rmin), p.rmin, p.rmax).astype(np.float32)
    err = np.abs(dequantize(quantize(x, p), p) - x)
    # float32 arithmetic adds an ulp-sized error at the magnitude of the values
    assert err.max() <= p.scale / 2 + 1e-6 * max(1.0, float(np.abs(x).max()))


@settings(max_examples=200, deadline=None)
@given(lo=finite, hi=finite, dtype=st.sampled_from(["uint8", "int8"]), symmetric=st.booleans())
def test_zero_is_exact_and_range_covered(lo, hi, dtype, symmetric):
    lo, hi = min(lo, hi), max(lo, hi)
    if max(hi, 0) - min(lo, 0) < 1e-6:
        return
    p = activation_params(lo, hi, dtype, symmetric=symmetric)
    assert dequantize(quantize(np.zeros(3, np.float32), p), p).tolist() == [0.0, 0.0, 0.0]
    # the representable range covers the requested one up to one rounding step
    assert p.rmin <= min(lo, 0) + p.scale and p.rmax >= max(hi, 0) - p.scale


def test_saturation_at_range_ends():
    p = activation_params(-1.0, 1.0, "uint8")
    q = quantize(np.array([-100.0, 100.0], np.float32), p)
    assert q.tolist() == [0, 255]
    p8 = activation_params(-1.0, 1.0, "int8", symmetric=True)
    assert quantize(np.array([-100.0, 100.0], np.float32), p8).tolist() == [-128, 127]
    assert p8.zero_point == 0


def test_relu_range_has_zero_point_at_qmin():
    p = activation_params(0.0, 6.0, "uint8")
    assert p.zero_point == 0 and abs(p.rmax - 6.0) < 1e-6


def test_degenerate_ranges_raise():
    for lo, hi in ((0.0, 0.0), (float("-inf"), 1.0), (0.0, float("nan"))):
        try:
            activation_params(lo, hi, "uint8")
        except ValueError:
            continue
        raise AssertionError(f"range ({lo}, {hi}) accepted")


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 6), st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_weight_per_channel_round_trip(cout, cin, seed):
    w = np.random.default_rng(seed).normal(size=(cout, cin, 3)).astype(np.float32)
    w[0] = 0.0  # an all-zero channel must stay finite and exact
    wq = quantize_weight(w, axis=0)
    assert wq.q.dtype == np.int8 and np.all(np.abs(wq.q) <= 127)
    recon = wq.q.astype(np.float32) * wq.scale.reshape(-1, 1, 1)
    assert np.all(np.abs(recon - w) <= wq.scale.reshape(-1, 1, 1) / 2 + 1e-7)
    assert np.all(recon[0] == 0) and np.all(np.isfinite(wq.scale))
    # every non-zero channel uses the full range
    assert np.all(np.abs(wq.q[1:]).reshape(cout - 1, -1).max(axis=1) == 127)


def test_bias_int32_scale_and_saturation():
    s_w = np.array([0.01, 0.02], np.float32)
    q = quantize_bias(np.array([1.0, -1e12]), 0.5, s_w)
    assert q.dtype == np.int32
    assert q[0] == round(1.0 / (0.5 * 0.01))
    assert q[1] == np.iinfo(np.int32).min


def _same_sign_pair_sums(q):
    q = q.astype(np.int64)
    if q.shape[0] % 2:
        q = np.concatenate([q, np.zeros((1, q.shape[1]), np.int64)])
    even, odd = q[0::2], q[1::2]
    return np.where(np.sign(even) * np.sign(odd) > 0, np.abs(even + odd), 0)


@given(st.integers(1, 80), st.integers(1, 12), st.integers(0, 10_000))
@settings(max_examples=40, deadline=None)
def test_paired_weights_keep_every_same_sign_pair_within_128(k, n, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((k, n)).astype(np.float32)
    w[rng.random((k, n)) < 0.2] *= 8  # large values, so that pairs reach the limit
    wq = quantize_weight_paired(w)
    assert wq.q.shape == w.shape and wq.axis == 1 and wq.q.dtype == np.int8
    assert _same_sign_pair_sums(wq.q).max(initial=0) <= 128


def test_paired_weights_keep_most_of_the_eighth_bit():
    rng = np.random.default_rng(7)
    w = rng.standard_normal((384, 256)).astype(np.float32)
    w[rng.random(w.shape) < 0.01] *= 6  # outlier rows, as SmoothQuant makes them
    errors = {}
    for name, wq in (("paired", quantize_weight_paired(w)), ("full", quantize_weight(w, 1)),
                     ("seven", quantize_weight(w, 1, qmax=63))):
        errors[name] = float(np.square(wq.q * wq.scale - w).sum())
    assert _same_sign_pair_sums(quantize_weight(w, 1).q).max() > 128  # full would overflow
    assert errors["paired"] < 0.35 * errors["seven"], errors  # 8 bits: ¼ of 7 bits' error
    assert errors["paired"] < 1.2 * errors["full"], errors


def test_paired_weights_equal_full_range_where_no_pair_overflows():
    rng = np.random.default_rng(3)
    w = np.abs(rng.uniform(-1, 1, (64, 8))).astype(np.float32)
    w[0::2] *= -1  # every pair has opposite signs: none can overflow
    full = quantize_weight(w, 1)
    paired = quantize_weight_paired(w)
    np.testing.assert_array_equal(paired.q, full.q)
    np.testing.assert_array_equal(paired.scale, full.scale)


def test_paired_weights_leave_opposite_signs_and_fix_same_sign_pairs():
    w = np.array([[1.0, 1.0], [-1.0, 1.0], [0.5, 0.1], [0.5, 0.1]], np.float32)
    wq = quantize_weight_paired(w)
    # Column 0: (127, -127) cannot overflow and stays; column 1: (127, 127) must move.
    assert wq.q[0, 0] == 127 and wq.q[1, 0] == -127
    assert abs(int(wq.q[0, 1]) + int(wq.q[1, 1])) <= 128
    np.testing.assert_allclose(wq.q[:, 1] * wq.scale[1], w[:, 1], atol=0.02)


def test_paired_conv_weights_pair_rows_of_k_in_kernel_then_channel_order():
    rng = np.random.default_rng(5)
    w = np.abs(rng.standard_normal((6, 3, 3, 3))).astype(np.float32)  # [O, I, kh, kw]
    wq = quantize_weight_paired(w, layout="conv")
    assert wq.q.shape == w.shape and wq.axis == 0 and wq.scale.shape == (6,)
    k_rows = wq.q.astype(np.int64).transpose(2, 3, 1, 0).reshape(27, 6)  # K = (kh, kw, c)
    assert _same_sign_pair_sums(k_rows).max() <= 128
    assert _same_sign_pair_sums(quantize_weight(w, 0).q.transpose(2, 3, 1, 0)
                                .reshape(27, 6)).max() > 128  # full range would overflow
    np.testing.assert_allclose(wq.q * wq.scale.reshape(-1, 1, 1, 1), w,
                               atol=float(wq.scale.max()) * 8)


def test_paired_transposed_gemm_weights_pair_along_their_second_axis():
    rng = np.random.default_rng(6)
    w = np.abs(rng.standard_normal((5, 33))).astype(np.float32)  # [N, K]
    wq = quantize_weight_paired(w, layout="nk")
    assert wq.axis == 0 and wq.scale.shape == (5,)
    assert _same_sign_pair_sums(wq.q.T).max() <= 128


def test_limit_pairs_keeps_other_integers_and_fixes_the_overflowing_pairs():
    w = np.array([[1.0, 0.2], [1.0, -0.2], [0.3, 0.2], [0.1, -0.2]], np.float32)
    learned = quantize_weight(w, 1)
    learned.q[2, 0] += 1  # a rounding choice another algorithm made
    fixed = limit_pairs(learned, w, "kn")
    assert abs(int(fixed.q[0, 0]) + int(fixed.q[1, 0])) <= 128  # 127 + 127 projected
    np.testing.assert_array_equal(fixed.q[2:], learned.q[2:])
    np.testing.assert_array_equal(fixed.q[:, 1], learned.q[:, 1])
    np.testing.assert_array_equal(fixed.scale, learned.scale)


def test_weight_kind_tells_depthwise_from_grouped_and_layouts():
    assert weight_kind("MatMul", (64, 32), 1) == ("MatMul", "kn")
    assert weight_kind("Gemm", (32, 64), 0) == ("Gemm", "nk")
    assert weight_kind("Conv", (16, 1, 3, 3), 0, group=16) == ("DepthwiseConv", None)
    assert weight_kind("Conv", (16, 4, 3, 3), 0, group=4) == ("Conv", "conv")
    assert weight_kind("Conv", (16, 8, 3, 3), None) == ("Conv2d", None)  # per tensor
    assert weight_kind("Conv", (16, 8, 3), 0) == ("Conv1d", None)  # not probed
