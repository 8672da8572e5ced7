"""Quantization math: round trip within scale/2, zero exact, saturation."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lowbit.quantize.params import (
    activation_params,
    dequantize,
    quantize,
    quantize_bias,
    quantize_weight,
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
